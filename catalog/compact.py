"""Compaction: merge the per-video Parquet fragments into a few large files per table, crash-safely.

A run publishes three small fragments per video (``data/<shard>/<video_id>/{videos,tracks,clips}.parquet``);
queries over a hundred thousand of them spend their time opening files. :func:`compact` writes every row into a
new *generation* ``data/_compacted/gen-<N>/<table>/part-<i>.parquet`` (sorted by video and clip/track id, zstd,
row groups of :data:`ROW_GROUP_ROWS`), commits it by replacing ``data/_compacted/CURRENT.json``, points the
views at it and then deletes the merged fragments. Motion ``.npz`` files and ``_done.*`` markers stay where
they are (export reads motions by their stored paths, resume reads the markers). A failed video's one file
``videos.failed.<config_hash>.parquet`` is a ``videos`` fragment and its marker at once: it is merged, and
``_done.<config_hash>`` is written in its place before it is deleted.

What a table's view reads (:func:`catalog.db._table_sql`), given the committed generation ``G``:

- no generation yet: every fragment (format 1's view);
- *live*: the rows of ``G`` whose ``video_id`` has no fragment file of that table, plus every fragment
  (``UNION ALL BY NAME``, so fragments may carry extra metric columns). A fragment always wins over the
  compacted rows of its video: a video re-published after compaction (``--force``) shows its new rows only;
- *sealed*: the rows of ``G`` only, without listing the video folders (listing costs about a second per
  100,000 folders, on every query). Compaction commits a generation sealed, since it holds every row, and
  leaves it sealed when no fragment remains; opening the folder for writing (:func:`catalog.db.write_views`,
  which a run calls first) makes it live again, so new fragments are always seen.

Why every step is safe to kill: a generation folder gets its final name by a rename after its files are
written; ``CURRENT.json`` is replaced by a rename (the commit point); fragments are deleted only after the
views read the new generation, which holds all their rows. Before the commit the views read the previous state
with every fragment in place; after it they read ``G`` alone; a live view (after a run opened the folder
meanwhile) ignores a video's compacted rows of a table while its fragment exists. So at every step every row is
read exactly once. The next :func:`compact` first points the views at the committed state, then removes
unreferenced generation folders and merges whatever fragments remain.

Compaction holds the exclusive lock ``state/catalog.lock``; a run should hold it shared (:func:`run_lock`).
Do not compact while a run writes to the folder: a fragment that changed since compaction listed it is never
deleted and anything published meanwhile makes the final views live, but a video re-published in the instant
between that check and the deletion could lose its new rows (the lock closes this window).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from catalog.connection import configure_connection, sql_ident
from catalog.layout import FORMAT_VERSION, TABLES, RunLayout, done_marker_name, failed_fragment_hash, generation_name
from ingest.errors import ConfigError, G1ForgeError

#: Rows per Parquet row group of a compacted file (DuckDB scans row groups in parallel and skips them by their
#: min/max statistics, e.g. on ``video_id``).
ROW_GROUP_ROWS = 65_536
#: Target size of one compacted file; a table larger than this is split into several.
FILE_SIZE_BYTES = 512 * 1024 * 1024
#: Threads listing video folders and deleting merged fragments (file-system calls, not CPU).
IO_THREADS = 16
#: Sort order of each table's compacted rows.
SORT_KEYS = {"videos": ("video_id",), "tracks": ("video_id", "track_id"), "clips": ("video_id", "clip_id")}

#: Test-only fault hook: called with the name of each step (see :data:`STEPS`) just before it runs.
_fault_hook: Callable[[str], None] | None = None
#: The steps of :func:`compact`, in order; ``delete_fragment`` repeats once per fragment file.
STEPS = ("write_generation", "publish_generation", "commit", "write_views", "delete_fragment",
         "delete_old_generations", "final_check")


def _step(name: str) -> None:
    if _fault_hook is not None:
        _fault_hook(name)


@dataclass
class CompactionState:
    """``data/_compacted/CURRENT.json``: which generation the views read.

    generation: the committed generation (0: none, the views read fragments only).
    sealed: the views read the generation only, without listing video folders (it held every row when sealed;
        :func:`unseal` before publishing new fragments).
    rows / files: per table, the generation's row count and file paths relative to the run folder.
    """

    generation: int = 0
    sealed: bool = False
    rows: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    compacted_at: str | None = None
    format_version: int = FORMAT_VERSION


def read_state(layout: RunLayout) -> CompactionState:
    """The committed compaction state (a folder never compacted has generation 0)."""
    path = layout.compaction_state_path
    if not path.exists():
        return CompactionState()
    try:
        data = json.loads(path.read_text())
        known = CompactionState.__dataclass_fields__
        return CompactionState(**{k: v for k, v in data.items() if k in known})
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path} is not a valid compaction state ({exc}); restore it from a backup, or delete "
                          f"it together with {layout.compacted_dir} only if every video folder under data/ "
                          "still holds its fragments") from None


def write_state(layout: RunLayout, state: CompactionState) -> None:
    """Replace ``CURRENT.json`` atomically (written, flushed to disk, then renamed)."""
    path = layout.compaction_state_path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w") as f:
        f.write(json.dumps(asdict(state), indent=2))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def _flock(layout: RunLayout, exclusive: bool, holder: str) -> Iterator[None]:
    """Hold ``state/catalog.lock`` (shared or exclusive) without waiting; ConfigError if another holds it."""
    try:
        import fcntl
    except ImportError:  # no advisory locks on this platform: callers rely on the documented rule
        yield
        return
    layout.lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(layout.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            other = "a run or a compaction" if exclusive else "a compaction"
            raise ConfigError(f"{other} is using {layout.root} ({layout.lock_path.name} is held); wait for it to "
                              f"finish, then {holder} again") from None
        yield
    finally:
        os.close(fd)  # releases the lock


def run_lock(layout: RunLayout):
    """Context manager for a run: holds the catalog lock shared (several runs may share a folder), so that
    ``g1forge compact`` refuses to start meanwhile. Raises ConfigError while a compaction runs."""
    return _flock(layout, exclusive=False, holder="start the run")


@dataclass(frozen=True)
class Fragment:
    """One published per-video fragment file, as listed before compaction (identity to detect replacement)."""

    table: str
    path: Path
    video_id: str
    inode: int
    mtime_ns: int
    size_bytes: int

    def unchanged(self) -> bool:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return False
        return (st.st_ino, st.st_mtime_ns, st.st_size) == (self.inode, self.mtime_ns, self.size_bytes)

    @property
    def failed_hash(self) -> str | None:
        """The configuration hash of a failed video's one file (``videos.failed.<config_hash>.parquet``), which
        is the video's marker too; None for the fragments of a video with a ``_done.<config_hash>`` marker."""
        return failed_fragment_hash(self.path.name)


