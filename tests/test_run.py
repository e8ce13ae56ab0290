"""End-to-end runs through the local Ray executor with the fast ``phalp-pkl`` backend (synthetic pickles)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from catalog.db import run_query
from catalog.layout import RunLayout
from cluster.config import RunConfig
from cluster.run import ExecOptions, run
from cluster.stages import FAULT_ENV
from phalp_factory import make_phalp_pickle
from pipeline.g1_motion import load_g1_motion
from pipeline.motion_io import load_clip
from run_helpers import catalog_snapshot, cli, kill_session

pytestmark = pytest.mark.slow

CONFIG = RunConfig(backend="phalp-pkl")


def _make_inputs(folder: Path, n: int, frames: int = 120) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"video {i:03d}.pkl"  # a space in the name on purpose
        make_phalp_pickle(p, 2, num_frames=frames, seed=i)
        paths.append(p)
    return paths


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    pkls = _make_inputs(root / "in", 5)
    (root / "in" / "corrupt.pkl").write_bytes(b"\x80\x04not really a pickle")
    lst = root / "list.txt"
    lst.write_text("# a list with a duplicate and a missing file\n"
                   f"{pkls[0]}\n{root / 'in' / 'nowhere.pkl'}\n\n{pkls[1]}\n")
    out = root / "out"
    report = run([str(root / "in")], [str(lst)], out, CONFIG, ExecOptions(workers=2, progress=False))
    return root, out, report


def test_every_input_ends_as_one_row(finished_run):
    root, out, report = finished_run
    assert report.inputs == 9 and report.duplicates == 2  # 6 files in the folder + 3 list entries, 2 repeated
    rows = run_query(out, "SELECT video_id, uri, status, reason FROM videos").to_pylist()
    assert len(rows) == 7 == len({r["video_id"] for r in rows})
    by_status = {s: [r for r in rows if r["status"] == s] for s in ("ok", "filtered", "failed")}
    assert len(by_status["ok"]) == 5
    reasons = sorted(r["reason"].split(":")[0] for r in by_status["failed"])
    assert reasons == ["bad_result_file", "not_found"]
    assert report.counts == {"ok": 5, "failed": 2}


def test_clips_have_motion_files_and_metrics(finished_run):
    _, out, _ = finished_run
    clips = run_query(out, "SELECT * FROM clips WHERE status = 'ok' ORDER BY clip_id").to_pylist()
    assert len(clips) == 10  # two people in each of the five good pickles
    for c in clips:
        clip = load_clip(out / c["motion_path"])
        assert clip.clip_id == c["clip_id"] and clip.num_frames == c["num_frames"]
        assert clip.joints_world_m.shape == (c["num_frames"], 20, 3)
        assert np.isfinite(c["jitter_m_s3"]) and 0.0 <= c["foot_contact_score"] <= 1.0
        assert clip.smpl is not None and c["has_smpl"]
        g1 = load_g1_motion(out / c["g1_motion_path"])
        assert g1.clip_id == c["clip_id"] and g1.num_frames == c["num_frames"] and g1.joint_pos_rad.shape[1] == 29
        assert c["joint_limit_violations"] == 0 and c["keybody_err_mean_m"] < 0.1
    tracks = run_query(out, "SELECT count(*) AS n, sum(num_clips_ok) AS k FROM tracks").to_pylist()
    assert tracks == [{"n": 10, "k": 10}]


def test_rerun_does_no_work_and_force_redoes_identically(finished_run):
    root, out, _ = finished_run
    before = catalog_snapshot(out)
    again = run([str(root / "in")], [str(root / "list.txt")], out, CONFIG, ExecOptions(workers=2, progress=False))
    assert again.already_done == 7 and again.processed == 0 and again.workers == []  # Ray never started
    forced = run([str(root / "in")], [], out, CONFIG, ExecOptions(workers=1, force=True, progress=False))
    assert forced.processed == 6
    assert catalog_snapshot(out) == before


def test_cli_query_and_status(finished_run):
    _, out, _ = finished_run
    q = cli("query", str(out), "SELECT status, count(*) AS n FROM videos GROUP BY 1 ORDER BY 1", "--format", "csv")
    assert q.returncode == 0, q.stderr
    assert q.stdout.strip().splitlines() == ["status,n", "failed,2", "ok,5"]
    s = cli("status", str(out), "--json")
    st = json.loads(s.stdout)
    assert st["videos"] == {"failed": 2, "ok": 5} and st["left"] == 0
    ex = cli("export", str(out), "--where", "track_id = 1", "--format", "unitree-csv", "--dest", str(out.parent / "x"))
    assert ex.returncode == 0, ex.stderr
    assert len(list((out.parent / "x").glob("file-*/motion.csv"))) == 5 and (out.parent / "x" / "manifest.csv").exists()
    bad_where = cli("export", str(out), "--where", "no_such_column > 1", "--format", "mjlab-npz", "--dest",
                    str(out.parent / "y"))
    assert bad_where.returncode == 2 and "--where" in bad_where.stderr
    bad = cli("query", str(out), "DROP VIEW videos")
    assert bad.returncode == 2 and "read-only" in bad.stderr
    assert run_query(out, "SELECT count(*) AS n FROM videos").to_pylist() == [{"n": 7}]


def test_worker_killed_mid_video_is_retried(tmp_path, monkeypatch):
    pkls = _make_inputs(tmp_path / "in", 3, frames=90)
    out = tmp_path / "out"
    from ingest.ids import file_id

    victim = file_id(pkls[1])
    monkeypatch.setenv(FAULT_ENV, f"{victim}@{tmp_path / 'faults'}")
    report = run([str(tmp_path / "in")], [], out, CONFIG, ExecOptions(workers=1, progress=False))
    assert (tmp_path / "faults" / f"killed.{victim}").exists()  # the worker really died once
    # calls queued behind the victim on the dead worker fail with it and are retried as well
    assert 1 <= report.retries <= 2 and report.counts == {"ok": 3}
    rows = run_query(out, "SELECT video_id, status, attempts FROM videos ORDER BY video_id").to_pylist()
    assert {r["video_id"]: r["attempts"] for r in rows}[victim] == 2
    assert all(r["status"] == "ok" for r in rows)


def test_sigkilled_driver_resumes_to_the_uninterrupted_catalog(tmp_path):
    _make_inputs(tmp_path / "in", 24, frames=150)
    args = [str(tmp_path / "in"), "--backend", "phalp-pkl", "--workers", "1", "--no-progress"]
    ref = cli("run", *args, "--out", str(tmp_path / "ref"))
    assert ref.returncode == 0, ref.stderr

    out = tmp_path / "out"
    layout = RunLayout.at(out)
    proc = subprocess.Popen([sys.executable, "-m", "cluster.cli", "run", *args, "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(list(layout.data_dir.glob("*/*/_done.*"))) < 4:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        kill_session(proc.pid)  # Ray's processes die with the driver; this only makes sure of it
    time.sleep(1.0)
    done_at_kill = len(list(layout.data_dir.glob("*/*/_done.*")))
    assert 4 <= done_at_kill < 24, "the kill should land mid-run"
    # nothing partial is visible: every published video folder is complete
    for d in layout.data_dir.glob("[0-9a-f][0-9a-f]/*"):
        assert list(d.glob("_done.*")) and (d / "videos.parquet").exists() and (d / "clips.parquet").exists()

    resumed = cli("run", *args, "--out", str(out))
    assert resumed.returncode == 0, resumed.stderr
    assert f"{done_at_kill} already done" in resumed.stdout
    assert catalog_snapshot(out) == catalog_snapshot(tmp_path / "ref")


def test_sigint_stops_gracefully_and_says_how_to_resume(tmp_path):
    _make_inputs(tmp_path / "in", 48, frames=150)  # enough left after the third that the signal lands mid-run
    out = tmp_path / "out"
    layout = RunLayout.at(out)
    args = ["run", str(tmp_path / "in"), "--backend", "phalp-pkl", "--workers", "1", "--no-progress", "--out", str(out)]
    def as_from_a_shell():  # SIGINT as a terminal gives it, whatever earlier tests left in pytest's process
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    proc = subprocess.Popen([sys.executable, "-m", "cluster.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=as_from_a_shell)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(list(layout.data_dir.glob("*/*/_done.*"))) < 3:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        kill_session(proc.pid)
    assert proc.returncode == 130
    assert "run the same command again to resume" in err
    resumed = cli(*args)
    assert resumed.returncode == 0 and "0 already done" not in resumed.stdout
    assert run_query(out, "SELECT count(*) AS n FROM videos WHERE status = 'ok'").to_pylist() == [{"n": 48}]


def test_unreadable_and_audio_only_files_become_rows(tmp_path):
    from video_factory import make_audio_only, make_video

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "notes.MP4").write_text("this is text, not a video")
    make_audio_only(folder / "sound.m4v")
    make_video(folder / "blank.mov", width=96, height=64, fps=10, num_frames=12)  # a box, no person
    report = run([str(folder)], [], tmp_path / "out", RunConfig(), ExecOptions(workers=1, progress=False))
    rows = {r["uri"].rsplit("/", 1)[-1]: r for r in run_query(
        tmp_path / "out", "SELECT uri, status, reason FROM videos").to_pylist()}
    assert set(rows) == {"empty.mp4", "notes.MP4", "sound.m4v", "blank.mov"}
    assert rows["empty.mp4"]["status"] == "failed" and rows["empty.mp4"]["reason"].startswith("unreadable:")
    assert rows["notes.MP4"]["status"] == "failed" and rows["notes.MP4"]["reason"].startswith("unreadable:")
    assert rows["sound.m4v"]["reason"].startswith("audio_only:")
    assert rows["blank.mov"]["status"] == "filtered" and rows["blank.mov"]["reason"].startswith("no_person:")
    assert report.counts == {"failed": 3, "filtered": 1}


def test_gpu_backend_without_a_gpu_fails_each_video_with_the_fix(tmp_path):
    from video_factory import make_video

    make_video(tmp_path / "a.mp4", width=64, height=64, fps=10, num_frames=5)
    make_video(tmp_path / "b.mp4", width=64, height=48, fps=10, num_frames=5)
    report = run([str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4")], [], tmp_path / "out",
                 RunConfig(backend="4dhumans"), ExecOptions(progress=False))
    rows = run_query(tmp_path / "out", "SELECT status, reason FROM videos").to_pylist()
    assert report.counts == {"failed": 2} and len(rows) == 2
    assert all(r["reason"].startswith("no_gpu:") and "g1forge doctor" in r["reason"] for r in rows)


def test_a_range_past_the_end_and_a_video_without_clips_say_why_once(tmp_path):
    """A list range that starts after the video ends is filtered as ``range_outside`` (not "no person in 0
    frames"); a video whose windows are all filtered reads ``no_clip: ...`` with the code once."""
    from ingest.items import VideoItem
    from pipeline.process import fetch_video, finish_video
    from video_factory import make_video

    video = make_video(tmp_path / "two_s.mp4", num_frames=60, fps=30.0)
    item = VideoItem(video_id="file-range", uri=str(video), kind="file", start_s=100.0, end_s=200.0)
    fetched = fetch_video(item, RunConfig(), tmp_path / "dl", "abc", "mediapipe")
    assert fetched.row["status"] == "filtered"
    assert fetched.row["reason"].startswith("range_outside: start_s=100 s is at or after the end of the video (2.")

    from motion_factory import look_at_camera, make_pose_result, make_track, walking_motion

    short = make_track(walking_motion(num_frames=20, fps=30.0), look_at_camera())  # 0.67 s: too short
    row = {"video_id": "file-short"}
    outcome = finish_video(row, make_pose_result([short], num_frames=20, fps=30.0), RunConfig())
    assert outcome.video_row["status"] == "filtered"
    assert outcome.video_row["reason"].startswith("no_clip: ") and "no_clip: no_clip" not in outcome.video_row["reason"]
