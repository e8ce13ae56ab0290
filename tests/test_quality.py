from __future__ import annotations

import math

import numpy as np
import pytest
from motion_factory import standing_motion

from pipeline.quality import METRIC_NAMES, bone_length_metrics, clip_metrics, motion_metrics, tracking_metrics
from pipeline.skeleton import BONES, FOOT_JOINTS, joint_index

FPS = 30.0
FEET = joint_index(*FOOT_JOINTS)
PELVIS = joint_index("pelvis")[0]


def _still_body(num_frames: int) -> np.ndarray:
    """(T, 20, 3) a standing pose repeated: feet on the ground, nothing moves."""
    pose = standing_motion(1, FPS, arm_wave_rad=0.0).joints_world_m[0]
    return np.repeat(pose[None], num_frames, axis=0)


def _contacts(num_frames: int, value: bool = True) -> np.ndarray:
    return np.full((num_frames, 4), value)


def _metrics(joints, contact=None, **kw):
    t = len(joints)
    return clip_metrics(joints, np.ones(joints.shape[:2]), FPS, _contacts(t) if contact is None else contact, **kw)


def test_constant_velocity_has_zero_jitter_jerk_and_acceleration():
    t = np.arange(60) / FPS
    joints = _still_body(60) + (np.array([1.2, -0.4, 0.0]) * t[:, None])[:, None, :]
    m = _metrics(joints)
    assert m["jitter_m_s3"] == pytest.approx(0.0, abs=1e-6)
    assert m["root_jerk_m_s3"] == pytest.approx(0.0, abs=1e-6)
    assert m["accel_mean_m_s2"] == pytest.approx(0.0, abs=1e-6)


