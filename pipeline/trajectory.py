"""The person's root trajectory in the world when the camera may move: camera rotation undone, contact-anchored
odometry, fusion with the camera-frame translation where the camera stands still.

A monocular backend gives, per frame t, joints ``x_t`` (J, 3) in the camera frame of that frame. When the
camera moves, the root's camera-frame translation is the person's motion *relative to the camera*: a walker
followed by the camera walks in place. This module turns a clip into joints in one fixed frame, the frame of the
clip's first camera (*cam0*): a virtual static camera, which :func:`pipeline.world.align_to_world` then levels.

Model and equations (all vectors in cam0 axes, metres, ``dt = 1 / fps``):

1. **Rotation undone.** With ``R_t = R_cam0_from_cam(t)`` (from :mod:`pipeline.camera_motion`, identity when
   unknown), ``y_t = R_t x_t``. The body relative to its root (the pelvis), ``d_{t,j} = y_{t,j} - y_{t,root}``,
   is then correct whatever the camera does; only the root position ``r_t`` is in question.
2. **Camera-frame root** ``c_t = y_{t,root}``: right while the camera centre stands still (a tripod may pan and
   tilt). Its depth is noisy.
3. **Up and contacts.** ``up``: the mean pelvis -> neck direction. Vertical root motion is taken from ``c_t``
   (cameras that follow a person move horizontally; a camera moving up or down breaks this), giving foot heights
   ``h_{t,k} = (c_t + d_{t,k}) . up - g`` with the ground ``g`` at the densest 5 cm band of the per-frame lowest
   foot point (as :mod:`pipeline.world`). A foot point ``k`` is in **stance** at t when it is confident and
   ``h_{t,k}`` (low-passed) is below ``contact_height_m``, among the points within ``stance_band_m`` of the
   frame's lowest one, and moves with the others that are planted (:func:`_odometry_steps`). A frame without
   any such candidate is **flight**.
4. **Odometry** (horizontal): a planted point does not move in the world, so between t and t+1 with points K in
   stance at both, ``r_{t+1} - r_t = -mean_{k in K}(d_{t+1,k} - d_{t,k})`` (double support: the mean over both
   feet). In flight the horizontal velocity is constant (ballistic), the mean of the stance velocities over
   ``velocity_window_s`` before and after; a frame pair with neither stance nor a bounded flight (longer than
   ``max_flight_s``) has no odometry. Vertical motion always comes from ``c_t``.
5. **Fusion.** Per frame pair the root's horizontal step is ``w_t (c_{t+1} - c_t) + (1 - w_t) o_t`` with ``o_t``
   the odometry step, ``w_t = 1`` where the camera stands still and 0 where it moves (``camera_moving``), and
   ``w_t = 1`` wherever odometry is missing. Where the camera is judged still but sees the person travel much
   less than the feet say over a window (``agree_window_s``: displacements differing by more than
   ``max(agree_min_m, agree_frac * |odometry|)``, the camera's the shorter), the camera is taken to travel with
   the person there (without enough background parallax to show it).

What it cannot recover: a person carried by something (escalator, vehicle, skates: planted feet move), long
stretches without a foot on the ground (swimming, lying, sitting on a chair is fine only with a static camera),
a camera moving vertically, and the absolute scale beyond the skeleton's own (MediaPipe's bodies read 5-10 %
small, so distances do too). :attr:`Trajectory.recovered` is False where the camera moved and odometry did not
cover the clip.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.filtering import lowpass
from pipeline.skeleton import FOOT_JOINTS
from pipeline.world import densest_band_level

#: How the root trajectory was found, in order (``trajectory_method_id`` in the catalog).
TRAJECTORY_METHODS: tuple[str, ...] = ("camera", "odometry", "mixed")

#: Cutoff (Hz) of the low-pass applied to the root before its path length is measured: walking and running
#: paths change direction far more slowly, while per-frame depth noise would add length.
PATH_SMOOTHING_HZ = 1.0

#: Clip columns of :meth:`Trajectory.metrics`.
TRAJECTORY_METRIC_NAMES: tuple[str, ...] = (
    "trajectory_method_id", "trajectory_recovered", "camera_moving_frac", "odometry_frac", "root_path_m",
    "camera_rotation_deg",
)


@dataclass(frozen=True)
class TrajectoryConfig:
    """Settings of :func:`recover_trajectory` (metres, seconds).

    contact_height_m: a foot point this close to the ground may be in stance (generous: the vertical root comes
        from a camera that may bob, and monocular depth leaks into it).
    stance_band_m: stance points lie within this of their frame's lowest foot point.
    max_stance_speed_m_s: a planted point moves slower than this in the world (noise allowance).
    max_flight_s: longest gap between stance phases bridged as a ballistic flight.
    velocity_window_s: stance time on each side of a flight whose mean velocity the flight keeps.
    min_conf: joints below this confidence are not used.
    smoothing_hz: low-pass of foot heights before the contact test.
    agree_window_s, agree_min_m, agree_frac: the camera/odometry agreement test (module docstring, step 5).
    min_odometry_frac: share of a moving-camera clip's frames that odometry must cover for it to count as
        recovered.
    """

    contact_height_m: float = 0.10
    stance_band_m: float = 0.05
    max_stance_speed_m_s: float = 0.5
    max_flight_s: float = 0.6
    velocity_window_s: float = 0.3
    min_conf: float = 0.3
    smoothing_hz: float = 6.0
    agree_window_s: float = 1.0
    agree_min_m: float = 0.35
    agree_frac: float = 0.5
    min_odometry_frac: float = 0.8


@dataclass
class Trajectory:
    """Result of :func:`recover_trajectory` for T frames.

    joints_m: (T, J, 3) joints in the cam0 frame with the fused root trajectory (a virtual static camera).
    root_m: (T, 3) the fused root (pelvis) positions in cam0.
    stance: (T, 4) bool stance flags of :data:`pipeline.skeleton.FOOT_JOINTS`; flight: (T,) bool.
    camera_weight: (T,) the fusion weight ``w`` of the step into each frame (1 = camera-frame root).
    odometry_frac: share of frame steps that odometry covers; camera_moving_frac: share of steps with w < 0.5.
    method: one of :data:`TRAJECTORY_METHODS`; recovered: False where the camera moved and odometry could not
        stand in (the clip's world trajectory is then not to be trusted).
    """

    joints_m: np.ndarray
    root_m: np.ndarray
    stance: np.ndarray
    flight: np.ndarray
    camera_weight: np.ndarray
    odometry_frac: float
    camera_moving_frac: float
    method: str
    recovered: bool

    @property
    def method_id(self) -> int:
        return TRAJECTORY_METHODS.index(self.method)

    def metrics(self, up: np.ndarray, fps: float, camera_rotation_deg: float = float("nan")) -> dict[str, float]:
        """The clip columns :data:`TRAJECTORY_METRIC_NAMES`: method id, recovered (1/0), the shares of steps
        with a moving camera and with odometry, the root's horizontal path length (m, ``up`` in cam0, measured
        on the root low-passed at :data:`PATH_SMOOTHING_HZ`) and the camera's rotation over the clip as given
        (degrees, :meth:`pipeline.camera_motion.CameraMotion.rotation_path_deg`; NaN when unknown)."""
        steps = np.diff(lowpass(self.root_m, fps, PATH_SMOOTHING_HZ), axis=0)  # depth noise would add length
        horizontal = steps - np.outer(steps @ up, up)
        return {"trajectory_method_id": float(self.method_id), "trajectory_recovered": float(self.recovered),
                "camera_moving_frac": self.camera_moving_frac, "odometry_frac": self.odometry_frac,
                "root_path_m": float(np.linalg.norm(horizontal, axis=1).sum()),
                "camera_rotation_deg": float(camera_rotation_deg)}


def recover_trajectory(
    joints_cam_m: np.ndarray,
    joint_conf: np.ndarray,
    fps: float,
    joint_names: tuple[str, ...],
    R_cam0_from_cam: np.ndarray | None = None,
    camera_moving: np.ndarray | None = None,
    config: TrajectoryConfig | None = None,
    camera_static: bool = False,
) -> Trajectory:
    """Joints of a clip in the frame of its first camera, with the root trajectory of the module docstring.

    joints_cam_m: (T, J, 3) camera-frame joints on a regular grid (gaps filled); joint_conf: (T, J).
    R_cam0_from_cam: (T, 3, 3) camera orientation relative to the clip's first frame, or None (no rotation).
    camera_moving: (T,) bool, True where the background shows the camera centre moving, or None (unknown:
        still unless the agreement test says otherwise).
    camera_static: the background shows a tripod over the whole clip: the camera-frame root is trusted and the
        agreement test is not run (small, noisy people would otherwise read as a following camera).
    """
    cfg = config or TrajectoryConfig()
    x = np.asarray(joints_cam_m, dtype=np.float64)
    conf = np.asarray(joint_conf, dtype=np.float64)
    n = len(x)
    names = {name: i for i, name in enumerate(joint_names)}
    root, neck = names["pelvis"], names["neck"]
    feet = [names[f] for f in FOOT_JOINTS]
    if R_cam0_from_cam is not None:
        x = np.einsum("tab,tjb->tja", np.asarray(R_cam0_from_cam, dtype=np.float64), x)
    finite = np.isfinite(x).all(-1)
    ok = finite & (conf >= cfg.min_conf)
    x = np.where(finite[..., None], x, np.nan)
    cam_root = _fill(x[:, root])
    rel = x - x[:, root : root + 1]  # d_{t,j}
    up = _mean_direction(rel[:, neck], ok[:, neck] & ok[:, root])

    candidates, heights = _stance_candidates(cam_root, rel[:, feet], ok[:, feet], up, fps, cfg)
    flight = ~candidates.any(axis=1) & ok[:, feet].any(axis=1)
    odo_step, odo_ok, stance = _odometry_steps(rel[:, feet], candidates, heights, fps, cfg)

    cam_step = np.diff(cam_root, axis=0)
    moving = np.zeros(max(n - 1, 0), dtype=bool)
    if camera_moving is not None:
        moving |= np.asarray(camera_moving, dtype=bool)[1:]
    if not camera_static:
        moving |= _disagree(cam_step, odo_step, odo_ok, up, fps, cfg)
    w = np.where(odo_ok & moving, 0.0, 1.0)

    vertical = np.outer(up, up)
    blended = w[:, None] * cam_step + (1 - w[:, None]) * np.nan_to_num(odo_step)
    step = cam_step @ vertical + blended @ (np.eye(3) - vertical)
    root_m = np.concatenate([cam_root[:1], cam_root[:1] + np.cumsum(step, axis=0)]) if n else cam_root
    joints = rel + root_m[:, None, :]
    joints = np.where(finite[..., None], joints, np.nan)

    steps = max(n - 1, 1)
    odometry_frac = float(odo_ok.sum() / steps) if n > 1 else 0.0
    camera_moving_frac = float(moving.sum() / steps) if n > 1 else 0.0
    unrecovered = moving & ~odo_ok
    recovered = not (camera_moving_frac > 0 and unrecovered.sum() / steps > 1 - cfg.min_odometry_frac)
    method = "camera" if (w == 1).all() else ("odometry" if (w == 0).all() else "mixed")
    return Trajectory(joints_m=joints, root_m=root_m, stance=stance, flight=flight,
                      camera_weight=np.concatenate([[1.0], w]) if n else w, odometry_frac=odometry_frac,
                      camera_moving_frac=camera_moving_frac, method=method, recovered=bool(recovered))


# --- steps -------------------------------------------------------------------------------------------------


def _fill(values: np.ndarray) -> np.ndarray:
    """(T, K) with each column's NaN filled by linear interpolation in time (ends held; an all-NaN column: 0)."""
    out = np.array(values, dtype=np.float64)
    t = np.arange(len(out))
    for k in range(out.shape[1]):
        good = np.isfinite(out[:, k])
        out[:, k] = np.interp(t, t[good], out[good, k]) if good.any() else 0.0
    return out


