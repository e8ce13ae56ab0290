"""Shot-change detection: cost per frame and accuracy of ``FrameSignalAccumulator`` vs PySceneDetect's detectors.

Synthetic set (tests/shot_factory.py): for every ordered pair of the six videos in ../shared/videos (30 pairs),
30 frames of the first, then a hard cut, a fade through black (10 frames out, 3 black, 10 in) or a cross-dissolve
of 8, 15 or 30 frames into the second (both keep playing), then its next frames: 150 sequences, one expected
boundary each (cut +-2 frames, fade: middle of the black +-2, dissolve: any blended frame). Continuous shots: the
six real videos whole, three of them with lighting flicker (+-25 % gain) and with added noise (sigma 6), and two
zoomed crops where a person fills the frame. Every boundary in them is a false positive.

Frames are 640x360 RGB (the pipeline's working size). Cost is process CPU time per frame of the detector call
alone (for PySceneDetect: ``process_frame`` on the BGR frame, at full 640 px and, as its SceneManager would
do for 640 px input, downscaled by 2).

PySceneDetect is optional: ``pip install --target DIR --no-deps scenedetect==0.6.7.1 platformdirs`` and
``PYTHONPATH=DIR`` (0.7.x works too; its API takes FrameTimecode). Usage:
``python bench/bench_shots.py [--pairs N] [--no-scenedetect]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import shot_factory as sf  # noqa: E402
from pipeline.frame_signals import FrameSignalAccumulator  # noqa: E402


def build_sets(num_pairs: int | None):
    import cv2

    videos = {name.split(".")[0]: sf.load_frames(sf.VIDEOS_DIR / name) for name in sf.CONTINUOUS}
    names = list(videos)
    pairs = [(a, b) for a in names for b in names if a != b][:num_pairs]
    synthetic = []
    for a, b in pairs:
        for kind, (frames, win) in sf.transitions(videos[a][:60], videos[b][:60], 30).items():
            synthetic.append((f"{a}->{b}", kind, frames, win))
    rng = np.random.default_rng(0)
    continuous = [(k, v) for k, v in videos.items()]
    for k in ("phalp_runner", "dance", "moving_cam_hike"):
        v = [f.astype(np.float32) for f in videos[k][:120]]
        gain = 1 + 0.25 * np.sin(np.arange(len(v)) * 2 * np.pi / 7) * rng.uniform(0.5, 1, len(v))
        continuous.append((k + "+flicker", [np.clip(f * g, 0, 255).astype(np.uint8) for f, g in zip(v, gain)]))
        continuous.append((k + "+noise", [np.clip(f + rng.normal(0, 6, f.shape), 0, 255).astype(np.uint8) for f in v]))
    continuous.append(("dance zoomed x2.5", [cv2.resize(f[40:184, 192:448], (640, 360)) for f in videos["dance"][:200]]))
    continuous.append(("tennis zoomed x2", [cv2.resize(f[60:240, 200:520], (640, 360)) for f in videos["gvhmr_tennis"][:200]]))
    return synthetic, continuous


def ours(frames):
    acc = FrameSignalAccumulator()
    cpu = 0.0
    for f in frames:
        t0 = time.process_time()
        acc.update(f)
        cpu += time.process_time() - t0
    return np.flatnonzero(acc.result()[0]).tolist(), cpu


def scenedetect_runner(make, down: int):
    import cv2
    import scenedetect

    new_api = not scenedetect.__version__.startswith("0.6")

    def run(frames):
        det = make()
        cuts, cpu = [], 0.0
        fps = 30.0
        for i, f in enumerate(frames):
            bgr = np.ascontiguousarray(f[:, :, ::-1])
            if down > 1:
                bgr = cv2.resize(bgr, (bgr.shape[1] // down, bgr.shape[0] // down), interpolation=cv2.INTER_AREA)
            tc = scenedetect.FrameTimecode(i, fps) if new_api else i
            t0 = time.process_time()
            out = det.process_frame(tc, bgr)
            cpu += time.process_time() - t0
            cuts += [c.frame_num if new_api else c for c in out or []]
        end = scenedetect.FrameTimecode(len(frames), fps) if new_api else len(frames)
        cuts += [c.frame_num if new_api else c for c in det.post_process(end) or []]
        return [c for c in cuts if 0 < c < len(frames)], cpu

    return run


def evaluate(name, run, synthetic, continuous):
    per_kind: dict[str, list[int]] = {}
    cpu, frames_n, fp_cont, fp_list = 0.0, 0, 0, []
    for _, kind, frames, win in synthetic:
        found, c = run(frames)
        cpu += c
        frames_n += len(frames)
        tp, miss, fp = sf.score_detections(np.asarray(found, dtype=np.int64), win)
        r = per_kind.setdefault(kind, [0, 0, 0])
        r[0] += tp
        r[1] += miss
        r[2] += fp
    for key, frames in continuous:
        found, c = run(frames)
        cpu += c
        frames_n += len(frames)
        fp_cont += len(found)
        if found:
            fp_list.append(f"{key}:{len(found)}")
    tot = np.sum(list(per_kind.values()), axis=0)
    kinds = "  ".join(f"{k} {v[0]}/{v[0] + v[1]} fp{v[2]}" for k, v in per_kind.items())
    print(f"{name:28s} {1000 * cpu / frames_n:6.2f} ms/frame  TP {tot[0]:3d}  miss {tot[1]:3d}  FP(transitions) {tot[2]:3d}"
          f"  FP(continuous) {fp_cont:3d}\n    {kinds}\n    FP in continuous: {', '.join(fp_list) or '-'}",
          flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=None, help="use only the first N ordered video pairs (of 30)")
    ap.add_argument("--no-scenedetect", action="store_true")
    args = ap.parse_args()
    synthetic, continuous = build_sets(args.pairs)
    print(f"{len(synthetic)} transitions, {len(continuous)} continuous shots "
          f"({sum(len(f) for _, f in continuous)} frames), 640x360 frames")
    evaluate("FrameSignalAccumulator", ours, synthetic, continuous)
    if args.no_scenedetect:
        return
    try:
        import scenedetect
        from scenedetect.detectors import (AdaptiveDetector, ContentDetector, HashDetector, HistogramDetector,
                                           ThresholdDetector)
    except ImportError as exc:
        print(f"PySceneDetect not importable ({exc}); see the module docstring")
        return
    print(f"PySceneDetect {scenedetect.__version__} (min_scene_len=5, other settings default)")
    detectors = {
        "ContentDetector": lambda: ContentDetector(min_scene_len=5),
        "AdaptiveDetector": lambda: AdaptiveDetector(min_scene_len=5),
        "ThresholdDetector": lambda: ThresholdDetector(min_scene_len=5),
        "HistogramDetector": lambda: HistogramDetector(min_scene_len=5),
        "HashDetector": lambda: HashDetector(min_scene_len=5),
    }
    for down in (1, 2):
        for name, make in detectors.items():
            evaluate(f"{name} /{down}", scenedetect_runner(make, down), synthetic, continuous)


if __name__ == "__main__":
    main()
