"""Robot-side quality metrics of a retargeted G1 motion (names carry units; all floats).

==================================  ==========================================================================
``keybody_err_mean_m`` / ``_max_m``  distance between the robot's key points and their targets, mean and max
                                    over frames and key points with a target (NaN without targets)
``joint_limit_near_frac``           share of frames with some joint within ``near_limit_frac`` (2 %) of its
                                    range from a limit
``joint_limit_violations``          count of (frame, joint) angles outside the range (must be 0)
``joint_speed_peak_frac``           max over frames and joints of ``|qdot| / motor velocity limit`` (central
                                    differences)
``self_collision_frames``           frames where two of the robot's own collision geoms interpenetrate by more
                                    than ``self_collision_tol_m`` (MuJoCo collision detection on the model's
                                    ``mj_model``; MuJoCo's parent/exclude filters apply)
``robot_foot_sliding_mm_per_frame`` mean horizontal displacement per frame of the robot's heel / toe sole points
                                    while the corresponding contact flag is set in both frames
``robot_foot_penetration_max_m``    deepest point of any sole point below z = 0 (0 when none)
``robot_floating_frac``             share of contact-flagged (frame, heel/toe) entries whose robot sole points
                                    are all more than ``floating_height_m`` (2 cm) above the ground
``base_wrench_force_per_weight``    inverse dynamics without ground contact (``mujoco.mj_inverse`` with qvel /
                                    qacc from central differences, gravity on, contacts and constraints off):
                                    the 6-D generalised force at the free joint is the external wrench that
                                    realises the motion. ``|force| / (m g)``: mean, and ``_p95``. A robot at
                                    rest needs exactly its weight (1.0), a body in free fall 0; values well
                                    above ~2, or large while no foot is in contact, flag motions the feet could
                                    not produce
``base_wrench_torque_per_weight_m`` ``|torque about the pelvis origin| / (m g)`` (metres: the lever arm of the
                                    needed support; at rest, the horizontal distance from the pelvis to the
                                    centre of mass): mean, and ``_p95``
``jerk_mean_rad_s3``                mean over joints and time of ``|d^3 q / dt^3|`` of the joint angles low-passed
                                    at 4 Hz on a common 120 fps grid
                                    (:func:`pipeline.quality.band_limited_derivative`, as ``jitter_m_s3``), so
                                    the same motion reads the same at any frame rate (a raw third difference
                                    times fps^3 grows with fps wherever the angles hold noise or kinks)
==================================  ==========================================================================

Contact flags are the human clip's (T, 4) :data:`pipeline.skeleton.FOOT_JOINTS` flags (left heel, left toe,
right heel, right toe); heel flags apply to the rear sole points of the robot foot, toe flags to the front ones.
Without flags, contact is taken from the robot itself (sole points below 1 cm) and floating is NaN.
"""

from __future__ import annotations

import numpy as np

from ingest.errors import require_module
from pipeline.g1_motion import G1Motion
from pipeline.quality import JITTER_CUTOFF_HZ, band_limited_derivative

GRAVITY_M_S2 = 9.81

#: Every key :func:`robot_metrics` returns (the catalog's robot-side clip columns).
ROBOT_METRIC_NAMES: tuple[str, ...] = (
    "keybody_err_mean_m", "keybody_err_max_m", "joint_limit_near_frac", "joint_limit_violations",
    "joint_speed_peak_frac", "self_collision_frames", "robot_foot_sliding_mm_per_frame",
    "robot_foot_penetration_max_m", "robot_floating_frac", "base_wrench_force_per_weight",
    "base_wrench_force_per_weight_p95", "base_wrench_torque_per_weight_m", "base_wrench_torque_per_weight_m_p95",
    "jerk_mean_rad_s3",
)  # fmt: skip
FOOT_BODIES = ("left_ankle_roll_link", "right_ankle_roll_link")


