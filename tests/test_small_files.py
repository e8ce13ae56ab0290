"""A failed video is one small file, ``data/<shard>/<video_id>/videos.failed.<config_hash>.parquet``, not four:
views show its row, resume skips it by the file's existence, ``--retry-failed`` redoes it, compaction folds it,
a mirror copies it as one object, and folders with the older four-file layout still read and resume."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.parquet as pq

from catalog import storage
from catalog.compact import compact, list_fragments
from catalog.db import run_query
from catalog.failed import publish_failed_row
from catalog.layout import RunLayout
from catalog.writer import publish_video
from cluster.config import RunConfig
from cluster.run import ExecOptions, _failed_ids, prepare_run_folder, run
from phalp_factory import make_phalp_pickle
from test_decide_once import InProcessRay, use_in_process_ray

CONFIG = RunConfig(backend="phalp-pkl")
CHASH = CONFIG.config_hash()


def files_in(folder: Path) -> list[str]:
    """Every file below ``folder``, relative to it, sorted."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _inputs(tmp_path: Path, n_good: int, n_missing: int) -> Path:
    """A list file naming ``n_good`` readable pickles, a corrupt one and ``n_missing`` absent files."""
    folder = tmp_path / "in"
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n_good):
        make_phalp_pickle(folder / f"v{i}.pkl", 1, num_frames=60, seed=i)
        lines.append(folder / f"v{i}.pkl")
    (folder / "corrupt.pkl").write_bytes(b"not a pickle")
    lines.append(folder / "corrupt.pkl")
    lines += [folder / "absent" / f"gone{i}.pkl" for i in range(n_missing)]
    lst = tmp_path / "videos.txt"
    lst.write_text("".join(f"{p}\n" for p in lines))
    return lst


def _rows(out: Path) -> dict[str, str]:
    """Status by video id of the ``videos`` view (which must hold one row per video)."""
    rows = run_query(out, "SELECT video_id, status FROM videos").to_pylist()
    by_id = {r["video_id"]: r["status"] for r in rows}
    assert len(by_id) == len(rows), "a video has two rows"
    return by_id


def _failed_row(video_id: str, reason: str = "not_found: gone") -> dict:
    return {"video_id": video_id, "uri": f"/x/{video_id}.pkl", "status": "failed", "reason": reason,
            "config_hash": CHASH, "attempts": 1}


def test_a_failed_video_is_one_file_that_resume_retry_and_compaction_understand(tmp_path, monkeypatch):
    lst = _inputs(tmp_path, n_good=2, n_missing=3)
    out = tmp_path / "out"
    use_in_process_ray(monkeypatch, InProcessRay())
    report = run([], [str(lst)], out, CONFIG, ExecOptions(progress=False))
    assert report.counts == {"ok": 2, "failed": 4}
    layout = RunLayout.at(out)
    rows = _rows(out)
    failed = sorted(v for v, s in rows.items() if s == "failed")
    assert len(rows) == 6 and len(failed) == 4
    for vid in failed:  # the missing inputs and the corrupt one (it failed in the pose stage)
        assert files_in(layout.video_dir(vid)) == [f"videos.failed.{CHASH}.parquet"]
        (row,) = pq.read_table(layout.failed_fragment(vid, CHASH)).to_pylist()
        assert row["video_id"] == vid and row["status"] == "failed" and row["config_hash"] == CHASH
    for vid in set(rows) - set(failed):  # ok videos keep their fragments, motions and marker
        names = files_in(layout.video_dir(vid))
        assert {"videos.parquet", "tracks.parquet", "clips.parquet", f"_done.{CHASH}"} <= set(names)
    assert all(layout.is_done(v, CHASH) for v in rows) and not layout.is_done(failed[0], "another")

    # resume skips every video (without Ray), --retry-failed redoes exactly the failed ones
    again = run([], [str(lst)], out, CONFIG, ExecOptions(progress=False))
    assert again.processed == 0 and again.already_done == 6
    retried = run([], [str(lst)], out, CONFIG, ExecOptions(progress=False, retry_failed=True))
    assert retried.processed == 4 and retried.already_done == 2 and _rows(out) == rows
    assert all(files_in(layout.video_dir(v)) == [f"videos.failed.{CHASH}.parquet"] for v in failed)

    # compaction folds the failed rows and leaves a marker in each file's place
    before = run_query(out, "SELECT * EXCLUDE (finished_at) FROM videos ORDER BY video_id").to_pylist()
    result = compact(out)
    assert result.sealed and list_fragments(layout) == []
    assert run_query(out, "SELECT * EXCLUDE (finished_at) FROM videos ORDER BY video_id").to_pylist() == before
    for vid in failed:
        assert files_in(layout.video_dir(vid)) == [f"_done.{CHASH}"]
        assert json.loads(layout.done_marker(vid, CHASH).read_text())["status"] == "failed"
    assert run([], [str(lst)], out, CONFIG, ExecOptions(progress=False)).processed == 0
    assert _failed_ids(layout, CHASH) == set(failed)  # from the compacted rows
    redone = run([], [str(lst)], out, CONFIG, ExecOptions(progress=False, retry_failed=True))
    assert redone.processed == 4 and _rows(out) == rows


