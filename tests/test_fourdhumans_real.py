"""``g1forge run --backend 4dhumans`` through the real upstream code (4D-Humans track.py, PHALP, HMR2, detectron2's
ViTDet) on the CPU, with the generated stand-in model files (tests/make_4dhumans_standins.py).

Needs the stack in its own interpreter and a stand-in home; skipped elsewhere, with the reason::

    G1FORGE_4DHUMANS_PYTHON=/work/stack4d/bin/python       # the venv `g1forge setup gpu --venv` made
    G1FORGE_4DHUMANS_DIR=/work/stack4d-src/4D-Humans       # the 4D-Humans checkout (track.py)
    G1FORGE_4DHUMANS_HOME=/work/stack4d-home               # the stand-in files

The poses are meaningless (random weights); what is checked is that every stage of the upstream code runs and the
run ends as for any backend: a catalog row for the video (ok with tracks, or failed with a reason), tracks, clips.
A 16-frame cut of ../shared/videos/multi_four_children.mp4 keeps the CPU time to minutes (the ViT-H networks take
seconds per call on a CPU); the detector runs every 8th frame at 384 px (``det_stride``, ``det_size``) and 3 people
are kept (``max_people``).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.run_helpers import kill_session

ENV_PYTHON = "G1FORGE_4DHUMANS_PYTHON"
SOURCE = Path(__file__).resolve().parents[2] / "shared" / "videos" / "multi_four_children.mp4"
ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.videos]
NUM_FRAMES = 16  # 0.67 s at 24 frames/s: PHALP confirms a track after 5 consecutive detections


def _skip_reason() -> str | None:
    py = os.environ.get(ENV_PYTHON)
    if not py or not Path(py).is_file():
        return (f"needs the 4D-Humans stack's interpreter: set {ENV_PYTHON} (g1forge setup gpu --venv DIR --cpu "
                "builds one; see docs/gpu.md)")
    checkout = os.environ.get("G1FORGE_4DHUMANS_DIR")
    if not checkout or not (Path(checkout) / "track.py").is_file():
        return "needs G1FORGE_4DHUMANS_DIR: the 4D-Humans checkout holding track.py"
    home = os.environ.get("G1FORGE_4DHUMANS_HOME")
    if not home:
        return "needs G1FORGE_4DHUMANS_HOME: a home with the model files (python tests/make_4dhumans_standins.py HOME)"
    from pipeline.backends.fourdhumans import missing_cache_files

    missing = missing_cache_files(home)
    if missing:
        return (f"{len(missing)} model file(s) missing under {home}, first {missing[0]}: run "
                "tests/make_4dhumans_standins.py")
    if not SOURCE.is_file():
        return f"needs {SOURCE}"
    return None


def cut_clip(src: Path, dst: Path, num_frames: int) -> Path:
    """The first ``num_frames`` frames of ``src`` re-encoded to ``dst`` (H.264, same size and rate)."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        s_in = inp.streams.video[0]
        s_out = out.add_stream("libx264", rate=s_in.average_rate)
        s_out.width, s_out.height, s_out.pix_fmt = s_in.width, s_in.height, "yuv420p"
        for i, frame in enumerate(inp.decode(s_in)):
            if i >= num_frames:
                break
            for packet in s_out.encode(frame.reformat(format="yuv420p")):
                out.mux(packet)
        for packet in s_out.encode():
            out.mux(packet)
    return dst


def run_stack_cli(*args: str, timeout: float = 1500) -> subprocess.CompletedProcess:
    """``g1forge ARGS`` in the stack's interpreter (its own session, cleaned up afterwards)."""
    env = {**os.environ, "G1FORGE_4DHUMANS_DEVICE": "cpu", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([os.environ[ENV_PYTHON], "-m", "cluster.cli", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        kill_session(proc.pid)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.timeout(1800)
def test_run_through_the_real_upstream_tracker_on_cpu(tmp_path):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    clip = cut_clip(SOURCE, tmp_path / "four_children_16f.mp4", NUM_FRAMES)
    out = tmp_path / "run"
    res = run_stack_cli("run", str(clip), "--out", str(out), "--backend", "4dhumans",
                        "--backend-option", "device=cpu", "--backend-option", "det_stride=8",
                        "--backend-option", "det_size=384", "--backend-option", "max_people=3",
                        "--gpus-per-pose-worker", "0", "--workers", "1", "--finish-workers", "1",
                        "--min-clip-s", "0.5", "--no-progress")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-5000:]
    query = ("import json, sys; from catalog.db import run_query; "
             "print(json.dumps({t: run_query(sys.argv[1], f'SELECT * FROM {t}').to_pylist() "
             "for t in ('videos', 'tracks', 'clips')}, default=str))")
    q = subprocess.run([os.environ[ENV_PYTHON], "-c", query, str(out)], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert q.returncode == 0, q.stderr[-3000:]
    tables = json.loads(q.stdout)
    videos = tables["videos"]
    assert len(videos) == 1, videos
    row = videos[0]
    if row["status"] == "ok":
        assert row["frames_processed"] == NUM_FRAMES
        assert len(tables["tracks"]) >= 1, "the real tracker confirmed no track"
        assert all(t["video_id"] == row["video_id"] for t in tables["tracks"])
        assert tables["clips"] and {c["track_id"] for c in tables["clips"]} <= {t["track_id"] for t in tables["tracks"]}
    else:  # a failed row must say why
        assert row["status"] == "failed" and row["reason"], row
