"""The real thing: MediaPipe on the shared videos through `g1forge run`, and a SIGKILL in the middle of it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from catalog.db import run_query
from catalog.layout import RunLayout
from pipeline.g1_motion import load_g1_motion
from pipeline.motion_io import load_clip
from run_helpers import catalog_snapshot, cli, kill_session

pytestmark = [pytest.mark.slow, pytest.mark.videos]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, request):
    runner = request.getfixturevalue("runner_video")
    tennis = request.getfixturevalue("tennis_video")
    out = tmp_path_factory.mktemp("ref") / "out"
    res = cli("run", str(runner), str(tennis), "--out", str(out), "--workers", "1", "--no-progress")
    assert res.returncode == 0, res.stderr
    return runner, tennis, out, res


@pytest.fixture(scope="module")
def runner_video():
    from conftest import RUNNER_VIDEO, _require

    return _require(RUNNER_VIDEO)


@pytest.fixture(scope="module")
def tennis_video():
    from conftest import TENNIS_VIDEO, _require

    return _require(TENNIS_VIDEO)


def test_both_videos_give_world_frame_clips(reference_run):
    _, _, out, res = reference_run
    assert "ok 2, filtered 0, failed 0" in res.stdout
    videos = {r["uri"].rsplit("/", 1)[-1]: r for r in run_query(out, "SELECT * FROM videos").to_pylist()}
    assert videos["phalp_runner.mp4"]["frames_processed"] == 180 and videos["phalp_runner.mp4"]["fps"] == 30
    assert videos["gvhmr_tennis.mp4"]["is_vfr"] and videos["gvhmr_tennis.mp4"]["frames_processed"] == 312
    clips = run_query(out, "SELECT * FROM clips WHERE status = 'ok'").to_pylist()
    assert len(clips) >= 2
    for c in clips:
        assert 2.0 <= c["duration_s"] <= 10.0
        assert c["tracked_frac"] > 0.95
        assert 0.5 < c["pelvis_height_min_m"] < c["pelvis_height_max_m"] < 1.5  # an adult, standing/running
        clip = load_clip(out / c["motion_path"])
        feet = clip.joints_world_m[:, [7, 8, 9, 10], 2]
        lowest = feet.min(axis=1)
        assert abs(np.percentile(lowest, 20)) < 0.05  # the ground is at z = 0 (a runner is airborne at times)
        assert np.percentile(lowest, 5) > -0.1  # and nothing sinks far below it
        head_above_pelvis = clip.joints_world_m[:, 12, 2] - clip.joints_world_m[:, 0, 2]
        assert np.median(head_above_pelvis) > 0.4  # z is up
        # the G1 follows: limits respected, key bodies near their targets, feet not below the floor
        g1 = load_g1_motion(out / c["g1_motion_path"])
        assert g1.num_frames == clip.num_frames
        assert c["joint_limit_violations"] == 0 and c["keybody_err_mean_m"] < 0.1
        assert c["robot_foot_penetration_max_m"] < 0.02


def test_export_of_the_real_clips_reads_back(reference_run, tmp_path):
    from catalog.formats import read_unitree_csv

    _, _, out, _ = reference_run
    res = cli("export", str(out), "--where", "status = 'ok'", "--format", "unitree-csv", "--fps", "30",
              "--dest", str(tmp_path / "csv"))
    assert res.returncode == 0, res.stderr
    rows = run_query(out, "SELECT clip_id, g1_motion_path FROM clips WHERE status = 'ok'").to_pylist()
    for r in rows:
        original = load_g1_motion(out / r["g1_motion_path"])
        back = read_unitree_csv(tmp_path / "csv" / r["clip_id"] / "motion.csv", fps=30.0)
        if abs(original.fps - 30.0) < 1e-6:  # same rate: the file holds exactly the motion
            np.testing.assert_allclose(back.joint_pos_rad, original.joint_pos_rad, atol=1e-6)
            np.testing.assert_allclose(back.root_pos_m, original.root_pos_m, atol=1e-6)


def test_sigkill_mid_run_then_resume_equals_uninterrupted(reference_run, tmp_path):
    runner, tennis, ref, _ = reference_run
    out = tmp_path / "out"
    layout = RunLayout.at(out)
    args = [str(runner), str(tennis), "--out", str(out), "--workers", "1", "--no-progress"]
    proc = subprocess.Popen([sys.executable, "-m", "cluster.cli", "run", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not list(layout.data_dir.glob("*/*/_done.*")):
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # one video published, the other in the middle of its frames
        proc.wait()
    finally:
        kill_session(proc.pid)
    time.sleep(1.0)
    assert len(list(layout.data_dir.glob("*/*/_done.*"))) == 1
    resumed = cli("run", *args)
    assert resumed.returncode == 0, resumed.stderr
    assert "1 already done, 1 processed" in resumed.stdout
    assert catalog_snapshot(out) == catalog_snapshot(ref)