def _mean_direction(v: np.ndarray, ok: np.ndarray) -> np.ndarray:
    v = v[ok & np.isfinite(v).all(-1)]
    m = v.mean(axis=0) if len(v) else np.array([0.0, -1.0, 0.0])
    norm = np.linalg.norm(m)
    return m / norm if norm > 1e-9 else np.array([0.0, -1.0, 0.0])


def _stance_candidates(cam_root: np.ndarray, rel_feet: np.ndarray, ok_feet: np.ndarray, up: np.ndarray,
                       fps: float, cfg: TrajectoryConfig) -> tuple[np.ndarray, np.ndarray]:
    """(T, 4) stance candidates by height (module docstring, step 3) and (T, 4) heights above the ground (m)."""
    n = len(rel_feet)
    heights = (cam_root @ up)[:, None] + np.nan_to_num(rel_feet) @ up  # (T, 4) along up, unknown offset
    heights = np.where(ok_feet, heights, np.nan)
    if n >= 4:
        heights = np.where(ok_feet, lowpass(_fill(heights), fps, cfg.smoothing_hz), np.nan)
    lowest = np.nanmin(np.where(ok_feet, heights, np.inf), axis=1)
    finite_lowest = lowest[np.isfinite(lowest)]
    if not finite_lowest.size:
        return np.zeros((n, 4), dtype=bool), heights
    above = heights - densest_band_level(finite_lowest, 0.05)
    candidates = ok_feet & (above <= cfg.contact_height_m) & (heights <= lowest[:, None] + cfg.stance_band_m)
    return candidates, above


