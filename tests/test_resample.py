"""Resampling G1 motions: analytic ramps and constant-rate yaws at the new times, FK-consistent bodies,
finite-difference velocities."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.g1_motion import G1Motion
from pipeline.resample import (finite_difference, g1_velocities, lerp_at, output_times_s, resample_g1_motion,
                               slerp_at)
from pipeline.rotations import quat_from_axis_angle

JOINTS = tuple(f"j{i}" for i in range(29))


def _yaw(angle_rad):
    angle_rad = np.asarray(angle_rad, dtype=np.float64)
    return quat_from_axis_angle(np.broadcast_to([0.0, 0.0, 1.0], angle_rad.shape + (3,)), angle_rad)


def _ramp_motion(num_frames=31, fps=30.0, yaw_rate_rad_s=1.0, joint_names=JOINTS):
    """Joints a + b t, root moving at constant velocity, yawing at a constant rate; no bodies."""
    t = np.arange(num_frames) / fps
    a = np.linspace(-0.5, 0.5, 29)
    b = np.linspace(1.0, -2.0, 29)
    root = np.stack([0.3 * t, -0.1 * t, 0.75 + 0.0 * t], axis=1)
    return G1Motion(clip_id="ramp", fps=fps, root_pos_m=root, root_quat_wxyz=_yaw(yaw_rate_rad_s * t),
                    joint_names=joint_names, joint_pos_rad=a + b * t[:, None], body_names=(),
                    body_pos_m=np.zeros((num_frames, 0, 3)), body_quat_wxyz=np.zeros((num_frames, 0, 4))), a, b


def test_output_grid_covers_the_clip_and_keeps_the_last_frame_on_the_grid():
    np.testing.assert_allclose(output_times_s(31, 30.0, 50.0), np.arange(51) / 50.0)
    assert len(output_times_s(180, 30.0, 50.0)) == 299  # 179/30 s = 5.967 s -> frames 0..298 at 50 fps
    np.testing.assert_allclose(output_times_s(180, 30.0, 30.0), np.arange(180) / 30.0)
    assert len(output_times_s(1, 30.0, 50.0)) == 1
    with pytest.raises(ValueError):
        output_times_s(10, 0.0, 50.0)


@pytest.mark.parametrize("fps_out", [50.0, 24.0, 60.0, 29.97])
def test_linear_ramp_and_constant_yaw_are_exact_at_the_new_times(fps_out):
    motion, a, b = _ramp_motion(yaw_rate_rad_s=2.0)
    out = resample_g1_motion(motion, fps_out, bodies=False)
    t = np.arange(out.num_frames) / fps_out
    assert out.fps == fps_out and t[-1] <= 1.0 + 1e-9 and 1.0 - t[-1] < 1.0 / fps_out
    np.testing.assert_allclose(out.joint_pos_rad, a + b * t[:, None], atol=1e-12)
    np.testing.assert_allclose(out.root_pos_m[:, 0], 0.3 * t, atol=1e-12)
    # slerp between samples of a constant-rate rotation about a fixed axis is exact (up to sign)
    dots = np.abs(np.sum(out.root_quat_wxyz * _yaw(2.0 * t), axis=1))
    np.testing.assert_allclose(dots, 1.0, atol=1e-12)
    assert out.joint_names == JOINTS and out.body_names == ()


def test_yaw_through_half_turns_and_sign_flips_in_the_input():
    motion, _, _ = _ramp_motion(num_frames=61, fps=30.0, yaw_rate_rad_s=6.0)  # 0.2 rad per frame, 2 turns
    motion.root_quat_wxyz[::2] *= -1.0  # same rotations, alternating hemispheres
    out = resample_g1_motion(motion, 50.0, bodies=False)
    t = np.arange(out.num_frames) / 50.0
    np.testing.assert_allclose(np.abs(np.sum(out.root_quat_wxyz * _yaw(6.0 * t), axis=1)), 1.0, atol=1e-12)
    assert np.all(np.sum(out.root_quat_wxyz[1:] * out.root_quat_wxyz[:-1], axis=1) > 0)  # continuous output


def test_same_rate_returns_the_same_root_and_joints():
    motion, _, _ = _ramp_motion()
    out = resample_g1_motion(motion, 30.0, bodies=False)
    np.testing.assert_array_equal(out.joint_pos_rad, motion.joint_pos_rad)
    np.testing.assert_array_equal(out.root_quat_wxyz, motion.root_quat_wxyz)
    np.testing.assert_array_equal(out.root_pos_m, motion.root_pos_m)


def test_lerp_and_slerp_helpers_hit_input_samples_exactly():
    v = np.random.default_rng(0).normal(size=(10, 2, 3))
    times = np.arange(10) / 25.0
    np.testing.assert_array_equal(lerp_at(v, times, 25.0), v)
    np.testing.assert_allclose(lerp_at(v, np.array([0.5 / 25.0]), 25.0)[0], 0.5 * (v[0] + v[1]))
    q = _yaw(np.linspace(0, 1, 10))
    np.testing.assert_allclose(slerp_at(q, times, 25.0), q, atol=1e-12)


def test_velocities_central_inside_one_sided_at_the_ends():
    dt = 0.02
    t = np.arange(20) * dt
    x = t**2  # central differences are exact for a quadratic; one-sided ones are off by dt at the ends
    v = finite_difference(x, dt)
    np.testing.assert_allclose(v[1:-1], 2 * t[1:-1], atol=1e-12)
    assert v[0] == pytest.approx((x[1] - x[0]) / dt) and v[-1] == pytest.approx((x[-1] - x[-2]) / dt)
    assert np.all(finite_difference(np.ones((1, 3)), dt) == 0)


def test_g1_velocities_of_the_ramp():
    motion, _, b = _ramp_motion(yaw_rate_rad_s=1.5)
    vel = g1_velocities(motion)
    np.testing.assert_allclose(vel.joint_vel_rad_s, np.tile(b, (31, 1)), atol=1e-9)
    np.testing.assert_allclose(vel.root_lin_vel_m_s, np.tile([0.3, -0.1, 0.0], (31, 1)), atol=1e-9)
    np.testing.assert_allclose(vel.root_ang_vel_rad_s, np.tile([0.0, 0.0, 1.5], (31, 1)), atol=1e-9)
    assert vel.body_ang_vel_rad_s.shape == (31, 0, 3)


def test_bodies_are_the_models_fk_of_the_resampled_root_and_joints():
    from pipeline.g1.model import JOINT_NAMES, load_g1

    model = load_g1()
    motion, _, _ = _ramp_motion(joint_names=tuple(JOINT_NAMES))
    motion.joint_pos_rad[:] = np.clip(0.3 * motion.joint_pos_rad, *model.joint_range_rad.T)
    out = resample_g1_motion(motion, 50.0, model)
    assert out.body_names == tuple(model.body_names) and out.body_pos_m.shape == (51, len(model.body_names), 3)
    pos, quat = model.fk(out.root_pos_m, out.root_quat_wxyz, out.joint_pos_rad)
    np.testing.assert_allclose(out.body_pos_m, pos, atol=1e-12)
    np.testing.assert_allclose(out.body_quat_wxyz, quat, atol=1e-12)
    # the pelvis is the root
    np.testing.assert_allclose(out.body_pos_m[:, 0], out.root_pos_m, atol=1e-12)


def test_joint_columns_are_reordered_to_the_model():
    from pipeline.g1.model import JOINT_NAMES, load_g1

    model = load_g1()
    motion, _, _ = _ramp_motion(joint_names=tuple(JOINT_NAMES))
    motion.joint_pos_rad[:] *= 0.2
    shuffled = tuple(reversed(JOINT_NAMES))
    swapped = G1Motion(clip_id="x", fps=motion.fps, root_pos_m=motion.root_pos_m,
                       root_quat_wxyz=motion.root_quat_wxyz, joint_names=shuffled,
                       joint_pos_rad=motion.joint_pos_rad[:, ::-1], body_names=(),
                       body_pos_m=motion.body_pos_m, body_quat_wxyz=motion.body_quat_wxyz)
    a = resample_g1_motion(motion, 30.0, model)
    b = resample_g1_motion(swapped, 30.0, model)
    assert b.joint_names == tuple(JOINT_NAMES)
    np.testing.assert_allclose(b.joint_pos_rad, a.joint_pos_rad)
    np.testing.assert_allclose(b.body_pos_m, a.body_pos_m)
