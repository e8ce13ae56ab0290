"""Cheap per-frame signals of a whole video, computed on a small grayscale thumbnail of every decoded frame.

- ``background_motion``: mean absolute grey-level change (0-1 scale) between a frame and the one before it,
  over the pixels outside the person boxes of both frames (boxes grown by a margin, since keypoint boxes miss
  hair, clothes and shadows). 0 for frame 0; NaN when the boxes cover (nearly) the whole image. A static camera
  gives values near the compression noise (~0.005); a pan or a shaking camera gives clearly more.
- ``shot_boundary``: True where a new shot starts. The score of frame t is the distance between the grey-level
  histograms of frames t-1 and t (a 2x2 grid of 16-bin histograms, half the L1 distance averaged over the
  cells, so 0 = same histograms, 1 = disjoint). A boundary is a score above both an absolute floor and a
  multiple of the median score of the recent frames, at least ``min_shot_frames`` after the previous boundary.
  Frame 0 is never a boundary. Motion inside a shot (a pan, a person moving) changes pixels but barely the
  histograms; a cut changes both.

Each update costs well under a millisecond for a 1080p frame: the thumbnail is built from a strided
sub-sample followed by a block average.
"""

from __future__ import annotations

import numpy as np

_GRAY = np.array([0.299, 0.587, 0.114], dtype=np.float32) / 255.0
_HIST_BINS = 16
_GRID = 2


