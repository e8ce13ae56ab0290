"""Camera motion from the background of a video: per-frame rotation, translation evidence, a static-camera score.

Independent of the pose backend: feed every decoded frame with :meth:`CameraMotionAccumulator.update` (the same
call pattern as :class:`pipeline.frame_signals.FrameSignalAccumulator`: an RGB frame and the person boxes in
pixels of that frame), then read a :class:`CameraMotion` with :meth:`CameraMotionAccumulator.result`.

Frames and units
- Camera frame: OpenCV, x right, y down, z forward (see :mod:`pipeline.motion`). Image pixels x right, y down.
- Intrinsics ``K = [[f, 0, cx], [0, f, cy], [0, 0, 1]]`` of the frames passed to ``update`` (``focal_px`` and
  ``principal_px`` are in pixels of those frames; with ``px_per_frame_px = s`` they may be given in another
  pixel unit, e.g. full-resolution source pixels with ``s = source_width / frame_width``; the default focal is
  :func:`pipeline.camera.default_focal_px` of the frame, the image diagonal, which equals the source default
  scaled to the frame, so the default needs no scale).
- ``R_prev_from_cur[t]`` (3x3) maps a direction expressed in the camera frame of frame t to the camera frame of
  frame t-1: ``b_prev = R b_cur``. For a camera that only rotates, pixels of frame t map to frame t-1 by the
  homography ``x_prev ~ K R K^-1 x_cur``. ``R_cam0_from_cam[t] = R_prev_from_cur[1] ... R_prev_from_cur[t]`` is
  the orientation of camera t relative to camera 0 (its columns are camera t's axes in camera-0 coordinates);
  ``R_cam0_from_cam[t] @ p_cam_t`` re-expresses a point/direction of frame t in frame 0's axes, which is how a
  later stage undoes the camera rotation.
- Per-frame angles (degrees) are the components of the rotation vector of ``R_prev_from_cur`` (exact to second
  order at per-frame angles): ``pan`` about camera y (> 0: the camera turns right, the scene slides left),
  ``tilt`` about camera x (> 0: the camera tilts up, the scene slides down), ``roll`` about camera z (> 0: the
  camera's x axis turns towards its y axis, i.e. the camera rolls clockwise seen from behind it, the image
  content turns counter-clockwise). Cumulative angles use ``R_cam0_from_cam = Ry(pan) Rx(tilt) Rz(roll)``.

Method, per frame pair (t-1, t)
1. Grey image at a working size (long side ``work_long_side_px``, default 320 px: ``cv2.pyrDown`` halvings,
   then a bilinear resize for a remaining factor below 2; 640 px frames take one halving).
2. Corner features (Shi-Tomasi, ``cv2.goodFeaturesToTrack``) outside the person boxes grown by ``box_margin`` of
   their size on every side, re-detected (away from the points still tracked) when fewer than
   ``redetect_fraction * max_features`` survive.
3. Pyramidal Lucas-Kanade tracking t-1 -> t and back t -> t-1 (``cv2.calcOpticalFlowPyrLK``); a track is kept
   when both succeed, the round trip returns within ``fb_max_px`` working pixels, and neither end lies inside a
   (grown) person box of its frame.
4. Rotation-only fit on unit bearing rays ``b = normalise(K^-1 [x, y, 1])``: RANSAC over minimal 2-point
   samples (orthogonal Procrustes / Kabsch: ``R = V diag(1, 1, det(V U^T)) U^T`` with
   ``U S V^T = sum b_cur b_prev^T``, which is a proper rotation), all hypotheses scored at once (vectorised);
   the residual of a track is the reprojection error ``f |b_prev - R b_cur|`` (pixels at the working size, the
   chord approximates the angle); inliers are within ``inlier_px``; the best hypothesis is refined by Kabsch on
   its inliers (twice).
5. Translation evidence: ``parallax_px[t]``, the ``parallax_quantile`` (default 0.75) quantile of the residuals
   of all kept background tracks after removing the rotation, converted to pixels of the frames passed. A camera
   that only rotates (tripod pan, tilt, zoom-free) leaves only tracking noise (~0.03-0.15 px); a camera that
   translates in a scene with depth leaves parallax (the rotation can absorb the flow of one depth layer, not
   of several). The quantile ignores up to ~25 % of tracks on independently moving things that no person box
   covers, at the cost of missing parallax carried by fewer than ~25 % of the tracks.
   ``rotation_explained[t]`` is the fraction of kept tracks within ``inlier_px`` of the rotation model. Where
   the parallax is significant (> ``translation_min_px`` working px) an essential matrix
   (``cv2.findEssentialMat`` + ``cv2.recoverPose`` on normalised coordinates) gives ``translation_dir[t]``:
   the unit direction of the camera's displacement from t-1 to t in camera t-1 axes (NaN elsewhere).

What it cannot recover
- Translation magnitude (scale) at all, and translation direction only where the scene has depth variation.
- Sideways translation in front of a single plane (or a scene at one depth) is indistinguishable from a pan:
  it is reported as rotation with no parallax. With translation and depth, ``R`` is the rotation that best
  aligns the dominant depth layer (the true rotation plus the pseudo-rotation of that layer's translation flow);
  only the far background (at infinity) gives the true rotation.
- Pure forward/backward motion looks like a zoom: radial flow, not explained by rotation, counted as parallax.
  A real zoom (changing focal length) is also reported as parallax.
- Scenes dominated by people or moving objects outside the boxes (crowds, traffic, water, flicker), textureless
  backgrounds (sky, white walls), heavy motion blur: too few or inconsistent tracks; frames are then ``valid =
  False`` with the rotation held (identity step) and NaN parallax.
- Static overlays (logos, captions, burnt-in labels) outside the boxes are tracked as zero-motion background;
  they are outvoted while the real background has more tracks, not when they dominate.
- Rolling-shutter skew and lens distortion are not modelled (they show up as small extra parallax).
- The focal length is an assumption (default: the image diagonal); a wrong focal scales the recovered angles
  roughly in proportion for small rotations (the image shift ``f tan(angle)`` is what is measured).

Cost: ~2.5 ms CPU per frame for 640 px frames (one core; ~4-5 ms in frames with strong parallax, where the
essential matrix is fitted); see ``bench/bench_camera_motion.py``.

Typical use in a backend's frame loop (boxes in pixels of ``rgb``, like
:class:`pipeline.frame_signals.FrameSignalAccumulator`)::

    cam = CameraMotionAccumulator(fps=frames.average_fps)   # default focal: diagonal of the frames passed
    for fr in frames:
        ...
        cam.update(fr.rgb, boxes_xywh_or_None, time_s=fr.time_s)
        if shot_boundary_here:
            cam.reset()                                      # optional: do not chain across a cut
    motion = cam.result()   # CameraMotion: R_cam0_from_cam, parallax_px, valid, static_camera_score(), ...
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from pipeline.camera import default_focal_px

_EPS = 1e-12


def _cv2():
    import cv2

    return cv2


# --- rotation helpers --------------------------------------------------------------------------------------


def kabsch_rotation(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Proper rotation ``R`` minimising ``sum w |dst_i - R src_i|^2`` (orthogonal Procrustes without scaling).

    src, dst: (..., P, 3) unit rays (or any vectors; no centring is done: rays share the origin).
    weights: (..., P) >= 0 or None. Returns (..., 3, 3) with det = +1.
    """
    s = np.asarray(src, dtype=np.float64)
    d = np.asarray(dst, dtype=np.float64)
    if weights is not None:
        s = s * np.asarray(weights, dtype=np.float64)[..., None]
    H = np.swapaxes(s, -1, -2) @ d  # sum src dst^T
    U, _S, Vt = np.linalg.svd(H)
    V = np.swapaxes(Vt, -1, -2)
    Ut = np.swapaxes(U, -1, -2)
    det = np.linalg.det(V @ Ut)
    D = np.zeros(det.shape + (3, 3))
    D[..., 0, 0] = 1.0
    D[..., 1, 1] = 1.0
    D[..., 2, 2] = np.sign(det) + (det == 0)
    return V @ D @ Ut


