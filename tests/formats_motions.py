"""Synthetic G1 motions for the export-format tests: smooth joint sinusoids inside the limits, a root that walks
forward while yawing at a constant rate, bodies from the model's forward kinematics."""

from __future__ import annotations

import numpy as np

from pipeline.g1_motion import G1Motion
from pipeline.resample import motion_with_fk
from pipeline.rotations import quat_from_axis_angle


def g1_test_motion(model, clip_id: str = "clip-a", num_frames: int = 61, fps: float = 30.0,
                   yaw_rate_rad_s: float = 0.8, seed: int = 0, yaw_accel_rad_s2: float = 0.0) -> G1Motion:
    """(num_frames) frames at ``fps``: joints ``mid + 0.4 * half_range * sin(w t + phase)``, root at 0.3 m/s
    along x, height 0.78 m, yaw ``yaw_rate_rad_s * t + yaw_accel_rad_s2 * t^2 / 2``; body kinematics from
    ``model.fk``."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_frames) / fps
    lo, hi = np.asarray(model.joint_range_rad, dtype=np.float64).T
    mid, half = 0.5 * (lo + hi), 0.5 * (hi - lo)
    w = rng.uniform(1.0, 4.0, size=29)
    phase = rng.uniform(0, 2 * np.pi, size=29)
    joints = mid + 0.4 * half * np.sin(w * t[:, None] + phase)
    root = np.stack([0.3 * t, 0.05 * np.ones_like(t), 0.78 * np.ones_like(t)], axis=1)
    yaw = yaw_rate_rad_s * t + 0.5 * yaw_accel_rad_s2 * t**2
    quat = quat_from_axis_angle(np.tile([0.0, 0.0, 1.0], (num_frames, 1)), yaw)
    return motion_with_fk(clip_id, fps, root, quat, tuple(model.joint_names), joints, model)