def list_fragments(layout: RunLayout) -> list[Fragment]:
    """Every per-video fragment file under ``data/<shard>/<video_id>/`` (not the schema fragments), sorted by
    path. Shards are listed in parallel threads (listing is I/O-bound)."""
    if not layout.data_dir.exists():
        return []
    with os.scandir(layout.data_dir) as entries:
        shards = [e.path for e in entries
                  if not e.name.startswith(("_", ".")) and e.is_dir(follow_symlinks=False)]
    with ThreadPoolExecutor(IO_THREADS) as pool:
        found = [f for part in pool.map(_list_shard, shards) for f in part]
    return sorted(found, key=lambda f: str(f.path))


_FRAGMENT_NAMES = {f"{t}.parquet": t for t in TABLES}


def _fragment_table(name: str) -> str | None:
    """The table a file directly in a video folder is a fragment of (a failed video's one file: ``videos``)."""
    return _FRAGMENT_NAMES.get(name) or ("videos" if failed_fragment_hash(name) is not None else None)


def _list_shard(shard: str) -> list[Fragment]:
    out = []
    with os.scandir(shard) as videos:
        for video in videos:
            if not video.is_dir(follow_symlinks=False):
                continue
            with os.scandir(video.path) as files:
                for f in files:
                    table = _fragment_table(f.name)
                    if table is None:
                        continue
                    st = f.stat(follow_symlinks=False)
                    out.append(Fragment(table, Path(f.path), video.name, st.st_ino, st.st_mtime_ns, st.st_size))
    return out


