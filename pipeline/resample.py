"""Resampling a :class:`~pipeline.g1_motion.G1Motion` to another frame rate, and its finite-difference velocities.

Time grid: input frame ``i`` is at ``i / fps_in`` seconds; output frame ``k`` at ``k / fps_out`` for every
``k / fps_out <= (T_in - 1) / fps_in`` (the last input frame is kept when it falls on the output grid, so
resampling to the same rate returns the same frames).

Interpolation: linear for the root position and the joint angles, slerp (shorter arc, after sign continuity)
for the root quaternion. Body positions and orientations are **recomputed by forward kinematics** from the
resampled root and joints instead of being interpolated body by body: interpolating 30 bodies independently
would give poses no joint configuration produces (bones that shrink mid-interval), so an exported file would
disagree with the robot model it is meant for. FK keeps every exported frame a valid G1 pose.

Velocities: central differences inside, one-sided differences at the two ends (``numpy.gradient`` with
``edge_order=1``); angular velocities in the world frame from ``q(t+1) q(t-1)^-1`` over ``2 dt``
(:func:`pipeline.rotations.angular_velocity_world`). Linear body velocities are those of the body frame
origins (the derivative of ``body_pos_m``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.g1_motion import G1Motion
from pipeline.rotations import angular_velocity_world, quat_continuous, quat_slerp

_GRID_TOL = 1e-6  # fraction of an output frame by which the last input frame may miss the grid and still count


def output_times_s(num_frames: int, fps_in: float, fps_out: float) -> np.ndarray:
    """(K,) output sample times (s) covering ``[0, (num_frames - 1) / fps_in]`` at ``fps_out``."""
    if fps_in <= 0 or fps_out <= 0:
        raise ValueError(f"frame rates must be positive (got {fps_in} -> {fps_out})")
    if num_frames <= 0:
        return np.zeros(0)
    duration_s = (num_frames - 1) / fps_in
    count = int(np.floor(duration_s * fps_out + _GRID_TOL)) + 1
    return np.arange(count) / fps_out


def _blend(times_s: np.ndarray, num_frames: int, fps_in: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Input neighbours ``i0, i1`` (K,) and blend weights ``w`` (K,) in [0, 1] for each output time."""
    pos = np.clip(times_s * fps_in, 0.0, num_frames - 1)
    nearest = np.round(pos)
    pos = np.where(np.abs(pos - nearest) < 1e-9, nearest, pos)  # a time on an input frame maps exactly onto it
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, num_frames - 1)
    i1 = np.minimum(i0 + 1, num_frames - 1)
    w = np.clip(pos - i0, 0.0, 1.0)
    return i0, i1, w


def lerp_at(values: np.ndarray, times_s: np.ndarray, fps_in: float) -> np.ndarray:
    """Linear interpolation of (T, ...) samples taken at ``fps_in`` at the (K,) ``times_s``; returns (K, ...)."""
    v = np.asarray(values, dtype=np.float64)
    i0, i1, w = _blend(times_s, len(v), fps_in)
    w = w.reshape((-1,) + (1,) * (v.ndim - 1))
    return v[i0] * (1.0 - w) + v[i1] * w


def slerp_at(quat_wxyz: np.ndarray, times_s: np.ndarray, fps_in: float) -> np.ndarray:
    """Slerp of (T, ..., 4) orientations taken at ``fps_in`` at the (K,) ``times_s``; returns (K, ..., 4)."""
    q = quat_continuous(quat_wxyz)
    i0, i1, w = _blend(times_s, len(q), fps_in)
    w = w.reshape((-1,) + (1,) * (q.ndim - 2))
    return quat_slerp(q[i0], q[i1], w)