def _odometry_steps(rel_feet: np.ndarray, candidates: np.ndarray, heights: np.ndarray, fps: float,
                    cfg: TrajectoryConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Root steps from planted feet and ballistic flights: (T-1, 3) steps, (T-1,) bool where they are known,
    and (T, 4) the stance flags actually used.

    Heights alone also admit a swing foot just leaving or reaching the ground. A planted point moves relative to
    the root exactly opposite to it, so each candidate k of a frame pair proposes the step ``-delta d_k``; the
    proposal that the most candidates agree with (world speeds ``|step + delta d_j| * fps`` within
    ``max_stance_speed_m_s``; ties: the lower points) wins, and the step is the mean over its supporters.
    """
    n = len(rel_feet)
    stance = np.zeros_like(candidates)
    if n < 2:
        return np.zeros((0, 3)), np.zeros(0, dtype=bool), stance
    both = candidates[:-1] & candidates[1:]  # (T-1, 4)
    delta = np.nan_to_num(rel_feet[1:] - rel_feet[:-1])  # (T-1, 4, 3)
    low = np.nan_to_num(heights[1:], nan=np.inf)
    step = np.full((n - 1, 3), np.nan)
    tol_m = cfg.max_stance_speed_m_s / fps
    for t in np.flatnonzero(both.any(axis=1)):
        k = np.flatnonzero(both[t])
        proposals = -delta[t, k]  # (K, 3)
        agree = np.linalg.norm(proposals[:, None, :] - proposals[None, :, :], axis=-1) <= tol_m  # (K, K)
        support = agree.sum(axis=1)
        mean_low = np.array([low[t, k[a]].mean() for a in agree])
        best = np.lexsort((mean_low, -support))[0]
        chosen = k[agree[best]]
        step[t] = proposals[agree[best]].mean(axis=0)
        stance[t, chosen] = stance[t + 1, chosen] = True
    known = np.isfinite(step).all(axis=1)
    # bridge flights (and stance changes with no common point) of at most max_flight_s with a constant velocity:
    # the mean step over up to velocity_window_s of stance on each side (a displacement over several frames,
    # whose noise does not grow with the window, divided by its length)
    max_gap = max(1, int(round(cfg.max_flight_s * fps)))
    window = max(1, int(round(cfg.velocity_window_s * fps)))
    for a, b in _runs(~known):
        if a == 0 or b == len(known) or b - a > max_gap:
            continue
        before, after = step[max(0, a - window) : a], step[b : b + window]
        before, after = before[np.isfinite(before).all(1)], after[np.isfinite(after).all(1)]
        step[a:b] = 0.5 * (before.mean(axis=0) + after.mean(axis=0))
        known[a:b] = True
    return step, known, stance


def _disagree(cam_step: np.ndarray, odo_step: np.ndarray, odo_ok: np.ndarray, up: np.ndarray, fps: float,
              cfg: TrajectoryConfig) -> np.ndarray:
    """(T-1,) bool: steps inside a window where the camera sees the person travel much less than their feet do,
    the signature of a camera travelling with the person: over ``agree_window_s``, the horizontal displacements
    differ by more than ``max(agree_min_m, agree_frac * |odometry|)`` and the camera's is the shorter one."""
    m = len(cam_step)
    out = np.zeros(m, dtype=bool)
    if m == 0 or not odo_ok.any():
        return out
    horizontal = np.eye(3) - np.outer(up, up)
    cam_h = cam_step @ horizontal
    odo_h = np.where(odo_ok[:, None], np.nan_to_num(odo_step), 0.0) @ horizontal
    win = max(2, int(round(cfg.agree_window_s * fps)))
    for a in range(0, m, max(1, win // 2)):
        b = min(m, a + win)
        if odo_ok[a:b].mean() < 0.8:
            continue
        d_cam, d_odo = cam_h[a:b].sum(axis=0), odo_h[a:b].sum(axis=0)
        gap = np.linalg.norm(d_cam - d_odo)
        if gap > max(cfg.agree_min_m, cfg.agree_frac * np.linalg.norm(d_odo)) and \
                np.linalg.norm(d_cam) < np.linalg.norm(d_odo):
            out[a:b] = True
    return out


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of the runs of True in a 1-D bool array."""
    padded = np.concatenate([[0], mask.astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))