def test_a_video_redone_as_failed_after_compaction_loses_its_old_tracks_and_clips(tmp_path):
    layout = RunLayout.at(tmp_path / "out")
    prepare_run_folder(layout, CONFIG)
    vid = "file-00000000000000aa"
    video = {"video_id": vid, "uri": "/x/a.pkl", "status": "ok", "reason": "", "config_hash": CHASH}
    tracks = [{"video_id": vid, "track_id": 0, "status": "ok", "reason": ""}]
    clips = [{"clip_id": f"{vid}-t0-f000000-000099", "video_id": vid, "track_id": 0, "status": "ok", "reason": ""}]
    publish_video(layout, vid, CHASH, video, tracks, clips, [])
    compact(layout.root)
    prepare_run_folder(layout, CONFIG)  # a run re-opens the sealed views to fragments
    publish_failed_row(layout, vid, CHASH, _failed_row(vid, "decode: gone bad"))

    def counts() -> tuple:
        return tuple(run_query(layout.root, f"SELECT count(*) AS n FROM {t}").to_pylist()[0]["n"]
                     for t in ("videos", "tracks", "clips"))

    assert counts() == (1, 0, 0) and _rows(layout.root) == {vid: "failed"}
    compact(layout.root)
    assert counts() == (1, 0, 0) and files_in(layout.video_dir(vid)) == [f"_done.{CHASH}"]


def test_a_folder_with_the_older_four_file_layout_reads_resumes_and_retries(tmp_path, monkeypatch):
    lst = _inputs(tmp_path, n_good=1, n_missing=2)
    out = tmp_path / "out"
    layout = RunLayout.at(out)
    prepare_run_folder(layout, CONFIG)
    info = json.loads(layout.info_path.read_text())
    info["format_version"] = 2
    layout.info_path.write_text(json.dumps(info))
    use_in_process_ray(monkeypatch, InProcessRay())
    import cluster.stages

    # what format-2 g1forge wrote for a failed video: three fragments (two empty) and the marker
    monkeypatch.setattr(cluster.stages, "is_row_only", lambda *args: False)
    first = run([], [str(lst)], out, CONFIG, ExecOptions(progress=False))
    monkeypatch.undo()
    use_in_process_ray(monkeypatch, InProcessRay())
    rows = _rows(out)
    failed = sorted(v for v, s in rows.items() if s == "failed")
    assert first.counts == {"ok": 1, "failed": 3} and len(failed) == 3
    old = ["clips.parquet", "tracks.parquet", "videos.parquet", f"_done.{CHASH}"]
    assert all(sorted(files_in(layout.video_dir(v))) == sorted(old) for v in failed)

    again = run([], [str(lst)], out, CONFIG, ExecOptions(progress=False))
    assert again.processed == 0 and again.already_done == 4 and _rows(out) == rows
    retried = run([], [str(lst)], out, CONFIG, ExecOptions(progress=False, retry_failed=True))
    assert retried.processed == 3 and _rows(out) == rows  # each redone video is now one file
    assert all(files_in(layout.video_dir(v)) == [f"videos.failed.{CHASH}.parquet"] for v in failed)


