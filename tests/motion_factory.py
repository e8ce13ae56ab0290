"""Synthetic human motions with known ground truth, for tests of clips, world alignment, quality and retargeting.

A motion is generated in the world frame (metres, z up, ground at z = 0) on the 20-joint
:data:`pipeline.skeleton.BODY_JOINTS` set, with exact foot contacts; a camera pose puts it into the OpenCV camera
frame; :func:`make_track` turns it into a :class:`pipeline.motion.HumanTrack` (optionally with noise, dropped
frames and low-confidence stretches) and :func:`make_pose_result` wraps tracks into a
:class:`pipeline.motion.PoseResult` (shot cuts, background motion).

Typical use::

    motion = walking_motion(num_frames=300, fps=30.0)
    T_cam_from_world = look_at_camera(distance_m=6.0, height_m=2.0, roll_deg=5.0)
    track = make_track(motion, T_cam_from_world, noise_m=0.005, drop_frames=range(100, 103))
    result = make_pose_result([track], num_frames=300, fps=30.0, shot_starts=[150])

Body frame used to build poses: x forward, y left, z up, origin on the ground below the pelvis. Proportions are
fractions of the standing height (Drillis & Contini segment ratios).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline.motion import HumanTrack, PoseResult
from pipeline.skeleton import BODY_JOINTS, FOOT_JOINTS

J = {name: i for i, name in enumerate(BODY_JOINTS)}
GRAVITY_M_S2 = 9.81


@dataclass(frozen=True)
class BodyShape:
    """Segment lengths (m) of the synthetic figure, derived from ``height_m``."""

    height_m: float = 1.75

    @property
    def thigh_m(self) -> float:
        return 0.245 * self.height_m

    @property
    def shin_m(self) -> float:
        return 0.246 * self.height_m

    @property
    def ankle_height_m(self) -> float:
        return 0.039 * self.height_m

    @property
    def heel_to_ankle_m(self) -> float:
        """Horizontal distance from the heel point to the ankle centre."""
        return 0.03 * self.height_m

    @property
    def foot_length_m(self) -> float:
        return 0.152 * self.height_m

    @property
    def hip_half_width_m(self) -> float:
        return 0.05 * self.height_m

    @property
    def shoulder_half_width_m(self) -> float:
        return 0.115 * self.height_m

    @property
    def trunk_m(self) -> float:
        """Pelvis to neck (mid-shoulder)."""
        return 0.288 * self.height_m

    @property
    def upper_arm_m(self) -> float:
        return 0.186 * self.height_m

    @property
    def forearm_m(self) -> float:
        return 0.146 * self.height_m

    @property
    def leg_m(self) -> float:
        return self.thigh_m + self.shin_m


@dataclass
class SyntheticMotion:
    """Ground truth of a synthetic motion in the world frame.

    joints_world_m: (T, 20, 3) float64, metres, z up, ground at z = 0.
    foot_contact: (T, 4) bool, true contacts of :data:`FOOT_JOINTS` (foot planted and still).
    heading_rad: (T,) direction the body faces (yaw about z, 0 = +x).
    fps: frames per second; kind: ``"walk"``, ``"stand"``, ``"jump"`` or a custom name.
    """

    joints_world_m: np.ndarray
    foot_contact: np.ndarray
    heading_rad: np.ndarray
    fps: float
    kind: str
    shape: BodyShape = field(default_factory=BodyShape)
    joint_names: tuple[str, ...] = BODY_JOINTS

    @property
    def num_frames(self) -> int:
        return len(self.joints_world_m)


# --- motions ---------------------------------------------------------------------------------------


def walking_motion(
    num_frames: int = 300,
    fps: float = 30.0,
    *,
    speed_m_s: float = 0.8,
    stride_period_s: float = 1.0,
    turn_rate_rad_m: float = 0.0,
    lean_deg: float = 0.0,
    foot_lift_m: float = 0.08,
    height_m: float = 1.75,
    heading_rad: float = 0.0,
    start_xy_m: tuple[float, float] = (0.0, 0.0),
) -> SyntheticMotion:
    """A walker along a path of constant curvature ``turn_rate_rad_m`` (rad per metre; 0 = straight).

    Each foot is planted (heel and toe at z = 0, still) for 60 % of the stride and swings forward with a lift of
    ``foot_lift_m`` for 40 %; knees come from two-bone IK, so leg bones keep their length. ``lean_deg`` tilts the
    trunk forward (positive) about the pelvis. Raises ``ValueError`` when the stride is too long for the legs.
    """
    shape = BodyShape(height_m)
    t = np.arange(num_frames) / fps
    stride_m = speed_m_s * stride_period_s
    # largest horizontal hip-ankle distance: 0.3 stride, longer on the outside of a turn
    half_range = 0.3 * stride_m * (1 + shape.hip_half_width_m * abs(turn_rate_rad_m))
    reach = 0.985 * shape.leg_m
    if half_range >= 0.8 * reach:
        raise ValueError(f"stride {stride_m:.2f} m is too long for legs of {shape.leg_m:.2f} m")
    bob_m = 0.01
    pelvis_top = shape.ankle_height_m + math.sqrt(reach**2 - half_range**2)
    s_pelvis = speed_m_s * t
    pelvis_z = pelvis_top - bob_m * (1 - np.cos(4 * np.pi * s_pelvis / stride_m)) / 2
    path = _ArcPath(start_xy_m, heading_rad, turn_rate_rad_m)
    pelvis_xy, heading = path.at(s_pelvis)
    pelvis = np.column_stack([pelvis_xy, pelvis_z])

    feet = {}
    contact = np.zeros((num_frames, 4), dtype=bool)
    for side, sign, offset in (("left", 1.0, 0.0), ("right", -1.0, 0.5)):
        cycle = s_pelvis / stride_m + offset
        k = np.floor(cycle)
        phase = cycle - k
        swing = phase >= 0.6
        sigma = np.clip((phase - 0.6) / 0.4, 0.0, 1.0)
        progress = np.where(swing, (1 - np.cos(np.pi * sigma)) / 2, 0.0)
        s_ankle = stride_m * (k + 0.3 - offset + progress)
        lift = np.where(swing, foot_lift_m * np.sin(np.pi * sigma), 0.0)
        feet[side] = _foot_points(path, s_ankle, sign * shape.hip_half_width_m, lift, shape)
        stance = ~swing
        cols = [FOOT_JOINTS.index(f"{side}_heel"), FOOT_JOINTS.index(f"{side}_toe")]
        contact[:, cols] = stance[:, None]

    arm_phase = 2 * np.pi * s_pelvis / stride_m
    joints = _assemble(pelvis, heading, feet, shape, lean_deg, arm_swing_rad=(0.35 * np.sin(arm_phase)))
    return SyntheticMotion(joints, contact, heading, fps, "walk", shape)


def standing_motion(
    num_frames: int = 150,
    fps: float = 30.0,
    *,
    arm_wave_rad: float = 0.4,
    sway_m: float = 0.0,
    lean_deg: float = 0.0,
    height_m: float = 1.75,
    heading_rad: float = 0.0,
    start_xy_m: tuple[float, float] = (0.0, 0.0),
) -> SyntheticMotion:
    """A person standing still on both feet (feet fixed, in contact), arms swinging by ``arm_wave_rad``.

    ``sway_m`` moves the pelvis sideways sinusoidally (period 2 s) with the feet planted.
    """
    shape = BodyShape(height_m)
    t = np.arange(num_frames) / fps
    heading = np.full(num_frames, heading_rad)
    fwd = np.array([math.cos(heading_rad), math.sin(heading_rad)])
    left = np.array([-fwd[1], fwd[0]])
    sway = sway_m * np.sin(np.pi * t)
    pelvis_xy = np.asarray(start_xy_m, dtype=np.float64) + sway[:, None] * left
    pelvis_z = np.full(num_frames, shape.ankle_height_m + 0.99 * shape.leg_m)
    pelvis = np.column_stack([pelvis_xy, pelvis_z])
    path = _ArcPath(start_xy_m, heading_rad, 0.0)
    s0 = np.zeros(num_frames)
    feet = {
        side: _foot_points(path, s0, sign * shape.hip_half_width_m, np.zeros(num_frames), shape)
        for side, sign in (("left", 1.0), ("right", -1.0))
    }
    contact = np.ones((num_frames, 4), dtype=bool)
    joints = _assemble(pelvis, heading, feet, shape, lean_deg, arm_swing_rad=arm_wave_rad * np.sin(np.pi * t))
    return SyntheticMotion(joints, contact, heading, fps, "stand", shape)


def jumping_motion(
    num_frames: int = 150,
    fps: float = 30.0,
    *,
    jump_height_m: float = 0.25,
    crouch_m: float = 0.15,
    ground_time_s: float = 0.8,
    height_m: float = 1.75,
    heading_rad: float = 0.0,
    start_xy_m: tuple[float, float] = (0.0, 0.0),
) -> SyntheticMotion:
    """Repeated vertical jumps in place: a crouch of ``crouch_m`` on the ground, then a ballistic flight of
    apex ``jump_height_m`` (the whole body rises; feet leave the ground)."""
    shape = BodyShape(height_m)
    t = np.arange(num_frames) / fps
    v0 = math.sqrt(2 * GRAVITY_M_S2 * jump_height_m)
    flight_s = 2 * v0 / GRAVITY_M_S2
    period = ground_time_s + flight_s
    tau = np.mod(t, period)
    on_ground = tau < ground_time_s
    crouch = np.where(on_ground, crouch_m * np.sin(np.pi * tau / ground_time_s) ** 2, 0.0)
    tf = np.clip(tau - ground_time_s, 0.0, None)
    rise = np.where(on_ground, 0.0, v0 * tf - 0.5 * GRAVITY_M_S2 * tf**2)
    heading = np.full(num_frames, heading_rad)
    pelvis_z = shape.ankle_height_m + 0.99 * shape.leg_m - crouch + rise
    pelvis = np.column_stack([np.tile(np.asarray(start_xy_m, dtype=np.float64), (num_frames, 1)), pelvis_z])
    path = _ArcPath(start_xy_m, heading_rad, 0.0)
    s0 = np.zeros(num_frames)
    feet = {
        side: _foot_points(path, s0, sign * shape.hip_half_width_m, rise, shape)
        for side, sign in (("left", 1.0), ("right", -1.0))
    }
    contact = np.repeat(on_ground[:, None], 4, axis=1)
    joints = _assemble(pelvis, heading, feet, shape, 0.0, arm_swing_rad=0.8 * crouch / max(crouch_m, 1e-9))
    return SyntheticMotion(joints, contact, heading, fps, "jump", shape)


# --- cameras ---------------------------------------------------------------------------------------


def look_at_camera(
    target_m: Sequence[float] = (0.0, 0.0, 1.0),
    *,
    distance_m: float = 6.0,
    height_m: float = 1.6,
    azimuth_deg: float = -90.0,
    roll_deg: float = 0.0,
) -> np.ndarray:
    """``T_camera_from_world`` (4, 4) of an OpenCV camera looking at ``target_m`` (world, metres).

    The camera stands ``distance_m`` away horizontally in the direction ``azimuth_deg`` (0 = +x; the default
    -90 puts it on the -y side, looking along +y), at ``height_m`` above the ground, then rolls by
    ``roll_deg`` about its optical axis. A camera above the target pitches down.
    """
    target = np.asarray(target_m, dtype=np.float64)
    az = math.radians(azimuth_deg)
    centre = np.array(
        [target[0] + distance_m * math.cos(az), target[1] + distance_m * math.sin(az), height_m]
    )
    forward = target - centre
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    roll = math.radians(roll_deg)
    right, down = (
        math.cos(roll) * right + math.sin(roll) * down,
        -math.sin(roll) * right + math.cos(roll) * down,
    )
    r_world_from_cam = np.column_stack([right, down, forward])
    transform = np.eye(4)
    transform[:3, :3] = r_world_from_cam.T
    transform[:3, 3] = -r_world_from_cam.T @ centre
    return transform


def transform_points(T_b_from_a: np.ndarray, points_a: np.ndarray) -> np.ndarray:
    """Apply a (4, 4) rigid transform to points (..., 3)."""
    return np.asarray(points_a) @ T_b_from_a[:3, :3].T + T_b_from_a[:3, 3]


def invert_transform(T_b_from_a: np.ndarray) -> np.ndarray:
    """Inverse of a (4, 4) rigid transform."""
    out = np.eye(4)
    out[:3, :3] = T_b_from_a[:3, :3].T
    out[:3, 3] = -T_b_from_a[:3, :3].T @ T_b_from_a[:3, 3]
    return out


def project_points(points_cam_m: np.ndarray, focal_px: float, image_size_hw: tuple[int, int]) -> np.ndarray:
    """Pinhole projection (..., 3) camera-frame points -> (..., 2) pixels, principal point at the image centre."""
    h, w = image_size_hw
    p = np.asarray(points_cam_m, dtype=np.float64)
    z = np.maximum(p[..., 2], 1e-6)
    return np.stack([focal_px * p[..., 0] / z + w / 2, focal_px * p[..., 1] / z + h / 2], axis=-1)


# --- tracks and results ----------------------------------------------------------------------------


def make_track(
    motion: SyntheticMotion,
    T_camera_from_world: np.ndarray,
    *,
    track_id: int = 1,
    first_frame: int = 0,
    fps: float | None = None,
    focal_px: float = 1000.0,
    image_size_hw: tuple[int, int] = (1080, 1920),
    noise_m: float = 0.0,
    depth_noise_m: float = 0.0,
    seed: int = 0,
    drop_frames: Iterable[int] = (),
    low_conf_frames: Iterable[int] = (),
    low_conf: float = 0.1,
    conf: float = 0.95,
    det_conf: float = 0.95,
) -> HumanTrack:
    """A :class:`HumanTrack` observing ``motion`` through the camera ``T_camera_from_world``.

    The motion's frame i becomes decode frame ``first_frame + i`` at time ``(first_frame + i) / fps``.
    noise_m: standard deviation of i.i.d. Gaussian noise added to every camera-frame coordinate (m).
    depth_noise_m: standard deviation of a per-frame shift of the whole body along the viewing rays (m), the
    dominant error of monocular estimators (see :func:`add_depth_noise`).
    drop_frames: motion frame numbers left out of the track (gaps); low_conf_frames: frames whose joint
    confidences are all set to ``low_conf`` (other frames get ``conf``).
    Keypoints are projected from the noisy joints; the box is their bounding box grown by 10 %.
    """
    fps = motion.fps if fps is None else fps
    n = motion.num_frames
    rng = np.random.default_rng(seed)
    joints_cam = transform_points(T_camera_from_world, motion.joints_world_m)
    if depth_noise_m > 0:
        joints_cam = add_depth_noise(joints_cam, depth_noise_m, rng)
    if noise_m > 0:
        joints_cam = joints_cam + rng.normal(0.0, noise_m, size=joints_cam.shape)
    keep = np.ones(n, dtype=bool)
    keep[[i for i in drop_frames if 0 <= i < n]] = False
    joint_conf = np.full((n, len(motion.joint_names)), conf, dtype=np.float32)
    low = [i for i in low_conf_frames if 0 <= i < n]
    joint_conf[low] = low_conf
    kp = project_points(joints_cam, focal_px, image_size_hw)
    lo, hi = kp.min(axis=1), kp.max(axis=1)
    size = hi - lo
    bbox = np.column_stack([lo - 0.05 * size, 1.1 * size])
    frame_idx = first_frame + np.arange(n, dtype=np.int64)
    return HumanTrack(
        track_id=track_id,
        frame_idx=frame_idx[keep],
        time_s=(frame_idx[keep] / fps).astype(np.float64),
        joint_names=motion.joint_names,
        joints_cam_m=joints_cam[keep].astype(np.float32),
        joint_conf=joint_conf[keep],
        det_conf=np.full(int(keep.sum()), det_conf, dtype=np.float32),
        keypoints_px=kp[keep].astype(np.float32),
        bbox_xywh_px=bbox[keep].astype(np.float32),
    )


def add_depth_noise(joints_cam_m: np.ndarray, sigma_m: float, rng: np.random.Generator) -> np.ndarray:
    """Move each frame's body along the viewing rays: scale (T, J, 3) camera-frame joints about the camera
    centre so that the first joint's distance changes by N(0, sigma_m). The image projection is unchanged,
    as with a monocular estimator that gets the 2D pose right and the depth wrong."""
    x = np.asarray(joints_cam_m, dtype=np.float64)
    root_dist = np.linalg.norm(x[:, :1], axis=-1, keepdims=True)  # (T, 1, 1)
    return x * (1.0 + rng.normal(0.0, sigma_m, size=(len(x), 1, 1)) / root_dist)


def make_pose_result(
    tracks: list[HumanTrack],
    num_frames: int,
    fps: float = 30.0,
    *,
    shot_starts: Iterable[int] = (),
    background_motion: float | np.ndarray | None = 0.0015,
    focal_px: float = 1000.0,
    image_size_hw: tuple[int, int] = (1080, 1920),
) -> PoseResult:
    """Wrap tracks into a :class:`PoseResult` of ``num_frames`` frames at a constant ``fps``.

    shot_starts: frames where a new shot starts (frame 0 is ignored).
    background_motion: a constant per-frame value (0.0015: the static camera of the shared tennis video), an
        (N,) array, or None.
    """
    shot = np.zeros(num_frames, dtype=bool)
    for f in shot_starts:
        if 0 < f < num_frames:
            shot[f] = True
    if background_motion is None:
        bm = None
    else:
        bm = np.broadcast_to(np.asarray(background_motion, dtype=np.float32), (num_frames,)).copy()
        bm[0] = 0.0
    return PoseResult(
        tracks=list(tracks),
        num_frames=num_frames,
        fps=fps,
        image_size_hw=image_size_hw,
        focal_px=focal_px,
        frame_time_s=np.arange(num_frames) / fps,
        shot_boundary=shot,
        background_motion=bm,
        backend="synthetic",
        backend_version="0",
    )


# --- geometry helpers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ArcPath:
    """A ground path of constant curvature: position and heading at arc length s (m)."""

    start_xy_m: tuple[float, float]
    heading_rad: float
    curvature_rad_m: float

    def at(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = np.asarray(s, dtype=np.float64)
        psi0, k = self.heading_rad, self.curvature_rad_m
        heading = psi0 + k * s
        if abs(k) < 1e-9:
            x = s * math.cos(psi0)
            y = s * math.sin(psi0)
        else:
            x = (np.sin(heading) - math.sin(psi0)) / k
            y = (math.cos(psi0) - np.cos(heading)) / k
        xy = np.column_stack([x + self.start_xy_m[0], y + self.start_xy_m[1]])
        return xy, heading


def _foot_points(
    path: _ArcPath, s_ankle: np.ndarray, lateral_m: float, lift_m: np.ndarray, shape: BodyShape
) -> dict[str, np.ndarray]:
    """Heel, toe and ankle (T, 3) of a flat foot whose ankle sits at arc length ``s_ankle``, offset sideways."""
    xy, heading = path.at(s_ankle)
    fwd = np.column_stack([np.cos(heading), np.sin(heading)])
    left = np.column_stack([-fwd[:, 1], fwd[:, 0]])
    ankle_xy = xy + lateral_m * left
    heel_xy = ankle_xy - shape.heel_to_ankle_m * fwd
    toe_xy = heel_xy + shape.foot_length_m * fwd
    z = np.asarray(lift_m, dtype=np.float64)
    return {
        "heel": np.column_stack([heel_xy, z]),
        "toe": np.column_stack([toe_xy, z]),
        "ankle": np.column_stack([ankle_xy, z + shape.ankle_height_m]),
    }


def _two_bone_knee(hip: np.ndarray, ankle: np.ndarray, forward: np.ndarray, thigh: float, shin: float) -> np.ndarray:
    """(T, 3) knee positions bending towards ``forward`` (T, 3) for hips and ankles (T, 3)."""
    d = ankle - hip
    dist = np.linalg.norm(d, axis=1)
    if np.any(dist > thigh + shin + 1e-3):
        raise ValueError(f"leg cannot reach: hip-ankle {dist.max():.3f} m > {thigh + shin:.3f} m")
    dist = np.minimum(dist, thigh + shin - 1e-9)
    unit = d / dist[:, None]
    along = (thigh**2 - shin**2 + dist**2) / (2 * dist)
    perp_len = np.sqrt(np.clip(thigh**2 - along**2, 0.0, None))
    perp = forward - np.sum(forward * unit, axis=1, keepdims=True) * unit
    perp /= np.linalg.norm(perp, axis=1, keepdims=True)
    return hip + along[:, None] * unit + perp_len[:, None] * perp


def _assemble(
    pelvis: np.ndarray,
    heading: np.ndarray,
    feet: dict[str, dict[str, np.ndarray]],
    shape: BodyShape,
    lean_deg: float,
    arm_swing_rad: np.ndarray,
) -> np.ndarray:
    """(T, 20, 3) joints from the pelvis trajectory, headings, foot points and arm swing angles."""
    n = len(pelvis)
    c, s = np.cos(heading), np.sin(heading)
    zeros, ones = np.zeros(n), np.ones(n)
    # rotation body -> world per frame, (T, 3, 3): columns forward, left, up
    rot = np.stack([np.stack([c, s, zeros], 1), np.stack([-s, c, zeros], 1), np.stack([zeros, zeros, ones], 1)], 2)

    def world(local: np.ndarray) -> np.ndarray:
        return pelvis + np.einsum("tij,tj->ti", rot, local)

    lean = math.radians(lean_deg)

    def leaned(local: np.ndarray) -> np.ndarray:  # tilt the trunk forward about the pelvis (y axis)
        x, z = local[..., 0], local[..., 2]
        out = local.copy()
        out[..., 0] = math.cos(lean) * x + math.sin(lean) * z
        out[..., 2] = -math.sin(lean) * x + math.cos(lean) * z
        return out

    joints = np.zeros((n, len(BODY_JOINTS), 3))
    joints[:, J["pelvis"]] = pelvis
    h = shape.height_m
    swing = np.asarray(arm_swing_rad, dtype=np.float64) * np.ones(n)
    for side, sign in (("left", 1.0), ("right", -1.0)):
        joints[:, J[f"{side}_hip"]] = world(np.tile([0.0, sign * shape.hip_half_width_m, 0.0], (n, 1)))
        shoulder_local = np.tile([0.0, sign * shape.shoulder_half_width_m, shape.trunk_m], (n, 1))
        angle = sign * swing  # arms swing in opposition
        elbow_local = shoulder_local + shape.upper_arm_m * np.column_stack([np.sin(angle), zeros, -np.cos(angle)])
        fore = angle + 0.35
        wrist_local = elbow_local + shape.forearm_m * np.column_stack([np.sin(fore), zeros, -np.cos(fore)])
        joints[:, J[f"{side}_shoulder"]] = world(leaned(shoulder_local))
        joints[:, J[f"{side}_elbow"]] = world(leaned(elbow_local))
        joints[:, J[f"{side}_wrist"]] = world(leaned(wrist_local))
        foot = feet[side]
        joints[:, J[f"{side}_heel"]] = foot["heel"]
        joints[:, J[f"{side}_toe"]] = foot["toe"]
        joints[:, J[f"{side}_ankle"]] = foot["ankle"]
        forward = np.column_stack([c, s, zeros])
        joints[:, J[f"{side}_knee"]] = _two_bone_knee(
            joints[:, J[f"{side}_hip"]], foot["ankle"], forward, shape.thigh_m, shape.shin_m
        )
    joints[:, J["neck"]] = world(leaned(np.tile([0.0, 0.0, shape.trunk_m], (n, 1))))
    joints[:, J["head"]] = world(leaned(np.tile([0.0, 0.0, shape.trunk_m + 0.1 * h], (n, 1))))
    joints[:, J["nose"]] = world(leaned(np.tile([0.055 * h, 0.0, shape.trunk_m + 0.1 * h], (n, 1))))
    return joints