def test_cubic_trajectory_has_the_analytic_third_difference():
    # x(t) = a t^3 -> x[t+3] - 3x[t+2] + 3x[t+1] - x[t] = 6 a dt^3, i.e. 6a m/s^3 after * fps^3
    a = 0.7
    t = np.arange(50) / FPS
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(20, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    joints = _still_body(50) + a * t[:, None, None] ** 3 * directions[None]
    m = _metrics(joints)
    assert m["jitter_m_s3"] == pytest.approx(6 * a, rel=1e-6)
    assert m["root_jerk_m_s3"] == pytest.approx(6 * a, rel=1e-6)
    # acceleration 6 a t: mean over the second-difference samples
    n = np.arange(48)
    expected_acc = np.mean(6 * a * (n + 1) / FPS)
    assert m["accel_mean_m_s2"] == pytest.approx(expected_acc, rel=1e-6)


def test_jitter_grows_with_noise():
    rng = np.random.default_rng(1)
    clean = _metrics(_still_body(90))["jitter_m_s3"]
    noisy = _metrics(_still_body(90) + rng.normal(0, 0.01, (90, 20, 3)))["jitter_m_s3"]
    assert clean == pytest.approx(0.0, abs=1e-6)
    # i.i.d. noise of std s per coordinate: the third difference has std sqrt(1 + 9 + 9 + 1) s per coordinate,
    # and the mean norm of a 3-D Gaussian vector is 2 sqrt(2 / pi) times its per-coordinate std
    expected = 2 * math.sqrt(2 / math.pi) * math.sqrt(20) * 0.01 * FPS**3
    assert noisy == pytest.approx(expected, rel=0.05)


def test_sliding_feet_give_their_speed_in_mm_per_frame():
    speed_m_s = 0.45
    t = np.arange(40) / FPS
    joints = _still_body(40)
    joints[:, FEET, 0] += speed_m_s * t[:, None]
    joints[:, FEET, 2] += 0.0
    m = _metrics(joints)
    assert m["foot_sliding_mm_per_frame"] == pytest.approx(speed_m_s / FPS * 1000.0)
    # vertical motion is not sliding, and a foot counts only while in contact in both frames
    lifted = _still_body(40)
    lifted[:, FEET, 2] += 0.3 * t[:, None]
    assert _metrics(lifted)["foot_sliding_mm_per_frame"] == pytest.approx(0.0, abs=1e-9)
    none = _metrics(joints, contact=_contacts(40, False))
    assert math.isnan(none["foot_sliding_mm_per_frame"])
    assert none["foot_contact_score"] == 0.0


def test_floating_and_penetration():
    floating = _still_body(30)
    floating[..., 2] += 0.10
    m = _metrics(floating, contact=_contacts(30, False))
    assert m["floating_frac"] == 1.0 and m["penetration_max_m"] == 0.0

    sunk = _still_body(30)
    sunk[10, FEET[2], 2] = -0.03
    m = _metrics(sunk)
    assert m["penetration_max_m"] == pytest.approx(0.03)
    assert m["floating_frac"] == 0.0

    half = _still_body(30)
    half[:15, :, 2] += 0.06  # 6 cm up for half the frames: floating beyond the 5 cm default
    assert _metrics(half)["floating_frac"] == pytest.approx(0.5)
    assert _metrics(half, floating_height_m=0.1)["floating_frac"] == 0.0


def test_foot_contact_score_and_pelvis_heights():
    joints = _still_body(20)
    joints[:, PELVIS, 2] = np.linspace(0.7, 1.1, 20)
    contact = _contacts(20, False)
    contact[:5, 0] = True
    contact[3:8, 3] = True
    m = _metrics(joints, contact=contact)
    assert m["foot_contact_score"] == pytest.approx(8 / 20)
    assert m["pelvis_height_min_m"] == pytest.approx(0.7)
    assert m["pelvis_height_max_m"] == pytest.approx(1.1)


def test_bone_length_noise_shows_up():
    joints = _still_body(100)
    assert bone_length_metrics(joints)["bone_length_std_m"] == pytest.approx(0.0, abs=1e-12)
    elbow, wrist = joint_index("left_elbow", "left_wrist")
    forearm = joints[0, wrist] - joints[0, elbow]
    length = np.linalg.norm(forearm)
    d = 0.02
    sign = np.where(np.arange(100) % 2 == 0, 1.0, -1.0)
    joints[:, wrist] += (sign * d)[:, None] * forearm / length  # forearm alternates length +- d: std = d
    m = bone_length_metrics(joints)
    assert m["bone_length_std_m"] == pytest.approx(d / len(BONES))
    assert m["bone_length_cv"] == pytest.approx(d / length / len(BONES))
    # clip_metrics uses observed frames only: hide the stretched frames and the bones look rigid again
    observed = sign < 0
    only_short = clip_metrics(joints, np.ones((100, 20)), FPS, _contacts(100), observed=observed)
    assert only_short["bone_length_std_m"] == pytest.approx(0.0, abs=1e-9)


def test_tracking_metrics():
    observed = np.ones(30, dtype=bool)
    observed[10:15] = False
    observed[20:22] = False
    conf = np.where(observed[:, None], 0.8, 0.0) * np.ones((30, 20))
    k = int(observed.sum())
    boxes = np.tile([10.0, 20.0, 50.0, 180.0], (k, 1))
    kp = np.zeros((k, 20, 2))
    kp[..., 0] = 100.0
    kp[..., 1] = np.linspace(50, 250, 20)
    kp[0, 3] = [-5.0, 60.0]  # one frame with a keypoint left of the image
    m = tracking_metrics(conf, observed, FPS, det_conf=np.full(k, 0.9), bbox_xywh_px=boxes, keypoints_px=kp,
                         image_size_hw=(480, 640))
    assert m["tracked_frac"] == pytest.approx(23 / 30)
    assert m["longest_gap_s"] == pytest.approx(5 / FPS)
    assert m["conf_mean"] == pytest.approx(0.8)
    assert m["det_conf_mean"] == pytest.approx(0.9)
    assert m["person_height_px_median"] == pytest.approx(180.0)
    assert m["truncated_frac"] == pytest.approx(1 / k)
    # without boxes the keypoints' vertical extent stands in for the person height
    no_box = tracking_metrics(conf, observed, FPS, keypoints_px=kp)
    assert no_box["person_height_px_median"] == pytest.approx(200.0)
    bare = tracking_metrics(conf, observed, FPS)
    assert math.isnan(bare["person_height_px_median"]) and math.isnan(bare["truncated_frac"])


def test_every_clip_gets_the_same_keys_and_nan_when_too_short():
    m = _metrics(_still_body(3), static_camera_score=0.7)
    assert tuple(m) == METRIC_NAMES
    assert all(isinstance(v, float) for v in m.values())
    assert math.isnan(m["jitter_m_s3"]) and math.isnan(m["root_jerk_m_s3"])
    assert m["num_frames"] == 3.0 and m["duration_s"] == pytest.approx(0.1)
    assert m["static_camera_score"] == 0.7
    one = _metrics(_still_body(1))
    assert math.isnan(one["bone_length_std_m"]) and math.isnan(one["accel_mean_m_s2"])
    assert one["foot_contact_score"] == 1.0


def test_motion_metrics_accept_other_joint_orders():
    joints = _still_body(10)
    names = tuple(reversed(standing_motion(1).joint_names))
    m = motion_metrics(joints[:, ::-1], FPS, _contacts(10), joint_names=names)
    ref = motion_metrics(joints, FPS, _contacts(10))
    assert m == ref
