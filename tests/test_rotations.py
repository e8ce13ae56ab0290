"""Quaternion conventions, products, slerp and finite-difference angular velocity against analytic answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pipeline import rotations as R

S = np.sqrt(0.5)


def _random_quats(n, seed=0):
    q = np.random.default_rng(seed).normal(size=(n, 4))
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def test_quarter_turn_about_z_in_both_conventions_and_as_matrix():
    q_wxyz = R.quat_from_axis_angle([0.0, 0.0, 1.0], np.pi / 2)
    np.testing.assert_allclose(q_wxyz, [S, 0, 0, S], atol=1e-12)
    np.testing.assert_allclose(R.wxyz_to_xyzw(q_wxyz), [0, 0, S, S], atol=1e-12)
    np.testing.assert_allclose(R.xyzw_to_wxyz(R.wxyz_to_xyzw(q_wxyz)), q_wxyz)
    expected = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(R.quat_to_matrix(q_wxyz), expected, atol=1e-12)
    np.testing.assert_allclose(R.quat_rotate(q_wxyz, [1.0, 0.0, 0.0]), [0.0, 1.0, 0.0], atol=1e-12)
    # scipy is scalar-last: the xyzw array is what it expects
    np.testing.assert_allclose(Rotation.from_quat(R.wxyz_to_xyzw(q_wxyz)).as_matrix(), expected, atol=1e-12)


def test_matrix_round_trip_including_half_turns():
    q = np.concatenate([_random_quats(200), [[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, S, S, 0]]])
    back = R.matrix_to_quat(R.quat_to_matrix(q))
    assert np.all(back[:, 0] >= 0)
    np.testing.assert_allclose(np.abs(np.sum(back * q, axis=1)), 1.0, atol=1e-12)
    np.testing.assert_allclose(R.quat_to_matrix(q), Rotation.from_quat(R.wxyz_to_xyzw(q)).as_matrix(), atol=1e-12)


def test_multiply_composes_like_matrices_and_conjugate_inverts():
    a, b = _random_quats(50, 1), _random_quats(50, 2)
    ab = R.quat_multiply(a, b)
    np.testing.assert_allclose(R.quat_to_matrix(ab), R.quat_to_matrix(a) @ R.quat_to_matrix(b), atol=1e-12)
    ident = R.quat_multiply(a, R.quat_conjugate(a))
    np.testing.assert_allclose(ident, np.tile([1.0, 0, 0, 0], (50, 1)), atol=1e-12)
    v = np.random.default_rng(3).normal(size=(50, 3))
    np.testing.assert_allclose(R.quat_rotate(a, v), np.einsum("nij,nj->ni", R.quat_to_matrix(a), v), atol=1e-12)


def test_rotvec_round_trip_and_small_angles():
    rv = np.random.default_rng(4).normal(size=(100, 3))
    rv *= (np.linspace(1e-9, np.pi - 1e-6, 100) / np.linalg.norm(rv, axis=1))[:, None]
    np.testing.assert_allclose(R.quat_to_rotvec(R.rotvec_to_quat(rv)), rv, atol=1e-9)
    np.testing.assert_allclose(R.quat_to_rotvec(-R.rotvec_to_quat(rv)), rv, atol=1e-9)  # sign-independent
    np.testing.assert_allclose(Rotation.from_rotvec(rv).as_quat(), R.wxyz_to_xyzw(R.rotvec_to_quat(rv)),
                               atol=1e-12)


def test_slerp_midpoint_of_a_known_pair_takes_the_short_arc():
    q0 = R.quat_identity()
    q1 = R.quat_from_axis_angle([1.0, 0.0, 0.0], np.pi / 2)
    mid = R.quat_slerp(q0, q1, 0.5)
    np.testing.assert_allclose(mid, [np.cos(np.pi / 8), np.sin(np.pi / 8), 0, 0], atol=1e-12)
    # -q1 is the same rotation: the result must be the same rotation, not the long way round
    mid2 = R.quat_slerp(q0, -q1, 0.5)
    assert abs(np.dot(mid2, mid)) == pytest.approx(1.0, abs=1e-12)
    # quarter point, and the ends
    np.testing.assert_allclose(R.quat_slerp(q0, q1, 0.25), R.quat_from_axis_angle([1, 0, 0], np.pi / 8), atol=1e-12)
    np.testing.assert_allclose(R.quat_slerp(q0, q1, np.array([0.0, 1.0])), np.stack([q0, q1]), atol=1e-12)
    # identical inputs do not divide by zero
    np.testing.assert_allclose(R.quat_slerp(q1, q1, 0.3), q1, atol=1e-12)


def test_continuity_flips_signs_so_neighbours_share_a_hemisphere():
    angles = np.linspace(0, 3 * np.pi, 40)  # goes past a full turn: q itself changes sign along the way
    q = R.quat_from_axis_angle(np.tile([0.0, 0.0, 1.0], (40, 1)), angles)
    q[::3] *= -1.0
    c = R.quat_continuous(q)
    assert np.all(np.sum(c[1:] * c[:-1], axis=1) > 0)
    np.testing.assert_allclose(np.abs(np.sum(c * q, axis=1)), 1.0, atol=1e-12)  # same rotations
    np.testing.assert_allclose(c[0], q[0])


@pytest.mark.parametrize("flip_signs", [False, True])
def test_angular_velocity_of_a_constant_rate_rotation(flip_signs):
    axis = np.array([1.0, 2.0, 2.0]) / 3.0
    rate_rad_s, fps = 2.5, 30.0
    t = np.arange(60) / fps
    q0 = R.quat_from_axis_angle([0.3, -0.2, 0.9], 0.7)
    q = R.quat_multiply(R.quat_from_axis_angle(np.tile(axis, (60, 1)), rate_rad_s * t), q0)  # world-frame spin
    if flip_signs:
        q[1::2] *= -1.0
    omega = R.angular_velocity_world(q, 1.0 / fps)
    np.testing.assert_allclose(omega, np.tile(rate_rad_s * axis, (60, 1)), atol=1e-9)  # ends included
    # a batch axis after time works the same
    both = R.angular_velocity_world(np.stack([q, q], axis=1), 1.0 / fps)
    assert both.shape == (60, 2, 3)
    np.testing.assert_allclose(both[:, 1], omega)


def test_angular_velocity_of_short_sequences():
    assert R.angular_velocity_world(R.quat_identity((1,)), 0.1).shape == (1, 3)
    q = R.quat_from_axis_angle(np.tile([0.0, 1.0, 0.0], (2, 1)), np.array([0.0, 0.2]))
    np.testing.assert_allclose(R.angular_velocity_world(q, 0.1), [[0, 2.0, 0], [0, 2.0, 0]], atol=1e-12)


def test_zero_quaternion_is_refused():
    with pytest.raises(ValueError, match="zero-length"):
        R.quat_normalize(np.zeros(4))
