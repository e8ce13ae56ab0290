"""Cost and per-video summary of :mod:`pipeline.camera_motion` on the shared videos.

Each video is decoded first (not timed) at ``--max-side`` px (default 640, the ``mediapipe`` backend's
default), then one :class:`CameraMotionAccumulator` runs over its frames: CPU time (``time.process_time``, all
threads of the process) and wall time per frame are reported with the summary numbers (static-camera score,
rotations, parallax, translation fraction).

Person boxes: by default a rough central box (x 30-70 %, y 10-100 % of the frame), as in the tests; with
``--pose`` the boxes of the ``mediapipe`` pose backend (run once per video, not timed; needs MediaPipe).

Usage: ``python bench/bench_camera_motion.py [--videos a.mp4 ...] [--max-side 640] [--pose] [--threads N]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ingest.decode import iter_frames  # noqa: E402
from pipeline.camera_motion import CameraMotionAccumulator  # noqa: E402

VIDEOS = ROOT.parent / "shared" / "videos"
DEFAULT = ["phalp_runner.mp4", "multi_four_children.mp4", "moving_cam_hike.mp4", "moving_cam_cafe.mp4",
           "gvhmr_tennis.mp4", "dance.mp4"]


def _pose_boxes(path: Path, frame_idx: list[int], scale: float) -> list[np.ndarray | None]:
    """Per decoded frame, the mediapipe backend's person boxes in pixels of the downsized frames."""
    from ingest.items import VideoItem
    from pipeline.backends.base import create_backend

    res = create_backend("mediapipe").process(VideoItem(video_id="bench", uri=str(path), kind="file"), str(path))
    by_frame: dict[int, list[np.ndarray]] = {}
    for tr in res.tracks:
        if tr.bbox_xywh_px is None:
            continue
        for i, box in zip(tr.frame_idx.tolist(), tr.bbox_xywh_px):
            by_frame.setdefault(i, []).append(np.asarray(box, np.float64) / scale)
    return [np.array(by_frame[i]) if i in by_frame else None for i in frame_idx]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--videos", nargs="*", default=DEFAULT)
    ap.add_argument("--max-side", type=int, default=640)
    ap.add_argument("--pose", action="store_true", help="person boxes from the mediapipe backend")
    ap.add_argument("--threads", type=int, default=1, help="cv2.setNumThreads (default 1: per-worker cost)")
    args = ap.parse_args()
    import cv2

    cv2.setNumThreads(args.threads)
    print(f"cv2 {cv2.__version__}, threads {args.threads}, frames at max {args.max_side} px, "
          f"boxes: {'mediapipe' if args.pose else 'central'}")
    header = (f"{'video':24s} {'size':>8s} {'N':>4s} {'cpu ms':>6s} {'wall ms':>7s} {'static':>6s} {'pan':>6s} "
              f"{'tilt':>5s} {'roll':>5s} {'max rot':>7s} {'deg/s':>5s} {'par px':>6s} {'transl':>6s} "
              f"{'valid':>5s} {'tracks':>6s}")
    print(header)
    tot_cpu = tot_n = 0.0
    for name in args.videos:
        path = Path(name) if Path(name).exists() else VIDEOS / name
        if not path.exists():
            print(f"{name:24s} absent")
            continue
        with iter_frames(path, max_side_px=args.max_side) as frames:
            fps = frames.average_fps or 30.0
            decoded = [(fr.frame_idx, fr.time_s, fr.rgb, fr.scale_to_source) for fr in frames]
        h, w = decoded[0][2].shape[:2]
        if args.pose:
            boxes = _pose_boxes(path, [d[0] for d in decoded], decoded[0][3])
        else:
            central = np.array([[0.3 * w, 0.1 * h, 0.4 * w, 0.9 * h]], np.float32)
            boxes = [central] * len(decoded)
        acc = CameraMotionAccumulator(fps=fps)
        c0, w0 = time.process_time(), time.perf_counter()
        for (_i, t, rgb, _s), b in zip(decoded, boxes):
            acc.update(rgb, b, time_s=t)
        cpu_ms = 1000 * (time.process_time() - c0) / len(decoded)
        wall_ms = 1000 * (time.perf_counter() - w0) / len(decoded)
        m = acc.result()
        s = m.summary()
        tot_cpu += cpu_ms * len(decoded)
        tot_n += len(decoded)
        print(f"{path.name:24s} {w:>4d}x{h:<3d} {len(decoded):>4d} {cpu_ms:6.2f} {wall_ms:7.2f} "
              f"{s['static_camera_score']:6.3f} {s['final_pan_deg']:6.1f} {s['final_tilt_deg']:5.1f} "
              f"{s['final_roll_deg']:5.1f} {s['max_rotation_deg']:7.1f} {s['median_rotation_speed_deg_s']:5.2f} "
              f"{s['median_parallax_px']:6.2f} {s['translation_fraction']:6.2f} {s['valid_fraction']:5.2f} "
              f"{s['median_tracks']:6.0f}")
    if tot_n:
        print(f"all: {tot_cpu / tot_n:.2f} ms CPU per frame over {int(tot_n)} frames")
    print("pan/tilt/roll: cumulative at the last frame (deg, Ry(pan) Rx(tilt) Rz(roll)); deg/s: median rotation "
          "speed; par px: median parallax per frame (px of the frames); transl: fraction of frames with "
          "parallax > 0.2 % of the diagonal")


if __name__ == "__main__":
    main()
