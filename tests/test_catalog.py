"""Catalog fragments, atomic publishing, DuckDB views and read-only queries."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from catalog import db, writer
from catalog.layout import RunLayout, shard_of
from catalog.schema import VIDEOS, clips_schema, table_from_rows
from ingest.errors import G1ForgeError, WriteError


def _prepare(tmp_path):
    layout = RunLayout.at(tmp_path / "run")
    layout.root.mkdir()
    layout.info_path.write_text(json.dumps({"format_version": 1}))
    writer.write_schema_fragments(layout, ["jitter_m_s3"])
    db.write_views(layout)
    return layout


def _publish(layout, vid, status="ok", n_clips=2, chash="abc123"):
    video = {"video_id": vid, "uri": f"/videos/{vid}.mp4", "status": status, "reason": "", "num_clips": n_clips}
    clips = [{"clip_id": f"{vid}-c{i}", "video_id": vid, "status": "ok", "reason": "", "jitter_m_s3": 1.5 * i}
             for i in range(n_clips)]
    return writer.publish_video(layout, vid, chash, video, [], clips, ["jitter_m_s3"])


def test_views_are_typed_before_any_video(tmp_path):
    layout = _prepare(tmp_path)
    con = db.connect(layout.root)
    assert con.execute("SELECT count(*) FROM videos").fetchone()[0] == 0
    cols = {r[0]: r[1] for r in con.execute("DESCRIBE clips").fetchall()}
    assert cols["jitter_m_s3"] == "DOUBLE" and cols["clip_id"] == "VARCHAR"


def test_publish_is_visible_and_replaces_atomically(tmp_path):
    layout = _prepare(tmp_path)
    final = _publish(layout, "file-aaaa", n_clips=2)
    assert final == layout.data_dir / shard_of("file-aaaa") / "file-aaaa"
    assert layout.done_marker("file-aaaa", "abc123").exists()
    _publish(layout, "file-bbbb", n_clips=1)
    t = db.run_query(layout.root, "SELECT video_id, num_clips FROM videos ORDER BY 1")
    assert t.to_pylist() == [{"video_id": "file-aaaa", "num_clips": 2}, {"video_id": "file-bbbb", "num_clips": 1}]
    # republishing replaces, never duplicates
    _publish(layout, "file-aaaa", n_clips=3)
    n = db.run_query(layout.root, "SELECT count(*) AS n FROM clips WHERE video_id = 'file-aaaa'").to_pylist()
    assert n == [{"n": 3}]
    assert not any(layout.tmp_dir.iterdir())


def test_failed_write_publishes_nothing(tmp_path, monkeypatch):
    layout = _prepare(tmp_path)

    def disk_full(staging):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer, "_before_publish_hook", disk_full)
    with pytest.raises(WriteError, match="free disk space"):
        _publish(layout, "file-cccc")
    assert not layout.video_dir("file-cccc").exists()
    assert list(layout.tmp_dir.iterdir()) == []


def test_query_is_read_only(tmp_path):
    layout = _prepare(tmp_path)
    _publish(layout, "file-dddd")
    with pytest.raises(G1ForgeError, match="read-only"):
        db.run_query(layout.root, "CREATE TABLE x AS SELECT 1")
    with pytest.raises(G1ForgeError):
        db.run_query(layout.root, "DROP VIEW videos")
    assert db.run_query(layout.root, "SELECT count(*) AS n FROM videos").to_pylist() == [{"n": 1}]


@pytest.mark.parametrize("sql, named", [
    ("INSTALL httpfs", "got INSTALL;"), ("load httpfs", "got LOAD;"), ("COPY videos TO 'x.csv'", "got COPY;"),
    ("SELECT 1; select 2", "got SELECT, SELECT;"),
])
def test_a_refused_statement_is_named_as_written(sql, named):
    with pytest.raises(G1ForgeError, match=named):
        db.check_select_only(sql)


def test_run_folder_can_move(tmp_path):
    layout = _prepare(tmp_path)
    _publish(layout, "file-eeee")
    moved = tmp_path / "elsewhere"
    layout.root.rename(moved)
    assert db.run_query(moved, "SELECT video_id FROM videos").to_pylist() == [{"video_id": "file-eeee"}]


def test_connect_refuses_a_non_run_folder(tmp_path):
    with pytest.raises(G1ForgeError, match="not a g1forge run folder"):
        db.connect(tmp_path)


def test_table_from_rows_rejects_unknown_columns():
    with pytest.raises(KeyError, match="not_a_column"):
        table_from_rows([{"video_id": "x", "not_a_column": 1}], VIDEOS)
    t = table_from_rows([{"video_id": "x"}], VIDEOS)
    assert t.num_rows == 1 and t.column("status").to_pylist() == [None]


def test_clips_schema_adds_sorted_metric_columns():
    s = clips_schema(["b_m", "a_m", "clip_id"])
    assert s.names[-2:] == ["a_m", "b_m"] and s.names.count("clip_id") == 1


def test_format_table_renders_all_formats(tmp_path):
    layout = _prepare(tmp_path)
    _publish(layout, "file-ffff")
    t = db.run_query(layout.root, "SELECT video_id, status FROM videos")
    assert "file-ffff" in db.format_table(t, "table") and "(1 row)" in db.format_table(t, "table")
    assert db.format_table(t, "csv").splitlines() == ["video_id,status", "file-ffff,ok"]
    assert json.loads(db.format_table(t, "json")) == {"video_id": "file-ffff", "status": "ok"}


def test_clean_staging_removes_debris(tmp_path):
    layout = _prepare(tmp_path)
    (layout.tmp_dir / "file-x.123.abcd" / "clips").mkdir(parents=True)
    (layout.tmp_dir / "stray").write_text("x")
    assert writer.clean_staging(layout) == 2
    assert list(layout.tmp_dir.iterdir()) == []
    assert pq.read_table(layout.schema_fragment("videos")).num_rows == 0