def rotvec_from_matrix(R: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 3) rotation vectors (axis * angle, radians)."""
    R = np.asarray(R, dtype=np.float64)
    tr = np.clip((np.trace(R, axis1=-2, axis2=-1) - 1.0) / 2.0, -1.0, 1.0)
    angle = np.arccos(tr)
    w = np.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1)
    s = np.sin(angle)
    small = s < 1e-6
    factor = np.where(small, 0.5, angle / (2.0 * np.where(small, 1.0, s)))
    out = w * factor[..., None]
    # near 180 deg: axis from the diagonal (not expected for per-frame steps, handled for completeness)
    big = angle > np.pi - 1e-3
    if np.any(big):
        for idx in zip(*np.nonzero(np.atleast_1d(big))) if R.ndim > 2 else [()]:
            M = R[idx] if idx else R
            axis = np.sqrt(np.clip((np.diag(M) + 1.0) / 2.0, 0.0, None))
            k = int(np.argmax(axis))
            axis = (M[:, k] + np.eye(3)[k]) / np.maximum(np.linalg.norm(M[:, k] + np.eye(3)[k]), _EPS)
            if idx:
                out[idx] = axis * np.arccos(np.clip((np.trace(M) - 1) / 2, -1, 1))
            else:
                out = axis * np.arccos(np.clip((np.trace(M) - 1) / 2, -1, 1))
    return out


def rotation_angle_deg(R: np.ndarray) -> np.ndarray:
    """Angle in degrees of (..., 3, 3) rotations."""
    tr = np.clip((np.trace(np.asarray(R), axis1=-2, axis2=-1) - 1.0) / 2.0, -1.0, 1.0)
    return np.degrees(np.arccos(tr))


def matrix_from_pan_tilt_roll(pan_deg: float, tilt_deg: float, roll_deg: float) -> np.ndarray:
    """``Ry(pan) Rx(tilt) Rz(roll)`` (OpenCV camera axes; signs as in the module docstring)."""
    p, t, r = np.radians([pan_deg, tilt_deg, roll_deg])
    Ry = np.array([[np.cos(p), 0, np.sin(p)], [0, 1, 0], [-np.sin(p), 0, np.cos(p)]])
    Rx = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
    Rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return Ry @ Rx @ Rz


def pan_tilt_roll_from_matrix(R: np.ndarray) -> np.ndarray:
    """Inverse of :func:`matrix_from_pan_tilt_roll`: (..., 3, 3) -> (..., 3) degrees (pan, tilt, roll)."""
    R = np.asarray(R, dtype=np.float64)
    # R = Ry Rx Rz: row 1 = (cos t sin r, cos t cos r, -sin t); column 2 = (sin p cos t, -sin t, cos p cos t)
    tilt = -np.arcsin(np.clip(R[..., 1, 2], -1.0, 1.0))
    pan = np.arctan2(R[..., 0, 2], R[..., 2, 2])
    roll = np.arctan2(R[..., 1, 0], R[..., 1, 1])
    return np.degrees(np.stack([pan, tilt, roll], -1))


# --- result ------------------------------------------------------------------------------------------------


@dataclass
class CameraMotion:
    """Per-frame camera motion of N frames (frame 0 is the reference; its step is the identity).

    time_s: (N,) presentation times (seconds).
    R_prev_from_cur: (N, 3, 3) rotation from camera t to camera t-1 (identity at 0 and at invalid frames).
    R_cam0_from_cam: (N, 3, 3) orientation of camera t relative to camera 0 (product of the steps).
    pan_deg, tilt_deg, roll_deg: (N,) per-frame rotation angles of ``R_prev_from_cur`` (degrees; signs in the
        module docstring).
    parallax_px: (N,) residual image motion after removing the rotation (translation evidence), pixels of the
        frames passed; NaN where not valid.
    rotation_explained: (N,) fraction of the background tracks explained by the rotation (within the inlier
        threshold); NaN where not valid.
    translation_dir: (N, 3) unit direction of the camera's displacement t-1 -> t in camera t-1 axes where the
        parallax is significant, else NaN (no magnitude: see the module docstring).
    num_tracks: (N,) background tracks used; num_inliers: (N,) rotation inliers.
    valid: (N,) bool, enough background tracks and inliers for a fit (False at frame 0 and after a reset).
    image_size_hw: (H, W) of the frames passed; focal_px: the focal length used, pixels of those frames.
    work_ms: mean time per update (milliseconds), for diagnostics.
    """

    time_s: np.ndarray
    R_prev_from_cur: np.ndarray
    R_cam0_from_cam: np.ndarray
    pan_deg: np.ndarray
    tilt_deg: np.ndarray
    roll_deg: np.ndarray
    parallax_px: np.ndarray
    rotation_explained: np.ndarray
    translation_dir: np.ndarray
    num_tracks: np.ndarray
    num_inliers: np.ndarray
    valid: np.ndarray
    image_size_hw: tuple[int, int]
    focal_px: float
    work_ms: float = 0.0
    params: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return len(self.time_s)

    @property
    def image_diag_px(self) -> float:
        return float(np.hypot(*self.image_size_hw)) if self.image_size_hw[0] else float("nan")

    @property
    def step_angle_deg(self) -> np.ndarray:
        """(N,) rotation angle of each step (degrees)."""
        return rotation_angle_deg(self.R_prev_from_cur)

    def frame_dt_s(self) -> np.ndarray:
        """(N,) seconds between frame t-1 and t (NaN at 0; a non-positive gap becomes the median gap)."""
        dt = np.full(self.num_frames, np.nan)
        if self.num_frames > 1:
            d = np.diff(self.time_s.astype(np.float64))
            good = d > 0
            med = float(np.median(d[good])) if good.any() else 1.0 / 30.0
            dt[1:] = np.where(good, d, med)
        return dt

    def rotation_speed_deg_s(self) -> np.ndarray:
        """(N,) rotation speed, degrees per second (NaN where not valid)."""
        return np.where(self.valid, self.step_angle_deg / self.frame_dt_s(), np.nan)

    def parallax_per_diag(self) -> np.ndarray:
        """(N,) parallax per frame divided by the image diagonal (dimensionless; NaN where not valid)."""
        return self.parallax_px / self.image_diag_px

    def cumulative_angles_deg(self) -> np.ndarray:
        """(N, 3) (pan, tilt, roll) of ``R_cam0_from_cam`` in degrees (``Ry(pan) Rx(tilt) Rz(roll)``)."""
        return pan_tilt_roll_from_matrix(self.R_cam0_from_cam)

    def total_rotation_deg(self) -> float:
        """Net rotation angle between the first and the last camera (degrees)."""
        return float(rotation_angle_deg(self.R_cam0_from_cam[-1])) if self.num_frames else 0.0

    def max_rotation_deg(self) -> float:
        """Largest angle between camera 0 and any later camera (degrees)."""
        return float(np.max(rotation_angle_deg(self.R_cam0_from_cam))) if self.num_frames else 0.0

    def rotation_path_deg(self) -> float:
        """Sum of the per-frame rotation angles (degrees): the path length, shake included."""
        return float(np.nansum(np.where(self.valid, self.step_angle_deg, 0.0)))

    def translation_fraction(self, min_parallax_per_diag: float = 0.002) -> float:
        """Fraction of valid frames whose parallax exceeds ``min_parallax_per_diag`` of the image diagonal per
        frame (default 0.2 %: ~1.5 px per frame at 640x360). NaN without valid frames."""
        p = self.parallax_per_diag()[self.valid]
        p = p[np.isfinite(p)]
        return float(np.mean(p > min_parallax_per_diag)) if len(p) else float("nan")

    def translating(self, min_parallax_per_diag: float = 0.002) -> np.ndarray:
        """(N,) bool: frames whose parallax exceeds ``min_parallax_per_diag`` of the image diagonal (the camera
        centre moved; see :meth:`translation_fraction`)."""
        with np.errstate(invalid="ignore"):
            return self.valid & (np.nan_to_num(self.parallax_per_diag(), nan=0.0) > min_parallax_per_diag)

    def window(self, start: int, stop: int) -> CameraMotion:
        """Frames ``[start, stop)`` as a motion of their own: orientations relative to frame ``start``, whose step
        (from a frame outside the window) becomes the identity and invalid."""
        sl = slice(start, stop)
        r0 = self.R_cam0_from_cam[start]
        steps = self.R_prev_from_cur[sl].copy()
        valid = self.valid[sl].copy()
        if len(steps):
            steps[0] = np.eye(3)
            valid[0] = False
        return replace(self, time_s=self.time_s[sl], R_prev_from_cur=steps,
                       R_cam0_from_cam=np.einsum("ba,tbc->tac", r0, self.R_cam0_from_cam[sl]),
                       pan_deg=self.pan_deg[sl], tilt_deg=self.tilt_deg[sl], roll_deg=self.roll_deg[sl],
                       parallax_px=self.parallax_px[sl], rotation_explained=self.rotation_explained[sl],
                       translation_dir=self.translation_dir[sl], num_tracks=self.num_tracks[sl],
                       num_inliers=self.num_inliers[sl], valid=valid)

    def valid_fraction(self) -> float:
        """Fraction of frame pairs (frames 1..N-1) with a valid fit."""
        return float(np.mean(self.valid[1:])) if self.num_frames > 1 else float("nan")

    def static_camera_score(
        self,
        *,
        rotation_ref_deg_s: float = 2.0,
        parallax_ref_per_diag: float = 0.002,
        net_rotation_ref_deg: float = 3.0,
    ) -> float:
        """How much the camera looks like it is on a tripod, in [0, 1] (1 = static; NaN without valid frames).

        ``score = exp(-((r / r0)^2 + (p / p0)^2 + (a / a0)^2))`` with
        r: mean rotation speed over the valid frames after dropping the fastest 10 % (deg/s; r0 = 2 deg/s),
        p: median parallax per frame over the valid frames divided by the image diagonal (p0 = 0.002, i.e.
        ~1.5 px per frame at 640x360),
        a: largest rotation away from the first camera over the video (degrees; a0 = 3 deg), which catches
        slow pans and drifts that the speed misses.
        The quadratic form leaves tracking and compression noise (r ~0.05 deg/s, p ~0.0001, a < 0.3 deg) at
        ~1 and falls fast beyond the references: a tripod scores >= 0.95, a hand-held camera that drifts ~1 deg
        ~0.9, a 1 deg/s pan over 3 s ~0.3, a 20 deg/s pan or a camera following a person ~0.
        """
        ok = self.valid.copy()
        if ok.sum() == 0:
            return float("nan")
        speed = self.rotation_speed_deg_s()[ok]
        speed = np.sort(speed[np.isfinite(speed)])
        r = float(np.mean(speed[: max(1, int(np.ceil(0.9 * len(speed))))])) if len(speed) else 0.0
        par = self.parallax_per_diag()[ok]
        par = par[np.isfinite(par)]
        p = float(np.median(par)) if len(par) else 0.0
        a = self.max_rotation_deg()
        x = (r / rotation_ref_deg_s) ** 2 + (p / parallax_ref_per_diag) ** 2 + (a / net_rotation_ref_deg) ** 2
        return float(np.exp(-x))

    def summary(self) -> dict:
        """Scalar summary (units in the names)."""
        cum = self.cumulative_angles_deg()
        speed = self.rotation_speed_deg_s()
        return {
            "frames": self.num_frames,
            "valid_fraction": self.valid_fraction(),
            "static_camera_score": self.static_camera_score(),
            "total_rotation_deg": self.total_rotation_deg(),
            "max_rotation_deg": self.max_rotation_deg(),
            "rotation_path_deg": self.rotation_path_deg(),
            "final_pan_deg": float(cum[-1, 0]) if self.num_frames else 0.0,
            "final_tilt_deg": float(cum[-1, 1]) if self.num_frames else 0.0,
            "final_roll_deg": float(cum[-1, 2]) if self.num_frames else 0.0,
            "median_rotation_speed_deg_s": float(np.nanmedian(speed)) if np.isfinite(speed).any() else float("nan"),
            "median_parallax_px": float(np.nanmedian(self.parallax_px)) if np.isfinite(self.parallax_px).any()
            else float("nan"),
            "translation_fraction": self.translation_fraction(),
            "median_tracks": float(np.median(self.num_tracks)) if self.num_frames else 0.0,
        }


# --- accumulator -------------------------------------------------------------------------------------------


class CameraMotionAccumulator:
    """Feed every decoded frame in order with :meth:`update`; read a :class:`CameraMotion` with :meth:`result`.

    focal_px: focal length, in pixels of the frames passed to ``update`` times ``px_per_frame_px``; None = the
        image diagonal of the frames (:func:`pipeline.camera.default_focal_px`).
    principal_px: (cx, cy) in the same unit, None = the image centre.
    px_per_frame_px: size of one pixel of the frames passed in the unit of ``focal_px``/``principal_px`` (e.g.
        ``source_hw[1] / rgb.shape[1]`` to give the source camera's focal length for downsized frames). Person
        boxes are always in pixels of the frames passed.
    fps: frame rate used for times when ``update`` gets no ``time_s`` (default 30).
    work_long_side_px: long side of the grey working image (frames are never enlarged).
    max_features: corners tracked at most; redetect_fraction: re-detect below this fraction of it.
    min_distance_px: minimum distance between corners (working pixels); quality_level: Shi-Tomasi quality.
    box_margin: fraction of a box's width/height added on every side before masking; box_pad_px: extra
        working pixels added on every side.
    fb_max_px: forward-backward round-trip error allowed (working pixels).
    inlier_px: rotation inlier threshold (working pixels); ransac_iters: 2-point hypotheses per frame.
    min_tracks: fewer kept tracks (or rotation inliers) than this -> frame not valid.
    parallax_quantile: quantile of the rotation residuals reported as parallax.
    translation_min_px: parallax (working pixels) above which the essential matrix is fitted.
    seed: RANSAC sampling seed (deterministic results).
    """

    def __init__(
        self,
        focal_px: float | None = None,
        principal_px=None,
        *,
        px_per_frame_px: float = 1.0,
        fps: float | None = None,
        work_long_side_px: int = 320,
        max_features: int = 200,
        redetect_fraction: float = 0.6,
        min_distance_px: float = 8.0,
        quality_level: float = 0.01,
        box_margin: float = 0.1,
        box_pad_px: float = 4.0,
        fb_max_px: float = 0.7,
        inlier_px: float = 1.0,
        ransac_iters: int = 64,
        min_tracks: int = 12,
        parallax_quantile: float = 0.75,
        translation_min_px: float = 1.0,
        lk_win_px: int = 11,
        lk_levels: int = 3,
        essential_max_points: int = 100,
        seed: int = 0,
    ):
        if focal_px is not None and not focal_px > 0:
            raise ValueError(f"focal_px must be > 0, got {focal_px}")
        if not px_per_frame_px > 0:
            raise ValueError(f"px_per_frame_px must be > 0, got {px_per_frame_px}")
        self.focal_px_arg = focal_px
        self.principal_px_arg = None if principal_px is None else np.asarray(principal_px, np.float64).reshape(2)
        self.px_per_frame_px = float(px_per_frame_px)
        self.fps = float(fps) if fps and fps > 0 else 30.0
        self.work_long_side_px = int(work_long_side_px)
        self.max_features = int(max_features)
        self.redetect_fraction = float(redetect_fraction)
        self.min_distance_px = float(min_distance_px)
        self.quality_level = float(quality_level)
        self.box_margin = float(box_margin)
        self.box_pad_px = float(box_pad_px)
        self.fb_max_px = float(fb_max_px)
        self.inlier_px = float(inlier_px)
        self.ransac_iters = int(ransac_iters)
        self.min_tracks = int(min_tracks)
        self.parallax_quantile = float(parallax_quantile)
        self.translation_min_px = float(translation_min_px)
        self.lk_win_px = int(lk_win_px)
        self.lk_levels = int(lk_levels)
        self.essential_max_points = int(essential_max_points)
        self._rng = np.random.default_rng(seed)
        self._frame_hw: tuple[int, int] | None = None
        self._work_scale = 1.0  # working px per frame px
        self._K_work: np.ndarray | None = None
        self._Kinv_work: np.ndarray | None = None
        self._focal_frame = float("nan")
        self._prev_gray: np.ndarray | None = None
        self._prev_mask: np.ndarray | None = None
        self._pts: np.ndarray = np.zeros((0, 2), np.float32)
        self._reset_pending = False
        # per-frame outputs
        self._times: list[float] = []
        self._R: list[np.ndarray] = []
        self._parallax: list[float] = []
        self._explained: list[float] = []
        self._tdir: list[np.ndarray] = []
        self._ntracks: list[int] = []
        self._ninl: list[int] = []
        self._valid: list[bool] = []
        self._work_s = 0.0

    # -- public --------------------------------------------------------------------------------------------

    @property
    def num_frames(self) -> int:
        return len(self._times)

    def reset(self) -> None:
        """Start over at the next frame (e.g. at a shot boundary): that frame pair is not valid, rotation held."""
        self._reset_pending = True

    def update(self, rgb: np.ndarray, person_boxes_xywh_px: np.ndarray | None = None, time_s: float | None = None
               ) -> None:
        """Add the next frame.

        rgb: (H, W, 3) uint8 RGB frame (a (H, W) grey frame is accepted too).
        person_boxes_xywh_px: (K, 4) boxes (x, y, w, h) in pixels of ``rgb`` (K may be 0), or None.
        time_s: presentation time (seconds); None = previous time + 1 / fps.
        """
        t0 = time.perf_counter()
        if time_s is None:
            time_s = self._times[-1] + 1.0 / self.fps if self._times else 0.0
        hw = tuple(int(v) for v in rgb.shape[:2])
        if self._frame_hw != hw:
            if self._frame_hw is not None:
                self._reset_pending = True
            self._setup(hw)
        gray = self._work_gray(rgb)
        mask = self._allowed_mask(gray.shape, person_boxes_xywh_px)

        R = np.eye(3)
        parallax = explained = float("nan")
        tdir = np.full(3, np.nan)
        ntracks = ninl = 0
        valid = False
        pts_keep = np.zeros((0, 2), np.float32)
        if self._prev_gray is not None and not self._reset_pending and len(self._pts) >= 4:
            p0, p1 = self._track(self._prev_gray, gray, self._pts)
            ok = self._inside(mask, p1) & self._inside(self._prev_mask, p0)
            p0, p1 = p0[ok], p1[ok]
            ntracks = len(p0)
            pts_keep = p1
            if ntracks >= self.min_tracks:
                fit = self._fit_rotation(p0, p1)
                if fit is not None:
                    R, resid, inl = fit
                    ninl = int(inl.sum())
                    if ninl >= self.min_tracks:
                        valid = True
                        q = float(np.quantile(resid, self.parallax_quantile))
                        parallax = q / self._work_scale
                        explained = float(inl.mean())
                        if q > self.translation_min_px and ntracks >= 16:
                            tdir = self._essential(p0, p1)[0]
                    else:
                        R = np.eye(3)
        self._reset_pending = False
        self._pts = self._replenish(gray, mask, pts_keep)
        self._prev_gray, self._prev_mask = gray, mask
        self._times.append(float(time_s))
        self._R.append(R)
        self._parallax.append(parallax)
        self._explained.append(explained)
        self._tdir.append(tdir)
        self._ntracks.append(ntracks)
        self._ninl.append(ninl)
        self._valid.append(valid)
        self._work_s += time.perf_counter() - t0

    def result(self) -> CameraMotion:
        """The :class:`CameraMotion` of the frames seen so far."""
        n = self.num_frames
        steps = np.asarray(self._R, dtype=np.float64).reshape(n, 3, 3)
        cum = np.empty_like(steps)
        acc = np.eye(3)
        for i in range(n):
            acc = acc @ steps[i]
            if i % 50 == 49:  # keep the product orthonormal
                u, _s, vt = np.linalg.svd(acc)
                acc = u @ vt
            cum[i] = acc
        rv = np.degrees(rotvec_from_matrix(steps)) if n else np.zeros((0, 3))
        return CameraMotion(
            time_s=np.asarray(self._times, dtype=np.float64),
            R_prev_from_cur=steps,
            R_cam0_from_cam=cum,
            pan_deg=rv[:, 1].astype(np.float64),
            tilt_deg=rv[:, 0].astype(np.float64),
            roll_deg=rv[:, 2].astype(np.float64),
            parallax_px=np.asarray(self._parallax, dtype=np.float64),
            rotation_explained=np.asarray(self._explained, dtype=np.float64),
            translation_dir=np.asarray(self._tdir, dtype=np.float64).reshape(n, 3),
            num_tracks=np.asarray(self._ntracks, dtype=np.int32),
            num_inliers=np.asarray(self._ninl, dtype=np.int32),
            valid=np.asarray(self._valid, dtype=bool),
            image_size_hw=self._frame_hw or (0, 0),
            focal_px=self._focal_frame,
            work_ms=1000.0 * self._work_s / max(n, 1),
            params={"work_long_side_px": self.work_long_side_px, "inlier_px": self.inlier_px,
                    "parallax_quantile": self.parallax_quantile},
        )

    # -- internals -----------------------------------------------------------------------------------------

    def _setup(self, hw: tuple[int, int]) -> None:
        h, w = hw
        self._frame_hw = hw
        s = min(1.0, self.work_long_side_px / max(h, w))
        ww, wh = max(1, int(round(w * s))), max(1, int(round(h * s)))
        self._work_size_wh = (ww, wh)
        self._work_scale = ww / w if s < 1.0 else 1.0
        sy = wh / h if s < 1.0 else 1.0
        if self.focal_px_arg is None:
            f_frame = default_focal_px(w, h)
        else:
            f_frame = self.focal_px_arg / self.px_per_frame_px
        c_frame = (np.array([w / 2.0, h / 2.0]) if self.principal_px_arg is None
                   else self.principal_px_arg / self.px_per_frame_px)
        self._focal_frame = float(f_frame)
        sx = self._work_scale
        # pixel centres: x_work = (x_frame + 0.5) * s - 0.5
        K = np.array([[f_frame * sx, 0.0, (c_frame[0] + 0.5) * sx - 0.5],
                      [0.0, f_frame * sy, (c_frame[1] + 0.5) * sy - 0.5],
                      [0.0, 0.0, 1.0]])
        self._K_work = K
        self._Kinv_work = np.linalg.inv(K)
        self._box_scale = (sx, sy)
        self._prev_gray = None
        self._pts = np.zeros((0, 2), np.float32)

    def _work_gray(self, rgb: np.ndarray) -> np.ndarray:
        """Grey image at the working size: halvings by ``cv2.pyrDown`` (Gaussian, anti-aliased) while the image
        is at least twice the working size, then a bilinear resize for the rest (a factor below 2)."""
        cv2 = _cv2()
        gray = rgb if rgb.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
        ww, wh = self._work_size_wh
        while gray.shape[1] >= 2 * ww and gray.shape[0] >= 2 * wh:
            gray = cv2.pyrDown(gray)
        if gray.shape[:2] != (wh, ww):
            gray = cv2.resize(gray, (ww, wh), interpolation=cv2.INTER_LINEAR)
        return gray

    def _allowed_mask(self, shape_hw, boxes) -> np.ndarray:
        """uint8 working-size mask: 255 where background features may lie, 0 inside the grown person boxes."""
        h, w = shape_hw
        mask = np.full((h, w), 255, np.uint8)
        if boxes is None:
            return mask
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        sx, sy = self._box_scale
        for x, y, bw, bh in b:
            if not np.all(np.isfinite([x, y, bw, bh])):
                continue
            x0 = (x - self.box_margin * bw) * sx - self.box_pad_px
            x1 = (x + bw + self.box_margin * bw) * sx + self.box_pad_px
            y0 = (y - self.box_margin * bh) * sy - self.box_pad_px
            y1 = (y + bh + self.box_margin * bh) * sy + self.box_pad_px
            c0, c1 = max(int(np.floor(x0)), 0), min(int(np.ceil(x1)), w)
            r0, r1 = max(int(np.floor(y0)), 0), min(int(np.ceil(y1)), h)
            if c1 > c0 and r1 > r0:
                mask[r0:r1, c0:c1] = 0
        return mask

    @staticmethod
    def _inside(mask: np.ndarray, pts: np.ndarray) -> np.ndarray:
        """(P,) bool: the point is in the image and the mask allows it."""
        h, w = mask.shape
        xi = np.round(pts[:, 0]).astype(np.int64)
        yi = np.round(pts[:, 1]).astype(np.int64)
        inb = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
        out = np.zeros(len(pts), bool)
        out[inb] = mask[yi[inb], xi[inb]] > 0
        return out

    def _track(self, g0: np.ndarray, g1: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """LK forward and backward; returns the kept (p0, p1) pairs (working px)."""
        cv2 = _cv2()
        crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03)
        win = (self.lk_win_px, self.lk_win_px)
        p0 = pts.reshape(-1, 1, 2).astype(np.float32)
        p1, st1, _ = cv2.calcOpticalFlowPyrLK(g0, g1, p0, None, winSize=win, maxLevel=self.lk_levels,
                                              criteria=crit)
        if p1 is None:
            return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
        p0r, st2, _ = cv2.calcOpticalFlowPyrLK(g1, g0, p1, None, winSize=win, maxLevel=self.lk_levels,
                                               criteria=crit)
        fb = np.linalg.norm((p0r - p0).reshape(-1, 2), axis=1)
        ok = (st1.ravel() == 1) & (st2.ravel() == 1) & (fb < self.fb_max_px)
        return p0.reshape(-1, 2)[ok], p1.reshape(-1, 2)[ok]

    def _rays(self, pts: np.ndarray) -> np.ndarray:
        Ki = self._Kinv_work
        x = (pts[:, 0] * Ki[0, 0] + Ki[0, 2])
        y = (pts[:, 1] * Ki[1, 1] + Ki[1, 2])
        r = np.stack([x, y, np.ones_like(x)], -1)
        return r / np.linalg.norm(r, axis=1, keepdims=True)

    def _fit_rotation(self, p0: np.ndarray, p1: np.ndarray):
        """RANSAC (2-point Kabsch) + refinement. Returns (R_prev_from_cur, residual_px (P,), inliers (P,))."""
        b0 = self._rays(p0.astype(np.float64))
        b1 = self._rays(p1.astype(np.float64))
        f = float(self._K_work[0, 0])
        P = len(b0)
        M = self.ransac_iters
        i = self._rng.integers(0, P, size=M)
        j = (i + self._rng.integers(1, P, size=M)) % P
        src = np.stack([b1[i], b1[j]], 1)  # (M, 2, 3)
        dst = np.stack([b0[i], b0[j]], 1)
        Rs = kabsch_rotation(src, dst)  # (M, 3, 3)
        Rs = np.concatenate([np.eye(3)[None], Rs], 0)  # the identity competes too (static camera)
        d = (Rs @ b1.T) - b0.T[None]  # (M+1, 3, P)
        err = f * np.sqrt(np.einsum("mkp,mkp->mp", d, d))  # (M+1, P) px
        thr = self.inlier_px
        score = np.minimum(err, thr).sum(1)  # MSAC-like truncated cost
        best = int(np.argmin(score))
        inl = err[best] < thr
        R = Rs[best]
        for _ in range(2):
            if inl.sum() < 3:
                return None
            R = kabsch_rotation(b1[inl], b0[inl])
            resid = f * np.linalg.norm(b1 @ R.T - b0, axis=1)
            inl = resid < thr
        return R, resid, inl

    def _essential(self, p0: np.ndarray, p1: np.ndarray):
        """Essential-matrix fit: (unit camera displacement t-1 -> t in camera t-1 axes (NaN if the fit fails),
        its R_prev_from_cur or None, number of points in front of both cameras)."""
        cv2 = _cv2()
        Ki = self._Kinv_work
        n0 = np.stack([p0[:, 0] * Ki[0, 0] + Ki[0, 2], p0[:, 1] * Ki[1, 1] + Ki[1, 2]], -1).astype(np.float64)
        n1 = np.stack([p1[:, 0] * Ki[0, 0] + Ki[0, 2], p1[:, 1] * Ki[1, 1] + Ki[1, 2]], -1).astype(np.float64)
        if len(n0) > self.essential_max_points:  # a fixed, spread subsample keeps the cost bounded
            keep = np.linspace(0, len(n0) - 1, self.essential_max_points).astype(np.int64)
            n0, n1 = n0[keep], n1[keep]
        thr = self.inlier_px / float(self._K_work[0, 0])
        try:
            E, m = cv2.findEssentialMat(n1, n0, focal=1.0, pp=(0.0, 0.0), method=cv2.RANSAC, prob=0.99,
                                        threshold=thr, maxIters=200)
            if E is None or E.shape != (3, 3):
                return np.full(3, np.nan), None, 0
            n_good, R_e, t, _m = cv2.recoverPose(E, n1, n0, focal=1.0, pp=(0.0, 0.0), mask=m)
        except cv2.error:
            return np.full(3, np.nan), None, 0
        # recoverPose(points1 = current, points2 = previous) gives P_prev = R P_cur + t: the centre of camera t
        # (P_cur = 0) is at t in camera t-1 coordinates (unit length: the scale is unknown).
        t = np.asarray(t, np.float64).ravel()
        return t / max(np.linalg.norm(t), _EPS), np.asarray(R_e, np.float64), int(n_good)

    def _replenish(self, gray: np.ndarray, mask: np.ndarray, pts: np.ndarray) -> np.ndarray:
        """Keep the tracked points; add corners away from them when fewer than the re-detection level."""
        if len(pts) >= self.redetect_fraction * self.max_features:
            return pts.astype(np.float32)
        cv2 = _cv2()
        m = mask
        if len(pts):
            m = mask.copy()
            r = int(round(self.min_distance_px))
            for x, y in pts:
                cv2.circle(m, (int(round(x)), int(round(y))), r, 0, -1)
        want = self.max_features - len(pts)
        new = cv2.goodFeaturesToTrack(gray, maxCorners=want, qualityLevel=self.quality_level,
                                      minDistance=self.min_distance_px, mask=m, blockSize=5)
        if new is None:
            return pts.astype(np.float32)
        return np.concatenate([pts.reshape(-1, 2), new.reshape(-1, 2)], 0).astype(np.float32)


def camera_motion_of_frames(frames, boxes=None, **kwargs) -> CameraMotion:
    """Convenience: run a :class:`CameraMotionAccumulator` over an iterable of RGB frames (``boxes``: a
    per-frame sequence of (K, 4) boxes or None)."""
    acc = CameraMotionAccumulator(**kwargs)
    for i, fr in enumerate(frames):
        acc.update(fr, None if boxes is None else boxes[i])
    return acc.result()
