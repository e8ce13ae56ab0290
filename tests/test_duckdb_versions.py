"""NaN in the catalog: DuckDB 2.0.x's statistics regression, and "not measured" meaning one thing however the
catalog is read (per-video fragments, compacted, mixed).

The regression (issue 11): Parquet's min/max statistics of a float column leave NaN out, so a file holding
``[NaN, 1.0]`` declares the range ``[1.0, 1.0]``. Read together with another file through
``read_parquet(..., union_by_name = true)``, DuckDB 2.0.0 and 2.0.1 take that range as the column's statistics and
fold ``isnan(x)`` to false for the NaN row; 1.5.x does not (comparisons such as ``x <= 4000`` are folded to
true by every version tried, 1.4.4 included). pyproject.toml excludes those versions;
:func:`test_installed_duckdb_reads_nan_through_union_by_name` fails if an installed one does it again, while the
catalog itself stays right (no NaN is written, and catalog connections switch the folding off).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from catalog import open_catalog
from catalog import schema as S
from catalog.compact import compact
from catalog.connection import configure_connection
from catalog.scoring import default_thresholds
from cluster.run import prepare_run_folder
from compact_factory import CONFIG, make_catalog, publish, video_id

NAN = float("nan")


def _two_files(folder: Path) -> str:
    """The minimal reproduction: a NaN beside a number in one file, a second file with another column."""
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"x": pa.array([NAN, 1.0], pa.float64())}), folder / "a.parquet")
    pq.write_table(pa.table({"x": pa.array([2.0], pa.float64()), "y": pa.array([1.0])}), folder / "b.parquet")
    return f"read_parquet('{folder}/*.parquet', union_by_name = true)"


def test_installed_duckdb_reads_nan_through_union_by_name(tmp_path):
    """The 2.0 regression: ``isnan`` folded to false. (Comparisons such as ``x <= 5`` are folded to true for the
    NaN row by every DuckDB tried, 1.4.4, 1.5.6 and 2.0.x: the catalog is kept safe from that by writing no NaN
    and by its connection settings, tested below.)"""
    source = _two_files(tmp_path / "repro")
    con = duckdb.connect()
    flags = [row[0] for row in con.execute(f"SELECT isnan(x) FROM {source}").fetchall()]
    assert sorted(flags) == [False, False, True], (
        f"duckdb {duckdb.__version__} reads a NaN from Parquet as a number through union_by_name: the statistics "
        "regression of 2.0.0/2.0.1 is back; exclude this version in pyproject.toml")


def test_catalog_connections_read_nan_whatever_the_statistics_say(tmp_path):
    source = _two_files(tmp_path / "repro")
    con = duckdb.connect()
    configure_connection(con, tmp_path)
    assert con.execute(f"SELECT count(*) FILTER (isnan(x)), count(*) FILTER (x <= 5) FROM {source}").fetchall() \
        == [(1, 2)]


def test_fragments_store_null_where_a_value_was_not_measured():
    schema = pa.schema([("clip_id", pa.string()), ("jitter_m_s3", pa.float64()), ("n", pa.int32())])
    table = S.table_from_rows([{"clip_id": "a", "jitter_m_s3": NAN, "n": 1},
                               {"clip_id": "b", "jitter_m_s3": 3.5, "n": 2},
                               {"clip_id": "c"}], schema)
    assert table.column("jitter_m_s3").to_pylist() == [None, 3.5, None]
    assert table.column("n").to_pylist() == [1, 2, None] and table.schema == schema
    untouched = pa.table({"x": pa.array([1.0, 2.0])})
    assert S.nan_to_null(untouched) is untouched


def _write_old_style_fragments_with_nan(layout) -> int:
    """Put NaN back into every clips fragment where this g1forge wrote null (as versions before issue 11 did:
    they wrote NaN for values that could not be computed); returns how many values were changed."""
    changed = 0
    for path in sorted(layout.data_dir.glob("*/*/clips.parquet")):
        table = pq.read_table(path)
        cols = []
        for field, col in zip(table.schema, table.columns):
            if pa.types.is_floating(field.type) and field.name not in ("duration_s", "fps", "start_s", "end_s"):
                values = col.to_pylist()
                changed += sum(v is None for v in values)
                col = pa.array([NAN if v is None else v for v in values], field.type)
            cols.append(col)
        pq.write_table(pa.Table.from_arrays(cols, schema=table.schema), path)
    return changed


def _scores(run_dir: Path) -> dict[str, tuple]:
    """clip_id -> (quality_score, g1_ready, fail_reasons, the range rules' columns that read as not measured)."""
    ranges = [r for r in default_thresholds().rules if r.kind == "range"]
    missing = ", ".join(f'"{r.column}" IS NULL OR isnan("{r.column}")' for r in ranges)
    con = open_catalog(run_dir)
    try:
        rows = con.execute(f"SELECT clip_id, quality_score, g1_ready, fail_reasons, [{missing}] FROM clips").fetchall()
    finally:
        con.close()
    return {r[0]: (round(r[1], 9), r[2], tuple(r[3]), tuple(rule.column for rule, m in zip(ranges, r[4]) if m))
            for r in rows}


def _assert_consistent(scores: dict[str, tuple]) -> None:
    """A clip never scores 1.0 with fail reasons; an unmeasured value fails as ``missing_<column>``, never as
    the rule's own reason (e.g. ``person_small`` for an unknown height)."""
    assert scores
    rules = default_thresholds().rules
    gate_reasons = {r.reason for r in rules if r.is_gate}
    for clip_id, (score, ready, reasons, missing) in scores.items():
        assert not (score == 1.0 and reasons), f"{clip_id}: score 1.0 with fail reasons {reasons}"
        assert ready == (not reasons), f"{clip_id}: g1_ready={ready} with fail reasons {reasons}"
        if gate_reasons & set(reasons):
            continue  # a failed gate lists the gates only
        for rule in rules:
            if rule.column in missing and rule.kind == "range":
                assert f"missing_{rule.column}" in reasons, (clip_id, rule.column, reasons)
                own = [r for r in rules if r.reason == rule.reason and r.column not in missing]
                assert rule.reason not in reasons or own, (clip_id, rule.reason, reasons)


def _nan_count(run_dir: Path) -> int:
    """NaN values in the clips table's floating-point columns."""
    con = open_catalog(run_dir)
    try:
        floats = [name for name, typ, *_ in con.execute("DESCRIBE clips").fetchall() if typ == "DOUBLE"]
        return con.execute("SELECT " + " + ".join(f'count(*) FILTER (isnan("{n}"))' for n in floats)
                           + " FROM clips").fetchall()[0][0]
    finally:
        con.close()


def test_scores_are_the_same_for_fragments_compacted_and_mixed_catalogs(tmp_path):
    layout = make_catalog(tmp_path / "out", num_videos=12)
    new_style = _scores(layout.root)
    assert _nan_count(layout.root) == 0
    assert _write_old_style_fragments_with_nan(layout) > 10  # the factory leaves ~10 % of metrics unmeasured
    assert _nan_count(layout.root) > 10
    old_style = _scores(layout.root)
    _assert_consistent(old_style)
    assert old_style == new_style  # NaN and null are both "not measured"
    assert any(missing for *_, missing in old_style.values())

    compact(layout.root)
    assert _scores(layout.root) == old_style
    assert _nan_count(layout.root) == 0  # compaction wrote null for every NaN

    prepare_run_folder(layout, CONFIG)  # a later run re-opens the views to new fragments: a mixed catalog
    publish(layout, video_id(40), n_tracks=1, n_clips=3, seed=40)
    mixed = _scores(layout.root)
    _assert_consistent(mixed)
    assert {k: v for k, v in mixed.items() if not k.startswith(video_id(40))} == old_style
    assert len(mixed) == len(old_style) + 3 and _nan_count(layout.root) == 0


def test_a_views_file_from_a_newer_duckdb_is_rebuilt_not_fatal(tmp_path, monkeypatch):
    """catalog.duckdb holds only views: one that this DuckDB cannot open (written by a newer one, e.g. before
    pyproject.toml excluded 2.0.x) is read through in-memory views, and replaced by the next writer."""
    from catalog import db

    layout = make_catalog(tmp_path / "out", num_videos=4)
    expect = _scores(layout.root)
    real_connect = duckdb.connect
    refused = []

    def connect(database=":memory:", *args, **kwargs):
        path = Path(str(database))
        if path == layout.duckdb_path and path.exists() and path.read_bytes() == b"from a newer duckdb":
            refused.append(kwargs.get("read_only", False))
            raise duckdb.IOException("IO Error: Trying to read a database file with version number 99, but we can "
                                     "only read versions between 64 and 68. The database file was created with a "
                                     "newer version of DuckDB.")
        return real_connect(database, *args, **kwargs)

    monkeypatch.setattr(duckdb, "connect", connect)
    layout.duckdb_path.write_bytes(b"from a newer duckdb")
    assert _scores(layout.root) == expect and refused == [True]  # read through views built in memory
    db.refresh_views(layout)  # a writer replaces the file
    assert refused == [True, False]
    assert layout.duckdb_path.read_bytes() != b"from a newer duckdb" and _scores(layout.root) == expect
    assert refused == [True, False]  # the new file opens
