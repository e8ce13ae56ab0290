from __future__ import annotations

import math

import numpy as np
import pytest
from motion_factory import (
    add_depth_noise,
    jumping_motion,
    look_at_camera,
    standing_motion,
    transform_points,
    walking_motion,
)

from ingest.errors import BackendError, ConfigError
from pipeline.skeleton import FOOT_JOINTS, joint_index
from pipeline.world import UP_METHODS, WorldConfig, align_to_world, median_background_motion, static_camera_score

FPS = 30.0
PELVIS, NECK = joint_index("pelvis", "neck")


def _observe(motion, T_cam_from_world, noise_m=0.0, seed=0):
    joints_cam = transform_points(T_cam_from_world, motion.joints_world_m)
    if noise_m:
        joints_cam = joints_cam + np.random.default_rng(seed).normal(0, noise_m, joints_cam.shape)
    return joints_cam, np.ones(joints_cam.shape[:2])


def _residual_after_yaw_fit(recovered: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-point distance (m) after the best yaw + horizontal shift maps truth onto recovered (z untouched)."""
    a = truth.reshape(-1, 3)
    b = recovered.reshape(-1, 3)
    ca, cb = a[:, :2].mean(0), b[:, :2].mean(0)
    h = (a[:, :2] - ca).T @ (b[:, :2] - cb)
    u, _, vt = np.linalg.svd(h)
    r = (u @ vt).T
    if np.linalg.det(r) < 0:
        vt[-1] *= -1
        r = (u @ vt).T
    moved = np.column_stack([(a[:, :2] - ca) @ r.T + cb, a[:, 2]])
    return np.linalg.norm(moved - b, axis=1)


def _facing_xy(joints: np.ndarray) -> np.ndarray:
    lh, rh, ls, rs = joint_index("left_hip", "right_hip", "left_shoulder", "right_shoulder")
    across = joints[lh] - joints[rh] + joints[ls] - joints[rs]
    facing = np.array([across[1], -across[0]])
    return facing / np.linalg.norm(facing)


def _up_error_deg(alignment, T_cam_from_world) -> float:
    true_up_cam = T_cam_from_world[:3, :3] @ np.array([0.0, 0.0, 1.0])
    return math.degrees(math.acos(np.clip(alignment.up_cam @ true_up_cam, -1, 1)))


TILTED = dict(distance_m=7.0, height_m=2.4, azimuth_deg=-70.0, roll_deg=6.0)


def test_straight_walk_recovered_within_a_centimetre_through_a_tilted_camera():
    motion = walking_motion(240, FPS, lean_deg=6.0)
    T = look_at_camera((3.0, 0.0, 1.0), **TILTED)
    a = align_to_world(*_observe(motion, T), FPS)

    assert a.up_method == "line"  # contacts lie along one line; the body prior leans 6 degrees
    assert a.body_up_angle_deg == pytest.approx(6.0, abs=0.2)
    assert _up_error_deg(a, T) < 0.1
    assert _residual_after_yaw_fit(a.joints_world_m, motion.joints_world_m).max() < 0.01
    np.testing.assert_allclose(a.joints_world_m[..., 2], motion.joints_world_m[..., 2], atol=0.01)
    # heading normalised: faces +x, pelvis above the origin at the first frame
    np.testing.assert_allclose(_facing_xy(a.joints_world_m[0]), [1.0, 0.0], atol=1e-3)
    np.testing.assert_allclose(a.joints_world_m[0, PELVIS, :2], [0.0, 0.0], atol=1e-6)
    # the returned transform and the per-frame ground lift are what moved the joints, and the transform is rigid
    joints_cam = transform_points(T, motion.joints_world_m)
    lifted = transform_points(a.T_world_from_camera, joints_cam) + np.stack(
        [np.zeros_like(a.ground_lift_m), np.zeros_like(a.ground_lift_m), a.ground_lift_m], -1)[:, None, :]
    np.testing.assert_allclose(lifted, a.joints_world_m, atol=1e-9)
    assert np.abs(a.ground_lift_m).max() < 0.01  # exact synthetic feet: the lift only corrects the fit's rounding
    r = a.T_world_from_camera[:3, :3]
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-9)
    assert np.linalg.det(r) == pytest.approx(1.0)
    assert a.camera_height_m == pytest.approx(2.4, abs=0.01)


def test_curved_walk_uses_the_ground_plane():
    motion = walking_motion(300, FPS, turn_rate_rad_m=0.35, lean_deg=8.0, heading_rad=0.7)
    T = look_at_camera((1.0, 2.0, 1.0), **TILTED)
    a = align_to_world(*_observe(motion, T), FPS)
    assert a.up_method == "plane"
    assert _up_error_deg(a, T) < 0.2
    assert _residual_after_yaw_fit(a.joints_world_m, motion.joints_world_m).max() < 0.01
    np.testing.assert_allclose(_facing_xy(a.joints_world_m[0]), [1.0, 0.0], atol=1e-3)


def test_noisy_walk_stays_close():
    motion = walking_motion(300, FPS, lean_deg=5.0)
    T = look_at_camera((4.0, 0.0, 1.0), **TILTED)
    a = align_to_world(*_observe(motion, T, noise_m=0.01, seed=3), FPS)
    assert a.up_method in ("line", "plane")
    assert _up_error_deg(a, T) < 0.5
    feet = joint_index(*FOOT_JOINTS)
    planted = a.joints_world_m[:, feet][motion.foot_contact]
    assert abs(np.median(planted[:, 2])) < 0.01  # ground at z = 0


def test_depth_noise_along_viewing_rays_does_not_tilt_the_ground():
    # Monocular depth errors move points along the viewing rays; a plain plane fit then tilts towards the rays
    # (seen on MediaPipe output of the shared runner video). Walking straight with a 6-degree lean:
    motion = walking_motion(300, FPS, lean_deg=6.0)
    T = look_at_camera((3.0, 0.0, 1.0), **TILTED)
    rng = np.random.default_rng(1)
    joints_cam = add_depth_noise(transform_points(T, motion.joints_world_m), 0.2, rng)
    joints_cam += rng.normal(0, 0.005, joints_cam.shape)
    conf = np.ones(joints_cam.shape[:2])
    a = align_to_world(joints_cam, conf, FPS)
    assert a.up_method == "line" and _up_error_deg(a, T) < 1.0
    assert a.camera_height_m == pytest.approx(2.4, abs=0.05)
    # the same data without the inlier test and the depth down-weighting: the ground tilts by degrees
    naive = align_to_world(joints_cam, conf, FPS, WorldConfig(min_inlier_frac=0.0, depth_weight=1.0))
    assert _up_error_deg(naive, T) > 5.0


def test_standing_person_gets_a_sensible_up_and_ground():
    motion = standing_motion(150, FPS, heading_rad=2.0, start_xy_m=(1.0, -0.5))
    T = look_at_camera((1.0, -0.5, 1.0), **TILTED)
    a = align_to_world(*_observe(motion, T, noise_m=0.003), FPS)
    assert a.up_method == "body"  # the feet do not move: nothing to fit a plane to
    assert _up_error_deg(a, T) < 1.0
    feet = joint_index(*FOOT_JOINTS)
    assert np.abs(np.median(a.joints_world_m[:, feet, 2])) < 0.01
    assert a.foot_contact.mean() > 0.95
    assert a.joints_world_m[:, PELVIS, 2].mean() == pytest.approx(motion.joints_world_m[:, PELVIS, 2].mean(), abs=0.02)


def test_camera_fallback_without_a_body_prior():
    motion = standing_motion(90, FPS)
    T = look_at_camera((0.0, 0.0, 1.0), distance_m=5.0, height_m=1.0, roll_deg=0.0)  # a level camera
    joints_cam, conf = _observe(motion, T)
    conf[:, [PELVIS, NECK]] = 0.0
    a = align_to_world(joints_cam, conf, FPS)
    assert a.up_method == "camera"
    np.testing.assert_allclose(a.up_cam, [0.0, -1.0, 0.0])
    assert math.isnan(a.body_up_angle_deg)


def test_contacts_and_ground_of_a_jumper():
    motion = jumping_motion(150, FPS, jump_height_m=0.3)
    T = look_at_camera((0.0, 0.0, 1.0), **TILTED)
    a = align_to_world(*_observe(motion, T), FPS)
    feet = joint_index(*FOOT_JOINTS)
    z = a.joints_world_m[:, feet, 2]
    assert np.abs(z[motion.foot_contact]).max() < 0.01  # ground at z = 0 despite the flights
    high = z.min(axis=1) > 0.1
    assert high.any() and not a.foot_contact[high].any()  # no contact high in the air
    assert a.foot_contact[motion.foot_contact].all()


def _wandering_heights(motion, amplitude_m=0.12, period_s=3.0, low_foot=None, drop_m=0.06):
    """World joints with the errors a monocular backend makes: the whole body bobs slowly (root depth and leg
    length read per frame) and, optionally, foot point ``low_foot`` reads ``drop_m`` low while in contact."""
    x = motion.joints_world_m.copy()
    t_s = np.arange(len(x)) / FPS
    x[..., 2] += amplitude_m * np.sin(2 * np.pi * t_s / period_s)[:, None]
    if low_foot is not None:
        feet = joint_index(*FOOT_JOINTS)
        for k in (low_foot, low_foot + 1):  # heel and toe of one foot
            x[motion.foot_contact[:, k], feet[k], 2] -= drop_m
    return x


@pytest.mark.parametrize("low_foot", [None, 0])
def test_ground_lock_keeps_a_wandering_walker_out_of_the_ground(low_foot):
    motion = walking_motion(300, FPS)
    T = look_at_camera((3.0, 0.0, 1.0), **TILTED)
    truth = motion.joints_world_m
    observed = _wandering_heights(motion, low_foot=low_foot)
    feet = joint_index(*FOOT_JOINTS)
    plane_only = align_to_world(transform_points(T, observed), np.ones(observed.shape[:2]), FPS,
                                WorldConfig(ground_lock=False))
    a = align_to_world(transform_points(T, observed), np.ones(observed.shape[:2]), FPS)

    assert -plane_only.joints_world_m[:, feet, 2].min() > 0.08  # one ground plane cannot follow the wander
    assert -a.joints_world_m[:, feet, 2].min() < 0.02
    lowest, true_lowest = a.joints_world_m[:, feet, 2].min(axis=1), truth[:, feet, 2].min(axis=1)
    # the lower foot is put on the ground: the body floats only around the changes of stance of the low foot
    assert np.mean(lowest - true_lowest > 0.05) < (0.15 if low_foot is not None else 0.001)
    if low_foot is None:  # the lock removes the wander: heights as in the truth
        assert np.abs(a.joints_world_m[..., 2] - truth[..., 2]).max() < 0.03


def test_ground_lock_keeps_a_jump_in_the_air():
    motion = jumping_motion(150, FPS, jump_height_m=0.3)
    T = look_at_camera((0.0, 0.0, 1.0), **TILTED)
    observed = _wandering_heights(motion, amplitude_m=0.08)
    a = align_to_world(transform_points(T, observed), np.ones(observed.shape[:2]), FPS)
    feet = joint_index(*FOOT_JOINTS)
    lowest, true_lowest = a.joints_world_m[:, feet, 2].min(axis=1), motion.joints_world_m[:, feet, 2].min(axis=1)
    assert lowest.max() > 0.85 * true_lowest.max()  # the flight keeps (nearly) its height
    assert -lowest.min() < 0.015


def test_walking_contacts_match_the_truth():
    motion = walking_motion(300, FPS)
    T = look_at_camera((4.0, 0.0, 1.0), **TILTED)
    a = align_to_world(*_observe(motion, T), FPS)
    truth = motion.foot_contact
    assert a.foot_contact[truth].all()  # every planted foot point is found
    assert (a.foot_contact == truth).mean() > 0.9  # the rest: a few frames at lift-off and touch-down


def test_speed_rule_and_thresholds_are_configurable():
    motion = walking_motion(150, FPS)
    T = look_at_camera((2.0, 0.0, 1.0), **TILTED)
    joints_cam, conf = _observe(motion, T)
    strict = align_to_world(joints_cam, conf, FPS, WorldConfig(contact_height_m=0.001, contact_max_speed_m_s=1e-3))
    loose = align_to_world(joints_cam, conf, FPS, WorldConfig(contact_height_m=0.2))
    assert strict.foot_contact.sum() < loose.foot_contact.sum()
    assert loose.foot_contact.all()


def test_alignment_is_deterministic():
    motion = walking_motion(120, FPS, turn_rate_rad_m=0.3)
    T = look_at_camera((1.0, 0.0, 1.0), **TILTED)
    joints_cam, conf = _observe(motion, T, noise_m=0.01)
    a = align_to_world(joints_cam, conf, FPS)
    b = align_to_world(joints_cam.copy(), conf.copy(), FPS)
    assert np.array_equal(a.T_world_from_camera, b.T_world_from_camera)
    assert np.array_equal(a.foot_contact, b.foot_contact)


def test_single_frame_and_bad_input():
    motion = standing_motion(1, FPS)
    T = look_at_camera((0.0, 0.0, 1.0), **TILTED)
    a = align_to_world(*_observe(motion, T), FPS)
    assert a.up_method == "body" and np.isfinite(a.T_world_from_camera).all()
    with pytest.raises(ValueError, match="joints_cam_m"):
        align_to_world(np.zeros((5, 20)), np.zeros((5, 20)), FPS)
    with pytest.raises(BackendError, match="BODY_JOINTS"):
        align_to_world(np.zeros((5, 3, 3)), np.ones((5, 3)), FPS, joint_names=("pelvis", "neck", "nose"))


def test_world_config_reports_every_problem():
    with pytest.raises(ConfigError) as err:
        WorldConfig(ground_band_m=0.0, fallback_up="sky", min_conf=2.0, depth_weight=0.0)
    text = str(err.value)
    assert all(name in text for name in ("ground_band_m", "fallback_up", "min_conf", "depth_weight"))


def test_up_method_names_are_stable():
    assert UP_METHODS == ("camera", "body", "line", "plane")


def test_static_camera_score():
    assert math.isnan(static_camera_score(None, np.arange(10)))
    assert math.isnan(static_camera_score(np.zeros(10), np.array([4])))  # one frame: no change inside the clip
    assert static_camera_score(np.zeros(10), np.arange(10)) == 1.0
    bm = np.full(100, 0.003)
    bm[50:] = 0.05
    static = static_camera_score(bm, np.arange(10, 40))
    moving = static_camera_score(bm, np.arange(60, 90))
    assert static > 0.6 and moving < 0.01
    assert static_camera_score(np.full(10, 0.01), np.arange(10), half_motion=0.01) == pytest.approx(0.5)
    assert static_camera_score(np.full(10, 0.004), np.arange(10)) == pytest.approx(0.5)
    assert median_background_motion(bm, np.arange(45, 60)) == pytest.approx(0.05)  # 10 of 14 changes moving
    # the change into the clip's first frame belongs to the previous frame: it is ignored
    bm2 = np.zeros(20)
    bm2[5] = 1.0
    assert static_camera_score(bm2, np.arange(5, 15)) == 1.0
    assert math.isnan(static_camera_score(np.full(10, np.nan), np.arange(10)))