def gray_thumbnail(rgb: np.ndarray, width_px: int = 64) -> tuple[np.ndarray, float]:
    """Small grey image of an RGB frame.

    rgb: (H, W, 3) uint8. Returns ``(thumb, px_per_thumb_px)``: thumb (h, w) float32 in [0, 1] with
    ``width_px <= w < 2 * width_px`` (``w = W`` for images narrower than ``width_px``; the height follows the
    aspect ratio; integer block sizes keep it cheap), and the size in source pixels of one
    thumbnail pixel (thumbnail pixel (i, j) covers source rows ``[i*s, (i+1)*s)``, columns ``[j*s, (j+1)*s)``).
    """
    h_src, w_src = rgb.shape[:2]
    width_px = max(1, min(width_px, w_src))
    step = max(1, w_src // (4 * width_px))  # strided sub-sample to ~4x the target, then average blocks
    sub = rgb[::step, ::step]
    block = max(1, sub.shape[1] // width_px)
    hh = max(1, sub.shape[0] // block)
    ww = sub.shape[1] // block
    sub = sub[: hh * block, : ww * block]
    gray = sub.astype(np.float32) @ _GRAY
    if block > 1:
        gray = gray.reshape(hh, block, ww, block).mean(axis=(1, 3))
    return gray.astype(np.float32, copy=False), float(step * block)


def _box_mask(shape_hw: tuple[int, int], boxes_xywh: np.ndarray | None, px_per_cell: float, margin: float):
    """(h, w) bool mask of thumbnail cells touched by the person boxes (source pixels), each box grown by
    ``margin`` times its size on every side."""
    mask = np.zeros(shape_hw, dtype=bool)
    if boxes_xywh is None:
        return mask
    boxes = np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)
    h, w = shape_hw
    for x, y, bw, bh in boxes:
        if not np.all(np.isfinite([x, y, bw, bh])):
            continue
        x0, x1 = x - margin * bw, x + bw + margin * bw
        y0, y1 = y - margin * bh, y + bh + margin * bh
        c0, c1 = int(np.floor(x0 / px_per_cell)), int(np.ceil(x1 / px_per_cell))
        r0, r1 = int(np.floor(y0 / px_per_cell)), int(np.ceil(y1 / px_per_cell))
        mask[max(r0, 0) : min(r1, h), max(c0, 0) : min(c1, w)] = True
    return mask


def _grid_histograms(gray: np.ndarray) -> np.ndarray:
    """(GRID*GRID, BINS) normalised grey-level histograms of the cells of a 2x2 grid."""
    h, w = gray.shape
    rows = (np.arange(h) * _GRID // max(h, 1))[:, None]
    cols = (np.arange(w) * _GRID // max(w, 1))[None, :]
    cell = rows * _GRID + cols
    q = np.minimum((gray * _HIST_BINS).astype(np.int64), _HIST_BINS - 1)
    counts = np.bincount((cell * _HIST_BINS + q).ravel(), minlength=_GRID * _GRID * _HIST_BINS)
    counts = counts.reshape(_GRID * _GRID, _HIST_BINS).astype(np.float64)
    return counts / np.maximum(counts.sum(-1, keepdims=True), 1.0)


class FrameSignalAccumulator:
    """Feed every decoded frame in order with :meth:`update`; read the per-frame arrays with :meth:`result`.

    thumb_width_px: thumbnail width. box_margin: fraction of a person box's size added on every side before
    masking. min_visible_fraction: below this fraction of unmasked thumbnail pixels, background_motion is NaN.
    shot_min_score: absolute floor of the histogram distance for a shot boundary (0-1).
    shot_median_ratio: the score must also exceed this multiple of the median score of the last
    ``shot_window`` frames. min_shot_frames: minimum frames between two boundaries (a flash is one boundary).
    """

    def __init__(
        self,
        *,
        thumb_width_px: int = 64,
        box_margin: float = 0.15,
        min_visible_fraction: float = 0.05,
        shot_min_score: float = 0.3,
        shot_median_ratio: float = 4.0,
        shot_window: int = 30,
        min_shot_frames: int = 5,
    ):
        self.thumb_width_px = thumb_width_px
        self.box_margin = box_margin
        self.min_visible_fraction = min_visible_fraction
        self.shot_min_score = shot_min_score
        self.shot_median_ratio = shot_median_ratio
        self.shot_window = shot_window
        self.min_shot_frames = min_shot_frames
        self._prev_gray: np.ndarray | None = None
        self._prev_mask: np.ndarray | None = None
        self._prev_hist: np.ndarray | None = None
        self._scores: list[float] = []
        self._motion: list[float] = []
        self._boundary: list[bool] = []
        self._last_boundary: int | None = None

    def update(self, rgb: np.ndarray, person_boxes_xywh_px: np.ndarray | None = None) -> None:
        """Add the next frame.

        rgb: (H, W, 3) uint8 frame. person_boxes_xywh_px: (K, 4) boxes (x, y, w, h) in pixels of ``rgb``
        (K may be 0), or None.
        """
        gray, px_per_cell = gray_thumbnail(rgb, self.thumb_width_px)
        mask = _box_mask(gray.shape, person_boxes_xywh_px, px_per_cell, self.box_margin)
        hist = _grid_histograms(gray)
        t = len(self._motion)
        if self._prev_gray is None:
            motion, score = 0.0, 0.0
        elif self._prev_gray.shape != gray.shape:  # the frame size changed mid-stream: a new shot
            motion, score = float("nan"), 1.0
        else:
            visible = ~(mask | self._prev_mask)
            if visible.mean() < self.min_visible_fraction:
                motion = float("nan")
            else:
                motion = float(np.abs(gray - self._prev_gray)[visible].mean())
            score = float(0.5 * np.abs(hist - self._prev_hist).sum(-1).mean())
        boundary = False
        if t > 0:
            recent = self._scores[max(1, t - self.shot_window) : t]
            floor = self.shot_min_score
            if recent:
                floor = max(floor, self.shot_median_ratio * float(np.median(recent)))
            boundary = score > floor and (
                self._last_boundary is None or t - self._last_boundary >= self.min_shot_frames
            )
            if boundary:
                self._last_boundary = t
        self._scores.append(score)
        self._motion.append(motion)
        self._boundary.append(boundary)
        self._prev_gray, self._prev_mask, self._prev_hist = gray, mask, hist

    @property
    def num_frames(self) -> int:
        return len(self._motion)

    @property
    def shot_scores(self) -> np.ndarray:
        """(N,) float32 histogram distance of each frame to the one before (0 for frame 0), for diagnostics."""
        return np.asarray(self._scores, dtype=np.float32)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``(shot_boundary (N,) bool, background_motion (N,) float32)`` for the frames seen so far."""
        return np.asarray(self._boundary, dtype=bool), np.asarray(self._motion, dtype=np.float32)
