"""Per-call cost of the direct TFLite BlazePose (:mod:`pipeline.backends.blazepose`) against legacy MediaPipe.

On the same decoded frames (default: the shared runner video, downsized to the ``mediapipe`` backend's default
640 px long side), one loop interleaves, per frame:

- ``legacy``: ``mp.solutions.pose.Pose(static_image_mode=False, model_complexity=1).process(rgb)`` (tracking
  mode: the detector runs on the first frame only, then the landmark model in the previous frame's region;
  smoothing on, as the ``mediapipe`` backend runs it);
- ``detector``: :meth:`BlazePoseModels.detect_people` (letterbox + inference + decoding + NMS);
- ``detector invoke``: the detector's ``Interpreter.invoke()`` alone on the same input;
- ``landmarks``: :meth:`BlazePoseModels.estimate_landmarks` in the region tracked from the previous frame's
  landmarks (crop + inference + heatmap refinement + projection), i.e. the per-person per-frame cost;
- ``landmarks invoke``: the landmark model's ``invoke()`` alone.

CPU time (``time.process_time``: all threads of the process) and wall time, median over the frames after a few
warm-up frames. Our interpreters use ``--threads`` (default 1); legacy MediaPipe uses its own thread pool.

Usage: ``python bench/bench_blazepose.py [--video PATH] [--frames 50] [--max-side 640] [--threads 1]``
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ingest.decode import iter_frames  # noqa: E402
from pipeline.backends.blazepose import BlazePoseModels, roi_from_detection  # noqa: E402


def _timed(fn):
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, (time.process_time() - c0) * 1e3, (time.perf_counter() - w0) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--video", default=str(ROOT.parent / "shared" / "videos" / "phalp_runner.mp4"))
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--max-side", type=int, default=640, help="long side in px (0 = full resolution)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import mediapipe as mp

    frames = []
    with iter_frames(args.video, max_side_px=args.max_side or None) as it:
        for f in it:
            frames.append(f.rgb)
            if len(frames) >= args.frames + args.warmup:
                break
    h, w = frames[0].shape[:2]

    models = BlazePoseModels(num_threads=args.threads)
    legacy = mp.solutions.pose.Pose(static_image_mode=False, model_complexity=1)
    times: dict[str, list[tuple[float, float]]] = {}
    roi = None
    for i, rgb in enumerate(frames):
        rec = {}
        rgb.flags.writeable = False
        _, *rec["legacy Pose.process (tracking)"] = _timed(lambda: legacy.process(rgb))
        dets, *rec["detector: detect_people"] = _timed(lambda: models.detect_people(rgb))
        tensor, _ = models.detector_input(rgb)
        models._det.set_tensor(models._det_in, tensor[None])
        _, *rec["detector: invoke only"] = _timed(models._det.invoke)
        if roi is None and dets:
            roi = roi_from_detection(dets[0], (h, w))
        if roi is not None:
            res, *rec["landmarks: estimate_landmarks"] = _timed(lambda: models.estimate_landmarks(rgb, roi))
            models._lm.set_tensor(models._lm_in, models.landmark_input(rgb, roi)[None])
            _, *rec["landmarks: invoke only"] = _timed(models._lm.invoke)
            roi = res.next_roi if res is not None else None
        if i >= args.warmup:
            for k, v in rec.items():
                times.setdefault(k, []).append(tuple(v))
    legacy.close()

    print(f"video {Path(args.video).name} at {w}x{h}, {len(frames) - args.warmup} timed frames, "
          f"TFLite threads {args.threads}, {os.cpu_count()} CPUs")
    print(f"{'call':34s} {'cpu ms (median)':>16s} {'wall ms (median)':>17s} {'n':>4s}")
    for k, v in times.items():
        a = np.array(v)
        print(f"{k:34s} {np.median(a[:, 0]):16.2f} {np.median(a[:, 1]):17.2f} {len(a):4d}")


if __name__ == "__main__":
    main()