def _delete_if_unchanged(frag: Fragment) -> bool:
    """Delete ``frag`` unless it was replaced since it was listed; True if deleted. A failed video's one file is
    its marker too: ``_done.<config_hash>`` is written in its place first, so resume still skips the video."""
    if not frag.unchanged():
        return False
    if frag.failed_hash is not None:
        _write_marker(frag.path.parent / done_marker_name(frag.failed_hash),
                      {"video_id": frag.video_id, "config_hash": frag.failed_hash, "status": "failed"})
    frag.path.unlink(missing_ok=True)
    return True


def _write_marker(path: Path, content: dict) -> None:
    """Write a completion marker through a hidden temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    tmp.write_text(json.dumps(content))
    os.replace(tmp, path)


@dataclass
class CompactionReport:
    """What :func:`compact` did."""

    out_dir: str
    generation: int
    previous_generation: int
    fragments_merged: int = 0
    fragments_deleted: int = 0
    fragments_kept: int = 0
    videos_merged: int = 0
    rows: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    bytes_written: int = 0
    sealed: bool = False
    upgraded: list = field(default_factory=list)
    elapsed_s: float = 0.0
    write_s: float = 0.0
    delete_s: float = 0.0

    def summary(self) -> str:
        if self.fragments_merged == 0 and self.generation == self.previous_generation:
            what = (f"nothing to merge: generation {self.generation} holds every row" if self.generation
                    else "nothing to merge: no video has been published yet")
            return f"g1forge compact: {what}" + (" (views sealed)" if self.sealed else "")
        rows = ", ".join(f"{t} {self.rows.get(t, 0)}" for t in TABLES)
        n_files = sum(len(v) for v in self.files.values())
        lines = [
            f"g1forge compact: generation {self.generation}: {self.fragments_merged} fragments of "
            f"{self.videos_merged} videos merged into {n_files} files ({self.bytes_written / 1e6:.1f} MB) in "
            f"{self.elapsed_s:.1f} s (write {self.write_s:.1f} s, delete {self.delete_s:.1f} s)",
            f"  rows: {rows}",
            f"  {self.fragments_deleted} fragment files deleted"
            + (f", {self.fragments_kept} kept (they changed during compaction: run compact again)"
               if self.fragments_kept else ""),
        ]
        if self.upgraded:
            lines.append("  upgraded the folder: " + "; ".join(self.upgraded))
        lines.append("  views read the compacted files only (sealed); the next run re-opens them to new videos"
                     if self.sealed else "  views read the compacted files and the remaining fragments")
        return "\n".join(lines)


def compact(run_dir: str | Path, *, threads: int | None = None, memory_limit: str | None = None) -> CompactionReport:
    """Merge every per-video fragment of ``run_dir`` into a new compaction generation (see the module docstring).

    threads, memory_limit: DuckDB settings for the merge (default: DuckDB's, all cores and 80 % of memory);
    large merges spill to ``OUT/tmp``. Re-running after an interruption finishes the job. Raises ConfigError
    for a folder that is not a run folder, was written by a newer g1forge, or is locked by a run, and
    G1ForgeError (reason ``catalog_busy``) when another program holds ``catalog.duckdb`` open.
    """
    from catalog.migrate import upgrade
    from catalog.writer import clean_staging

    t0 = time.perf_counter()
    layout = RunLayout.at(run_dir)
    if not layout.info_path.exists():
        raise ConfigError(f"{layout.root} is not a g1forge run folder (no {layout.info_path.name}); "
                          "pass the --out folder of a `g1forge run`")
    with _flock(layout, exclusive=True, holder="run g1forge compact"):
        upgraded = upgrade(layout)
        state = read_state(layout)
        # recover from an interrupted compaction: the views follow the committed state, then the generation
        # folders it does not name (half-written or superseded) go
        if not _views_follow(layout, state):
            _refresh_views(layout)
        _remove_generations(layout, keep=state.generation)
        clean_staging(layout)  # e.g. the spill folder of a killed compaction
        report = CompactionReport(out_dir=str(layout.root), generation=state.generation,
                                  previous_generation=state.generation, upgraded=upgraded, sealed=state.sealed)
        fragments = list_fragments(layout)
        if not fragments:
            if state.generation and not state.sealed:
                state.sealed = True
                write_state(layout, state)
                _refresh_views(layout)
            report.sealed = state.sealed
            report.elapsed_s = time.perf_counter() - t0
            return report
        new = state.generation + 1
        t_write = time.perf_counter()
        rows, files, nbytes = _write_generation(layout, state, new, fragments, threads, memory_limit)
        report.write_s = time.perf_counter() - t_write
        # the commit point: the new generation holds every row, so the views can read it alone (sealed) while
        # the merged fragments are deleted
        _step("commit")
        new_state = CompactionState(generation=new, sealed=True, rows=rows, files=files,
                                    compacted_at=datetime.now(timezone.utc).isoformat())
        write_state(layout, new_state)
        _step("write_views")
        _refresh_views(layout)
        t_delete = time.perf_counter()
        with ThreadPoolExecutor(IO_THREADS) as pool:  # unlinking is I/O-bound: ~20x faster in parallel
            futures = []
            for frag in fragments:
                _step("delete_fragment")
                futures.append(pool.submit(_delete_if_unchanged, frag))
            deleted = [f.result() for f in futures]
        report.fragments_deleted = sum(deleted)
        report.fragments_kept = len(deleted) - report.fragments_deleted
        report.delete_s = time.perf_counter() - t_delete
        _step("delete_old_generations")
        _remove_generations(layout, keep=new)
        _step("final_check")
        if report.fragments_kept or list_fragments(layout):
            # something published meanwhile (a run despite the rule): let the views see it
            new_state.sealed = False
            write_state(layout, new_state)
            _refresh_views(layout)
        report.sealed = new_state.sealed
        report.generation = new
        report.fragments_merged = len(fragments)
        report.videos_merged = len({f.video_id for f in fragments})
        report.rows, report.files, report.bytes_written = rows, files, nbytes
        report.elapsed_s = time.perf_counter() - t0
        return report


def _refresh_views(layout: RunLayout) -> None:
    from catalog import db

    try:
        db.refresh_views(layout)
    except G1ForgeError:
        raise
    except Exception as exc:  # duckdb's lock and IO errors
        raise G1ForgeError(f"could not rewrite {layout.duckdb_path.name} ({exc}); close other programs that have "
                           "the catalog open (a query, a run) and run g1forge compact again: it resumes",
                           reason="catalog_busy") from None


def _views_follow(layout: RunLayout, state: CompactionState) -> bool:
    """Whether ``catalog.duckdb``'s views read what ``state`` says (they lag it only after an interruption)."""
    import duckdb

    if not layout.duckdb_path.exists():
        return False
    try:
        con = duckdb.connect(str(layout.duckdb_path), read_only=True)
    except Exception:
        return False
    try:
        sqls = dict(con.execute("SELECT view_name, sql FROM duckdb_views() WHERE NOT internal").fetchall())
    finally:
        con.close()
    for table in TABLES:
        sql = sqls.get(table)
        if sql is None:
            return False
        reads_generation = (RunLayout.compacted_glob(state.generation, table) in sql if state.generation
                            else "_compacted" not in sql)
        reads_fragments = RunLayout.fragment_glob(table) in sql
        if not reads_generation or reads_fragments == state.sealed:
            return False
    return True


def unseal(layout: RunLayout) -> bool:
    """Make the views read fragments again (before anything publishes new ones); True if it was sealed.
    The caller rewrites the views (see :func:`catalog.db.write_views`)."""
    state = read_state(layout)
    if not state.sealed:
        return False
    state.sealed = False
    write_state(layout, state)
    return True


def _remove_generations(layout: RunLayout, keep: int) -> None:
    """Delete every generation folder (and half-written one) under ``data/_compacted`` but ``keep``'s."""
    if not layout.compacted_dir.exists():
        return
    keep_name = generation_name(keep) if keep else None
    for entry in layout.compacted_dir.iterdir():
        if entry.is_dir() and entry.name != keep_name and (entry.name.startswith("gen-")
                                                           or entry.name.startswith(".gen-")):
            shutil.rmtree(entry, ignore_errors=True)


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _write_generation(layout: RunLayout, state: CompactionState, new: int, fragments: list[Fragment],
                      threads: int | None, memory_limit: str | None) -> tuple[dict, dict, int]:
    """Write generation ``new`` (previous generation's rows of videos without a fragment + the fragments),
    publish its folder by a rename; returns rows and files per table and the bytes written."""
    import duckdb
    import pyarrow as pa

    final = layout.generation_dir(new)
    staging = layout.compacted_dir / f".{final.name}.{uuid.uuid4().hex[:8]}"
    spill = layout.tmp_dir / f"compact.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    con = duckdb.connect(":memory:")
    configure_connection(con, layout.root)
    rows: dict = {}
    files: dict = {}
    nbytes = 0
    try:
        spill.mkdir(parents=True, exist_ok=True)
        settings = [f"temp_directory = {_sql_str(str(spill))}", "preserve_insertion_order = true"]
        if threads:
            settings.append(f"threads = {int(threads)}")
        if memory_limit:
            settings.append(f"memory_limit = {_sql_str(memory_limit)}")
        for setting in settings:
            con.execute(f"SET {setting}").fetchall()
        _step("write_generation")
        for table in TABLES:
            frags = [f for f in fragments if f.table == table]
            sources = [str(f.path) for f in frags]
            schema_fragment = layout.schema_fragment(table)
            if schema_fragment.exists():
                sources.append(str(schema_fragment))
            parts = []
            if sources:
                parts.append("SELECT * FROM read_parquet($files, union_by_name = true)")
            if state.generation:
                # a failed video's one file replaces its every table: its older tracks and clips go too
                fresh = {f.video_id for f in fragments if f.table == table or f.failed_hash is not None}
                con.register("fresh_videos", pa.table({"video_id": pa.array(sorted(fresh), pa.string())}))
                old = str(layout.root / RunLayout.compacted_glob(state.generation, table))
                parts.insert(0, f"SELECT c.* FROM read_parquet({_sql_str(old)}) AS c "
                                "ANTI JOIN fresh_videos AS f ON c.video_id = f.video_id")
            if not parts:
                raise ConfigError(f"{schema_fragment} is missing and no fragment of {table} exists; run "
                                  f"`g1forge run` on this folder once (it rewrites the schema), then compact")
            order = ", ".join(SORT_KEYS[table])
            select = " UNION ALL BY NAME ".join(f"({p})" for p in parts)
            params = {"files": sources} if sources else None
            select = _nan_to_null_sql(con, select, params)
            out_dir = staging / table
            con.execute(f"COPY (SELECT * FROM ({select}) ORDER BY {order}) TO {_sql_str(str(out_dir))} "
                        f"(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {ROW_GROUP_ROWS}, "
                        f"FILE_SIZE_BYTES {FILE_SIZE_BYTES}, FILENAME_PATTERN 'part-{{i}}')",
                        params).fetchall()
            if state.generation:
                con.unregister("fresh_videos")
            written = sorted(out_dir.glob("*.parquet"))
            rows[table] = int(con.execute("SELECT count(*) FROM read_parquet($f)",
                                          {"f": [str(p) for p in written]}).fetchall()[0][0])
            rel = final.relative_to(layout.root) / table
            files[table] = [str(rel / p.name) for p in written]
            for p in written:
                nbytes += p.stat().st_size
                _fsync_file(p)
            _fsync_dir(out_dir)
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)
    _step("publish_generation")
    os.replace(staging, final)
    _fsync_dir(layout.compacted_dir)
    return rows, files, nbytes


def _nan_to_null_sql(con, select: str, params: dict | None) -> str:
    """``select`` with every NaN of its floating-point columns read as NULL, so that a generation holds none
    even when older fragments did (why: :func:`catalog.schema.nan_to_null`). ``con`` must be configured by
    :func:`catalog.connection.configure_connection` (with folded statistics, ``isnan`` would read false)."""
    columns = con.execute(f"DESCRIBE {select}", params).fetchall()
    floats = [name for name, typ, *_ in columns if typ in ("DOUBLE", "FLOAT")]
    if not floats:
        return select
    replaced = ", ".join(f"CASE WHEN isnan({q}) THEN NULL ELSE {q} END AS {q}" for q in map(sql_ident, floats))
    return f"SELECT * REPLACE ({replaced}) FROM ({select})"


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
