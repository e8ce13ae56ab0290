"""Compaction, the catalog format version and its migration, ``open_catalog`` and the catalog contract document."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import catalog
from catalog import compact as compact_mod
from catalog import open_catalog
from catalog import schema as S
from catalog.compact import ROW_GROUP_ROWS, STEPS, compact, list_fragments, read_state, run_lock
from catalog.layout import FORMAT_HISTORY, FORMAT_VERSION, RunLayout
from catalog.migrate import upgrade
from cluster.cli import main as cli_main
from cluster.run import prepare_run_folder
from compact_factory import CONFIG, all_rows, files_under, make_catalog, make_v1, metric_names, publish, video_id
from ingest.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
QUERY = ("SELECT clip_id, duration_s FROM clips WHERE status = 'ok' AND duration_s > 4 AND jitter_m_s3 < 40 "
         "ORDER BY jitter_m_s3 DESC, clip_id")


class Killed(BaseException):
    """Stands in for the process dying at a step (not an Exception: nothing may catch it)."""


def _query(run_dir: Path, sql: str = QUERY) -> list[tuple]:
    con = open_catalog(run_dir)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _motion_and_markers(layout: RunLayout) -> dict[str, int]:
    return {k: v for k, v in files_under(layout.data_dir).items() if k.endswith(".npz") or "/_done." in k}


def test_compaction_keeps_every_row_and_merges_the_fragments(tmp_path):
    layout = make_catalog(tmp_path / "out", num_videos=12)
    before = all_rows(layout.root)
    query_before = _query(layout.root)
    kept = _motion_and_markers(layout)
    assert len(before["clips"]) == 18 and len(before["videos"]) == 12 and query_before

    report = compact(layout.root)

    assert all_rows(layout.root) == before
    assert _query(layout.root) == query_before
    assert report.rows == {t: len(before[t]) for t in ("videos", "tracks", "clips")}
    assert report.fragments_merged == report.fragments_deleted == 36 and report.videos_merged == 12
    assert list_fragments(layout) == [] and _motion_and_markers(layout) == kept  # npz and markers stay
    state = read_state(layout)
    assert state.generation == 1 and state.sealed and report.sealed
    clip_files = [layout.root / f for f in state.files["clips"]]
    assert clip_files and all(layout.generation_dir(1) in p.parents for p in clip_files)
    compacted = pq.read_table(clip_files)
    assert "extra_metric_m" in compacted.column_names  # a column only some fragments had survives
    ids = compacted.column("video_id").to_pylist()
    assert ids == sorted(ids)
    meta = pq.ParquetFile(clip_files[0]).metadata
    assert all(meta.row_group(i).num_rows <= ROW_GROUP_ROWS for i in range(meta.num_row_groups))
    again = compact(layout.root)  # nothing left to do, and saying so
    assert again.generation == 1 and again.fragments_merged == 0 and "nothing to merge" in again.summary()
    assert all_rows(layout.root) == before


def test_a_video_published_after_compaction_shows_its_new_rows_only(tmp_path):
    layout = make_catalog(tmp_path / "out", num_videos=8)
    compact(layout.root)
    # the next run opens the folder for writing (re-opens the sealed views), then re-publishes video 1 (--force)
    # with other rows and no tracks, video 2 with an extra column, and adds a new video
    prepare_run_folder(layout, CONFIG)
    assert not read_state(layout).sealed
    publish(layout, video_id(1), n_tracks=0, n_clips=1, seed=101)
    publish(layout, video_id(2), n_tracks=1, n_clips=1, seed=102, extra_metrics=("newer_metric_s",))
    publish(layout, video_id(50), n_tracks=1, n_clips=2, seed=150)
    mixed = all_rows(layout.root)
    expect = make_catalog(tmp_path / "expect", num_videos=8)  # the same history, never compacted
    publish(expect, video_id(1), n_tracks=0, n_clips=1, seed=101)
    publish(expect, video_id(2), n_tracks=1, n_clips=1, seed=102, extra_metrics=("newer_metric_s",))
    publish(expect, video_id(50), n_tracks=1, n_clips=2, seed=150)
    assert mixed == all_rows(expect.root)
    assert [r for r in mixed["tracks"] if r["video_id"] == video_id(1)] == []  # old tracks hidden by the new file
    assert len([r for r in mixed["clips"] if r["video_id"] == video_id(1)]) == 1

    report = compact(layout.root)
    assert report.generation == 2 and report.fragments_merged == 9 and report.sealed
    assert all_rows(layout.root) == mixed
    assert not layout.generation_dir(1).exists()


@pytest.fixture(scope="module")
def compacted_with_fragments(tmp_path_factory) -> Path:
    """A folder with a committed generation 1 and fresh fragments on top (the harder case: a merge with a
    previous generation, which must then be deleted). Tests work on copies (paths inside are relative)."""
    layout = make_catalog(tmp_path_factory.mktemp("base") / "out", num_videos=8)
    compact(layout.root)
    prepare_run_folder(layout, CONFIG)
    publish(layout, video_id(0), n_tracks=2, n_clips=3, seed=200)
    publish(layout, video_id(3), n_tracks=1, n_clips=1, seed=203)  # had no clips before
    publish(layout, video_id(60), n_tracks=1, n_clips=2, seed=260, extra_metrics=("extra_metric_m",))
    return layout.root


def _copy(base: Path, dest: Path) -> RunLayout:
    shutil.copytree(base, dest)
    return RunLayout.at(dest)


INTERRUPTIONS = [(step, 1) for step in STEPS] + [("delete_fragment", 5)]


@pytest.mark.parametrize("step,nth", INTERRUPTIONS, ids=[f"{s}-{n}" for s, n in INTERRUPTIONS])
def test_interrupted_compaction_reads_every_row_once_and_rerun_finishes(compacted_with_fragments, tmp_path,
                                                                        monkeypatch, step, nth):
    layout = _copy(compacted_with_fragments, tmp_path / "out")
    before = all_rows(layout.root)
    kept = _motion_and_markers(layout)
    calls: list[str] = []

    def readers_see_every_row_once(name: str) -> None:
        calls.append(name)
        if name != "delete_fragment" or calls.count(name) in (1, 5):
            assert all_rows(layout.root) == before, f"at step {name}"

    def die(name: str) -> None:
        calls.append(name)
        if name == step and calls.count(name) == nth:
            raise Killed(name)

    monkeypatch.setattr(compact_mod, "_fault_hook", die)
    with pytest.raises(Killed):
        compact(layout.root)
    assert all_rows(layout.root) == before  # every row exactly once, whatever the step

    calls.clear()
    monkeypatch.setattr(compact_mod, "_fault_hook", readers_see_every_row_once)  # and at every step of the rerun
    report = compact(layout.root)
    assert all_rows(layout.root) == before
    assert list_fragments(layout) == [] and _motion_and_markers(layout) == kept
    state = read_state(layout)
    assert state.sealed and report.sealed and state.generation in (2, 3)
    left = sorted(p.name for p in layout.compacted_dir.iterdir())
    assert left == ["CURRENT.json", f"gen-{state.generation:06d}"]  # no half-written or superseded generation
    assert not any(p.name.startswith("compact.") for p in layout.tmp_dir.iterdir())


def test_killed_process_mid_deletion_then_rerun(compacted_with_fragments, tmp_path):
    """A real kill (os._exit) half-way through deleting the merged fragments."""
    layout = _copy(compacted_with_fragments, tmp_path / "out")
    before = all_rows(layout.root)
    script = (
        "import os, sys\n"
        "from catalog import compact as c\n"
        "n = []\n"
        "def hook(step):\n"
        "    if step == 'delete_fragment':\n"
        "        n.append(1)\n"
        "        if len(n) == 4: os._exit(137)\n"
        "c._fault_hook = hook\n"
        "c.compact(sys.argv[1])\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(layout.root)], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 137, proc.stderr
    remaining = list_fragments(layout)
    assert 0 < len(remaining) < 9  # it really stopped half-way
    assert all_rows(layout.root) == before
    compact(layout.root)
    assert all_rows(layout.root) == before and list_fragments(layout) == []


def test_version_1_folder_reads_as_is_and_is_upgraded_in_place(tmp_path):
    layout = make_catalog(tmp_path / "out", num_videos=6)
    make_v1(layout)
    on_disk = files_under(layout.root)
    rows = all_rows(layout.root)

    # readers read a format-1 folder as it is and change nothing in it
    assert all_rows(layout.root) == rows and files_under(layout.root) == on_disk
    info = json.loads(layout.info_path.read_text())
    assert info["format_version"] == 1

    steps = upgrade(layout)
    assert steps == [f"format 1 -> {FORMAT_VERSION}"] and upgrade(layout) == []  # idempotent
    info = json.loads(layout.info_path.read_text())
    assert info["format_version"] == FORMAT_VERSION and info["format_history"][0]["from"] == 1
    assert all_rows(layout.root) == rows

    # compacting a format-1 folder upgrades it first
    v1b = make_catalog(tmp_path / "b", num_videos=6)
    make_v1(v1b)
    report = compact(v1b.root)
    assert report.upgraded == [f"format 1 -> {FORMAT_VERSION}"] and "upgraded" in report.summary()
    assert json.loads(v1b.info_path.read_text())["format_version"] == FORMAT_VERSION
    assert _strip_scores(all_rows(v1b.root)) == _strip_scores(rows)


def test_a_run_opening_a_version_1_folder_upgrades_it(tmp_path):
    layout = make_catalog(tmp_path / "out", num_videos=4)
    rows = all_rows(layout.root)
    make_v1(layout)
    prepare_run_folder(layout, CONFIG)  # what `g1forge run --out` does first
    assert json.loads(layout.info_path.read_text())["format_version"] == FORMAT_VERSION
    publish(layout, video_id(9), n_tracks=1, n_clips=1, seed=9)
    after = all_rows(layout.root)
    assert len(after["videos"]) == len(rows["videos"]) + 1
    compact(layout.root)
    assert all_rows(layout.root) == after


def _strip_scores(rows: dict) -> dict:
    """Rows without the computed score columns (a format-1 folder's stored views predate them)."""
    drop = {"g1_ready", "quality_score", "fail_reasons"}
    return {t: [{k: v for k, v in r.items() if k not in drop} for r in rs] for t, rs in rows.items()}


def test_a_newer_format_is_refused_with_the_fix(tmp_path):
    layout = make_catalog(tmp_path / "out", num_videos=1)
    info = json.loads(layout.info_path.read_text())
    info["format_version"] = FORMAT_VERSION + 1
    layout.info_path.write_text(json.dumps(info))
    with pytest.raises(ConfigError, match="upgrade g1forge"):
        open_catalog(layout.root)
    with pytest.raises(ConfigError, match="upgrade g1forge"):
        compact(layout.root)


def test_open_catalog_is_read_only_and_sandboxed(tmp_path):
    layout = make_catalog(tmp_path / "out", num_videos=3)
    compact(layout.root)
    outside = tmp_path / "secret.csv"
    outside.write_text("a\n1\n")
    con = open_catalog(layout.root)
    try:
        assert con.execute("SELECT count(*) FROM videos").fetchone()[0] == 3
        for sql in ("CREATE TABLE t AS SELECT 1", "DROP VIEW clips",
                    f"SELECT * FROM read_csv('{outside}')", "SET enable_external_access = true"):
            with pytest.raises(Exception):
                con.execute(sql)
    finally:
        con.close()
    with pytest.raises(ConfigError, match="not a g1forge run folder"):
        open_catalog(tmp_path)


def test_package_exports_and_import_is_light():
    for name in catalog.__all__:
        assert getattr(catalog, name) is not None
    code = ("import sys, catalog; from catalog import open_catalog, compact_catalog; "
            "heavy = [m for m in ('duckdb', 'pyarrow', 'torch', 'ray') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)


def test_compaction_waits_for_no_run(tmp_path):
    layout = make_catalog(tmp_path / "out", num_videos=2)
    with run_lock(layout):
        with pytest.raises(ConfigError, match="wait for it to finish"):
            compact(layout.root)
        with run_lock(layout):  # runs share the lock with each other
            pass
    assert compact(layout.root).generation == 1


def test_empty_folder_and_the_cli(tmp_path, capsys):
    layout = make_catalog(tmp_path / "out", num_videos=0)
    assert cli_main(["compact", str(layout.root)]) == 0
    assert "nothing to merge" in capsys.readouterr().out
    assert all_rows(layout.root) == {"videos": [], "tracks": [], "clips": []}
    publish(layout, video_id(1), n_tracks=1, n_clips=2, seed=1)
    assert cli_main(["compact", str(layout.root), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["generation"] == 1 and out["rows"]["clips"] == 2
    assert cli_main(["compact", str(tmp_path / "nowhere")]) == 2
    assert "not a g1forge run folder" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- the contract
DOC = REPO / "docs" / "catalog.md"
_TYPE_NAMES = {"string": "VARCHAR", "int32": "INTEGER", "int64": "BIGINT", "double": "DOUBLE", "bool": "BOOLEAN",
               "list<item: string>": "VARCHAR[]", "timestamp[ms, tz=UTC]": "TIMESTAMPTZ"}


def _doc_columns(text: str, table: str) -> dict[str, str]:
    """``column -> type`` from the rows of the markdown table under the heading ``### <table>``."""
    section = re.search(rf"^### `{table}`.*?$(.*?)(?=^### |^## |\Z)", text, re.S | re.M)
    assert section, f"docs/catalog.md has no '### `{table}`' section"
    cols = {}
    for line in section.group(1).splitlines():
        m = re.match(r"^\|\s*`([a-z0-9_]+)`\s*\|\s*([A-Z\[\]]+)\s*\|", line)
        if m:
            cols[m.group(1)] = m.group(2)
    return cols


def test_docs_describe_every_column_with_its_type():
    text = DOC.read_text()
    schemas = {"videos": S.VIDEOS, "tracks": S.TRACKS, "clips": S.clips_schema(metric_names())}
    for table, schema in schemas.items():
        documented = _doc_columns(text, table)
        missing = [f.name for f in schema if f.name not in documented]
        assert not missing, f"docs/catalog.md lacks these {table} columns: {missing}"
        wrong = {f.name: (documented[f.name], _TYPE_NAMES[str(f.type)]) for f in schema
                 if documented[f.name] != _TYPE_NAMES[str(f.type)]}
        assert not wrong, f"docs/catalog.md gives {table} columns the wrong type (doc, schema): {wrong}"
        unknown = set(documented) - set(schema.names) - {"g1_ready", "quality_score", "fail_reasons"}
        assert not unknown, f"docs/catalog.md documents {table} columns the schema does not have: {unknown}"
    for column in ("g1_ready", "quality_score", "fail_reasons"):
        assert f"`{column}`" in text
    assert f"format version: {FORMAT_VERSION}" in text.lower()
    for version in FORMAT_HISTORY:
        assert re.search(rf"^\| {version} \|", text, re.M), f"format {version} missing from the history table"
