"""Synthetic human clips generated from the G1 itself, so that the true robot motion behind a clip is known.

A robot motion (root pose + 29 joint angles, within the joint limits) is made kinematically: smooth joint
trajectories (a gait, a squat, arm and waist motions) and a root placed so that the feet never go below the
ground and the lower (stance) foot stays planted (its sole point keeps its ground position until the other foot
becomes the lower one). Forward kinematics then gives the robot points that :data:`pipeline.retarget.
DEFAULT_KEYPOINTS` match to human landmarks; scaling them by a per-clip ``scale`` about the world origin (on the
ground) gives a "human" :class:`pipeline.motion.HumanClip` whose bone lengths are ``scale`` times the robot's.
Foot contacts come from the robot's own heel/toe points (on the ground and still).

Retargeting such a clip should recover the robot key points (``truth.keypoints_m``) up to the solver's
accuracy: the rescaled skeleton equals the robot's exactly when every segment scale is ``1 / scale``.

Usage::

    model = load_g1()
    truth = g1_walk(model, num_frames=300, scale=1.3)
    result = retarget_clip(truth.clip, model)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipeline.motion import HumanClip
from pipeline.retarget import DEFAULT_KEYPOINTS, KeyPoint, keypoint_positions
from pipeline.skeleton import BODY_JOINTS, FOOT_JOINTS

CONTACT_HEIGHT_M = 0.005
CONTACT_SPEED_M_S = 0.15


@dataclass
class G1Truth:
    """A synthetic clip and the robot motion it was made from.

    root_pos_m (T, 3), root_quat_wxyz (T, 4), joint_pos_rad (T, 29): the true robot motion (world, z up, ground
    at z = 0). keypoints_m (T, K, 3): the robot's key points (:data:`DEFAULT_KEYPOINTS` order) of that motion.
    scale: human = scale x robot about the world origin. kind: the generator's name.
    """

    clip: HumanClip
    root_pos_m: np.ndarray
    root_quat_wxyz: np.ndarray
    joint_pos_rad: np.ndarray
    keypoints_m: np.ndarray
    scale: float
    kind: str


# ---------------------------------------------------------------------- generators


def g1_walk(model, num_frames: int = 300, fps: float = 30.0, *, stride_period_s: float = 1.1,
            hip_swing_rad: float = 0.3, turn_rate_rad_s: float = 0.0, scale: float = 1.3,
            clip_id: str = "g1_walk") -> G1Truth:
    """A gait: hip pitch swings, the swinging leg's knee flexes, ankles keep the soles level, arms swing in
    opposition; the root turns at ``turn_rate_rad_s`` (yaw only)."""
    t = np.arange(num_frames) / fps
    w = 2 * math.pi / stride_period_s
    q = np.zeros((num_frames, 29))
    J = _joint_index(model)
    for side, phase0 in (("left", 0.0), ("right", math.pi)):
        ph = w * t + phase0
        hip = -0.25 - hip_swing_rad * np.sin(ph)
        knee = 0.45 + 0.55 * np.maximum(np.cos(ph), 0.0) ** 2
        q[:, J[f"{side}_hip_pitch"]] = hip
        q[:, J[f"{side}_knee"]] = knee
        q[:, J[f"{side}_ankle_pitch"]] = -(hip + knee)
        sign = 1.0 if side == "left" else -1.0
        q[:, J[f"{side}_shoulder_pitch"]] = 0.15 + 0.35 * np.sin(ph)
        q[:, J[f"{side}_shoulder_roll"]] = sign * 0.25
        q[:, J[f"{side}_elbow"]] = 0.9 + 0.2 * np.sin(ph)
    q[:, J["waist_yaw"]] = 0.12 * np.sin(w * t)
    yaw = turn_rate_rad_s * t
    return _finish(model, q, yaw, fps, scale, clip_id, "walk")


def g1_crouch(model, num_frames: int = 300, fps: float = 30.0, *, period_s: float = 3.0, depth_rad: float = 0.7,
              scale: float = 1.3, clip_id: str = "g1_crouch") -> G1Truth:
    """Squats: hip, knee and ankle flex together (soles level, both feet planted); arms reach forward and the
    trunk leans as the robot goes down."""
    t = np.arange(num_frames) / fps
    c = 0.1 + depth_rad * (1 - np.cos(2 * math.pi * t / period_s)) / 2
    frac = (c - c.min()) / max(np.ptp(c), 1e-9)
    q = np.zeros((num_frames, 29))
    J = _joint_index(model)
    for side, sign in (("left", 1.0), ("right", -1.0)):
        q[:, J[f"{side}_hip_pitch"]] = -c
        q[:, J[f"{side}_knee"]] = 2 * c
        q[:, J[f"{side}_ankle_pitch"]] = -c
        q[:, J[f"{side}_shoulder_pitch"]] = 0.2 - 1.2 * frac
        q[:, J[f"{side}_shoulder_roll"]] = sign * 0.2
        q[:, J[f"{side}_elbow"]] = 1.2 - 0.6 * frac
    q[:, J["waist_pitch"]] = 0.25 * frac
    return _finish(model, q, np.zeros(num_frames), fps, scale, clip_id, "crouch")


def g1_arms(model, num_frames: int = 300, fps: float = 30.0, *, seed: int = 0, scale: float = 1.3,
            clip_id: str = "g1_arms") -> G1Truth:
    """Standing on slightly bent legs while the arms, wrists and waist follow smooth random trajectories (sums
    of three sinusoids of 0.15-0.6 Hz) inside ranges that keep the arms clear of the body."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_frames) / fps
    q = np.zeros((num_frames, 29))
    J = _joint_index(model)
    for side in ("left", "right"):
        q[:, J[f"{side}_hip_pitch"]] = -0.2
        q[:, J[f"{side}_knee"]] = 0.4
        q[:, J[f"{side}_ankle_pitch"]] = -0.2
    ranges = {
        "shoulder_pitch": (-1.6, 0.6), "shoulder_roll": (0.25, 1.1), "shoulder_yaw": (-0.6, 0.6),
        "elbow": (0.1, 1.5), "wrist_roll": (-0.6, 0.6), "wrist_pitch": (-0.5, 0.5), "wrist_yaw": (-0.5, 0.5),
    }  # fmt: skip
    for side, sign in (("left", 1.0), ("right", -1.0)):
        for joint, (lo, hi) in ranges.items():
            x = _smooth_random(rng, t, lo, hi)
            q[:, J[f"{side}_{joint}"]] = sign * x if joint in ("shoulder_roll", "shoulder_yaw", "wrist_roll",
                                                                "wrist_yaw") else x
    q[:, J["waist_yaw"]] = _smooth_random(rng, t, -0.5, 0.5)
    q[:, J["waist_roll"]] = _smooth_random(rng, t, -0.15, 0.15)
    q[:, J["waist_pitch"]] = _smooth_random(rng, t, -0.1, 0.3)
    return _finish(model, q, np.zeros(num_frames), fps, scale, clip_id, "arms")


