"""Robot-side metrics on constructed G1 motions with analytic answers."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mujoco")

from pipeline.g1.model import JOINT_NAMES, STANDING_PELVIS_HEIGHT_M, load_g1, quat_wxyz_to_rotmat  # noqa: E402
from pipeline.g1_motion import G1Motion  # noqa: E402
from pipeline.retarget import DEFAULT_KEYPOINTS, KeyTargets, keypoint_positions  # noqa: E402
from pipeline.robot_metrics import (  # noqa: E402
    ROBOT_METRIC_NAMES,
    base_wrench,
    robot_metrics,
    self_collision_frames,
    sole_points_world,
)

G = 9.81
FPS = 30.0


@pytest.fixture(scope="module")
def model():
    return load_g1()


def _motion(model, root_pos, q=None, quat=None, fps=FPS) -> G1Motion:
    root_pos = np.asarray(root_pos, dtype=np.float64)
    T = len(root_pos)
    q = np.zeros((T, 29)) if q is None else q
    quat = np.tile([1.0, 0, 0, 0], (T, 1)) if quat is None else quat
    pos, bq = model.fk(root_pos, quat, q)
    return G1Motion("m", fps, root_pos, quat, tuple(model.joint_names), q, tuple(model.body_names), pos, bq)


def _standing(model, T=30, height=STANDING_PELVIS_HEIGHT_M):
    return _motion(model, np.tile([0.0, 0.0, height], (T, 1)))


def test_standing_still_needs_exactly_its_weight(model):
    """No ground contact in the inverse dynamics: holding still takes an upward force of m g (ratio 1)."""
    motion = _standing(model)
    w = base_wrench(motion, model)
    assert w["base_wrench_force_per_weight"] == pytest.approx(1.0, abs=1e-6)
    assert w["base_wrench_force_per_weight_p95"] == pytest.approx(1.0, abs=1e-6)
    # the torque about the pelvis origin is m g times the horizontal lever arm of the centre of mass
    pos, quat = model.fk(motion.root_pos_m[:1], motion.root_quat_wxyz[:1], motion.joint_pos_rad[:1])
    rot = quat_wxyz_to_rotmat(quat[0])
    com = (model.body_mass_kg[:, None] * (pos[0] + np.einsum("bij,bj->bi", rot, model.body_com_m))).sum(0)
    com /= model.total_mass_kg
    lever = np.linalg.norm((com - motion.root_pos_m[0])[:2])
    assert w["base_wrench_torque_per_weight_m"] == pytest.approx(lever, abs=1e-6)


def test_free_fall_needs_no_force(model):
    t = np.arange(30) / FPS
    root = np.column_stack([np.zeros(30), np.zeros(30), 2.0 - 0.5 * G * t**2])
    w = base_wrench(_motion(model, root), model)
    assert w["base_wrench_force_per_weight"] == pytest.approx(0.0, abs=1e-6)


def test_accelerating_upwards_needs_more(model):
    t = np.arange(30) / FPS
    root = np.column_stack([np.zeros(30), np.zeros(30), 1.0 + 0.5 * (0.5 * G) * t**2])  # a = g / 2 upwards
    w = base_wrench(_motion(model, root), model)
    assert w["base_wrench_force_per_weight"] == pytest.approx(1.5, abs=1e-6)


def test_joint_speed_jerk_and_limits(model):
    T, fps = 40, 500.0
    q = np.zeros((T, 29))
    j = JOINT_NAMES.index("left_elbow")
    vmax = model.joint_vel_limit_rad_s[j]
    q[:, j] = 0.5 * vmax * np.arange(T) / fps - 0.5  # constant speed: half the motor limit, zero jerk
    assert q[:, j].max() < model.joint_range_rad[j, 1]
    m = robot_metrics(_motion(model, np.tile([0, 0, 0.8], (T, 1)), q, fps=fps), model)
    assert m["joint_speed_peak_frac"] == pytest.approx(0.5, rel=1e-9)
    assert m["jerk_mean_rad_s3"] == pytest.approx(0.0, abs=1e-6)
    assert m["joint_limit_violations"] == 0


def test_limit_nearness_and_violations_are_counted(model):
    T = 20
    q = np.zeros((T, 29))
    k = JOINT_NAMES.index("left_knee")
    lo, hi = model.joint_range_rad[k]
    q[5:10, k] = hi  # on the bound: near, not a violation
    q[12:15, k] = hi + 0.01  # beyond: 3 violations
    m = robot_metrics(_motion(model, np.tile([0, 0, 0.8], (T, 1)), q), model)
    assert m["joint_limit_near_frac"] == pytest.approx(8 / T)
    assert m["joint_limit_violations"] == 3


def test_foot_sliding_penetration_and_floating(model):
    T = 31
    v = 0.3  # m/s, the whole robot glides with both feet "in contact"
    root = np.column_stack([v * np.arange(T) / FPS, np.zeros(T), np.full(T, STANDING_PELVIS_HEIGHT_M)])
    contact = np.ones((T, 4), dtype=bool)
    m = robot_metrics(_motion(model, root), model, contact=contact)
    assert m["robot_foot_sliding_mm_per_frame"] == pytest.approx(1000 * v / FPS, rel=1e-9)
    assert m["robot_foot_penetration_max_m"] == pytest.approx(0.0, abs=1e-9)
    assert m["robot_floating_frac"] == 0.0

    still = robot_metrics(_standing(model, T), model, contact=contact)
    assert still["robot_foot_sliding_mm_per_frame"] == pytest.approx(0.0, abs=1e-9)
    sole_z = sole_points_world(_standing(model, 1), model)[0][..., 2].min()  # soles at the standing height
    assert abs(sole_z) < 0.001
    sunk = robot_metrics(_standing(model, T, STANDING_PELVIS_HEIGHT_M - 0.01), model, contact=contact)
    assert sunk["robot_foot_penetration_max_m"] == pytest.approx(0.01 - sole_z, abs=1e-9)
    lifted = robot_metrics(_standing(model, T, STANDING_PELVIS_HEIGHT_M + 0.05), model, contact=contact)
    assert lifted["robot_floating_frac"] == 1.0
    slightly = robot_metrics(_standing(model, T, STANDING_PELVIS_HEIGHT_M + 0.01), model, contact=contact)
    assert slightly["robot_floating_frac"] == 0.0  # under the 2 cm threshold
    half = contact.copy()
    half[:, [1, 3]] = False  # heels only
    heels = robot_metrics(_motion(model, root), model, contact=half)
    assert heels["robot_foot_sliding_mm_per_frame"] == pytest.approx(1000 * v / FPS, rel=1e-9)


def test_self_collision_frames(model):
    T = 10
    q = np.zeros((T, 29))
    assert self_collision_frames(_motion(model, np.tile([0, 0, 0.8], (T, 1)), q), model) == 0
    # frames 4..6: the left arm swings across the chest (shoulder roll inwards, elbow folded)
    q[4:7, JOINT_NAMES.index("left_shoulder_roll")] = -1.5
    q[4:7, JOINT_NAMES.index("left_shoulder_pitch")] = -0.6
    assert self_collision_frames(_motion(model, np.tile([0, 0, 0.8], (T, 1)), q), model) == 3


def test_keybody_error_against_shifted_targets(model):
    T = 12
    motion = _standing(model, T)
    points = tuple(kp.robot for kp in DEFAULT_KEYPOINTS)
    kp = keypoint_positions(model, motion.root_pos_m, motion.root_quat_wxyz, motion.joint_pos_rad, points)
    weight = np.ones(kp.shape[:2])
    weight[:, 0] = 0.0  # no target for the pelvis: ignored even though it is far off
    pos = kp + np.array([0.0, 0.02, 0.0])
    pos[:, 0] += 5.0
    targets = KeyTargets(names=tuple(k.human for k in DEFAULT_KEYPOINTS), robot_points=points, pos_m=pos,
                         weight=weight)
    m = robot_metrics(motion, model, targets)
    assert m["keybody_err_mean_m"] == pytest.approx(0.02, abs=1e-12)
    assert m["keybody_err_max_m"] == pytest.approx(0.02, abs=1e-12)
    assert np.isnan(robot_metrics(motion, model)["keybody_err_mean_m"])


def test_all_metric_names_and_types(model):
    m = robot_metrics(_standing(model), model, contact=np.ones((30, 4), dtype=bool))
    expected = {
        "keybody_err_mean_m", "keybody_err_max_m", "joint_limit_near_frac", "joint_limit_violations",
        "joint_speed_peak_frac", "self_collision_frames", "robot_foot_sliding_mm_per_frame",
        "robot_foot_penetration_max_m", "robot_floating_frac", "base_wrench_force_per_weight",
        "base_wrench_force_per_weight_p95", "base_wrench_torque_per_weight_m",
        "base_wrench_torque_per_weight_m_p95", "jerk_mean_rad_s3",
    }  # fmt: skip
    assert set(m) == expected
    assert set(ROBOT_METRIC_NAMES) == expected and len(ROBOT_METRIC_NAMES) == len(expected)
    assert all(isinstance(v, float) for v in m.values())


def test_short_motions_do_not_fail(model):
    for T in (1, 2, 3):
        m = robot_metrics(_standing(model, T), model, contact=np.ones((T, 4), dtype=bool))
        assert m["joint_limit_violations"] == 0
        assert m["jerk_mean_rad_s3"] == 0.0