def robot_metrics(motion: G1Motion, model, targets=None, contact: np.ndarray | None = None, *,
                  near_limit_frac: float = 0.02, self_collision_tol_m: float = 0.001,
                  floating_height_m: float = 0.02) -> dict[str, float]:
    """All metrics of the module docstring for ``motion`` on ``model`` (a :class:`pipeline.g1.model.G1Model`).

    targets: a :class:`pipeline.retarget.KeyTargets` (key points and their per-frame targets) or None.
    contact: (T, 4) bool foot contact flags, or None.
    """
    q = np.asarray(motion.joint_pos_rad, dtype=np.float64)
    T = len(q)
    fps = float(motion.fps)
    out: dict[str, float] = {}
    out.update(_keybody_error(motion, model, targets))
    out.update(_joint_metrics(q, fps, model, near_limit_frac))
    out.update(_foot_metrics(motion, model, contact, floating_height_m))
    out["self_collision_frames"] = float(self_collision_frames(motion, model, self_collision_tol_m)) if T else 0.0
    out.update(base_wrench(motion, model))
    return out


# ---------------------------------------------------------------------- pieces


def _keybody_error(motion: G1Motion, model, targets) -> dict[str, float]:
    if targets is None:
        return {"keybody_err_mean_m": float("nan"), "keybody_err_max_m": float("nan")}
    from pipeline.retarget import keypoint_positions

    pts = keypoint_positions(model, motion.root_pos_m, motion.root_quat_wxyz, motion.joint_pos_rad,
                             targets.robot_points)
    err = np.linalg.norm(pts - np.asarray(targets.pos_m), axis=-1)
    has = np.asarray(targets.weight) > 0
    if not np.any(has):
        return {"keybody_err_mean_m": float("nan"), "keybody_err_max_m": float("nan")}
    return {"keybody_err_mean_m": float(err[has].mean()), "keybody_err_max_m": float(err[has].max())}


def _joint_metrics(q: np.ndarray, fps: float, model, near_limit_frac: float) -> dict[str, float]:
    rng = np.asarray(model.joint_range_rad, dtype=np.float64)
    lo, hi = rng[:, 0], rng[:, 1]
    T = len(q)
    margin = near_limit_frac * (hi - lo)
    near = np.any((q < lo + margin) | (q > hi - margin), axis=1)
    out = {
        "joint_limit_near_frac": float(near.mean()) if T else 0.0,
        "joint_limit_violations": float(np.count_nonzero((q < lo) | (q > hi))),
    }
    if T >= 2:
        qd = np.gradient(q, axis=0) * fps
        out["joint_speed_peak_frac"] = float(np.max(np.abs(qd) / np.asarray(model.joint_vel_limit_rad_s)))
    else:
        out["joint_speed_peak_frac"] = 0.0
    jerk = band_limited_derivative(q, fps, JITTER_CUTOFF_HZ, 3) if T >= 4 else np.zeros((0,))
    out["jerk_mean_rad_s3"] = float(np.mean(np.abs(jerk))) if jerk.size else 0.0
    return out


def sole_points_world(motion: G1Motion, model) -> tuple[np.ndarray, np.ndarray]:
    """World positions (T, 2, S, 3) of each foot's sole points (left, right) and a (2, S) bool mask of the
    front (toe) points; the others are the rear (heel) points."""
    from pipeline.g1.model import quat_wxyz_to_rotmat

    pos, quat = np.asarray(motion.body_pos_m), np.asarray(motion.body_quat_wxyz)
    feet, front = [], []
    for name in FOOT_BODIES:
        b = list(motion.body_names).index(name)
        pts = model.sole_points_m(name)  # (S, 3)
        rot = quat_wxyz_to_rotmat(quat[:, b])
        feet.append(pos[:, b, None] + np.einsum("tij,sj->tsi", rot, pts))
        front.append(pts[:, 0] > pts[:, 0].mean())
    return np.stack(feet, axis=1), np.stack(front)


def _foot_metrics(motion: G1Motion, model, contact, floating_height_m: float) -> dict[str, float]:
    T = motion.num_frames
    if T == 0:
        return {"robot_foot_sliding_mm_per_frame": 0.0, "robot_foot_penetration_max_m": 0.0,
                "robot_floating_frac": float("nan")}
    sole, front = sole_points_world(motion, model)  # (T, 2, S, 3), (2, S)
    penetration = float(max(0.0, -sole[..., 2].min()))
    # per (foot, heel/toe) group: mean point and lowest height
    groups = []  # (T, 3) centre, (T,) min z
    for f in range(2):
        for is_front in (False, True):
            sel = front[f] == is_front
            groups.append((sole[:, f][:, sel].mean(axis=1), sole[:, f][:, sel, 2].min(axis=1)))
    centre = np.stack([g[0] for g in groups], axis=1)  # (T, 4, 3) in FOOT_JOINTS order
    low = np.stack([g[1] for g in groups], axis=1)  # (T, 4)
    floating = float("nan")
    if contact is None:
        flags = low < 0.01
    else:
        flags = np.asarray(contact, dtype=bool).reshape(T, 4)
        floating = float(np.mean(low[flags] > floating_height_m)) if np.any(flags) else 0.0
    both = flags[1:] & flags[:-1]
    if np.any(both):
        step = np.linalg.norm(centre[1:, :, :2] - centre[:-1, :, :2], axis=-1)
        sliding = float(step[both].mean() * 1000.0)
    else:
        sliding = 0.0
    return {"robot_foot_sliding_mm_per_frame": sliding, "robot_foot_penetration_max_m": penetration,
            "robot_floating_frac": floating}


