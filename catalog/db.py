"""DuckDB over the Parquet fragments: the views, read-only connections and query output.

Only the run's driver writes ``catalog.duckdb`` (briefly, to (re)create the views); every reader opens it
read-only. The views use paths relative to the run folder and every connection sets DuckDB's
``file_search_path`` to that folder, so a run folder can be moved or mounted elsewhere and still works.

Reader connections are sandboxed: DuckDB's external access is switched off except for the run's ``data/``
folder, and the configuration is then locked, so no query can write or read files elsewhere, attach
databases or install/load extensions. :func:`run_query` (``g1forge query``) and ``export --where`` also accept
only one ``SELECT`` statement (:func:`check_select_only`), which keeps ``COPY ... TO`` out of ``data/`` too.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

from catalog.connection import configure_connection
from catalog.layout import TABLES, RunLayout
from ingest.errors import ConfigError, G1ForgeError


def _duckdb():
    import duckdb  # a core dependency; imported here to keep package import light

    return duckdb


def _table_sql(layout: RunLayout, table: str) -> str:
    """The SELECT that reads one table's rows from the run folder's Parquet files (paths relative to it).

    This is the one place that says which files make a table (:mod:`catalog.compact` explains the states):
    never compacted, every per-video fragment; compacted, the committed generation's rows of the videos that
    have no fragment of the table plus every fragment (a fragment re-published after compaction wins);
    sealed, the generation alone.
    """
    from catalog.compact import read_state

    fragments = f"read_parquet('{RunLayout.fragment_glob(table)}', union_by_name = true)"
    state = read_state(layout)
    if not state.generation:
        return f"SELECT * FROM {fragments}"
    compacted = f"read_parquet('{RunLayout.compacted_glob(state.generation, table)}')"
    if state.sealed:
        return f"SELECT * FROM {compacted}"
    return (f"SELECT * FROM (SELECT c.* FROM {compacted} AS c ANTI JOIN ({_fragment_videos_sql(table)}) AS f "
            f"ON c.video_id = f.video_id UNION ALL BY NAME SELECT * FROM {fragments})")


def _fragment_videos_sql(table: str) -> str:
    """The ``video_id`` of every fragment file of ``table``: the name of the folder holding it. By file, not by
    row, so that a zero-row fragment (a video without tracks) still hides its video's compacted rows. A failed
    video's one file (``videos.failed.<config_hash>.parquet``) is a fragment of every table: the video was
    published again with no tracks and no clips, so its compacted tracks and clips are hidden too."""
    globs = [RunLayout.fragment_glob(table)]
    if table != "videos":  # the videos glob matches the failed videos' files already
        globs.append(RunLayout.failed_fragment_glob())
    folder = "regexp_extract(file, '([^/\\\\]+)[/\\\\][^/\\\\]+$', 1)"
    return " UNION ALL ".join(f"SELECT {folder} AS video_id FROM glob('{g}')" for g in globs)


def _view_sql(layout: RunLayout, table: str, con=None) -> str:
    """The statement that (re)creates the view ``table``. The clips view adds the quality-score columns of the
    run's thresholds (:mod:`catalog.scoring`; ``con``, if given, is used to read the clips columns)."""
    select = _table_sql(layout, table)
    if table == "clips":
        from catalog.scoring import scored_clips_sql

        select = scored_clips_sql(layout, select, con)
    return f"CREATE OR REPLACE VIEW {table} AS {select}"


def _sandbox(con, layout: RunLayout) -> None:
    """Allow file access under the run's ``data/`` only (absolute, and relative as the views spell it), then
    lock the configuration so the query cannot undo it."""
    data = (str(layout.data_dir) + "/").replace("'", "''")
    con.execute(f"SET allowed_directories = ['{data}', 'data/']")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def check_select_only(sql: str) -> None:
    """Raise :class:`G1ForgeError` (reason ``query``) unless ``sql`` is exactly one ``SELECT`` statement
    (``WITH``, ``FROM``-first, ``DESCRIBE``, ``SHOW``, ``SUMMARIZE`` and ``VALUES`` are SELECTs to DuckDB)."""
    duckdb = _duckdb()
    try:
        statements = duckdb.extract_statements(sql)
    except Exception as exc:  # duckdb's parser errors
        raise G1ForgeError(f"{exc}", reason="query") from None
    kinds = [s.type.name for s in statements]
    if kinds != ["SELECT"]:
        # name each statement by its first keyword as written (DuckDB files INSTALL under LOAD, for one)
        said = [(s.query.split(None, 1) or [kind])[0].upper() for s, kind in zip(statements, kinds)]
        raise G1ForgeError(f"the catalog is read-only: only one SELECT statement is allowed, got "
                           f"{', '.join(said) or 'nothing'}; write results with --format csv/json instead",
                           reason="query")


def write_views(layout: RunLayout) -> None:
    """Open the run folder for writing and (re)create ``catalog.duckdb``'s views: whatever publishes fragments
    (a run) calls this first. It upgrades a folder of an older format in place and re-opens the views of a
    sealed compacted catalog to fragments (:func:`catalog.migrate.prepare_for_writing`), then
    :func:`refresh_views`."""
    from catalog.migrate import prepare_for_writing

    prepare_for_writing(layout)
    refresh_views(layout)


