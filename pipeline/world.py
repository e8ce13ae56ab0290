"""World alignment of one clip: camera-frame joints -> metric, z-up world with the ground at z = 0.

Monocular backends give joints in the camera frame (OpenCV: x right, y down, z forward, metres; see
:mod:`pipeline.motion`). For each clip we assume a static camera and estimate one rigid transform
``T_world_from_camera`` (4, 4) such that ``p_world = R @ p_cam + t`` gives:

- z up and the ground plane at z = 0;
- heading normalised: the person faces +x at the clip's first frame (facing = (left - right) x up, from the
  hips and shoulders), and the pelvis starts above the origin (x = y = 0 at the first frame).

Method
1. Prior up direction ``u0``: the confidence-weighted mean pelvis -> neck direction (``"body"``); when the
   pelvis or neck is never confident, or ``WorldConfig.fallback_up == "camera"``, the camera's -y axis
   (``"camera"``; a level camera).
2. Contact candidates, which need no up direction to find: foot points (:data:`pipeline.skeleton.FOOT_JOINTS`)
   that are confident, nearly still (speed of the low-passed trajectory <= ``contact_max_speed_m_s``) and
   within ``candidate_band_m`` of that frame's lowest foot point along ``u0``.
3. The up direction then comes from the contacts, as far as they constrain it:
   - ``"plane"``: a RANSAC plane (seeded: deterministic) holds at least ``min_inlier_frac`` of the candidates
     within ``ransac_inlier_m`` and its inliers spread over the ground in two directions (RMS spread along the
     second principal axis >= ``min_plane_spread_m``): up = normal of the least-squares plane of the inliers;
   - ``"line"``: the candidates spread along one direction (walking or running straight; RMS spread
     >= ``min_line_spread_m`` and ``min_line_elongation`` times the spread across it): that direction is
     horizontal, so up = ``u0`` made orthogonal to it (this removes a walker's forward lean from the prior);
   - otherwise (a person standing or jumping in place, or feet too noisy) the prior ``u0`` is kept.
   Monocular depth is much noisier than the image directions: noise along the viewing rays tilts a plane
   towards them and fakes spread in depth. Hence the inlier-fraction test for the plane, and the line's
   principal direction is found with the viewing-ray component scaled by ``depth_weight`` (then mapped
   back). On MediaPipe output of the shared videos only 34-69 % of candidates lie within 2.5 cm of the best
   plane (synthetic walkers with 1-2 cm noise: >= 78 %), so such clips use ``"line"`` or the prior.
   A ground-based up further than ``max_up_change_deg`` from the body prior is rejected (a bad fit).
4. Ground height: the densest ``ground_band_m`` (5 cm, PHUMA) band of the per-frame lowest confident foot point
   along up; the ground is the median height inside that band. (PHUMA bands all toe/heel heights; with noisy
   monocular feet, swing-foot points pull that band upwards: on the shared videos the per-frame lowest point
   put 29-67 % of frames within 2.5 cm of the ground against 13-43 % for all foot points.)
5. **Ground lock.** Monocular root heights wander: the root's depth and the legs' length are estimated per
   frame, so a supporting foot reads 5-20 cm below or above a flat ground for a second or more (measured on the
   shared videos: the lowest foot of a runner 9 cm under the ground on average over the first second and 2 cm
   over the last), and in double support one foot often reads several centimetres lower than the other (its
   depth along the viewing ray is off). One plane cannot follow that. Let ``s_t`` be the frame's lowest
   confident foot point (low-passed at ``smoothing_hz``). People on their feet touch the ground at least once in
   every ``ground_lock_window_s`` (a walk always; a run's or a jump's flight is shorter), so the support level is
   the morphological opening of ``s`` over that window, ``e = max_W(min_W(s))``: the highest curve that stays
   at or below ``s`` and is flat over every window; flights stay in the air and the lower foot of a double
   support is the one on the ground. Frames where ``e`` is above ``ground_lock_band_m`` (standing on something)
   or unknown (no confident foot in the window) take the shift interpolated from the others. The shift ``-e``
   is low-passed at ``ground_lock_hz`` so that it moves the body slowly, never within a step; a second pass
   lifts (never lowers) what the low-pass's rounded corners left below the ground. Measured max penetration on
   the shared videos, plane only -> lock on planted feet -> this lock: dance 0.08-0.16 -> 0.05 -> 0.005-0.016 m,
   hike 0.067 -> 0.079 -> 0.019 m, runner 0.19 -> 0.12 -> 0.010 m (``bench/bench_world.py``).
6. Contacts after alignment: a foot point within +-``contact_height_m`` (2.5 cm, PHUMA) of the ground, or moving
   slower than ``contact_max_speed_m_s`` (0.3 m/s = 1 cm/frame at 30 fps, GVHMR) while lower than
   ``contact_max_height_m``; heights and speeds are taken from the ``smoothing_hz`` low-passed trajectory.

The method used is recorded in :attr:`WorldAlignment.up_method` (one of :data:`UP_METHODS`).

:func:`static_camera_score` turns the backend's background-motion signal into a 0-1 score (1 = static).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ingest.errors import BackendError, ConfigError
from pipeline.filtering import lowpass
from pipeline.skeleton import BODY_JOINTS, FOOT_JOINTS

#: How the up direction was found, in order of the evidence used; the index is ``up_method_id``.
UP_METHODS: tuple[str, ...] = ("camera", "body", "line", "plane")

_CAMERA_UP = np.array([0.0, -1.0, 0.0])


@dataclass(frozen=True)
class WorldConfig:
    """Settings of :func:`align_to_world` (lengths in metres, speeds in m/s, angles in degrees).

    ground_band_m: width of the densest band of foot heights taken as the ground (PHUMA: 5 cm).
    contact_height_m: a foot point within +- this of the ground is in contact (PHUMA: 2.5 cm).
    contact_max_speed_m_s: a foot point slower than this is in contact when also below ``contact_max_height_m``
        (GVHMR: 1 cm/frame, i.e. 0.3 m/s at 30 fps).
    contact_max_height_m: the speed rule only applies below this height above the ground.
    smoothing_hz: low-pass cutoff applied to foot trajectories before speeds and contact heights (0 = off).
    min_conf: joints with a confidence below this are ignored by the fit.
    candidate_band_m: contact candidates lie within this of their frame's lowest foot point along the prior up.
    ransac_iters, ransac_inlier_m, seed: RANSAC plane fit (deterministic for a given seed).
    min_inlier_frac: fraction of contact candidates within ``ransac_inlier_m`` of the plane needed to trust it.
    min_plane_spread_m: RMS spread of the plane's inliers along their second principal axis needed to trust it.
    min_line_spread_m: RMS spread along the first principal axis (depth down-weighted) needed for a line.
    min_line_elongation: ratio of the first to the second principal spread needed for a line.
    depth_weight: weight of the viewing-ray component when finding the line (monocular depth is noisy).
    max_up_change_deg: largest accepted angle between the ground-based up and the body prior.
    fallback_up: prior up direction: ``"body"`` (pelvis -> neck) or ``"camera"`` (camera -y).
    heading_frames: number of first frames whose hip/shoulder directions are averaged for the heading.
    ground_lock: shift each frame vertically so that the supporting foot is on the ground (step 5).
    ground_lock_band_m: a frame whose support level is within this of the ground is locked to it.
    ground_lock_window_s: every window this long holds a frame with a foot on the ground; flights shorter than
        this keep their height (a running flight lasts 0.1-0.2 s, a 30 cm vertical jump 0.5 s).
    ground_lock_hz: low-pass cutoff of that shift.
    """

    ground_band_m: float = 0.05
    contact_height_m: float = 0.025
    contact_max_speed_m_s: float = 0.3
    contact_max_height_m: float = 0.10
    smoothing_hz: float = 6.0
    min_conf: float = 0.3
    candidate_band_m: float = 0.10
    ransac_iters: int = 200
    ransac_inlier_m: float = 0.025
    seed: int = 0
    min_inlier_frac: float = 0.7
    min_plane_spread_m: float = 0.15
    min_line_spread_m: float = 0.2
    min_line_elongation: float = 3.0
    depth_weight: float = 0.25
    max_up_change_deg: float = 35.0
    fallback_up: str = "body"
    heading_frames: int = 1
    ground_lock: bool = True
    ground_lock_band_m: float = 0.25
    ground_lock_window_s: float = 0.6
    ground_lock_hz: float = 2.0

    def __post_init__(self) -> None:
        problems = []
        for name in (
            "ground_band_m",
            "contact_height_m",
            "contact_max_speed_m_s",
            "contact_max_height_m",
            "candidate_band_m",
            "ransac_inlier_m",
            "min_plane_spread_m",
            "min_line_spread_m",
            "min_line_elongation",
            "max_up_change_deg",
            "ground_lock_window_s",
        ):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0 (got {getattr(self, name)!r})")
        if self.smoothing_hz < 0:
            problems.append(f"smoothing_hz must be >= 0, 0 to disable (got {self.smoothing_hz!r})")
        if not 0 < self.depth_weight <= 1:
            problems.append(f"depth_weight must be in (0, 1] (got {self.depth_weight!r})")
        if not 0 <= self.min_inlier_frac <= 1:
            problems.append(f"min_inlier_frac must be in [0, 1] (got {self.min_inlier_frac!r})")
        if not 0 <= self.min_conf <= 1:
            problems.append(f"min_conf must be in [0, 1] (got {self.min_conf!r})")
        if self.ransac_iters < 1:
            problems.append(f"ransac_iters must be >= 1 (got {self.ransac_iters!r})")
        if self.heading_frames < 1:
            problems.append(f"heading_frames must be >= 1 (got {self.heading_frames!r})")
        if self.fallback_up not in ("body", "camera"):
            problems.append(f"fallback_up must be 'body' or 'camera' (got {self.fallback_up!r})")
        if problems:
            raise ConfigError("invalid world alignment settings: " + "; ".join(problems))


@dataclass
class WorldAlignment:
    """Result of :func:`align_to_world` for one clip of T frames and J joints.

    T_world_from_camera: (4, 4) float64 rigid transform, ``p_world = R @ p_cam + t + (0, 0, ground_lift_m)``.
    joints_world_m: (T, J, 3) float64 joints in the world frame (z up, ground z = 0, heading normalised).
    ground_lift_m: (T,) the vertical shift of each frame that keeps the supporting foot on the ground (step 5).
    foot_contact: (T, 4) bool contact flags of :data:`pipeline.skeleton.FOOT_JOINTS`.
    up_cam: (3,) unit world-up direction expressed in the camera frame.
    up_method: one of :data:`UP_METHODS`.
    body_up_angle_deg: angle between the chosen up and the pelvis -> neck prior (NaN without a prior).
    ground_rmse_m: RMS height above the ground of the contact candidates after alignment (NaN when none).
    num_contact_candidates: number of foot points used for the ground fit.
    """

    T_world_from_camera: np.ndarray
    joints_world_m: np.ndarray
    ground_lift_m: np.ndarray
    foot_contact: np.ndarray
    up_cam: np.ndarray
    up_method: str
    body_up_angle_deg: float
    ground_rmse_m: float
    num_contact_candidates: int

    @property
    def up_method_id(self) -> int:
        return UP_METHODS.index(self.up_method)

    @property
    def camera_height_m(self) -> float:
        """Height of the camera centre above the ground (m)."""
        return float(self.T_world_from_camera[2, 3])


def align_to_world(
    joints_cam_m: np.ndarray,
    joint_conf: np.ndarray,
    fps: float,
    config: WorldConfig | None = None,
    joint_names: tuple[str, ...] = BODY_JOINTS,
) -> WorldAlignment:
    """Estimate ``T_world_from_camera`` for a clip and move its joints into the world frame.

    joints_cam_m: (T, J, 3) joints in the camera frame (metres) on a regular frame grid (gaps filled);
    joint_conf: (T, J) confidence in [0, 1] (0 for filled frames: they are not used by the fit);
    fps: frames per second of the grid; joint_names: the J names (must include pelvis, neck, hips, shoulders
    and the four foot points, else :class:`ingest.errors.BackendError`). See the module docstring for the method.
    """
    cfg = config or WorldConfig()
    x = np.asarray(joints_cam_m, dtype=np.float64)
    conf = np.asarray(joint_conf, dtype=np.float64)
    if x.ndim != 3 or x.shape[2] != 3 or conf.shape != x.shape[:2] or x.shape[0] == 0:
        raise ValueError(
            f"joints_cam_m must be (T, J, 3) and joint_conf (T, J) with T >= 1; got {x.shape}, {conf.shape}"
        )
    names = {n: i for i, n in enumerate(joint_names)}
    try:
        pelvis, neck = names["pelvis"], names["neck"]
        l_hip, r_hip = names["left_hip"], names["right_hip"]
        l_sh, r_sh = names["left_shoulder"], names["right_shoulder"]
        feet = [names[n] for n in FOOT_JOINTS]
    except KeyError as exc:
        raise BackendError(
            f"world alignment needs joint {exc.args[0]!r} but the track has {joint_names}; "
            "the backend must map its keypoints onto pipeline.skeleton.BODY_JOINTS"
        ) from None

    finite = np.isfinite(x).all(axis=2)
    ok = finite & (conf >= cfg.min_conf)
    x = np.where(finite[..., None], x, 0.0)

    body_up = _body_up(x, ok, pelvis, neck)
    u0 = body_up if (body_up is not None and cfg.fallback_up == "body") else _CAMERA_UP
    prior_method = "body" if u0 is body_up else "camera"

    foot = x[:, feet]  # (T, 4, 3)
    foot_ok = ok[:, feet]
    foot_smooth = lowpass(foot, fps, cfg.smoothing_hz)
    speed_m_s = _speed_m_s(foot_smooth, fps)

    cand = _contact_candidates(foot, foot_ok, speed_m_s, u0, cfg)
    up, method = _choose_up(foot[cand], u0, prior_method, body_up, cfg)

    lowest = np.where(foot_ok, foot @ up, np.inf).min(axis=1)
    lowest = lowest[np.isfinite(lowest)]
    if lowest.size:
        ground = densest_band_level(lowest, cfg.ground_band_m)
    else:  # no usable feet: the lowest confident joint stands in for the ground
        all_h = x[ok] @ up if ok.any() else x.reshape(-1, 3) @ up
        ground = float(np.min(all_h))

    r_align = _basis_with_up(up)
    yaw = _first_heading_yaw(x, ok, r_align, (l_hip, r_hip), (l_sh, r_sh), cfg.heading_frames)
    c, s = math.cos(-yaw), math.sin(-yaw)
    r_yaw = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    rot = r_yaw @ r_align
    pelvis0 = rot @ x[_first_ok_frame(ok[:, pelvis]), pelvis]
    t = np.array([-pelvis0[0], -pelvis0[1], -ground])
    transform = np.eye(4)
    transform[:3, :3] = rot
    transform[:3, 3] = t

    joints_world = x @ rot.T + t
    foot_world_smooth = foot_smooth @ rot.T + t
    lift = _ground_correction(foot_world_smooth[..., 2], foot_ok, fps, cfg)  # (T,) metres, step 5
    joints_world[..., 2] += lift[:, None]
    foot_world_smooth[..., 2] += lift[:, None]
    z = foot_world_smooth[..., 2]
    contact = (np.abs(z) <= cfg.contact_height_m) | (
        (speed_m_s <= cfg.contact_max_speed_m_s) & (z <= cfg.contact_max_height_m)
    )

    cand_z = (foot[cand] @ rot.T + t)[:, 2] if cand.any() else np.empty(0)
    ground_rmse = float(np.sqrt(np.mean(cand_z**2))) if cand_z.size else math.nan
    angle = _angle_deg(up, body_up) if body_up is not None else math.nan
    return WorldAlignment(
        T_world_from_camera=transform,
        joints_world_m=joints_world,
        ground_lift_m=lift,
        foot_contact=contact,
        up_cam=up,
        up_method=method,
        body_up_angle_deg=angle,
        ground_rmse_m=ground_rmse,
        num_contact_candidates=int(cand.sum()),
    )


def _ground_correction(foot_z_m: np.ndarray, foot_ok: np.ndarray, fps: float, cfg: WorldConfig) -> np.ndarray:
    """(T,) vertical shift per frame that puts the supporting foot on the ground (module docstring, step 5).

    foot_z_m: (T, 4) low-passed heights of the foot points above the fitted ground; foot_ok: (T, 4) confident.
    The support level is the opening ``max_W(min_W(s))`` of the lowest confident point ``s`` over a window of
    ``ground_lock_window_s``; frames whose level is above ``ground_lock_band_m`` or unknown take the shift
    interpolated between the others, so a jump keeps its height. The shift is low-passed at ``ground_lock_hz``;
    the low-pass rounds the corners of the level, so a second pass lifts (never lowers) what the first left below
    the ground, low-passed the same way.
    """
    n = len(foot_z_m)
    if not cfg.ground_lock or n == 0:
        return np.zeros(n)
    lowest = np.where(foot_ok, foot_z_m, np.inf).min(axis=1)  # (T,), inf where no confident point
    half = max(1, int(round(0.5 * cfg.ground_lock_window_s * fps)))

    def smooth(x: np.ndarray) -> np.ndarray:
        return lowpass(x, fps, cfg.ground_lock_hz) if n >= 4 else x

    level = _opening(lowest, half)
    supported = np.isfinite(level) & (level <= cfg.ground_lock_band_m)
    if not supported.any():
        return np.zeros(n)
    frames = np.arange(n)
    shift = smooth(np.interp(frames, frames[supported], -level[supported]))
    still_below = _opening(lowest + shift, half)
    still_below = np.where(np.isfinite(still_below), np.minimum(still_below, 0.0), 0.0)
    return shift - smooth(still_below)


def _opening(x: np.ndarray, half: int) -> np.ndarray:
    """(T,) morphological opening ``max_W(min_W(x))`` over windows of ``2 half + 1`` frames: the highest curve
    at or below ``x`` that is flat over each window; ``inf`` marks unknown samples (kept where a window holds
    nothing else)."""
    return _window_max(_window_min(x, half), half, ignore=np.inf)


def _window_min(x: np.ndarray, half: int) -> np.ndarray:
    """(T,) minimum of ``x`` over frames ``[t - half, t + half]`` (clipped at the ends)."""
    padded = np.pad(x, half, constant_values=np.inf)
    return np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1).min(axis=1)


def _window_max(x: np.ndarray, half: int, ignore: float) -> np.ndarray:
    """(T,) maximum of ``x`` over frames ``[t - half, t + half]``, values equal to ``ignore`` left out (kept
    only where the whole window is ``ignore``)."""
    y = np.where(x == ignore, -np.inf, x)
    padded = np.pad(y, half, constant_values=-np.inf)
    out = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1).max(axis=1)
    return np.where(np.isneginf(out), ignore, out)


def median_background_motion(background_motion: np.ndarray | None, frame_idx: np.ndarray) -> float:
    """Median of the backend's background-motion signal over a clip (0-1 intensity scale); NaN without one.

    background_motion: (N,) per-frame mean absolute intensity change outside person boxes (see
    :class:`pipeline.motion.PoseResult`), or None. frame_idx: (T,) the clip's decode indices; the changes
    *into* its frames after the first are used (the first frame's change comes from outside the clip).
    """
    if background_motion is None:
        return math.nan
    bm = np.asarray(background_motion, dtype=np.float64).ravel()
    fi = np.asarray(frame_idx, dtype=np.int64).ravel()[1:]
    vals = bm[fi[(fi >= 0) & (fi < bm.size)]]
    vals = vals[np.isfinite(vals)]
    return float(np.median(vals)) if vals.size else math.nan


def static_camera_score(
    background_motion: np.ndarray | None, frame_idx: np.ndarray, *, half_motion: float = 0.004
) -> float:
    """How static the camera looks over a clip: 1 = static, towards 0 = moving; NaN without a signal.

    ``1 / (1 + (m / half_motion)^2)`` with ``m`` = :func:`median_background_motion`, so ``m = half_motion``
    scores 0.5. The default is a rough calibration on the two shared videos with the signal of
    :mod:`pipeline.frame_signals` (64-px thumbnails): the static tennis camera gives m = 0.0015 (score 0.88),
    the slow pan over a plain sports hall in the runner video m = 0.0041 (score 0.49). The catalog also keeps
    ``m`` itself (``background_motion_median``) so users can set their own line.
    """
    m = median_background_motion(background_motion, frame_idx)
    if math.isnan(m) or half_motion <= 0:
        return math.nan
    return float(1.0 / (1.0 + (m / half_motion) ** 2))


# --- steps ------------------------------------------------------------------------------------------


def _body_up(x: np.ndarray, ok: np.ndarray, pelvis: int, neck: int) -> np.ndarray | None:
    """Mean unit pelvis -> neck direction over frames where both are confident, or None."""
    both = ok[:, pelvis] & ok[:, neck]
    if not both.any():
        return None
    v = x[both, neck] - x[both, pelvis]
    n = np.linalg.norm(v, axis=1)
    v = v[n > 1e-6] / n[n > 1e-6, None]
    if len(v) == 0:
        return None
    m = v.mean(axis=0)
    norm = np.linalg.norm(m)
    return m / norm if norm > 1e-6 else None


def _speed_m_s(points: np.ndarray, fps: float) -> np.ndarray:
    """(T, K) speed of (T, K, 3) trajectories in m/s (central differences; zeros for a single frame)."""
    if points.shape[0] < 2:
        return np.zeros(points.shape[:2])
    return np.linalg.norm(np.gradient(points, axis=0), axis=-1) * fps


def _contact_candidates(
    foot: np.ndarray, foot_ok: np.ndarray, speed_m_s: np.ndarray, u0: np.ndarray, cfg: WorldConfig
) -> np.ndarray:
    """(T, 4) bool: confident, still foot points near their frame's lowest foot point along ``u0``."""
    h = foot @ u0
    h_ok = np.where(foot_ok, h, np.inf)
    lowest = h_ok.min(axis=1, keepdims=True)
    near = foot_ok & (h <= lowest + cfg.candidate_band_m)
    cand = near & (speed_m_s <= cfg.contact_max_speed_m_s)
    if cand.sum() < 12:  # too few still points (fast motion or noise): use the lowest points alone
        cand = near
    return cand


def _choose_up(
    points: np.ndarray, u0: np.ndarray, prior_method: str, body_up: np.ndarray | None, cfg: WorldConfig
) -> tuple[np.ndarray, str]:
    """Up direction from contact points (n, 3) in the camera frame (module docstring, step 3) -> (unit, method)."""
    if len(points) < 3:
        return u0, prior_method
    reference = body_up if body_up is not None else u0

    inliers = _ransac_plane_inliers(points, cfg)
    q = points[inliers]
    if len(q) >= 3 and inliers.mean() >= cfg.min_inlier_frac:
        _, sv, vt = np.linalg.svd(q - q.mean(axis=0), full_matrices=False)
        if sv[1] / math.sqrt(len(q)) >= cfg.min_plane_spread_m:
            normal = vt[2] if np.dot(vt[2], u0) >= 0 else -vt[2]
            if _angle_deg(normal, reference) <= cfg.max_up_change_deg:
                return normal, "plane"

    # Line: principal direction with the depth (viewing-ray) component down-weighted, since monocular depth
    # is far noisier than the image directions; the direction is mapped back before use.
    ray = points.mean(axis=0)
    ray /= max(float(np.linalg.norm(ray)), 1e-9)
    k = cfg.depth_weight
    warp = np.eye(3) - (1.0 - k) * np.outer(ray, ray)
    pw = points @ warp
    _, sw, vtw = np.linalg.svd(pw - pw.mean(axis=0), full_matrices=False)
    spread = sw / math.sqrt(len(points))
    if spread[0] >= cfg.min_line_spread_m and spread[0] >= cfg.min_line_elongation * spread[1]:
        direction = vtw[0] + (1.0 / k - 1.0) * np.dot(vtw[0], ray) * ray
        direction /= np.linalg.norm(direction)
        up = u0 - np.dot(u0, direction) * direction
        norm = np.linalg.norm(up)
        if norm > 1e-6 and _angle_deg(up / norm, reference) <= cfg.max_up_change_deg:
            return up / norm, "line"
    return u0, prior_method


def _ransac_plane_inliers(points: np.ndarray, cfg: WorldConfig) -> np.ndarray:
    """(n,) bool inliers of the best RANSAC plane through ``points`` (n, 3); deterministic for ``cfg.seed``."""
    rng = np.random.default_rng(cfg.seed)
    n = len(points)
    if n > 4000:  # bound the (iters, n) distance matrix; a fixed stride keeps it deterministic
        sub = points[np.linspace(0, n - 1, 4000).astype(np.int64)]
    else:
        sub = points
    idx = rng.integers(0, len(sub), size=(cfg.ransac_iters, 3))
    a, b, c = sub[idx[:, 0]], sub[idx[:, 1]], sub[idx[:, 2]]
    normals = np.cross(b - a, c - a)
    norms = np.linalg.norm(normals, axis=1)
    good = norms > 1e-6
    if not good.any():
        return np.ones(n, dtype=bool)
    normals = normals[good] / norms[good, None]
    a = a[good]
    dist = np.abs(np.einsum("hd,nd->hn", normals, sub) - np.einsum("hd,hd->h", normals, a)[:, None])
    counts = (dist <= cfg.ransac_inlier_m).sum(axis=1)
    best = int(np.argmax(counts))
    return np.abs((points - a[best]) @ normals[best]) <= cfg.ransac_inlier_m


def densest_band_level(heights: np.ndarray, band_m: float) -> float:
    """Median of the values inside the densest window of width ``band_m`` (lowest window on ties)."""
    h = np.sort(np.asarray(heights, dtype=np.float64))
    ends = np.searchsorted(h, h + band_m, side="right")
    counts = ends - np.arange(h.size)
    i = int(np.argmax(counts))
    return float(np.median(h[i : ends[i]]))


def _basis_with_up(up: np.ndarray) -> np.ndarray:
    """(3, 3) rotation whose rows are (e1, e2, up): a right-handed frame with z = up, x near the camera's view."""
    e1 = np.array([0.0, 0.0, 1.0]) - up[2] * up
    if np.linalg.norm(e1) < 1e-3:  # camera looking straight down or up
        e1 = np.array([1.0, 0.0, 0.0]) - up[0] * up
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(up, e1)
    return np.stack([e1, e2, up])


def _first_ok_frame(ok: np.ndarray) -> int:
    hits = np.flatnonzero(ok)
    return int(hits[0]) if hits.size else 0


def _first_heading_yaw(
    x: np.ndarray,
    ok: np.ndarray,
    r_align: np.ndarray,
    hips: tuple[int, int],
    shoulders: tuple[int, int],
    num_frames: int,
) -> float:
    """Yaw (rad) of the facing direction in the up-aligned frame, over the first confident frames.

    across = (left - right) of hips and of shoulders; facing = across x up = (a_y, -a_x, 0).
    """
    across = np.zeros(3)
    found = 0
    for pair in (hips, shoulders):
        valid = np.flatnonzero(ok[:, pair[0]] & ok[:, pair[1]])[:num_frames]
        if valid.size:
            across += (x[valid, pair[0]] - x[valid, pair[1]]).mean(axis=0)
            found += 1
    if not found:
        return 0.0
    a = r_align @ across
    if math.hypot(a[0], a[1]) < 1e-6:
        return 0.0
    return math.atan2(-a[0], a[1])


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    cosang = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
    return math.degrees(math.acos(max(-1.0, min(1.0, cosang))))