def _mujoco():
    return require_module("mujoco", "robot metrics", "pip install mujoco")


def self_collision_frames(motion: G1Motion, model, tol_m: float = 0.001) -> int:
    """Frames where the robot's own collision geoms interpenetrate by more than ``tol_m`` (MuJoCo)."""
    mujoco = _mujoco()
    m = model.mj_model()
    d = mujoco.MjData(m)
    qpos = model.qpos(motion.root_pos_m, motion.root_quat_wxyz, motion.joint_pos_rad)
    robot_root = int(m.body_rootid[m.jnt_bodyid[0]]) if m.njnt else 1
    robot_body = np.asarray(m.body_rootid) == robot_root
    count = 0
    for t in range(len(qpos)):
        d.qpos[:] = qpos[t]
        mujoco.mj_kinematics(m, d)
        mujoco.mj_collision(m, d)
        for c in d.contact[: d.ncon]:
            if c.dist < -tol_m and robot_body[m.geom_bodyid[c.geom1]] and robot_body[m.geom_bodyid[c.geom2]]:
                count += 1
                break
    return count


def base_wrench(motion: G1Motion, model) -> dict[str, float]:
    """External wrench at the floating base needed for the motion (see the module docstring)."""
    nan = float("nan")
    keys = ("base_wrench_force_per_weight", "base_wrench_force_per_weight_p95",
            "base_wrench_torque_per_weight_m", "base_wrench_torque_per_weight_m_p95")
    T = motion.num_frames
    if T < 3 or not model.has_free_joint:
        return dict.fromkeys(keys, nan)
    mujoco = _mujoco()
    m = model.mj_model()
    qpos = model.qpos(motion.root_pos_m, motion.root_quat_wxyz, motion.joint_pos_rad)
    dt = 1.0 / float(motion.fps)
    half = np.zeros((T - 1, m.nv))  # velocity over each interval
    for t in range(T - 1):
        mujoco.mj_differentiatePos(m, half[t], dt, qpos[t], qpos[t + 1])
    qvel = np.zeros((T, m.nv))
    qacc = np.zeros((T, m.nv))
    qvel[1:-1] = 0.5 * (half[1:] + half[:-1])
    qacc[1:-1] = (half[1:] - half[:-1]) / dt
    qvel[0], qvel[-1] = half[0], half[-1]
    qacc[0], qacc[-1] = qacc[1], qacc[-2]
    flags = m.opt.disableflags
    m.opt.disableflags = flags | int(mujoco.mjtDisableBit.mjDSBL_CONTACT) | int(
        mujoco.mjtDisableBit.mjDSBL_CONSTRAINT)
    try:
        d = mujoco.MjData(m)
        wrench = np.zeros((T, 6))
        for t in range(T):
            d.qpos[:], d.qvel[:], d.qacc[:] = qpos[t], qvel[t], qacc[t]
            mujoco.mj_inverse(m, d)
            wrench[t] = d.qfrc_inverse[:6]
    finally:
        m.opt.disableflags = flags
    weight = float(model.total_mass_kg) * float(np.linalg.norm(m.opt.gravity) or GRAVITY_M_S2)
    force = np.linalg.norm(wrench[:, :3], axis=1) / weight
    torque = np.linalg.norm(wrench[:, 3:], axis=1) / weight
    return {
        "base_wrench_force_per_weight": float(force.mean()),
        "base_wrench_force_per_weight_p95": float(np.percentile(force, 95)),
        "base_wrench_torque_per_weight_m": float(torque.mean()),
        "base_wrench_torque_per_weight_m_p95": float(np.percentile(torque, 95)),
    }

