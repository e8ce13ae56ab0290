from __future__ import annotations

import math

import numpy as np
import pytest
from motion_factory import jumping_motion, standing_motion, walking_motion

from pipeline.quality import (
    JITTER_CUTOFF_HZ,
    METRIC_NAMES,
    ROOT_JERK_CUTOFF_HZ,
    SMOOTHNESS_GRID_FPS,
    bone_length_metrics,
    clip_metrics,
    motion_metrics,
    tracking_metrics,
)
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


def test_sinusoid_has_the_analytic_band_limited_jerk_and_acceleration():
    # x(t) = A sin(2 pi f t) along a unit direction per joint, f = 1 Hz well inside the band: jerk
    # A (2 pi f)^3 |cos|, acceleration A (2 pi f)^2 |sin|. 3 s = whole periods, so the clip starts and ends on a
    # zero crossing (the point reflection at the ends is then exact), and the averaged window of about
    # [0.25, 2.75] s is five half-periods, over which |cos| and |sin| average 2 / pi (to 1 %: the window's ends
    # fall between grid samples).
    amp, f = 0.05, 1.0
    t = np.arange(91) / FPS
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(20, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    joints = _still_body(91) + amp * np.sin(2 * np.pi * f * t)[:, None, None] * directions[None]
    m = _metrics(joints)
    w = 2 * np.pi * f
    gain = 1 / (1 + (f / JITTER_CUTOFF_HZ) ** 8)  # forward-backward Butterworth of order 4
    grid = np.sinc(f / SMOOTHNESS_GRID_FPS)  # a finite difference on the 120 fps grid: sin(x) / x per order
    assert m["jitter_m_s3"] == pytest.approx(amp * w**3 * 2 / np.pi * gain * grid**3, rel=1e-2)
    assert m["accel_mean_m_s2"] == pytest.approx(amp * w**2 * 2 / np.pi * gain * grid**2, rel=1e-2)
    root_gain = 1 / (1 + (f / ROOT_JERK_CUTOFF_HZ) ** 8)
    assert m["root_jerk_m_s3"] == pytest.approx(amp * w**3 * 2 / np.pi * root_gain * grid**3, rel=1e-2)


def test_jitter_of_per_frame_noise_follows_the_band_limited_formula():
    rng = np.random.default_rng(1)
    clean = _metrics(_still_body(90))["jitter_m_s3"]
    noisy = _metrics(_still_body(90) + rng.normal(0, 0.01, (90, 20, 3)))["jitter_m_s3"]
    assert clean == pytest.approx(0.0, abs=1e-6)
    # i.i.d. noise of std s per coordinate at fps has the one-sided spectrum 2 s^2 / fps on [0, fps / 2]; its jerk
    # after |H|^2 = 1 / (1 + (f / fc)^8) has the std s sqrt(2 / fps) (2 pi)^3 fc^3.5 sqrt(I),
    # I = int_0^inf u^6 / (1 + u^8)^2 du, and the mean norm of a 3-D Gaussian vector is 2 sqrt(2 / pi) std
    u = np.linspace(0.0, 20.0, 200001)
    integral = float(np.sum(u**6 / (1 + u**8) ** 2) * (u[1] - u[0]))
    std = 0.01 * math.sqrt(2 / FPS) * (2 * math.pi) ** 3 * JITTER_CUTOFF_HZ**3.5 * math.sqrt(integral)
    assert noisy == pytest.approx(2 * math.sqrt(2 / math.pi) * std, rel=0.1)


def test_per_frame_noise_is_not_one_signal_at_every_rate():
    # the same per-frame noise std at 4x the frame rate puts 4x less variance into the 4 Hz band: half the jitter.
    # (This is why the frame-rate tests below use one continuous-time noise process instead.)
    rng = np.random.default_rng(2)
    still = standing_motion(1, FPS, arm_wave_rad=0.0).joints_world_m[0]
    jit = {}
    for fps in (30.0, 120.0):
        n = int(6 * fps)
        joints = still[None] + rng.normal(0, 0.01, (n, 20, 3))
        jit[fps] = clip_metrics(joints, np.ones((n, 20)), fps, _contacts(n))["jitter_m_s3"]
    assert jit[120.0] == pytest.approx(jit[30.0] / 2, rel=0.1)


RATES = (12.0, 24.0, 30.0, 50.0, 60.0)
NOISE_RATE_HZ = 600  # a multiple of every rate in RATES: each rate samples the same noise exactly
DURATION_S = 6.0


def _band_limited_noise(sigma: float, band_hz: float, seed: int, shape: tuple[int, ...] = (20, 3)) -> np.ndarray:
    """(DURATION_S * 600 + 1, *shape) Gaussian noise with a flat spectrum up to ``band_hz`` (an ideal FFT low-pass
    of white noise) and std ``sigma``, at 600 Hz: one continuous-time signal that each frame rate samples."""
    rng = np.random.default_rng(seed)
    n = int(DURATION_S * NOISE_RATE_HZ) + 1
    spec = np.fft.rfft(rng.normal(size=(n, *shape)), axis=0)
    spec[np.fft.rfftfreq(n, 1.0 / NOISE_RATE_HZ) > band_hz] = 0
    noise = np.fft.irfft(spec, n=n, axis=0)
    return noise / noise.std() * sigma


MOTIONS = {
    "walk": lambda n, fps: walking_motion(n, fps),
    "stand": lambda n, fps: standing_motion(n, fps, sway_m=0.03),  # sway moves the pelvis: a root jerk to compare
    "jump": lambda n, fps: jumping_motion(n, fps),
}


@pytest.mark.parametrize("noisy", [False, True], ids=["clean", "noisy"])
@pytest.mark.parametrize("kind", sorted(MOTIONS))
def test_smoothness_metrics_do_not_depend_on_the_frame_rate(kind, noisy):
    """The same motion sampled at 12, 24, 30, 50 and 60 fps reads within 10 % (the raw per-frame differences
    spread up to 400 % on these, bench/bench_smoothness_fps.py). "The same motion" includes the noise: a noisy estimate is modelled as the motion plus one
    continuous-time noise process, 1 cm per axis with a flat spectrum up to 5 Hz (below the 6 Hz Nyquist
    frequency of 12 fps, so no rate aliases it), generated once at 600 Hz and sampled at each rate. I.i.d.
    per-frame noise would be a different physical signal at each rate (see the test above)."""
    noise = _band_limited_noise(0.01, 5.0, seed=3) if noisy else None
    values = {name: [] for name in ("jitter_m_s3", "root_jerk_m_s3", "accel_mean_m_s2")}
    for fps in RATES:
        motion = MOTIONS[kind](int(round(DURATION_S * fps)), fps)
        joints = motion.joints_world_m
        if noise is not None:
            joints = joints + noise[:: int(NOISE_RATE_HZ / fps)][: len(joints)]
        m = motion_metrics(joints, fps, motion.foot_contact)
        for name in values:
            values[name].append(m[name])
    for name, v in values.items():
        v = np.array(v)
        assert v.min() > 0.1, (name, v)
        assert v.max() <= 1.1 * v.min(), (name, v)


def test_robot_jerk_does_not_depend_on_the_frame_rate():
    from types import SimpleNamespace

    from pipeline.robot_metrics import _joint_metrics

    model = SimpleNamespace(joint_range_rad=np.tile([-3.0, 3.0], (29, 1)), joint_vel_limit_rad_s=np.full(29, 30.0))
    noise = _band_limited_noise(0.02, 5.0, seed=4, shape=(29,))  # 0.02 rad per joint, 0-5 Hz
    jerk = []
    for fps in RATES:
        t = np.arange(int(round(DURATION_S * fps))) / fps
        gait = 0.4 * np.sin(2 * np.pi * 0.9 * t)[:, None] * np.linspace(0.2, 1.0, 29)[None]
        kinks = 0.2 * np.abs(np.sin(np.pi * 1.3 * t))[:, None]  # velocity jumps: the raw third difference explodes
        q = gait + kinks + noise[:: int(NOISE_RATE_HZ / fps)][: len(t)]
        jerk.append(_joint_metrics(q, fps, model, 0.02)["jerk_mean_rad_s3"])
    assert max(jerk) <= 1.1 * min(jerk), jerk


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
    assert m.keys() == ref.keys()
    assert all(m[k] == pytest.approx(ref[k], abs=1e-9, nan_ok=True) for k in ref)  # up to summation order
