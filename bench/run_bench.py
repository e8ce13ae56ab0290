"""End-to-end benchmark of ``g1forge run`` on the shared videos against raw MediaPipe on the same frames.

Baseline ("raw"): in this process, every frame of the videos is decoded with PyAV at full resolution and passed
to ``mediapipe.solutions.pose.Pose(model_complexity=1).process`` one by one; only the ``process`` calls are
timed, so raw frames/s is MediaPipe inference alone, the most favourable number for the baseline.

Pipeline: ``g1forge run`` as a user runs it (a subprocess, a fresh run folder, its own local Ray), timed from
the command's start to its exit: decode, pose, clips, world alignment, metrics, catalog writes and Ray start-up
are all inside. Frames are counted from the catalog (``frames_processed``).

Reported: raw frames/s, pipeline frames/s (wall clock, and with Ray start-up excluded), their ratio (target
>= 0.8), and per-video overhead: time inside a worker outside pose inference (probe, clips, metrics, writes), and
the driver's orchestration time per video. Results are printed and written to ``bench/results/pipeline.json``.

A real batch holds many videos, so the run can be given ``--copies K`` of each shared video: stream-copied
(remuxed, no re-encode) into new files whose only difference is a metadata tag. They hold the same frames but
are distinct files with distinct ids, as a list of many videos would be; Ray's start-up is then paid once for
K times the frames. ``--copies 1`` measures the two videos alone.

Usage: ``python bench/run_bench.py [--videos DIR] [--workers N] [--copies K]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VIDEOS = ROOT.parent / "shared" / "videos"


def raw_mediapipe(videos: list[Path]) -> dict:
    import av
    import mediapipe as mp

    frames = 0
    infer_s = 0.0
    with mp.solutions.pose.Pose(static_image_mode=False, model_complexity=1) as pose:
        for path in videos:
            with av.open(str(path)) as container:
                for frame in container.decode(video=0):
                    rgb = frame.to_ndarray(format="rgb24")
                    t0 = time.perf_counter()
                    pose.process(rgb)
                    infer_s += time.perf_counter() - t0
                    frames += 1
    return {"frames": frames, "inference_s": infer_s, "frames_per_s": frames / infer_s}


def remux_copies(videos: list[Path], copies: int, folder: Path) -> list[Path]:
    """``copies`` stream copies of each video (same packets, a different ``comment`` tag)."""
    import av

    out = []
    for path in videos:
        for k in range(copies):
            dst = folder / f"{path.stem}.copy{k}{path.suffix}"
            with av.open(str(path)) as src, av.open(str(dst), "w") as dst_c:
                dst_c.metadata["comment"] = f"g1forge benchmark copy {k}"
                vin = src.streams.video[0]
                vout = dst_c.add_stream_from_template(vin)
                for packet in src.demux(vin):
                    if packet.dts is None:
                        continue
                    packet.stream = vout
                    dst_c.mux(packet)
            out.append(dst)
    return out


def pipeline_run(videos: list[Path], workers: int | None, out: Path) -> dict:
    cmd = [sys.executable, "-m", "cluster.cli", "run", *map(str, videos), "--out", str(out), "--no-progress"]
    if workers:
        cmd += ["--workers", str(workers)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall_s = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"g1forge run failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    sys.path.insert(0, str(ROOT))
    from catalog.db import run_query

    rows = run_query(out, "SELECT video_id, status, frames_processed, pose_time_s, process_time_s FROM videos"
                     ).to_pylist()
    stats = json.loads(sorted((out / "state" / "runs").glob("*.json"))[-1].read_text())
    frames = sum(r["frames_processed"] or 0 for r in rows)
    busy = sum(w["busy_s"] for w in stats["workers"]) if stats.get("workers") else 0.0
    n_workers = max(1, len(stats.get("workers") or [1]))
    return {
        "wall_s": wall_s,
        "frames": frames,
        "statuses": {r["video_id"]: r["status"] for r in rows},
        "frames_per_s": frames / wall_s,
        "in_worker_overhead_s_per_video": sum((r["process_time_s"] or 0) - (r["pose_time_s"] or 0) for r in rows)
        / max(1, len(rows)),
        "driver_overhead_s_per_video": max(0.0, stats["elapsed_s"] - busy / n_workers) / max(1, len(rows)),
        "workers": n_workers,
        "worker_busy_s": busy,
    }


def ray_startup_s() -> float:
    code = ("import time,ray,logging; t=time.perf_counter(); ray.init(include_dashboard=False,"
            "logging_level=logging.ERROR); ray.get(ray.remote(lambda: 1).remote()); print(time.perf_counter()-t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", type=Path, default=DEFAULT_VIDEOS)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--copies", type=int, default=3, help="copies of each video in the run (default 3)")
    args = ap.parse_args()
    videos = sorted(p for p in args.videos.glob("*.mp4"))
    if not videos:
        raise SystemExit(f"no .mp4 in {args.videos}: clone the project with ../shared beside it or pass --videos")

    raw = raw_mediapipe(videos)
    with tempfile.TemporaryDirectory() as tmp:
        inputs = remux_copies(videos, args.copies, Path(tmp)) if args.copies > 1 else videos
        pipe = pipeline_run(inputs, args.workers, Path(tmp) / "run")
    if pipe["frames"] != raw["frames"] * max(1, args.copies):
        raise SystemExit(f"the run saw {pipe['frames']} frames, expected {raw['frames']} x {args.copies}")
    startup = ray_startup_s()
    steady = pipe["frames"] / max(1e-9, pipe["wall_s"] - startup)
    result = {
        "videos": [p.name for p in videos],
        "copies": args.copies,
        "cpu_count": os.cpu_count(),
        "raw_mediapipe": raw,
        "pipeline": pipe,
        "ray_startup_s": startup,
        "pipeline_frames_per_s_excluding_ray_startup": steady,
        "ratio_pipeline_to_raw": pipe["frames_per_s"] / raw["frames_per_s"],
        "ratio_excluding_ray_startup": steady / raw["frames_per_s"],
        "target_ratio": 0.8,
    }
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "pipeline.json").write_text(json.dumps(result, indent=2))
    print(f"raw MediaPipe inference: {raw['frames']} frames, {raw['frames_per_s']:.1f} frames/s")
    print(f"run over {args.copies} cop{'ies' if args.copies > 1 else 'y'} of each video:")
    print(f"g1forge run end to end:  {pipe['frames']} frames in {pipe['wall_s']:.1f} s, "
          f"{pipe['frames_per_s']:.1f} frames/s with {pipe['workers']} workers "
          f"(ratio {result['ratio_pipeline_to_raw']:.2f}, target >= 0.8)")
    print(f"  excluding Ray start-up ({startup:.1f} s): {steady:.1f} frames/s (ratio "
          f"{result['ratio_excluding_ray_startup']:.2f})")
    print(f"per-video overhead: {pipe['in_worker_overhead_s_per_video'] * 1000:.0f} ms in the worker outside pose, "
          f"{pipe['driver_overhead_s_per_video'] * 1000:.0f} ms outside the workers (Ray start-up, worker and model "
          f"start, dispatch, shutdown) spread over the videos")


if __name__ == "__main__":
    main()
