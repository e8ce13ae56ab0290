"""Whole-clip retargeting on synthetic clips generated from the G1 itself (known true robot motion)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("mujoco")

from g1_motion_factory import g1_arms, g1_crouch, g1_walk, human_clip_from_g1  # noqa: E402

from ingest.errors import ConfigError  # noqa: E402
from pipeline.g1.model import JOINT_NAMES, TRACKED_BODIES, load_g1  # noqa: E402
from pipeline.retarget import (  # noqa: E402
    DEFAULT_KEYPOINTS,
    KeyPoint,
    RetargetConfig,
    RobotPoint,
    keypoint_positions,
    retarget_clip,
)
from pipeline.robot_metrics import robot_metrics, self_collision_frames, sole_points_world  # noqa: E402
from pipeline.skeleton import BODY_JOINTS, joint_index  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return load_g1()


@pytest.fixture(scope="module")
def walk(model):
    truth = g1_walk(model, num_frames=150, turn_rate_rad_s=0.3, scale=1.3)
    return truth, retarget_clip(truth.clip, model)


def _clip_with(clip, **changes):
    return dataclasses.replace(clip, **changes)


def test_walk_matches_the_true_robot_motion(model, walk):
    truth, result = walk
    motion = result.motion
    kp = keypoint_positions(model, motion.root_pos_m, motion.root_quat_wxyz, motion.joint_pos_rad,
                            result.targets.robot_points)
    err = np.linalg.norm(kp - truth.keypoints_m, axis=-1)
    assert err.mean() < 0.01 and err.max() < 0.03, (err.mean(), err.max())
    true_bodies, _ = model.fk(truth.root_pos_m, truth.root_quat_wxyz, truth.joint_pos_rad)
    tb = [model.body_index(b) for b in TRACKED_BODIES]
    body_err = np.linalg.norm(motion.body_pos_m[:, tb] - true_bodies[:, tb], axis=-1)
    assert body_err.mean() < 0.02, body_err.mean()
    assert result.stats.converged
    assert result.stats.cost_final < result.stats.cost_initial


def test_motion_is_a_consistent_g1_motion(model, walk):
    truth, result = walk
    m = result.motion
    assert m.clip_id == truth.clip.clip_id and m.fps == truth.clip.fps and m.num_frames == truth.clip.num_frames
    assert m.joint_names == JOINT_NAMES and m.body_names == model.body_names
    np.testing.assert_allclose(np.linalg.norm(m.root_quat_wxyz, axis=1), 1.0, atol=1e-12)
    assert np.all(np.sum(m.root_quat_wxyz[1:] * m.root_quat_wxyz[:-1], axis=1) >= 0)  # sign-continuous
    pos, quat = model.fk(m.root_pos_m, m.root_quat_wxyz, m.joint_pos_rad)
    np.testing.assert_allclose(m.body_pos_m, pos, atol=1e-12)
    np.testing.assert_allclose(m.body_quat_wxyz, quat, atol=1e-12)


@pytest.mark.parametrize("scale", [1.15, 1.45])
def test_proportions_come_from_the_clips_own_bones(model, scale):
    """Human = scale x robot: segment scales are 1/scale, whatever the human's size; no height assumed.

    Limb segments are exact (the G1's knee-ankle and elbow-wrist distances are constant); trunk segments are
    approximate (the G1 hips and shoulders move a little with hip / shoulder pitch, the trunk with the waist)."""
    truth = g1_crouch(model, num_frames=90, scale=scale)
    result = retarget_clip(truth.clip, model)
    seg = result.targets.segment_scale
    for limb in ("left_knee->left_ankle", "right_elbow->right_wrist", "left_hip->left_knee", "right_ankle->right_toe"):
        assert seg[limb] == pytest.approx(1.0 / scale, rel=1e-4), limb
    np.testing.assert_allclose(np.array(list(seg.values())), 1.0 / scale, rtol=0.02)
    assert result.targets.root_scale == pytest.approx(1.0 / scale, rel=0.01)
    err = np.linalg.norm(result.targets.pos_m - truth.keypoints_m, axis=-1)
    assert err.max() < 0.015


def test_joint_limits_hold_exactly_when_targets_ask_for_more(model):
    """Knee targets 10 cm behind the legs ask for hyperextended knees: the knees stop at their bound."""
    truth = g1_arms(model, num_frames=60, seed=3)
    joints = truth.clip.joints_world_m.copy()
    for knee in joint_index("left_knee", "right_knee"):
        joints[:, knee, 0] -= 0.13
    result = retarget_clip(_clip_with(truth.clip, joints_world_m=joints), model)
    q = result.motion.joint_pos_rad
    lo, hi = model.joint_range_rad[:, 0], model.joint_range_rad[:, 1]
    assert np.all(q >= lo) and np.all(q <= hi)
    knees = [JOINT_NAMES.index("left_knee"), JOINT_NAMES.index("right_knee")]
    assert np.all(q[:, knees] < lo[knees] + 0.1)  # pushed against the bound, not just anywhere
    metrics = robot_metrics(result.motion, model, result.targets, result.contact)
    assert metrics["joint_limit_violations"] == 0


def test_feet_stay_planted_and_above_ground(model, walk):
    truth, result = walk
    metrics = robot_metrics(result.motion, model, result.targets, truth.clip.foot_contact)
    assert metrics["robot_foot_sliding_mm_per_frame"] < 1.0
    assert metrics["robot_foot_penetration_max_m"] < 0.002
    assert metrics["robot_floating_frac"] == 0.0
    sole, _ = sole_points_world(result.motion, model)
    assert sole[..., 2].min() > -0.002


def test_jittery_targets_come_out_smooth(model):
    truth = g1_walk(model, num_frames=120)
    rng = np.random.default_rng(0)
    noisy = truth.clip.joints_world_m + rng.normal(0, 0.02, truth.clip.joints_world_m.shape).astype(np.float32)
    result = retarget_clip(_clip_with(truth.clip, joints_world_m=noisy), model)
    motion = result.motion
    kp = keypoint_positions(model, motion.root_pos_m, motion.root_quat_wxyz, motion.joint_pos_rad,
                            result.targets.robot_points)
    fps = truth.clip.fps
    jerk_out = np.abs(np.diff(kp, 3, axis=0)).mean() * fps**3
    jerk_targets = np.abs(np.diff(result.targets.pos_m, 3, axis=0)).mean() * fps**3
    jerk_truth = np.abs(np.diff(truth.keypoints_m, 3, axis=0)).mean() * fps**3
    assert jerk_out < 0.1 * jerk_targets, (jerk_out, jerk_targets)
    assert jerk_out < 3 * jerk_truth, (jerk_out, jerk_truth)
    unsmoothed = retarget_clip(_clip_with(truth.clip, joints_world_m=noisy), model,
                               RetargetConfig(w_root_acc=0.0, w_root_ang_acc=0.0, w_joint_acc=0.0)).motion
    jerk_q = np.abs(np.diff(motion.joint_pos_rad, 3, axis=0)).mean()
    assert jerk_q < 0.1 * np.abs(np.diff(unsmoothed.joint_pos_rad, 3, axis=0)).mean()
    # and closer to the truth than the noisy targets are
    err_out = np.linalg.norm(kp - truth.keypoints_m, axis=-1).mean()
    err_targets = np.linalg.norm(result.targets.pos_m - truth.keypoints_m, axis=-1).mean()
    assert err_out < 0.6 * err_targets, (err_out, err_targets)


def test_a_sudden_jump_is_spread_within_the_motor_speed(model):
    """The arms snap to a new pose in one frame: per-frame IK would need an unbounded joint speed."""
    truth = g1_arms(model, num_frames=60, seed=1)
    joints = truth.clip.joints_world_m.copy()
    arm = joint_index("left_elbow", "left_wrist")
    joints[30:, arm, 2] += 0.35
    result = retarget_clip(_clip_with(truth.clip, joints_world_m=joints), model)
    metrics = robot_metrics(result.motion, model)
    assert metrics["joint_speed_peak_frac"] < 1.0


def test_hands_do_not_go_through_the_torso(model):
    """Targets put both wrists inside the chest: the robot's hands stop outside its torso."""
    truth = g1_arms(model, num_frames=40, seed=2)
    joints = truth.clip.joints_world_m.copy()
    neck, pelvis = joint_index("neck")[0], joint_index("pelvis")[0]
    chest = 0.6 * joints[:, neck] + 0.4 * joints[:, pelvis]
    lateral = joints[:, joint_index("left_shoulder")[0]] - joints[:, joint_index("right_shoulder")[0]]
    lateral /= np.linalg.norm(lateral, axis=-1, keepdims=True)
    for side, sign in (("left", 1.0), ("right", -1.0)):
        joints[:, joint_index(f"{side}_wrist")[0]] = chest + sign * 0.08 * lateral
    clip = _clip_with(truth.clip, joints_world_m=joints)
    avoided = retarget_clip(clip, model)
    ignored = retarget_clip(clip, model, RetargetConfig(w_self_collision=0.0))
    assert self_collision_frames(ignored.motion, model) > 0  # the test asks for something real
    assert self_collision_frames(avoided.motion, model) == 0


def test_low_confidence_joints_give_no_target(model):
    truth = g1_arms(model, num_frames=60, seed=4)
    joints = truth.clip.joints_world_m.copy()
    conf = truth.clip.joint_conf.copy()
    w = joint_index("right_wrist")[0]
    joints[20:40, w] += 3.0  # garbage ...
    conf[20:40, w] = 0.05  # ... flagged as such
    joints[45, w] = np.nan  # and a missing value
    result = retarget_clip(_clip_with(truth.clip, joints_world_m=joints, joint_conf=conf), model)
    k = result.targets.names.index("right_wrist")
    assert np.all(result.targets.weight[20:40, k] == 0) and np.all(result.targets.weight[:20, k] > 0)
    assert result.targets.weight[45, k] == 0 and np.all(np.isfinite(result.motion.joint_pos_rad))
    kp = keypoint_positions(model, result.motion.root_pos_m, result.motion.root_quat_wxyz,
                            result.motion.joint_pos_rad, result.targets.robot_points)
    assert np.linalg.norm(kp[:, k] - truth.keypoints_m[:, k], axis=-1).max() < 0.1


def test_deterministic(model):
    truth = g1_walk(model, num_frames=60)
    a = retarget_clip(truth.clip, model)
    b = retarget_clip(truth.clip, model)
    assert np.array_equal(a.motion.joint_pos_rad, b.motion.joint_pos_rad)
    assert np.array_equal(a.motion.root_pos_m, b.motion.root_pos_m)
    assert np.array_equal(a.motion.root_quat_wxyz, b.motion.root_quat_wxyz)


@pytest.mark.parametrize("frames", [1, 2, 3, 7])
def test_short_clips(model, frames):
    truth = g1_crouch(model, num_frames=frames)
    result = retarget_clip(truth.clip, model)
    assert result.motion.joint_pos_rad.shape == (frames, 29)
    assert np.all(np.isfinite(result.motion.joint_pos_rad))
    err = np.linalg.norm(result.motion.body_pos_m[:, 0] - truth.root_pos_m, axis=-1)
    assert err.max() < 0.03


def test_config_errors_name_the_problem(model):
    truth = g1_crouch(model, num_frames=10)
    bad_joint = DEFAULT_KEYPOINTS + (KeyPoint("tail", (RobotPoint("pelvis"),), "pelvis"),)
    with pytest.raises(ConfigError, match="tail"):
        retarget_clip(truth.clip, model, RetargetConfig(keypoints=bad_joint))
    bad_body = (KeyPoint("pelvis", (RobotPoint("no_such_link"),), None),)
    with pytest.raises(ConfigError, match="no_such_link"):
        retarget_clip(truth.clip, model, RetargetConfig(keypoints=bad_body))
    two_roots = DEFAULT_KEYPOINTS[:1] + (KeyPoint("neck", (RobotPoint("torso_link"),), None),)
    with pytest.raises(ConfigError, match="root"):
        retarget_clip(truth.clip, model, RetargetConfig(keypoints=two_roots))


def test_unscaled_option_keeps_human_size(model):
    truth = g1_crouch(model, num_frames=30, scale=1.3)
    result = retarget_clip(truth.clip, model, RetargetConfig(scale_segments=False))
    assert result.targets.root_scale == 1.0
    np.testing.assert_allclose(result.targets.pos_m, truth.keypoints_m * 1.3, atol=2e-6)


def test_factory_clip_is_consistent(model):
    """The synthetic clip itself: landmarks are the scaled robot key points, contacts are real contacts."""
    truth = g1_walk(model, num_frames=90, scale=1.2)
    clip = truth.clip
    assert clip.joint_names == BODY_JOINTS
    np.testing.assert_allclose(clip.joints_world_m[:, joint_index("left_knee")[0]],
                               1.2 * truth.keypoints_m[:, [kp.human for kp in DEFAULT_KEYPOINTS].index("left_knee")],
                               atol=1e-5)
    assert 0.3 < clip.foot_contact.mean() < 0.8  # a gait: stance and swing
    again = human_clip_from_g1(model, truth.root_pos_m, truth.root_quat_wxyz, truth.joint_pos_rad, scale=1.2,
                               fps=clip.fps, clip_id=clip.clip_id)
    np.testing.assert_array_equal(again.foot_contact, clip.foot_contact)


def test_importing_does_not_import_torch():
    code = "import sys, pipeline.retarget, pipeline.robot_metrics; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