def refresh_views(layout: RunLayout) -> None:
    """(Re)create ``catalog.duckdb`` with one view per table, for the folder as it is (a sealed compacted
    catalog stays sealed). Needs the schema fragments to exist. A run folder without ``quality.toml`` gets a
    copy of the default quality thresholds first."""
    from catalog.scoring import ensure_run_thresholds

    ensure_run_thresholds(layout)
    con = _open_views_file(layout.duckdb_path, read_only=False)
    try:
        configure_connection(con, layout.root)
        statements = [_view_sql(layout, table, con) for table in TABLES]
        h = hashlib.sha256("\n".join(statements).encode("utf-8"))
        for table in TABLES:  # the views' columns come from the schema fragments: a new schema, new views
            h.update(_read_bytes(layout.schema_fragment(table)))
        digest = h.hexdigest()
        stamp = layout.duckdb_path.with_name(layout.duckdb_path.name + ".views")
        if _read_text(stamp) == f"{digest} {_stored_views_digest(con)}":
            return  # same views: creating them again would only re-read every fragment's footer
        for sql in statements:
            con.execute(sql)
        stamp.write_text(f"{digest} {_stored_views_digest(con)}")
    finally:
        con.close()


def _open_views_file(path: Path, read_only: bool):
    """A connection to ``catalog.duckdb``, which holds nothing but the views.

    A file written by a newer DuckDB (another g1forge install) cannot be opened by an older one: a writer then
    replaces it (the views are rewritten from the Parquet files next), a reader gets None and builds the
    views in memory. Other errors (another process holding the write lock, ...) propagate."""
    duckdb = _duckdb()
    try:
        return duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as exc:
        if "newer version" not in str(exc):
            raise
    if read_only:
        return None
    path.unlink()
    path.with_name(path.name + ".views").unlink(missing_ok=True)
    return duckdb.connect(str(path))


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _stored_views_digest(con) -> str:
    """A hash of the views as the database holds them (whatever else changed them, the stamp no longer fits)."""
    rows = con.execute("SELECT view_name, sql FROM duckdb_views() WHERE NOT internal ORDER BY 1").fetchall()
    return hashlib.sha256(repr(rows).encode("utf-8")).hexdigest()


def connect(run_dir: str | Path, read_only: bool = True):
    """A DuckDB connection to a run folder's catalog with the views ``videos``, ``tracks`` and ``clips``.

    Read-only by default: statements that would change the catalog fail, and file access outside the run's
    ``data/`` folder is disabled for the connection's life (see the module docstring).
    """
    layout = RunLayout.at(run_dir)
    if not layout.info_path.exists():
        raise ConfigError(f"{layout.root} is not a g1forge run folder (no {layout.info_path.name}); "
                          "pass the --out folder of a `g1forge run`")
    from catalog.migrate import check_readable

    check_readable(layout)  # a folder of a newer format is refused with the fix; older ones read as they are
    con = _open_views_file(layout.duckdb_path, read_only) if layout.duckdb_path.exists() else None
    if con is not None:
        configure_connection(con, layout.root)
    else:  # views not written yet (a run still starting), or written by a newer DuckDB: build them in memory
        con = _duckdb().connect(":memory:")
        configure_connection(con, layout.root)
        for table in TABLES:
            con.execute(_view_sql(layout, table))
    if read_only:
        _sandbox(con, layout)
    return con


def run_query(run_dir: str | Path, sql: str):
    """Run one ``SELECT`` read-only against a run folder; returns a pyarrow Table."""
    check_select_only(sql)
    con = connect(run_dir)
    try:
        try:
            rel = con.sql(sql)
        except Exception as exc:  # duckdb raises its own Error types
            raise G1ForgeError(f"{exc}", reason="query") from None
        if rel is None:  # a statement without a result set
            import pyarrow as pa

            return pa.table({})
        try:
            return rel.to_arrow_table()
        except Exception as exc:  # duckdb raises its own Error types
            raise G1ForgeError(f"{exc}", reason="query") from None
    finally:
        con.close()


def format_table(table, fmt: str = "table", max_rows: int = 50) -> str:
    """Render a pyarrow Table as an aligned text table, CSV or JSON lines."""
    rows = table.to_pylist()
    names = table.column_names
    if fmt == "json":
        return "\n".join(json.dumps(r, default=str) for r in rows)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(names)
        for r in rows:
            w.writerow([r[n] for n in names])
        return buf.getvalue().rstrip("\n")
    if fmt != "table":
        raise ConfigError(f"unknown format {fmt!r}; choose table, csv or json")
    shown = rows[:max_rows]
    cells = [[_cell(r[n]) for n in names] for r in shown]
    widths = [max([len(n)] + [len(c[i]) for c in cells]) for i, n in enumerate(names)]
    lines = ["  ".join(n.ljust(w) for n, w in zip(names, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    if len(rows) > max_rows:
        lines.append(f"... {len(rows) - max_rows} more rows (use --format csv for all)")
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines)


def _cell(v) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, float):
        return f"{v:.4g}"
    s = str(v)
    return s if len(s) <= 60 else s[:57] + "..."
