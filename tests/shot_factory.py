"""Shot transitions made in code from real footage: hard cuts, fades through black and cross-dissolves.

Frames of two real videos are decoded at long side 640 px (the pipeline's working size), cropped to 16:9 about
their centre and resized to 640x360 so that any two can be blended. Both shots keep playing during a transition,
as in an edited video (a dissolve mixes the outgoing shot's frames t with the incoming shot's frames t).

Each builder returns ``(frames, (lo, hi))``: the list of (360, 640, 3) uint8 RGB frames and the inclusive range of
frame indices where the one boundary of the transition may be reported:

- cut: the first frame of the new shot, +-2 frames.
- fade out / fade in through black: the middle of the black frames (where the fade crosses black), +-2 frames.
- dissolve of L frames: any frame of the dissolve (its blended frames).

Used by tests/test_frame_signals.py and bench/bench_shots.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from video_factory import decode_rgb

SIZE_WH = (640, 360)
VIDEOS_DIR = Path(__file__).resolve().parents[2] / "shared" / "videos"
#: Real continuous shots (no shot change inside): name -> what a detector must not mistake for a shot change.
CONTINUOUS = {
    "phalp_runner.mp4": "static camera, a runner crossing",
    "gvhmr_tennis.mp4": "static camera, a tennis player close to it",
    "dance.mp4": "static camera, a dancer moving fast close to it",
    "moving_cam_hike.mp4": "a camera following a hiker (pan)",
    "moving_cam_cafe.mp4": "a hand-held camera walking through a cafe",
    "multi_four_children.mp4": "static camera, low resolution MPEG-4 (compression noise)",
}


def fit_frame(rgb: np.ndarray, size_wh: tuple[int, int] = SIZE_WH) -> np.ndarray:
    """Crop an RGB frame about its centre to the aspect of ``size_wh`` and resize it to that size."""
    import cv2

    w_out, h_out = size_wh
    h, w = rgb.shape[:2]
    if w * h_out > h * w_out:  # too wide: crop columns
        cw = max(1, round(h * w_out / h_out))
        x0 = (w - cw) // 2
        rgb = rgb[:, x0 : x0 + cw]
    else:
        ch = max(1, round(w * h_out / w_out))
        y0 = (h - ch) // 2
        rgb = rgb[y0 : y0 + ch]
    interp = cv2.INTER_AREA if rgb.shape[1] > w_out else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(rgb, size_wh, interpolation=interp))


def load_frames(path: str | Path, num: int | None = None, start: int = 0, fit: bool = True) -> list[np.ndarray]:
    """Frames ``start .. start+num-1`` of a video decoded at long side 640 px (``fit``: made 640x360)."""
    frames = decode_rgb(path, num, start, max_side_px=640)
    return [fit_frame(f) for f in frames] if fit else frames


def _blend(a: np.ndarray, b: np.ndarray, alpha: float) -> np.ndarray:
    """``(1 - alpha) * a + alpha * b`` rounded to uint8."""
    return np.clip((1.0 - alpha) * a.astype(np.float32) + alpha * b.astype(np.float32) + 0.5, 0, 255).astype(np.uint8)


def cut(a: list[np.ndarray], b: list[np.ndarray], n_a: int) -> tuple[list[np.ndarray], tuple[int, int]]:
    """``a[:n_a]`` then ``b``: boundary at ``n_a``."""
    return list(a[:n_a]) + list(b), (n_a - 2, n_a + 2)


def fade_through(
    a: list[np.ndarray], b: list[np.ndarray], n_a: int, out_len: int = 10, hold: int = 3, in_len: int = 10,
    level: int = 0,
) -> tuple[list[np.ndarray], tuple[int, int]]:
    """``a[:n_a]``, then ``a`` fading to a flat ``level`` grey (0 = black) over ``out_len`` frames, ``hold`` flat
    frames, ``b`` fading in over ``in_len`` frames, then the rest of ``b``. Boundary: the middle of the flat frames."""
    flat = np.full_like(a[0], level)
    frames = list(a[:n_a])
    for j in range(out_len):  # a keeps playing while it fades
        frames.append(_blend(a[n_a + j], flat, (j + 1) / (out_len + 1)))
    mid = len(frames) + hold // 2
    frames += [flat.copy() for _ in range(hold)]
    for j in range(in_len):
        frames.append(_blend(flat, b[j], (j + 1) / (in_len + 1)))
    frames += list(b[in_len:])
    return frames, (mid - 2, mid + 2)


def dissolve(
    a: list[np.ndarray], b: list[np.ndarray], n_a: int, length: int
) -> tuple[list[np.ndarray], tuple[int, int]]:
    """``a[:n_a]``, ``length`` frames blending ``a[n_a + j]`` into ``b[j]`` linearly, then ``b[length:]``.
    Boundary: any blended frame."""
    frames = list(a[:n_a])
    for j in range(length):
        frames.append(_blend(a[n_a + j], b[j], (j + 1) / (length + 1)))
    frames += list(b[length:])
    return frames, (n_a, n_a + length - 1)


def transitions(a: list[np.ndarray], b: list[np.ndarray], n_a: int) -> dict[str, tuple[list, tuple[int, int]]]:
    """The standard set between two shots: cut, fade through black, dissolves of 8, 15 and 30 frames.
    ``a`` needs ``n_a + 30`` frames; ``b`` as many frames as the new shot should last."""
    return {
        "cut": cut(a, b, n_a),
        "fade": fade_through(a, b, n_a),
        "dissolve8": dissolve(a, b, n_a, 8),
        "dissolve15": dissolve(a, b, n_a, 15),
        "dissolve30": dissolve(a, b, n_a, 30),
    }


def score_detections(boundaries, window: tuple[int, int]) -> tuple[int, int, int]:
    """``(true_positives, misses, false_positives)`` of boundary frame indices against one expected window:
    one boundary inside the window is a hit; any other boundary is a false positive."""
    idx = np.flatnonzero(np.asarray(boundaries)) if np.asarray(boundaries).dtype == bool else np.asarray(boundaries)
    inside = [i for i in idx if window[0] <= i <= window[1]]
    tp = 1 if inside else 0
    return tp, 1 - tp, len(idx) - tp
