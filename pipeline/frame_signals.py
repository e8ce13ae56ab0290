"""Cheap per-frame signals of a whole video, computed on small thumbnails of every decoded frame.

- ``background_motion``: mean absolute grey-level change (0-1 scale) between a frame and the one before it,
  over the pixels outside the person boxes of both frames (boxes grown by a margin, since keypoint boxes miss
  hair, clothes and shadows). 0 for frame 0; NaN when the boxes cover (nearly) the whole image. A static camera
  gives values near the compression noise (~0.005); a pan or a shaking camera gives clearly more.
- ``shot_boundary``: True where a new shot starts (frame 0 never is). Three kinds of shot change are found, and
  boundaries closer than ``min_shot_frames`` are merged (a flash is one boundary):

  * **hard cut**: the distance between the grey-level histograms of frames t-1 and t (a 2x2 grid of 16-bin
    histograms, half the L1 distance averaged over the cells, 0 = same, 1 = disjoint) is above both an absolute
    floor and a multiple of the median score of the recent frames. Motion inside a shot (a pan, a person
    moving) changes pixels but barely the histograms; a cut changes both.
  * **fade through black (or white, or any flat colour)**: a run of flat frames (grey-level standard deviation
    of the thumbnail below ``flat_std``) with content before and after it; the boundary is placed at the
    **middle of the flat run** (where the fade crosses black). A run whose content before and after is the same
    picture (correlation >= ``fade_same_corr``: a blackout or a flash inside one shot) is no boundary.
  * **cross-dissolve**: a frame that is a linear blend of the frames ``k`` before and after it, where those two
    differ like two shots. Each frame is reduced to a 16-column grid of mean RGB colours (block means are
    linear under blending, and coarse enough that motion inside a shot barely shows), made zero-mean and unit
    norm. For each centre frame c and half-window k in ``dissolve_half_windows`` (4, 8, 12 frames: dissolves of
    ~0.3-2 s) every frame j in [c-k, c+k] is fitted as ``a_j X + b_j Y`` (X, Y = frames c-k, c+k). The centre is
    a dissolve frame when: the endpoints differ (1 - corr(X, Y) > ``dissolve_min_dist``); the frames between
    are explained by the blend (mean residual < ``dissolve_max_residual`` times that distance: a pan or a
    person moving is not a blend of its endpoints); both weights of the centre are > ``dissolve_min_weight``
    (it is a mix, not one of the two pictures as at a cut); and most of the image changed (the fraction of grid
    cells whose colour moved by > 0.1 is > ``dissolve_min_changed``: a person moving close to a static camera
    changes only part of it); the blend keeps the brightness scale of its endpoints (weights on the zero-mean,
    unnormalised grids sum to <= ``dissolve_max_weight_sum``; a picture shifted by a fast pan over soft content
    keeps its full contrast and needs a larger sum); and the centre is a blend on the finer grey thumbnail too
    (residual < ``dissolve_max_fine_residual``: a shift blends neighbouring block means but not fine detail).
    A lighting change scales the picture, which the normalisation removes. The
    boundary is the middle of a run of consecutive dissolve frames; cuts found inside a dissolve are dropped.
    Measured on transitions made from six real videos (tests/shot_factory.py, bench/bench_shots.py).

Cost: ~1 ms CPU per 640x360 frame (bench/bench_shots.py) (thumbnails are built from strided sub-samples followed by
block averages; the dissolve test works on 16x9x3 vectors). Memory: a ring of ``2 * max(k) + 1`` small vectors;
the per-frame state kept for :meth:`FrameSignalAccumulator.result` is a few scalars.
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


def color_grid(rgb: np.ndarray, cols: int = 16) -> np.ndarray:
    """(rows, cols, 3) float32 mean RGB colours (0-1) of a grid of square blocks covering an RGB frame.

    The block side is ``W // cols`` source pixels (rows follow the aspect ratio; a remainder at the right and
    bottom is left out); each block is averaged over a strided sub-sample of ~4x4 pixels per block side.
    """
    h_src, w_src = rgb.shape[:2]
    cols = max(1, min(cols, w_src))
    block = max(1, w_src // cols)
    rows = max(1, h_src // block)
    step = max(1, block // 4)
    per = block // step  # sub-sampled pixels per block side
    sub = rgb[: rows * block : step, : cols * block : step][: rows * per, : cols * per]
    grid = sub.reshape(rows, per, cols, per, 3).mean(axis=(1, 3), dtype=np.float32)
    return grid / np.float32(255.0)


class FrameSignalAccumulator:
    """Feed every decoded frame in order with :meth:`update`; read the per-frame arrays with :meth:`result`.

    thumb_width_px: grey thumbnail width. box_margin: fraction of a person box's size added on every side before
    masking. min_visible_fraction: below this fraction of unmasked thumbnail pixels, background_motion is NaN.
    shot_min_score: absolute floor of the histogram distance for a hard cut (0-1).
    shot_median_ratio: the score must also exceed this multiple of the median score of the last
    ``shot_window`` frames. min_shot_frames: minimum frames between two boundaries (a flash is one boundary).
    flat_std: a frame whose grey thumbnail has a standard deviation below this (0-1 grey levels) is flat (the
    black, white or grey frames of a fade); fade_same_corr: see the module docstring.
    dissolve_*: the cross-dissolve test (module docstring); ``dissolve_half_windows=()`` turns it off.
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
        cut_min_change: float = 0.2,
        flat_std: float = 0.02,
        fade_same_corr: float = 0.8,
        grid_cols: int = 16,
        dissolve_half_windows: tuple[int, ...] = (4, 8, 12),
        dissolve_min_dist: float = 0.5,
        dissolve_max_residual: float = 0.25,
        dissolve_min_weight: float = 0.3,
        dissolve_min_changed: float = 0.5,
        dissolve_max_fine_residual: float = 0.75,
        dissolve_max_weight_sum: float = 1.09,
    ):
        self.thumb_width_px = thumb_width_px
        self.box_margin = box_margin
        self.min_visible_fraction = min_visible_fraction
        self.shot_min_score = shot_min_score
        self.shot_median_ratio = shot_median_ratio
        self.shot_window = shot_window
        self.min_shot_frames = min_shot_frames
        self.cut_min_change = cut_min_change
        self.flat_std = flat_std
        self.fade_same_corr = fade_same_corr
        self.grid_cols = grid_cols
        self.dissolve_half_windows = tuple(sorted(int(k) for k in dissolve_half_windows if k >= 1))
        self.dissolve_min_dist = dissolve_min_dist
        self.dissolve_max_residual = dissolve_max_residual
        self.dissolve_min_weight = dissolve_min_weight
        self.dissolve_min_changed = dissolve_min_changed
        self.dissolve_max_fine_residual = dissolve_max_fine_residual
        self.dissolve_max_weight_sum = dissolve_max_weight_sum
        self._prev_gray: np.ndarray | None = None
        self._prev_mask: np.ndarray | None = None
        self._prev_hist: np.ndarray | None = None
        self._scores: list[float] = []
        self._motion: list[float] = []
        self._cut: list[bool] = []
        self._dissolve: list[bool] = []
        self._mix: list[float] = []  # |weight of the later picture - 0.5| at dissolve frames (1 elsewhere)
        # ring of the last 2*max(k)+1 frames' (raw colour grid, normalised grid); None for a flat frame
        self._ring: list[tuple[np.ndarray, np.ndarray | None]] = []
        self._ring_start = 0  # frame index of self._ring[0]
        # fades: flat runs [start, end) whose surroundings differ
        self._fades: list[tuple[int, int]] = []
        self._flat_start: int | None = None
        self._flat_end: int | None = None  # a run [_flat_end_start, _flat_end) that ended, waiting for contrast
        self._flat_end_start = 0
        self._pre_flat: np.ndarray | None = None  # normalised grid of the last contrasted frame before the run
        self._last_contrast: np.ndarray | None = None

    # -- per frame ------------------------------------------------------------------------------------------

    def update(self, rgb: np.ndarray, person_boxes_xywh_px: np.ndarray | None = None) -> None:
        """Add the next frame.

        rgb: (H, W, 3) uint8 frame. person_boxes_xywh_px: (K, 4) boxes (x, y, w, h) in pixels of ``rgb``
        (K may be 0), or None.
        """
        gray, px_per_cell = gray_thumbnail(rgb, self.thumb_width_px)
        mask = _box_mask(gray.shape, person_boxes_xywh_px, px_per_cell, self.box_margin)
        hist = _grid_histograms(gray)
        t = len(self._motion)
        resized = self._prev_gray is not None and self._prev_gray.shape != gray.shape
        if self._prev_gray is None:
            motion, score = 0.0, 0.0
        elif resized:  # the frame size changed mid-stream: a new shot
            motion, score = float("nan"), 1.0
        else:
            visible = ~(mask | self._prev_mask)
            if visible.mean() < self.min_visible_fraction:
                motion = float("nan")
            else:
                motion = float(np.abs(gray - self._prev_gray)[visible].mean())
            score = float(0.5 * np.abs(hist - self._prev_hist).sum(-1).mean())
        raw = color_grid(rgb, self.grid_cols).ravel().astype(np.float64)
        std = float(gray.std())
        flat = std < self.flat_std
        z = None
        if not flat:
            z = raw - raw.mean()
            z /= max(float(np.linalg.norm(z)), 1e-12)
        cut = False
        if t > 0:
            recent = self._scores[max(1, t - self.shot_window) : t]
            floor = self.shot_min_score
            if recent:
                floor = max(floor, self.shot_median_ratio * float(np.median(recent)))
            cut = score > floor
            if cut and not resized:  # the picture itself must change, not only its brightness (fade, flicker)
                prev_z = self._ring[-1][1] if self._ring else None  # (raw, z, fine)
                cut = z is not None and prev_z is not None and 1.0 - float(z @ prev_z) > self.cut_min_change
        self._scores.append(score)
        self._motion.append(motion)
        self._cut.append(cut)
        self._dissolve.append(False)
        self._mix.append(1.0)
        self._prev_gray, self._prev_mask, self._prev_hist = gray, mask, hist

        if resized:  # windows must not mix frame sizes
            self._ring, self._ring_start = [], t
        self._track_fades(t, flat, z if std >= 2 * self.flat_std else None)
        fine = None
        if z is not None:
            fine = gray.ravel().astype(np.float64)
            fine -= fine.mean()
            fine /= max(float(np.linalg.norm(fine)), 1e-12)
        self._ring.append((raw, z, fine))
        if len(self._ring) > 2 * max(self.dissolve_half_windows, default=0) + 1:
            self._ring.pop(0)
            self._ring_start += 1
        for k in self.dissolve_half_windows:
            c = t - k
            if c - k >= self._ring_start:
                mix = self._dissolve_mix(c, k)
                if mix is not None:
                    self._dissolve[c] = True
                    self._mix[c] = min(self._mix[c], abs(mix - 0.5))

    def _track_fades(self, t: int, flat: bool, contrast_z: np.ndarray | None) -> None:
        """Follow runs of flat frames; a run with different pictures around it becomes a fade."""
        if flat:
            if self._flat_start is None:
                if self._flat_end is None:  # a new run (not a short flicker back inside a pending one)
                    self._pre_flat = self._last_contrast
                    self._flat_start = t
                else:
                    self._flat_start, self._flat_end = self._flat_end_start, None
            return
        if self._flat_start is not None:  # a run just ended
            self._flat_end_start, self._flat_end = self._flat_start, t
            self._flat_start = None
        if contrast_z is not None:
            if self._flat_end is not None:
                if self._pre_flat is not None and float(self._pre_flat @ contrast_z) < self.fade_same_corr:
                    self._fades.append((self._flat_end_start, self._flat_end))
                self._flat_end = None
            self._last_contrast = contrast_z

    def _dissolve_mix(self, c: int, k: int) -> float | None:
        """If frame c is a blend ``a X + b Y`` of frames X = c-k and Y = c+k that differ like two shots (module
        docstring), the weight ``b / (a + b)`` of the later picture; else None."""
        win = self._ring[c - k - self._ring_start : c + k + 1 - self._ring_start]
        zs = [z for _, z, _ in win]
        if any(z is None for z in zs):
            return None
        x, y = zs[0], zs[-1]
        xy = float(x @ y)
        dist = 1.0 - xy
        if dist <= self.dissolve_min_dist:
            return None
        changed = float((np.abs(win[-1][0] - win[0][0]) > 0.1).mean())
        if changed <= self.dissolve_min_changed:
            return None
        w = np.stack(zs[1:-1])  # (2k-1, P)
        rhs = w @ np.stack([x, y], axis=1)  # (2k-1, 2)
        gram = np.array([[1.0, xy], [xy, 1.0]])
        ab = np.linalg.solve(gram, rhs.T).T
        residual = 1.0 - (ab * rhs).sum(axis=1)  # unit-norm frames: the unexplained fraction
        if float(residual.mean()) >= self.dissolve_max_residual * dist:
            return None
        a, b = ab[k - 1]
        if min(a, b) <= self.dissolve_min_weight:
            return None
        # a blend of the endpoints' pictures keeps their brightness scale: weights of an affine combination (the
        # zero-mean colour grids of a dissolve are a + b = 1); a picture shifted by a pan keeps its full contrast,
        # which two endpoints that differ can only reach with weights summing to more
        rx, rc, ry = (v - v.mean() for v in (win[0][0], win[k][0], win[-1][0]))
        rg = np.array([[rx @ rx, rx @ ry], [rx @ ry, ry @ ry]])
        rab = np.linalg.solve(rg + 1e-12 * np.eye(2), np.array([rc @ rx, rc @ ry]))
        self.last_sum = float(rab.sum())
        if self.last_sum > self.dissolve_max_weight_sum:
            return None
        # the centre must also be a blend at the grey thumbnail's finer scale, where a shifted picture is not
        fx, fc, fy = win[0][2], win[k][2], win[-1][2]
        fxy = float(fx @ fy)
        if 1.0 - fxy > 1e-6:
            frhs = np.array([fc @ fx, fc @ fy])
            fab = np.linalg.solve(np.array([[1.0, fxy], [fxy, 1.0]]), frhs)
            self.last_fine = 1.0 - float(fab @ frhs)
            if self.last_fine > self.dissolve_max_fine_residual:
                return None
        return float(b / (a + b))

    # -- results --------------------------------------------------------------------------------------------

    @property
    def num_frames(self) -> int:
        return len(self._motion)

    @property
    def shot_scores(self) -> np.ndarray:
        """(N,) float32 histogram distance of each frame to the one before (0 for frame 0), for diagnostics."""
        return np.asarray(self._scores, dtype=np.float32)

    def _events(self) -> list[tuple[int, int, int, int]]:
        """Shot changes as ``(priority, frame, lo, hi)``: fades (0), dissolves (1), cuts (2); [lo, hi] is the
        span of the transition, inside which no other boundary is kept."""
        n = len(self._motion)
        events = [(0, (s + e) // 2, s - 1, e) for s, e in self._fades]
        d = np.asarray(self._dissolve, dtype=bool)
        if d.any():
            edges = np.flatnonzero(np.diff(np.concatenate([[0], d.astype(np.int8), [0]])))
            kmax = max(self.dissolve_half_windows)
            mix = np.asarray(self._mix)
            for s, e in zip(edges[::2], edges[1::2]):  # runs [s, e): the frame most evenly mixed
                events.append((1, int(s + np.argmin(mix[s:e])), s - kmax, e - 1 + kmax))
        events += [(2, int(t), int(t), int(t)) for t in np.flatnonzero(self._cut)]
        return [ev for ev in events if 0 < ev[1] < n]

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``(shot_boundary (N,) bool, background_motion (N,) float32)`` for the frames seen so far.

        The dissolve test needs ``max(dissolve_half_windows)`` frames after a frame; a dissolve ending in the
        last frames of the stream is not reported.
        """
        n = len(self._motion)
        boundary = np.zeros(n, dtype=bool)
        kept: list[tuple[int, int, int]] = []
        for _, t, lo, hi in sorted(self._events()):
            if any(klo <= t <= khi or abs(t - kt) < self.min_shot_frames for kt, klo, khi in kept):
                continue
            kept.append((t, lo, hi))
            boundary[t] = True
        return boundary, np.asarray(self._motion, dtype=np.float32)