def _smooth_random(rng: np.random.Generator, t: np.ndarray, lo: float, hi: float) -> np.ndarray:
    freq = rng.uniform(0.15, 0.6, 3)
    phase = rng.uniform(0, 2 * math.pi, 3)
    amp = rng.uniform(0.5, 1.0, 3)
    s = (amp[:, None] * np.sin(2 * math.pi * freq[:, None] * t + phase[:, None])).sum(0) / amp.sum()
    return (lo + hi) / 2 + (hi - lo) / 2 * s


# ---------------------------------------------------------------------- root placement and the human clip


def _joint_index(model) -> dict[str, int]:
    return {n: i for i, n in enumerate(model.joint_names)}


def _yaw_quat(yaw: np.ndarray) -> np.ndarray:
    return np.stack([np.cos(yaw / 2), np.zeros_like(yaw), np.zeros_like(yaw), np.sin(yaw / 2)], axis=-1)


def place_root(model, root_quat_wxyz: np.ndarray, joint_pos_rad: np.ndarray, hysteresis_m: float = 1e-3
               ) -> np.ndarray:
    """Root positions (T, 3) that keep the lowest sole point on z = 0 and the stance foot planted.

    The stance foot is the lower one (switching only when the other is lower by ``hysteresis_m``); its sole
    centre keeps the ground position it had when it became the stance foot. Frame 0's root is above the origin.
    """
    T = len(joint_pos_rad)
    zeros = np.zeros((T, 3))
    body_pos, body_quat = model.fk(zeros, root_quat_wxyz, joint_pos_rad)
    from pipeline.g1.model import quat_wxyz_to_rotmat

    rot = quat_wxyz_to_rotmat(body_quat)
    sole = []
    for foot in ("left_ankle_roll_link", "right_ankle_roll_link"):
        b = model.body_index(foot)
        pts = model.sole_points_m(foot)  # (S, 3)
        sole.append(body_pos[:, b, None] + np.einsum("tij,sj->tsi", rot[:, b], pts))
    sole = np.stack(sole, axis=1)  # (T, 2, S, 3) relative to the root
    low = sole[..., 2].min(axis=-1)  # (T, 2)
    centre = sole.mean(axis=2)  # (T, 2, 3)
    root = np.zeros((T, 3))
    stance = int(np.argmin(low[0]))
    anchor = centre[0, stance, :2].copy()
    root_xy0 = None
    for t in range(T):
        other = 1 - stance
        if low[t, other] < low[t, stance] - hysteresis_m:
            root_xy = anchor - centre[t, stance, :2]
            anchor = root_xy + centre[t, other, :2]
            stance = other
        root[t, :2] = anchor - centre[t, stance, :2]
        root[t, 2] = -low[t].min()
        if root_xy0 is None:
            root_xy0 = root[t, :2].copy()
    root[:, :2] -= root_xy0
    return root