def resample_g1_motion(motion: G1Motion, fps_out: float, model=None, *, bodies: bool = True) -> G1Motion:
    """``motion`` at ``fps_out``: root and joints interpolated, body kinematics recomputed by FK.

    model: a :class:`pipeline.g1.model.G1Model` whose joint names are ``motion.joint_names`` (default: the
    bundled G1, loaded when needed). bodies: False skips FK and returns a motion without bodies
    (``body_names == ()``), for formats that carry only root and joints (Unitree CSV).
    At the same rate the root and joint arrays are returned unchanged (bodies still recomputed by FK).
    """
    fps_in = float(motion.fps)
    fps_out = float(fps_out)
    if abs(fps_out - fps_in) < 1e-9 * max(fps_in, 1.0):
        root_pos = np.asarray(motion.root_pos_m, dtype=np.float64)
        root_quat = np.asarray(motion.root_quat_wxyz, dtype=np.float64)
        joint_pos = np.asarray(motion.joint_pos_rad, dtype=np.float64)
        fps_out = fps_in
    else:
        times = output_times_s(motion.num_frames, fps_in, fps_out)
        root_pos = lerp_at(motion.root_pos_m, times, fps_in)
        root_quat = slerp_at(motion.root_quat_wxyz, times, fps_in)
        joint_pos = lerp_at(motion.joint_pos_rad, times, fps_in)
    if not bodies:
        t = len(root_pos)
        return G1Motion(clip_id=motion.clip_id, fps=fps_out, root_pos_m=root_pos, root_quat_wxyz=root_quat,
                        joint_names=tuple(motion.joint_names), joint_pos_rad=joint_pos, body_names=(),
                        body_pos_m=np.zeros((t, 0, 3)), body_quat_wxyz=np.zeros((t, 0, 4)))
    return motion_with_fk(motion.clip_id, fps_out, root_pos, root_quat, tuple(motion.joint_names), joint_pos,
                          model)


def motion_with_fk(clip_id: str, fps: float, root_pos_m: np.ndarray, root_quat_wxyz: np.ndarray,
                   joint_names: tuple[str, ...], joint_pos_rad: np.ndarray, model=None) -> G1Motion:
    """A :class:`G1Motion` whose body kinematics are the model's FK of the given root (T, 3), (T, 4) and
    joints (T, 29) (columns named by ``joint_names``, reordered to the model's order if they differ)."""
    if model is None:
        from pipeline.g1.model import load_g1

        model = load_g1()
    model_joints = tuple(model.joint_names)
    joint_pos_rad = np.asarray(joint_pos_rad, dtype=np.float64)
    if tuple(joint_names) != model_joints:
        missing = sorted(set(model_joints) - set(joint_names))
        if missing:
            raise ValueError(f"motion {clip_id} lacks the model's joints {missing}; "
                             "retarget it with the same G1 model")
        cols = [list(joint_names).index(n) for n in model_joints]
        joint_pos_rad = joint_pos_rad[:, cols]
    body_pos, body_quat = model.fk(np.asarray(root_pos_m, dtype=np.float64),
                                   np.asarray(root_quat_wxyz, dtype=np.float64), joint_pos_rad)
    return G1Motion(clip_id=clip_id, fps=float(fps), root_pos_m=np.asarray(root_pos_m, dtype=np.float64),
                    root_quat_wxyz=np.asarray(root_quat_wxyz, dtype=np.float64), joint_names=model_joints,
                    joint_pos_rad=joint_pos_rad, body_names=tuple(model.body_names),
                    body_pos_m=np.asarray(body_pos, dtype=np.float64),
                    body_quat_wxyz=np.asarray(body_quat, dtype=np.float64))


def finite_difference(values: np.ndarray, dt_s: float) -> np.ndarray:
    """d/dt of (T, ...) samples every ``dt_s`` seconds: central inside, one-sided at the ends; zeros if T < 2."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return np.zeros_like(v)
    return np.gradient(v, dt_s, axis=0, edge_order=1)


@dataclass
class G1Velocities:
    """Finite-difference velocities of a :class:`G1Motion` (world frame, same frame order).

    joint_vel_rad_s (T, 29); root_lin_vel_m_s (T, 3); root_ang_vel_rad_s (T, 3);
    body_lin_vel_m_s (T, B, 3) of the body origins; body_ang_vel_rad_s (T, B, 3).
    """

    joint_vel_rad_s: np.ndarray
    root_lin_vel_m_s: np.ndarray
    root_ang_vel_rad_s: np.ndarray
    body_lin_vel_m_s: np.ndarray
    body_ang_vel_rad_s: np.ndarray


def g1_velocities(motion: G1Motion) -> G1Velocities:
    """Velocities of ``motion`` by finite differences at its own rate (see the module docstring)."""
    dt = 1.0 / float(motion.fps)
    return G1Velocities(
        joint_vel_rad_s=finite_difference(motion.joint_pos_rad, dt),
        root_lin_vel_m_s=finite_difference(motion.root_pos_m, dt),
        root_ang_vel_rad_s=angular_velocity_world(motion.root_quat_wxyz, dt),
        body_lin_vel_m_s=finite_difference(motion.body_pos_m, dt),
        body_ang_vel_rad_s=angular_velocity_world(motion.body_quat_wxyz, dt) if len(motion.body_names)
        else np.zeros((motion.num_frames, 0, 3)),
    )