def test_a_mirror_holds_a_failed_video_as_one_object_and_replaces_either_layout(tmp_path):
    layout = RunLayout.at(tmp_path / "local")
    prepare_run_folder(layout, CONFIG)
    fs, base = storage.open_output(tmp_path / "remote")
    vid = "file-00000000000000bb"
    remote = storage.video_dir(base, vid)

    def remote_files() -> list[str]:
        return files_in(Path(remote)) if os.path.isdir(remote) else []

    publish_failed_row(layout, vid, CHASH, _failed_row(vid))
    storage.put_tree(fs, layout.video_dir(vid), remote)
    assert remote_files() == [f"videos.failed.{CHASH}.parquet"]
    assert storage.list_markers(fs, base, CHASH) == {vid} and storage.list_markers(fs, base, "other") == set()

    video = {"video_id": vid, "uri": "/x/b.pkl", "status": "ok", "reason": "", "config_hash": CHASH}
    publish_video(layout, vid, CHASH, video, [], [], [])  # redone, now ok: the failed object goes
    storage.put_tree(fs, layout.video_dir(vid), remote)
    assert f"videos.failed.{CHASH}.parquet" not in remote_files() and f"_done.{CHASH}" in remote_files()
    publish_failed_row(layout, vid, CHASH, _failed_row(vid))  # and failed again: one object again
    storage.put_tree(fs, layout.video_dir(vid), remote)
    assert remote_files() == [f"videos.failed.{CHASH}.parquet"] and storage.list_markers(fs, base, CHASH) == {vid}


def test_an_interrupted_copy_over_a_failed_video_leaves_it_not_done(tmp_path, monkeypatch):
    """The failed video's one object is a marker: it is deleted before the new files go up, so a copy cut
    short leaves a folder that resume redoes, never an old failed row beside half of the new files."""
    from ingest.errors import WriteError

    layout = RunLayout.at(tmp_path / "local")
    prepare_run_folder(layout, CONFIG)
    fs, base = storage.open_output(tmp_path / "remote")
    vid = "file-00000000000000cc"
    remote = storage.video_dir(base, vid)
    publish_failed_row(layout, vid, CHASH, _failed_row(vid))
    storage.put_tree(fs, layout.video_dir(vid), remote)
    assert storage.list_markers(fs, base, CHASH) == {vid}

    video = {"video_id": vid, "uri": "/x/c.pkl", "status": "ok", "reason": "", "config_hash": CHASH}
    tracks = [{"video_id": vid, "track_id": 0, "status": "ok", "reason": ""}]
    publish_video(layout, vid, CHASH, video, tracks, [], [])
    real_put = storage.put_file

    def cut_short(fs_, local_path, remote_path):
        if remote_path.endswith("tracks.parquet"):
            raise WriteError(f"connection reset while copying {remote_path}")
        return real_put(fs_, local_path, remote_path)

    monkeypatch.setattr(storage, "put_file", cut_short)
    try:
        storage.put_tree(fs, layout.video_dir(vid), remote, threads=1)
    except WriteError:
        pass
    else:
        raise AssertionError("the copy was meant to be cut short")
    assert storage.list_markers(fs, base, CHASH) == set()
    monkeypatch.undo()
    storage.put_tree(fs, layout.video_dir(vid), remote)
    assert storage.list_markers(fs, base, CHASH) == {vid}
    assert f"videos.failed.{CHASH}.parquet" not in files_in(Path(remote))