def _finish(model, q: np.ndarray, yaw: np.ndarray, fps: float, scale: float, clip_id: str, kind: str) -> G1Truth:
    lo, hi = model.joint_range_rad[:, 0], model.joint_range_rad[:, 1]
    if np.any(q < lo) or np.any(q > hi):
        bad = [model.joint_names[j] for j in np.flatnonzero(np.any((q < lo) | (q > hi), axis=0))]
        raise ValueError(f"generated joint angles leave the G1 ranges: {', '.join(bad)}")
    quat = _yaw_quat(yaw)
    root = place_root(model, quat, q)
    clip = human_clip_from_g1(model, root, quat, q, fps=fps, scale=scale, clip_id=clip_id)
    kps = keypoint_positions(model, root, quat, q, tuple(kp.robot for kp in DEFAULT_KEYPOINTS))
    return G1Truth(clip=clip, root_pos_m=root, root_quat_wxyz=quat, joint_pos_rad=q, keypoints_m=kps,
                   scale=scale, kind=kind)


def human_clip_from_g1(model, root_pos_m, root_quat_wxyz, joint_pos_rad, *, fps: float = 30.0,
                       scale: float = 1.3, clip_id: str = "g1_synthetic",
                       keypoints: tuple[KeyPoint, ...] = DEFAULT_KEYPOINTS) -> HumanClip:
    """A :class:`HumanClip` whose landmarks are the robot's key points scaled by ``scale`` about the origin.

    The nose (not matched by the retargeter) is put 0.08 m (robot size) in front of the head. Contacts: a
    heel/toe point within ``CONTACT_HEIGHT_M`` of the ground moving slower than ``CONTACT_SPEED_M_S``.
    """
    kps = keypoint_positions(model, root_pos_m, root_quat_wxyz, joint_pos_rad, tuple(kp.robot for kp in keypoints))
    T = len(kps)
    names = [kp.human for kp in keypoints]
    joints = np.zeros((T, len(BODY_JOINTS), 3))
    for k, name in enumerate(names):
        joints[:, BODY_JOINTS.index(name)] = kps[:, k]
    # nose: in front of the head along the torso's x axis
    body_pos, body_quat = model.fk(root_pos_m, root_quat_wxyz, joint_pos_rad)
    from pipeline.g1.model import quat_wxyz_to_rotmat

    torso = quat_wxyz_to_rotmat(body_quat[:, model.body_index("torso_link")])
    joints[:, BODY_JOINTS.index("nose")] = joints[:, BODY_JOINTS.index("head")] + 0.08 * torso[:, :, 0]
    feet = kps[:, [names.index(n) for n in FOOT_JOINTS]]  # (T, 4, 3)
    speed = np.zeros((T, 4))
    if T > 1:
        v = np.gradient(feet[..., :2], axis=0) * fps
        speed = np.linalg.norm(v, axis=-1)
    contact = (feet[..., 2] < CONTACT_HEIGHT_M) & (speed < CONTACT_SPEED_M_S)
    joints = scale * joints
    return HumanClip(
        clip_id=clip_id,
        video_id="g1_synthetic",
        track_id=0,
        frame_idx=np.arange(T, dtype=np.int64),
        time_s=np.arange(T) / fps,
        fps=fps,
        joint_names=BODY_JOINTS,
        joints_world_m=joints.astype(np.float32),
        joint_conf=np.full((T, len(BODY_JOINTS)), 0.95, dtype=np.float32),
        T_world_from_camera=np.eye(4),
        foot_contact=contact,
    )
