"""Cost of the world stage per frame against pose, on the shared videos.

For each video of ``../shared/videos``, the default pose backend runs once with camera motion off and once with it
on (the difference is the camera-motion stage, :mod:`pipeline.camera_motion`), then :func:`pipeline.clips.build_clips`
(identity guard and segmentation, trajectory recovery, world alignment with the ground lock, metrics) runs
``--repeats`` times on the result; its median CPU time is divided by the frames of the clips it built. Runs are
interleaved video by video, CPU time (``time.process_time``) throughout.

Usage: ``python bench/bench_world.py [--repeats 5]``; results in ``bench/results/bench_world.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ingest.items import VideoItem  # noqa: E402
from pipeline.backends.base import create_backend  # noqa: E402
from pipeline.clips import build_clips  # noqa: E402
from pipeline.identity import split_identity_jumps  # noqa: E402

VIDEOS = ROOT.parent / "shared" / "videos"
RESULTS = ROOT / "bench" / "results" / "bench_world.json"


def _cpu(fn):
    t0 = time.process_time()
    out = fn()
    return out, time.process_time() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    videos = sorted(VIDEOS.glob("*.mp4"))
    if not videos:
        print(f"no videos in {VIDEOS}: clone the project with ../shared beside it", file=sys.stderr)
        return 1
    pose_only = create_backend("mediapipe", camera_motion=False)
    with_camera = create_backend("mediapipe")
    rows = []
    for path in videos:
        item = VideoItem(video_id=path.stem, uri=str(path), kind="file")
        _, pose_s = _cpu(lambda: pose_only.process(item, str(path)))
        result, camera_pose_s = _cpu(lambda: with_camera.process(item, str(path)))
        world_s, frames = [], 0
        for _ in range(args.repeats):
            def stage():
                tracks, _ = split_identity_jumps(result.tracks, shot_boundary=result.shot_boundary)
                return build_clips(replace(result, tracks=tracks), path.stem)

            clips, s = _cpu(stage)
            world_s.append(s)
            frames = sum(c.num_frames for c in clips)
        n = max(result.num_frames, 1)
        row = {"video": path.name, "frames": result.num_frames, "clip_frames": frames,
               "pose_ms_per_frame": 1e3 * pose_s / n,
               "camera_motion_ms_per_frame": 1e3 * (camera_pose_s - pose_s) / n,
               "world_ms_per_clip_frame": 1e3 * statistics.median(world_s) / max(frames, 1)}
        row["world_over_pose"] = row["world_ms_per_clip_frame"] / row["pose_ms_per_frame"]
        rows.append(row)
        print(f"{path.name:26s} pose {row['pose_ms_per_frame']:6.1f} ms/frame, camera motion "
              f"{row['camera_motion_ms_per_frame']:5.1f}, world stage {row['world_ms_per_clip_frame']:5.2f} ms per "
              f"clip frame ({row['world_over_pose']:.1%} of pose; {frames} clip frames)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"load_avg": os.getloadavg(), "repeats": args.repeats, "videos": rows}, indent=2))
    print(f"results: {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
