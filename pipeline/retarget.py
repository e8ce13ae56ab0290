"""Whole-clip retargeting of a human clip onto the Unitree G1: one optimisation over all frames at once.

Usage::

    model = load_g1()
    result = retarget_clip(clip, model)            # clip: a world-aligned pipeline.motion.HumanClip
    save_g1_motion(result.motion, path)            # pipeline.g1_motion schema
    metrics = robot_metrics(result.motion, model, result.targets, result.contact)

Unknowns, per frame ``t`` (35 numbers): the root (pelvis) position ``p_t`` (3, world, m), its orientation
``R_t`` (3x3, updated by world-frame rotation vectors: ``R <- exp([w]x) R``) and the 29 joint angles ``q_t``
(rad, :data:`pipeline.g1.model.JOINT_NAMES` order).

Targets (:func:`build_targets`). Each :class:`KeyPoint` ties a human joint of
:data:`pipeline.skeleton.BODY_JOINTS` to a point on the robot (a point fixed on a body, or the mean of two: the
human pelvis is the midpoint of the hips, so the robot's is the midpoint of its hip joints). The human skeleton
is rescaled to the robot segment by segment: along the key-point tree (pelvis -> hips -> knees -> ankles ->
heels/toes, pelvis -> neck -> shoulders -> elbows -> wrists, neck -> head) every human segment vector is
multiplied by ``robot length / human length``. The human length is measured on the clip itself (trimmed mean of
the squared length over frames with trusted joints, less the share that joint noise adds, the noise being
estimated from the trunk joints' frame-to-frame jitter); the robot length is taken at the zero pose. The root
(pelvis) path is scaled about the world origin (on the ground below the clip's first pelvis) by the leg-length
ratio, so planted feet stay planted and on z = 0. No human height is assumed anywhere. Joints with confidence
below ``min_joint_conf`` (and those hanging from them) give no target; others are weighted by confidence.

Cost: a sum of squared residuals; the ``w_*`` weights of :class:`RetargetConfig` are cost weights
(residual = sqrt(w) * error), errors in SI units:

=================  =====================================================================================
key points         ``w_keypoint * kp.weight * conf * |x_k(t) - y_k(t)|^2``  (m)
contact height     ``w_contact_height * z_s(t)^2`` for the sole's lowest points s of a heel / toe while the
                   human's heel / toe is in contact (:attr:`HumanClip.foot_contact`)
contact sliding    ``w_contact_slide * |xy_f(t+1) - xy_f(t)|^2`` for the heel / toe point f in contact at t
                   and t+1 (m per frame)
ground             ``w_ground * min(0, z - r)^2`` for both ends of every collision capsule (no penetration)
self-collision     ``w_self_collision * max(0, margin - d_ab)^2`` over the capsule pairs MuJoCo tests
                   (``G1Model.collision.self_pairs``), d_ab the capsules' surface distance
acceleration       ``w_root_acc |a|^2 + w_root_ang_acc |alpha|^2 + w_joint_acc |qdd|^2`` (second
                   differences: m/s^2, rad/s^2)
velocity limit     ``w_velocity_limit * max(0, |qd_j| - velocity_limit_frac * vmax_j)^2`` (rad/s)
soft limits        ``w_soft_limit * max(0, q - hi + m, lo + m - q)^2``, m = soft_limit_frac * range
posture            ``w_posture_j * q_j^2`` (keeps joints no target sees, e.g. the wrists, near zero)
=================  =====================================================================================

Joint limits hold exactly: every step is projected onto ``[lo, hi]`` (clamped), and a joint that sits on a bound
with its gradient pointing outwards is frozen for that step (projected Newton). Left out: orientation targets
from SMPL (the 19 matched positions fix body orientations; the G1 wrists and head see no target).

Solver. Levenberg-Marquardt over the whole clip with analytic Jacobians (hinge: ``axis x (point - anchor)``) and
:meth:`G1Model.fk_torch` for the kinematics of all frames at once. Residuals couple at most three consecutive
frames, so ``J^T J`` is block-pentadiagonal with 35x35 blocks: a symmetric banded matrix of half bandwidth 70
for 35 T unknowns, factored by LAPACK's banded Cholesky (``scipy.linalg.solveh_banded``) in O(T). The large
nonlinear moves are made first on every ``coarse_stride``-th frame (a 6x smaller problem), whose solution,
interpolated, starts the full problem; LM steps are accepted on the ratio of actual to predicted decrease and
the solve stops when the predicted (or achieved) decrease falls below ``tolerance`` of the cost. Measured on
one core for 300-frame clips (``bench/bench_retarget.py``): about 2-3 full and 4-10 coarse iterations,
~0.15-0.2 s per clip. Adam on the same cost through autograd (``fk_torch`` forward and backward) took ~19 ms a
step and 200 steps (3.8 s) to reach 3.6 mm key-point error on a clean walk, where this solver reaches ~1 mm in
~0.15 s; hence LM. Deterministic: no randomness, fixed operation order.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np

from ingest.errors import ConfigError, TooShort, require_module
from pipeline.g1_motion import G1Motion
from pipeline.motion import HumanClip
from pipeline.rotations import matrix_to_quat, quat_continuous
from pipeline.skeleton import BODY_JOINTS, FOOT_JOINTS

FOOT_BODIES = ("left_ankle_roll_link", "right_ankle_roll_link")

NV = 35  # unknowns per frame: root position (3), root rotation vector (3), 29 joints


# ---------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class RobotPoint:
    """A point fixed on a robot body.

    ``offset_m``: position in the body frame (m). ``sole``: ``"heel"`` or ``"toe"`` to take the point from the
    model's sole capsules instead (the mean of the rearmost / frontmost lowest sole points), so that a user MJCF
    with other feet gets its own heel and toe.
    """

    body: str
    offset_m: tuple[float, float, float] = (0.0, 0.0, 0.0)
    sole: str = ""


@dataclass(frozen=True)
class KeyPoint:
    """A human joint (``human``, a :data:`BODY_JOINTS` name) matched to the mean of ``robot`` points.

    ``parent``: the human joint this one hangs from in the rescaling tree (None for the root, the pelvis).
    ``weight``: relative cost weight.
    """

    human: str
    robot: tuple[RobotPoint, ...]
    parent: str | None
    weight: float = 1.0


def _kp(human, bodies, parent, weight=1.0, offset=(0.0, 0.0, 0.0), sole=""):
    if isinstance(bodies, str):
        bodies = (bodies,)
    return KeyPoint(human, tuple(RobotPoint(b, offset, sole) for b in bodies), parent, weight)


DEFAULT_KEYPOINTS: tuple[KeyPoint, ...] = (
    _kp("pelvis", ("left_hip_roll_link", "right_hip_roll_link"), None, 2.0),
    _kp("left_hip", "left_hip_roll_link", "pelvis"),
    _kp("right_hip", "right_hip_roll_link", "pelvis"),
    _kp("left_knee", "left_knee_link", "left_hip"),
    _kp("right_knee", "right_knee_link", "right_hip"),
    _kp("left_ankle", "left_ankle_pitch_link", "left_knee"),
    _kp("right_ankle", "right_ankle_pitch_link", "right_knee"),
    _kp("left_heel", "left_ankle_roll_link", "left_ankle", sole="heel"),
    _kp("right_heel", "right_ankle_roll_link", "right_ankle", sole="heel"),
    _kp("left_toe", "left_ankle_roll_link", "left_ankle", sole="toe"),
    _kp("right_toe", "right_ankle_roll_link", "right_ankle", sole="toe"),
    _kp("neck", ("left_shoulder_roll_link", "right_shoulder_roll_link"), "pelvis", 1.5),
    _kp("head", "torso_link", "neck", 0.3, offset=(0.005, 0.0, 0.42)),
    _kp("left_shoulder", "left_shoulder_roll_link", "neck"),
    _kp("right_shoulder", "right_shoulder_roll_link", "neck"),
    _kp("left_elbow", "left_elbow_link", "left_shoulder"),
    _kp("right_elbow", "right_elbow_link", "right_shoulder"),
    _kp("left_wrist", "left_wrist_pitch_link", "left_elbow"),
    _kp("right_wrist", "right_wrist_pitch_link", "right_elbow"),
)
"""Human landmark -> G1 point. Hip, knee, ankle, shoulder, elbow, wrist: origins of the hip roll, knee, ankle
pitch, shoulder roll, elbow and wrist pitch links (the knee-ankle and elbow-wrist distances are then constant, as
a bone's); pelvis / neck: midpoints of the hips / shoulders, as for the human; heel / toe: the sole's rear /
front lowest points; head: the centre of the G1's head (on the torso link, 0.42 m above the waist). The nose is
not matched (the G1 head cannot turn)."""

#: Robot segments used for the root scale (leg length ratio).
LEG_SEGMENTS = (("left_hip", "left_knee"), ("left_knee", "left_ankle"),
                ("right_hip", "right_knee"), ("right_knee", "right_ankle"))  # fmt: skip

_WRISTS = ("left_wrist_roll", "left_wrist_pitch", "left_wrist_yaw",
           "right_wrist_roll", "right_wrist_pitch", "right_wrist_yaw")  # fmt: skip


@dataclass(frozen=True)
class RetargetConfig:
    """Weights and options of :func:`retarget_clip` (see the module docstring for each term's formula)."""

    keypoints: tuple[KeyPoint, ...] = DEFAULT_KEYPOINTS
    min_joint_conf: float = 0.3  # human joints below this confidence give no target
    w_keypoint: float = 1.0
    w_contact_height: float = 30.0
    w_contact_slide: float = 100.0
    w_ground: float = 100.0
    w_self_collision: float = 50.0
    self_collision_margin_m: float = 0.01
    w_root_acc: float = 1e-5  # per (m/s^2)^2
    w_root_ang_acc: float = 1e-6  # per (rad/s^2)^2
    w_joint_acc: float = 1e-6  # per (rad/s^2)^2
    w_velocity_limit: float = 0.01  # per (rad/s)^2 above the allowance
    velocity_limit_frac: float = 0.9
    w_soft_limit: float = 1.0  # per rad^2 inside the margin
    soft_limit_frac: float = 0.02
    w_posture: float = 1e-4
    w_posture_wrist: float = 1e-2
    scale_segments: bool = True  # False: match the human skeleton unscaled
    max_iterations: int = 40
    tolerance: float = 1e-2  # stop when the model's predicted decrease is below this share of the cost
    coarse_stride: int = 6  # first solve every n-th frame, interpolate, then refine all frames (1: off)
    coarse_tolerance: float = 0.1
    lm_lambda_init: float = 1e-3  # Levenberg-Marquardt damping (relative to diag(J^T J)) at the start
    lm_lambda_min: float = 1e-9


# ---------------------------------------------------------------------- results


@dataclass
class KeyTargets:
    """Per-frame key-point targets of a clip (the rescaled human skeleton), and how they were built.

    names: (K,) human joint of each key point. robot_points: (K,) the robot points each is matched to (mean).
    pos_m: (T, K, 3) target positions, world frame, metres. weight: (T, K) cost weight (0: no target).
    segment_scale: ``"parent->child"`` -> robot / human segment length. root_scale: scale of the pelvis path.
    """

    names: tuple[str, ...]
    robot_points: tuple[tuple[RobotPoint, ...], ...]
    pos_m: np.ndarray
    weight: np.ndarray
    segment_scale: dict[str, float] = field(default_factory=dict)
    root_scale: float = 1.0


@dataclass
class RetargetStats:
    """What the solver did: iterations (accepted and rejected steps), costs, time, per-term final cost."""

    iterations: int
    accepted_steps: int
    cost_initial: float
    cost_final: float
    time_s: float
    converged: bool
    cost_terms: dict[str, float] = field(default_factory=dict)
    coarse_iterations: int = 0


@dataclass
class RetargetResult:
    """The robot motion, the targets it was fit to, the contact flags used (T, 4) and solver stats."""

    motion: G1Motion
    targets: KeyTargets
    contact: np.ndarray
    stats: RetargetStats


# ---------------------------------------------------------------------- public API


def retarget_clip(clip: HumanClip, model, config: RetargetConfig | None = None) -> RetargetResult:
    """Retarget a world-aligned human clip to the G1 (``model``: a :class:`pipeline.g1.model.G1Model`).

    Returns the G1 motion at the clip's frame rate (same frames), with body poses from forward kinematics.
    Raises :class:`ConfigError` for a config that names unknown joints or bodies, :class:`TooShort` for a clip
    without frames.
    """
    config = config or RetargetConfig()
    if clip.num_frames == 0 or len(clip.joints_world_m) == 0:
        raise TooShort(f"clip {clip.clip_id} has no frames: nothing to retarget")
    t0 = time.perf_counter()
    robot = _Robot(model, config)
    fps = _clip_fps(clip)
    targets = _build_targets(clip, robot, config)
    contact = _contact_flags(clip)
    problem = _Problem(robot, config, targets, contact, fps)
    state, coarse_iterations = _coarse_start(problem)
    state, stats = problem.solve(state)
    stats.coarse_iterations = coarse_iterations
    root_pos, root_rot, q = state
    root_quat = quat_continuous(matrix_to_quat(root_rot))
    body_pos, body_quat = model.fk(root_pos, root_quat, q)
    motion = G1Motion(
        clip_id=clip.clip_id,
        fps=fps,
        root_pos_m=root_pos,
        root_quat_wxyz=root_quat,
        joint_names=tuple(model.joint_names),
        joint_pos_rad=q,
        body_names=tuple(model.body_names),
        body_pos_m=body_pos,
        body_quat_wxyz=body_quat,
    )
    stats.time_s = time.perf_counter() - t0
    return RetargetResult(motion=motion, targets=targets, contact=contact, stats=stats)


def keypoint_positions(model, root_pos_m, root_quat_wxyz, joint_pos_rad,
                       robot_points: tuple[tuple[RobotPoint, ...], ...]) -> np.ndarray:
    """World positions (T, K, 3) of robot key points (each the mean of its points) for a motion, via ``model.fk``."""
    body_pos, body_quat = model.fk(root_pos_m, root_quat_wxyz, joint_pos_rad)
    from pipeline.g1.model import quat_wxyz_to_rotmat

    rot = quat_wxyz_to_rotmat(body_quat)
    out = np.zeros(body_pos.shape[:-2] + (len(robot_points), 3))
    for k, points in enumerate(robot_points):
        for pt in points:
            b = model.body_index(pt.body)
            off = _point_offset(model, pt)
            out[..., k, :] += body_pos[..., b, :] + rot[..., b, :, :] @ off
        out[..., k, :] /= len(points)
    return out


def initial_root_pose(model, targets: KeyTargets, config: RetargetConfig | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """The solver's starting root pose for ``targets``: position (T, 3) under the pelvis target, rotation
    (T, 3, 3) upright with the heading of the hip line (joints start at zero)."""
    config = config or RetargetConfig()
    robot = _Robot(model, config)
    problem = _Problem(robot, config, targets, np.zeros((len(targets.pos_m), len(FOOT_JOINTS)), dtype=bool), 30.0)
    p, R, _ = problem.initial_state()
    return p, R


# ---------------------------------------------------------------------- targets


def build_targets(clip: HumanClip, model, config: RetargetConfig | None = None) -> KeyTargets:
    """The key-point targets of a clip: its skeleton rescaled to the robot segment by segment (module
    docstring), heel and toe targets kept above the ground."""
    config = config or RetargetConfig()
    return _build_targets(clip, _Robot(model, config), config)


def _build_targets(clip: HumanClip, robot: "_Robot", config: RetargetConfig) -> KeyTargets:
    names = tuple(clip.joint_names)
    index = {n: i for i, n in enumerate(names)}
    missing = [kp.human for kp in config.keypoints if kp.human not in index]
    if missing:
        raise ConfigError(f"clip {clip.clip_id} lacks the joints {', '.join(missing)} the retarget config maps")
    joints = np.asarray(clip.joints_world_m, dtype=np.float64)
    conf = np.asarray(clip.joint_conf, dtype=np.float64)
    trusted = (conf >= config.min_joint_conf) & np.isfinite(joints).all(axis=-1)
    joints = np.where(np.isfinite(joints), joints, 0.0)
    T = len(joints)
    kps = config.keypoints
    K = len(kps)
    pos = np.zeros((T, K, 3))
    weight = np.zeros((T, K))
    chain_ok = np.zeros((T, K), dtype=bool)
    chain_conf = np.zeros((T, K))
    kp_index = {kp.human: k for k, kp in enumerate(kps)}
    rest = robot.rest_keypoints  # (K, 3)

    noise_var = _joint_noise_var(joints, trusted, [index[n] for n in _TRUNK if n in index])

    def human_length(a: str, b: str) -> float:
        """Bone length: trimmed mean of squared lengths less the noise's share (noise lengthens bones)."""
        ia, ib = index[a], index[b]
        ok = trusted[:, ia] & trusted[:, ib]
        if not np.any(ok):
            return float("nan")
        sq = np.sort(np.sum((joints[ok, ia] - joints[ok, ib]) ** 2, axis=-1))
        n = len(sq)
        mean_sq = float(sq[n // 10: n - n // 10].mean()) if n >= 10 else float(sq.mean())
        return math.sqrt(max(mean_sq - 6.0 * noise_var, 0.25 * mean_sq))

    # root scale: leg length ratio
    robot_leg = human_leg = 0.0
    for a, b in LEG_SEGMENTS:
        if a in kp_index and b in kp_index:
            h = human_length(a, b)
            if np.isfinite(h):
                robot_leg += float(np.linalg.norm(rest[kp_index[a]] - rest[kp_index[b]]))
                human_leg += h
    root_scale = robot_leg / human_leg if (config.scale_segments and human_leg > 1e-3) else 1.0
    segment_scale: dict[str, float] = {}
    for k in robot.order:
        kp = kps[k]
        i = index[kp.human]
        if kp.parent is None:
            pos[:, k] = root_scale * joints[:, i]
            chain_ok[:, k] = trusted[:, i]
            chain_conf[:, k] = conf[:, i]
        else:
            pk = kp_index[kp.parent]
            ip = index[kp.parent]
            h = human_length(kp.parent, kp.human)
            r = float(np.linalg.norm(rest[k] - rest[pk]))
            s = r / h if (config.scale_segments and np.isfinite(h) and h > 1e-3) else (
                root_scale if config.scale_segments else 1.0)
            segment_scale[f"{kp.parent}->{kp.human}"] = s
            pos[:, k] = pos[:, pk] + s * (joints[:, i] - joints[:, ip])
            chain_ok[:, k] = chain_ok[:, pk] & trusted[:, i]
            chain_conf[:, k] = np.minimum(chain_conf[:, pk], conf[:, i])
        weight[:, k] = np.where(chain_ok[:, k], kp.weight * chain_conf[:, k], 0.0)
    weight = np.where(np.isfinite(pos).all(-1), weight, 0.0)
    pos = np.where(np.isfinite(pos), pos, 0.0)
    # heel and toe targets below the ground are noise: the soles cannot follow them there
    for name in FOOT_JOINTS:
        if name in kp_index:
            pos[:, kp_index[name], 2] = np.maximum(pos[:, kp_index[name], 2], 0.0)
    return KeyTargets(
        names=tuple(kp.human for kp in kps),
        robot_points=tuple(kp.robot for kp in kps),
        pos_m=pos,
        weight=weight,
        segment_scale=segment_scale,
        root_scale=float(root_scale),
    )


_TRUNK = ("pelvis", "left_hip", "right_hip", "neck", "left_shoulder", "right_shoulder")


def _joint_noise_var(joints: np.ndarray, trusted: np.ndarray, rows: list[int]) -> float:
    """Per-coordinate variance (m^2) of frame-to-frame noise on the joints, from the trunk joints' deviation from
    the midpoint of their neighbours in time (white noise: 1.5 sigma^2; slow trunk motion adds little). Robust:
    median of the squared deviations / (1.5 * 0.455), 0.455 being the median of a chi-square with 1 dof."""
    if len(joints) < 3 or not rows:
        return 0.0
    x = joints[:, rows]
    ok = trusted[:-2, rows] & trusted[1:-1, rows] & trusted[2:, rows]
    dev = x[1:-1] - 0.5 * (x[:-2] + x[2:])  # (T-2, J, 3)
    if not np.any(ok):
        return 0.0
    return float(np.median(dev[ok] ** 2) / (1.5 * 0.455))


def _contact_flags(clip: HumanClip) -> np.ndarray:
    c = np.asarray(clip.foot_contact, dtype=bool)
    if c.shape != (clip.num_frames, len(FOOT_JOINTS)):
        return np.zeros((clip.num_frames, len(FOOT_JOINTS)), dtype=bool)
    return c


def _clip_fps(clip: HumanClip) -> float:
    if clip.fps and clip.fps > 0:
        return float(clip.fps)
    dt = np.diff(np.asarray(clip.time_s, dtype=np.float64))
    dt = dt[dt > 0]
    return float(1.0 / np.median(dt)) if len(dt) else 30.0


# ---------------------------------------------------------------------- the robot side


def _point_offset(model, pt: RobotPoint) -> np.ndarray:
    if not pt.sole:
        return np.asarray(pt.offset_m, dtype=np.float64)
    if pt.sole not in ("heel", "toe"):
        raise ConfigError(f"RobotPoint.sole must be 'heel', 'toe' or empty, not {pt.sole!r}")
    sole = model.sole_points_m(pt.body)
    x = sole[:, 0]
    pick = np.isclose(x, x.min() if pt.sole == "heel" else x.max(), atol=1e-4)
    return sole[pick].mean(axis=0)


class _Robot:
    """Model data the solver needs, in arrays: points on bodies, ancestry masks, capsules, limits."""

    def __init__(self, model, config: RetargetConfig):
        self.model = model
        nb = model.num_bodies
        nj = len(model.joint_names)
        if nj + 6 != NV:
            raise ConfigError(f"the retargeter expects 29 joints, the model has {nj}")
        parent = np.asarray(model.parent_index)
        # anc[b, j]: joint j moves body b
        anc_body = np.zeros((nb, nb), dtype=bool)
        for b in range(nb):
            a = b
            while a >= 0:
                anc_body[b, a] = True
                a = int(parent[a])
        self.jb = np.asarray(model.joint_body_index)
        self.anc = anc_body[:, self.jb]  # (B, 29)
        self.axis_local = np.asarray(model.joint_axis)[self.jb]  # (29, 3)
        self.anchor_local = np.asarray(model.joint_anchor_m)[self.jb]  # (29, 3)

        # elementary points: key-point points, then capsule ends
        kps = config.keypoints
        known = set(BODY_JOINTS)
        unknown = [kp.human for kp in kps if kp.human not in known]
        if unknown:
            raise ConfigError(f"unknown human joints in RetargetConfig.keypoints: {', '.join(unknown)}; "
                              f"valid: {', '.join(BODY_JOINTS)}")
        names = [kp.human for kp in kps]
        for kp in kps:
            if kp.parent is not None and kp.parent not in names:
                raise ConfigError(f"key point {kp.human!r} hangs from {kp.parent!r}, which is not a key point")
        roots = [kp.human for kp in kps if kp.parent is None]
        if len(roots) != 1:
            raise ConfigError(f"RetargetConfig.keypoints needs exactly one root (parent None), got {roots}")
        self.order = _topological(kps)
        body_idx, offsets = [], []
        rows = []
        for kp in kps:
            cols = []
            for pt in kp.robot:
                body_idx.append(model.body_index(pt.body))
                offsets.append(_point_offset(model, pt))
                cols.append(len(body_idx) - 1)
            rows.append(cols)
        avg = np.zeros((len(kps), len(body_idx)))
        for k, cols in enumerate(rows):
            avg[k, cols] = 1.0 / len(cols)
        cap = model.collision
        G = len(cap.names)
        self.num_kp_points = len(body_idx)
        self.cap_a = len(body_idx) + np.arange(G)
        self.cap_b = len(body_idx) + G + np.arange(G)
        body_idx += list(cap.body_index) * 2
        offsets += list(cap.a_m) + list(cap.b_m)
        self.point_body = np.asarray(body_idx, dtype=np.int64)
        self.point_off = np.asarray(offsets, dtype=np.float64).reshape(-1, 3)
        self.kp_avg = np.zeros((len(kps), len(body_idx)))
        self.kp_avg[:, : avg.shape[1]] = avg
        self.cap_body = np.asarray(cap.body_index, dtype=np.int64)
        self.cap_radius = np.asarray(cap.radius_m, dtype=np.float64)
        self.cap_bound = 0.5 * np.linalg.norm(np.asarray(cap.b_m) - np.asarray(cap.a_m), axis=-1) + self.cap_radius
        self.foot_kp = np.array([names.index(n) for n in FOOT_JOINTS]) if all(
            n in names for n in FOOT_JOINTS) else np.zeros(0, dtype=np.int64)
        # contact points: the lowest points of the sole capsules (both ends), each tied to the heel or toe flag
        # of its foot (rear / front half of the sole); z of the point = z of the capsule end - radius
        contact_elem, contact_flag, contact_dz = [], [], []
        ends = np.concatenate([self.cap_a, self.cap_b])
        end_caps = np.concatenate([np.arange(G), np.arange(G)])
        end_off = np.concatenate([np.asarray(cap.a_m), np.asarray(cap.b_m)]).reshape(-1, 3)
        for side, foot in zip(("left", "right"), FOOT_BODIES):
            if foot not in model.body_names or len(self.foot_kp) == 0:
                continue
            on_foot = self.cap_body[end_caps] == model.body_index(foot)
            sel = np.flatnonzero(np.asarray(cap.is_sole)[end_caps] & on_foot)
            if len(sel) == 0:
                continue
            x_mid = end_off[sel, 0].mean()
            for e in sel:
                contact_elem.append(ends[e])
                contact_flag.append(FOOT_JOINTS.index(f"{side}_{'toe' if end_off[e, 0] > x_mid else 'heel'}"))
                contact_dz.append(-self.cap_radius[end_caps[e]])
        self.contact_elem = np.asarray(contact_elem, dtype=np.int64)
        self.contact_flag = np.asarray(contact_flag, dtype=np.int64)
        self.contact_dz = np.asarray(contact_dz, dtype=np.float64)
        self.kp_set = _Composite(self.kp_avg, self.point_body, self.anc)
        sel = np.zeros((len(contact_elem), len(body_idx)))
        sel[np.arange(len(contact_elem)), contact_elem] = 1.0
        self.contact_set = _Composite(sel, self.point_body, self.anc)

        # rest pose (zero joints, identity root at the origin)
        one = np.zeros((1, 3)), np.eye(3)[None], np.zeros((1, nj))
        kin = self.kinematics(*one)
        self.rest_points = kin["points"][0]
        self.rest_keypoints = self.kp_avg @ self.rest_points  # (K, 3)
        self.pelvis_offset = self.rest_keypoints[self.order[0]]  # root key point in the root frame
        # self-collision pairs: those MuJoCo tests, less any that a (user) model has within the margin at the zero
        # pose: such shapes overlap by design and cannot be pushed apart
        pairs = np.asarray(cap.self_pairs, dtype=np.int64).reshape(-1, 2)
        if len(pairs):
            pa, pb = self.rest_points[self.cap_a], self.rest_points[self.cap_b]
            d = _segment_distance(pa[pairs[:, 0]], pb[pairs[:, 0]], pa[pairs[:, 1]], pb[pairs[:, 1]])[0]
            gap = d - self.cap_radius[pairs[:, 0]] - self.cap_radius[pairs[:, 1]]
            pairs = pairs[gap > config.self_collision_margin_m]
        self.pairs = pairs

        rng = np.asarray(model.joint_range_rad, dtype=np.float64)
        self.lo, self.hi = rng[:, 0].copy(), rng[:, 1].copy()
        margin = config.soft_limit_frac * (self.hi - self.lo)
        self.soft_lo, self.soft_hi = self.lo + margin, self.hi - margin
        self.vmax = np.asarray(model.joint_vel_limit_rad_s, dtype=np.float64)
        self.posture_w = np.array([config.w_posture_wrist if n in _WRISTS else config.w_posture
                                   for n in model.joint_names])

    def kinematics(self, root_pos: np.ndarray, root_rot: np.ndarray, q: np.ndarray) -> dict:
        """Bodies, elementary points, joint axes and anchors in the world for all frames (numpy float64)."""
        torch = _import_torch()
        with torch.no_grad():
            bp, br = self.model.fk_torch(torch.from_numpy(root_pos), torch.from_numpy(root_rot),
                                         torch.from_numpy(q))
        bp, br = bp.numpy(), br.numpy()
        rot_p = br[:, self.point_body]  # (T, E, 3, 3)
        points = bp[:, self.point_body] + _rotate(rot_p, self.point_off)
        rot_j = br[:, self.jb]
        axis = _rotate(rot_j, self.axis_local)
        anchor = bp[:, self.jb] + _rotate(rot_j, self.anchor_local)
        return {"points": points, "axis": axis, "anchor": anchor, "root": root_pos}

    def point_jacobian(self, points: np.ndarray, body: np.ndarray, root: np.ndarray, axis: np.ndarray,
                       anchor: np.ndarray) -> np.ndarray:
        """Jacobian (N..., 3, 35) of world points (N..., 3) fixed on bodies (N...,) w.r.t. the frame's unknowns.

        ``root``/``axis``/``anchor`` are broadcast against the points' leading shape: root (N..., 3),
        axis/anchor (N..., 29, 3). Unknowns: root translation, root rotation vector (world frame, applied on the
        left), joint angles.
        """
        lead = points.shape[:-1]
        J = np.zeros(lead + (3, NV))
        J[..., 0, 0] = J[..., 1, 1] = J[..., 2, 2] = 1.0
        d = points - root
        J[..., 0, 4], J[..., 0, 5] = d[..., 2], -d[..., 1]
        J[..., 1, 3], J[..., 1, 5] = -d[..., 2], d[..., 0]
        J[..., 2, 3], J[..., 2, 4] = d[..., 1], -d[..., 0]
        r = points[..., None, :] - anchor  # (N..., 29, 3)
        mask = self.anc[body]  # (N..., 29)
        ax, ay, az = axis[..., 0], axis[..., 1], axis[..., 2]
        rx, ry, rz = r[..., 0], r[..., 1], r[..., 2]
        J[..., 0, 6:] = (ay * rz - az * ry) * mask
        J[..., 1, 6:] = (az * rx - ax * rz) * mask
        J[..., 2, 6:] = (ax * ry - ay * rx) * mask
        return J


class _Composite:
    """Points that are weighted means of elementary points (rows of ``M`` (C, E), each summing to 1), with
    Jacobians computed only for the (point, joint) pairs where the joint moves some elementary point."""

    def __init__(self, M: np.ndarray, point_body: np.ndarray, anc: np.ndarray):
        self.cols = np.flatnonzero(np.any(M != 0, axis=0))
        self.M = M[:, self.cols]
        anc_e = anc[point_body[self.cols]].astype(np.float64)  # (Ec, 29)
        dep = np.abs(self.M) @ anc_e  # (C, 29)
        self.c_idx, self.j_idx = np.nonzero(dep > 0)
        self.Wp = self.M[self.c_idx] * anc_e[:, self.j_idx].T  # (P, Ec): weight of each point moved by j
        self.s = self.Wp.sum(axis=1)

    def positions(self, pts: np.ndarray) -> np.ndarray:
        """(T, C, 3) from elementary points (T, E, 3)."""
        return np.matmul(self.M, pts[:, self.cols])

    def jacobian(self, pts: np.ndarray, x: np.ndarray, kin: dict) -> np.ndarray:
        """Jacobian (T, C, 3, 35) of the points ``x`` (T, C, 3) w.r.t. each frame's unknowns (root translation,
        root rotation vector applied on the left in the world frame, joint angles)."""
        T, C = x.shape[:2]
        J = np.zeros((T, C, 3, NV))
        J[..., 0, 0] = J[..., 1, 1] = J[..., 2, 2] = 1.0
        d = x - kin["root"][:, None]
        J[..., 0, 4], J[..., 0, 5] = d[..., 2], -d[..., 1]
        J[..., 1, 3], J[..., 1, 5] = -d[..., 2], d[..., 0]
        J[..., 2, 3], J[..., 2, 4] = d[..., 1], -d[..., 0]
        if len(self.c_idx):
            v = np.matmul(self.Wp, pts[:, self.cols]) - self.s[:, None] * kin["anchor"][:, self.j_idx]
            a = kin["axis"][:, self.j_idx]
            cross = np.stack([a[..., 1] * v[..., 2] - a[..., 2] * v[..., 1],
                              a[..., 2] * v[..., 0] - a[..., 0] * v[..., 2],
                              a[..., 0] * v[..., 1] - a[..., 1] * v[..., 0]], axis=0)  # (3, T, P)
            J[:, self.c_idx, :, 6 + self.j_idx] = cross.transpose(2, 1, 0)
        return J


def _topological(kps: tuple[KeyPoint, ...]) -> list[int]:
    names = [kp.human for kp in kps]
    order, placed = [], set()
    while len(order) < len(kps):
        progressed = False
        for k, kp in enumerate(kps):
            if k in placed:
                continue
            if kp.parent is None or names.index(kp.parent) in placed:
                order.append(k)
                placed.add(k)
                progressed = True
        if not progressed:
            raise ConfigError("RetargetConfig.keypoints parents form a cycle")
    return order


# ---------------------------------------------------------------------- the optimisation problem


class _Problem:
    def __init__(self, robot: _Robot, config: RetargetConfig, targets: KeyTargets, contact: np.ndarray,
                 fps: float):
        self.robot, self.config, self.targets, self.fps = robot, config, targets, fps
        self.T = len(targets.pos_m)
        c = config
        self.sw_kp = np.sqrt(c.w_keypoint * targets.weight)  # (T, K)
        self.contact_flags = contact
        self.contact = contact if len(robot.foot_kp) else np.zeros((self.T, 0), dtype=bool)
        if len(robot.contact_elem):  # sole points of the flagged heel / toe
            self.sw_ch = math.sqrt(c.w_contact_height) * self.contact[:, robot.contact_flag]  # (T, C)
        else:  # no sole capsules in the model: the heel / toe key points themselves
            self.sw_ch = math.sqrt(c.w_contact_height) * self.contact  # (T, 4)
        both = self.contact[1:] & self.contact[:-1]
        self.sw_sl = math.sqrt(c.w_contact_slide) * both  # (T-1, 4)
        acc = np.concatenate([np.full(3, c.w_root_acc), np.full(3, c.w_root_ang_acc), np.full(29, c.w_joint_acc)])
        self.sw_acc = np.sqrt(acc) * fps**2  # (35,)
        self.sw_vel = math.sqrt(c.w_velocity_limit)
        self.vel_allow = c.velocity_limit_frac * robot.vmax

    # --- state

    def initial_state(self):
        """Root from the pelvis target, heading from the hips; knees bent to the hip-ankle distance of the
        targets (hip and ankle pitch taking half each, soles level); other joints at zero."""
        y = self.targets.pos_m
        names = self.targets.names
        T = self.T
        rot = np.tile(np.eye(3), (T, 1, 1))
        if "left_hip" in names and "right_hip" in names:
            lateral = y[:, names.index("left_hip")] - y[:, names.index("right_hip")]
            lateral[:, 2] = 0.0
            ok = np.linalg.norm(lateral, axis=-1) > 1e-6
            if np.any(ok):
                valid = np.flatnonzero(ok)  # frames without hips borrow the nearest later (or last) heading
                lateral = lateral[valid[np.minimum(np.searchsorted(valid, np.arange(T)), len(valid) - 1)]]
                lateral /= np.linalg.norm(lateral, axis=-1, keepdims=True)
                up = np.broadcast_to(np.array([0.0, 0.0, 1.0]), lateral.shape)
                rot = np.stack([np.cross(lateral, up), lateral, up], axis=-1)
        root_kp = self.robot.order[0]
        root_pos = y[:, root_kp] - rot @ self.robot.pelvis_offset
        q = np.zeros((T, 29))
        joints = self.robot.model.joint_names
        rest = self.robot.rest_keypoints
        for side in ("left", "right"):
            chain = [f"{side}_{n}" for n in ("hip", "knee", "ankle")]
            if not all(n in names for n in chain) or f"{side}_knee" not in joints:
                continue
            h, k, a = (names.index(n) for n in chain)
            thigh, shin = np.linalg.norm(rest[h] - rest[k]), np.linalg.norm(rest[k] - rest[a])
            d = np.linalg.norm(y[:, h] - y[:, a], axis=-1)
            cos_inner = np.clip((thigh**2 + shin**2 - d**2) / (2 * thigh * shin), -1.0, 1.0)
            flex = np.pi - np.arccos(cos_inner)
            q[:, joints.index(f"{side}_knee")] = flex
            q[:, joints.index(f"{side}_hip_pitch")] = -0.5 * flex
            q[:, joints.index(f"{side}_ankle_pitch")] = -0.5 * flex
        return root_pos, rot, np.clip(q, self.robot.lo, self.robot.hi)

    def retract(self, state, step):
        p, R, q = state
        return p + step[:, 0:3], _so3_exp(step[:, 3:6]) @ R, np.clip(q + step[:, 6:], self.robot.lo, self.robot.hi)

    # --- residuals

    def evaluate(self, state):
        """Cost, per-term costs and a context from which :meth:`normal_equations` builds the linear system."""
        robot, cfg, T = self.robot, self.config, self.T
        p, R, q = state
        kin = robot.kinematics(p, R, q)
        pts = kin["points"]
        terms: dict[str, float] = {}

        # key points
        xk = robot.kp_set.positions(pts)
        r_kp = self.sw_kp[..., None] * (xk - self.targets.pos_m)  # (T, K, 3)
        terms["keypoints"] = float(np.sum(r_kp**2))
        # contact height and sliding
        if len(robot.foot_kp):
            xf = xk[:, robot.foot_kp]  # (T, 4, 3)
            if len(robot.contact_elem):
                r_ch = self.sw_ch * (pts[:, robot.contact_elem, 2] + robot.contact_dz)
            else:
                r_ch = self.sw_ch * xf[..., 2]
            r_sl = self.sw_sl[..., None] * (xf[1:, :, :2] - xf[:-1, :, :2])  # (T-1, 4, 2)
        else:
            r_ch = np.zeros((T, 0))
            r_sl = np.zeros((max(T - 1, 0), 0, 2))
        terms["contact_height"] = float(np.sum(r_ch**2))
        terms["contact_slide"] = float(np.sum(r_sl**2))
        # ground: capsule ends (both) above z = 0 by their radius
        cap_pts = np.concatenate([pts[:, robot.cap_a], pts[:, robot.cap_b]], axis=1)  # (T, 2G, 3)
        clearance = cap_pts[..., 2] - np.tile(robot.cap_radius, 2)
        r_gr = math.sqrt(cfg.w_ground) * np.minimum(clearance, 0.0)
        terms["ground"] = float(np.sum(r_gr**2))
        # self-collision
        col = self._collisions(pts)
        terms["self_collision"] = float(np.sum(col["r"] ** 2)) if col else 0.0
        # accelerations, velocity limits
        if T >= 3:
            acc = np.concatenate([
                p[2:] - 2 * p[1:-1] + p[:-2],
                _so3_log(R[2:] @ np.swapaxes(R[1:-1], -1, -2)) - _so3_log(R[1:-1] @ np.swapaxes(R[:-2], -1, -2)),
                q[2:] - 2 * q[1:-1] + q[:-2],
            ], axis=1)  # fmt: skip
            r_acc = self.sw_acc * acc  # (T-2, 35)
        else:
            r_acc = np.zeros((0, NV))
        terms["acceleration"] = float(np.sum(r_acc**2))
        if T >= 2:
            dq = q[1:] - q[:-1]
            excess = np.abs(dq) * self.fps - self.vel_allow
            r_vel = self.sw_vel * np.maximum(excess, 0.0)  # (T-1, 29)
        else:
            dq = np.zeros((0, 29))
            r_vel = np.zeros((0, 29))
        terms["velocity_limit"] = float(np.sum(r_vel**2))
        # soft limits and posture (per joint)
        over = np.maximum(q - robot.soft_hi, 0.0) - np.maximum(robot.soft_lo - q, 0.0)
        r_lim = math.sqrt(cfg.w_soft_limit) * over
        terms["soft_limits"] = float(np.sum(r_lim**2))
        sw_post = np.sqrt(robot.posture_w)
        r_post = sw_post * q
        terms["posture"] = float(np.sum(r_post**2))
        cost = float(sum(terms.values()))
        ctx = dict(kin=kin, pts=pts, xk=xk, r_kp=r_kp, r_ch=r_ch, r_sl=r_sl, cap_pts=cap_pts, clearance=clearance,
                   r_gr=r_gr, col=col, r_acc=r_acc, dq=dq, r_vel=r_vel, over=over, r_lim=r_lim, r_post=r_post)
        return cost, terms, ctx

    def normal_equations(self, ctx: dict):
        """Blocks of J^T J and J^T r: Hd (T, 35, 35) per frame, Ho1 (T-1, 35, 35) between frames t and t+1,
        Ho2 (T-2, 35) (diagonal) between t and t+2; g (T, 35)."""
        robot, cfg, T = self.robot, self.config, self.T
        kin, pts, xk, col = ctx["kin"], ctx["pts"], ctx["xk"], ctx["col"]
        r_kp, r_ch, r_sl, r_gr, clearance = ctx["r_kp"], ctx["r_ch"], ctx["r_sl"], ctx["r_gr"], ctx["clearance"]
        r_acc, dq, r_vel, over, r_lim, r_post = (ctx[k] for k in ("r_acc", "dq", "r_vel", "over", "r_lim", "r_post"))
        root, axis, anchor = kin["root"], kin["axis"], kin["anchor"]
        sw_post = np.sqrt(robot.posture_w)
        nkp = len(robot.kp_avg)
        # Jacobians of the key points: average of their elementary points
        Jk = robot.kp_set.jacobian(pts, xk, kin)  # (T, K, 3, 35)
        rows = [(self.sw_kp[..., None, None] * Jk).reshape(T, 3 * nkp, NV)]
        res = [r_kp.reshape(T, 3 * nkp)]
        if len(robot.contact_elem):
            Jc = robot.contact_set.jacobian(pts, pts[:, robot.contact_elem], kin)[:, :, 2]  # (T, C, 35)
            rows.append(self.sw_ch[..., None] * Jc)
            res.append(r_ch)
        elif len(robot.foot_kp):
            rows.append(self.sw_ch[..., None] * Jk[:, robot.foot_kp, 2])
            res.append(r_ch)
        # ground rows (sparse: only capsule ends below the ground), packed per frame
        t_idx, e_idx = np.nonzero(clearance < 0.0)
        if len(t_idx):
            ends = np.concatenate([robot.cap_a, robot.cap_b])[e_idx]
            Jg = math.sqrt(cfg.w_ground) * robot.point_jacobian(
                ctx["cap_pts"][t_idx, e_idx], robot.point_body[ends], root[t_idx], axis[t_idx], anchor[t_idx])[:, 2]
            packed = _pack_rows(T, t_idx, Jg, r_gr[t_idx, e_idx])
            rows.append(packed[0])
            res.append(packed[1])
        # self-collision rows (sparse in time), packed per frame
        if col:
            packed = _pack_rows(T, col["t"], self._collision_jacobian(col, kin), col["r"])
            rows.append(packed[0])
            res.append(packed[1])
        # sliding, r_t = w_t (x_{t+1} - x_t): its per-frame blocks (w_t^2 + w_{t-1}^2) J_t^T J_t enter as extra rows
        # of frame t (scaled so that row^T res gives the gradient), the coupling -w_t^2 J_t^T J_{t+1} goes to Ho1
        slide = T >= 2 and len(robot.foot_kp) and np.any(self.sw_sl)
        if slide:
            Jf = Jk[:, robot.foot_kp, :2]  # (T, 4, 2, 35)
            w = np.zeros((T + 1, Jf.shape[1]))
            w[1:-1] = self.sw_sl  # w[t + 1] = weight of the pair (t, t+1)
            r = np.zeros((T + 1,) + r_sl.shape[1:])
            r[1:-1] = r_sl
            scale = np.sqrt(w[1:] ** 2 + w[:-1] ** 2)  # (T, 4)
            grad = (w[:-1, :, None] * r[:-1] - w[1:, :, None] * r[1:]) / np.maximum(scale, 1e-12)[..., None]
            rows.append((scale[..., None, None] * Jf).reshape(T, -1, NV))
            res.append(grad.reshape(T, -1))
        Jr = np.concatenate(rows, axis=1)
        rr = np.concatenate(res, axis=1)
        Hd = np.matmul(np.swapaxes(Jr, 1, 2), Jr)
        g = np.matmul(rr[:, None, :], Jr)[:, 0]
        Ho2 = np.zeros((max(T - 2, 0), NV))
        if slide:
            wa = self.sw_sl[..., None, None] * Jf[:-1]
            Ho1 = -np.matmul(np.swapaxes(wa.reshape(T - 1, -1, NV), 1, 2),
                             (self.sw_sl[..., None, None] * Jf[1:]).reshape(T - 1, -1, NV))
        else:
            Ho1 = np.zeros((max(T - 1, 0), NV, NV))
        # diagonal contributions, gathered first and added to the blocks once
        dd = np.zeros((T, NV))  # diagonal of Hd
        d1 = np.zeros((max(T - 1, 0), NV))  # diagonal of Ho1
        # velocity limits: r = sw * (|dq| fps - allow)+, dr/dq_{t+1} = sw fps sign(dq)
        if T >= 2:
            c = self.sw_vel * self.fps * np.sign(dq) * (r_vel > 0)  # (T-1, 29)
            dd[:-1, 6:] += c**2
            dd[1:, 6:] += c**2
            d1[:, 6:] -= c**2
            g[:-1, 6:] -= c * r_vel
            g[1:, 6:] += c * r_vel
        # accelerations: r_t = sw (x_{t+1} - 2 x_t + x_{t-1}), t = 1..T-2 (Jacobian of the rotation part approx.)
        if T >= 3:
            c2 = self.sw_acc**2
            dd[:-2] += c2
            dd[1:-1] += 4 * c2
            dd[2:] += c2
            d1[:-1] -= 2 * c2
            d1[1:] -= 2 * c2
            Ho2 += c2
            ga = self.sw_acc * r_acc
            g[:-2] += ga
            g[1:-1] -= 2 * ga
            g[2:] += ga
        # soft limits and posture: diagonal
        lim_active = (over != 0).astype(np.float64)
        dd[:, 6:] += cfg.w_soft_limit * lim_active + robot.posture_w
        g[:, 6:] += math.sqrt(cfg.w_soft_limit) * lim_active * r_lim + sw_post * r_post
        diag = np.arange(NV)
        Hd[:, diag, diag] += dd
        if T >= 2:
            Ho1[:, diag, diag] += d1
        return Hd, g, Ho1, Ho2

    def _collisions(self, pts: np.ndarray) -> dict | None:
        """Residuals of capsule pairs closer than the margin (sparse over frames and pairs) and their closest
        points."""
        robot = self.robot
        if len(robot.pairs) == 0:
            return None
        i, k = robot.pairs[:, 0], robot.pairs[:, 1]
        a, b = pts[:, robot.cap_a], pts[:, robot.cap_b]
        margin = self.config.self_collision_margin_m
        # broad phase: bounding spheres of the capsules (centre, half length + radius)
        centre = 0.5 * (a + b)
        dc = np.linalg.norm(centre[:, i] - centre[:, k], axis=-1)
        t_idx, p_idx = np.nonzero(dc - robot.cap_bound[i] - robot.cap_bound[k] < margin)
        if len(t_idx) == 0:
            return None
        gi, gk = i[p_idx], k[p_idx]
        d, s, u = _segment_distance(a[t_idx, gi], b[t_idx, gi], a[t_idx, gk], b[t_idx, gk])
        gap = d - robot.cap_radius[gi] - robot.cap_radius[gk]
        near = gap < margin
        if not np.any(near):
            return None
        t_idx, gi, gk, s, u, gap = t_idx[near], gi[near], gk[near], s[near], u[near], gap[near]
        sw = np.full(len(gap), math.sqrt(self.config.w_self_collision))
        r = sw * (margin - gap)
        c1 = a[t_idx, gi] + s[:, None] * (b[t_idx, gi] - a[t_idx, gi])
        c2 = a[t_idx, gk] + u[:, None] * (b[t_idx, gk] - a[t_idx, gk])
        return {"t": t_idx, "r": r, "sw": sw, "c1": c1, "c2": c2, "g1": gi, "g2": gk}

    def _collision_jacobian(self, col: dict, kin: dict) -> np.ndarray:
        """Rows (N, 35) of d(residual)/d(unknowns): -sw n^T (J(c1) - J(c2)), n the unit normal from c2 to c1."""
        robot, t_idx, c1, c2 = self.robot, col["t"], col["c1"], col["c2"]
        diff = c1 - c2
        n = diff / np.maximum(np.linalg.norm(diff, axis=-1, keepdims=True), 1e-9)
        root, axis, anchor = kin["root"][t_idx], kin["axis"][t_idx], kin["anchor"][t_idx]
        J1 = robot.point_jacobian(c1, robot.cap_body[col["g1"]], root, axis, anchor)
        J2 = robot.point_jacobian(c2, robot.cap_body[col["g2"]], root, axis, anchor)
        return -col["sw"][:, None] * np.matmul(n[:, None, :], J1 - J2)[:, 0]

    # --- solver

    def solve(self, state):
        cfg = self.config
        T = self.T
        lam = cfg.lm_lambda_init
        cost, terms, ctx = self.evaluate(state)
        system = self.normal_equations(ctx)
        cost0 = cost
        iterations = accepted = 0
        converged = False
        while iterations < cfg.max_iterations:
            iterations += 1
            Hd, g, Ho1, Ho2 = system
            step, predicted = _solve_banded(Hd, g, Ho1, Ho2, lam, self._free_mask(state, g))
            if predicted <= cfg.tolerance * cost:
                converged = True  # the local model promises less than the tolerance
                break
            trial = self.retract(state, step)
            new_cost, new_terms, new_ctx = self.evaluate(trial)
            rho = (cost - new_cost) / predicted
            if rho > 0:
                decrease = cost - new_cost
                state, cost, terms = trial, new_cost, new_terms
                accepted += 1
                if rho > 0.25 and decrease < cfg.tolerance * cost:
                    converged = True  # a reliable model and a small decrease: done
                    break
                system = self.normal_equations(new_ctx)
                lam = max(lam * (0.1 if rho > 0.75 else 1.0 if rho > 0.25 else 2.0), cfg.lm_lambda_min)
            else:
                lam *= 10.0
        stats = RetargetStats(iterations=iterations, accepted_steps=accepted, cost_initial=cost0 / max(T, 1),
                              cost_final=cost / max(T, 1), time_s=0.0, converged=converged,
                              cost_terms={k: v / max(T, 1) for k, v in terms.items()})
        return state, stats

    def _free_mask(self, state, g) -> np.ndarray:
        """False for joints on a bound whose gradient points out of the range (frozen this step)."""
        q = state[2]
        free = np.ones((self.T, NV), dtype=bool)
        at_lo = (q <= self.robot.lo) & (g[:, 6:] > 0)
        at_hi = (q >= self.robot.hi) & (g[:, 6:] < 0)
        free[:, 6:] = ~(at_lo | at_hi)
        return free


def _coarse_start(problem: "_Problem"):
    """Initial state for the full problem: the same problem on every ``coarse_stride``-th frame (cheaper
    iterations do the large nonlinear moves), interpolated back to every frame."""
    s = problem.config.coarse_stride
    T = problem.T
    if s <= 1 or T < 4 * s:
        return problem.initial_state(), 0
    idx = np.arange(0, T, s)
    tg = problem.targets
    sub = KeyTargets(names=tg.names, robot_points=tg.robot_points, pos_m=tg.pos_m[idx], weight=tg.weight[idx],
                     segment_scale=tg.segment_scale, root_scale=tg.root_scale)
    cfg = replace(problem.config, tolerance=problem.config.coarse_tolerance)
    coarse = _Problem(problem.robot, cfg, sub, problem.contact_flags[idx], problem.fps / s)
    (p, R, q), stats = coarse.solve(coarse.initial_state())
    # interpolate: positions and joints linearly, rotations along the geodesic between key frames
    t = np.arange(T) / s
    k = np.minimum(np.floor(t).astype(int), len(idx) - 1)
    k1 = np.minimum(k + 1, len(idx) - 1)
    a = np.clip(t - k, 0.0, 1.0)[:, None]
    p_f = (1 - a) * p[k] + a * p[k1]
    q_f = np.clip((1 - a) * q[k] + a * q[k1], problem.robot.lo, problem.robot.hi)
    rel = _so3_log(R[k1] @ np.swapaxes(R[k], -1, -2))
    R_f = _so3_exp(a * rel) @ R[k]
    return (p_f, R_f, q_f), stats.iterations


# ---------------------------------------------------------------------- banded solve


def _solve_banded(Hd, g, Ho1, Ho2, lam: float, free: np.ndarray) -> np.ndarray:
    """Solve ``(H + lam diag(H)) x = -g`` for the block-pentadiagonal H; frozen unknowns get x = 0.
    Returns x (T, 35) and the cost decrease the Gauss-Newton model predicts for it.

    H: diagonal blocks ``Hd`` (T, 35, 35), blocks ``Ho1`` (T-1, 35, 35) between frames t and t+1, diagonal
    blocks ``Ho2`` (T-2, 35) between t and t+2. Stored in LAPACK's upper banded form ``ab[u + i - j, j] =
    H[i, j]`` with u = 70 and factored by ``solveh_banded`` (banded Cholesky).
    """
    from scipy.linalg import LinAlgError, solveh_banded

    T = len(Hd)
    n = T * NV
    u = 2 * NV
    frozen = not free.all()
    f = free.astype(np.float64)
    if frozen:
        Hd = Hd * f[:, :, None] * f[:, None, :]
        Ho1 = Ho1 * f[:-1, :, None] * f[1:, None, :]
        Ho2 = Ho2 * f[:-2] * f[2:]
    idx = np.arange(NV)
    dg = Hd[:, idx, idx]
    ab = np.zeros((u + 1, T, NV))
    for b in range(NV):  # column b of every frame's blocks
        ab[u - b: u + 1, :, b] = Hd[:, : b + 1, b].T
        if T >= 2:
            ab[u - b - NV: u - b, 1:, b] = Ho1[:, :, b].T
    ab[u] = dg + lam * (dg + 1e-9) + 1e-12 + (1.0 - f)  # damped diagonal; frozen unknowns: identity rows
    if T >= 3:
        ab[0, 2:] = Ho2
    ab = ab.reshape(u + 1, n)
    rhs = -(g * f).reshape(n)
    damp = ab[u].reshape(T, NV) - dg
    for extra in (0.0, 1e-6, 1e-3, 1.0):
        try:
            if extra:
                ab[u] += extra
                damp = damp + extra
            x = solveh_banded(ab, rhs, check_finite=False).reshape(T, NV)
        except (LinAlgError, ValueError):
            continue
        # decrease of sum(r^2) the Gauss-Newton model predicts: -2 g.x - x.H.x = -g.x + x.D.x
        predicted = float(-np.sum(g * x) + np.sum(damp * x * x))
        return x, predicted
    return np.zeros((T, NV)), 0.0


# ---------------------------------------------------------------------- small math


def _import_torch():
    return require_module("torch", "retargeting", "pip install torch")


def _so3_exp(w: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) of rotation vectors (..., 3) (Rodrigues)."""
    theta = np.linalg.norm(w, axis=-1)[..., None, None]
    K = _skew(w)
    small = theta < 1e-8
    safe = np.where(small, 1.0, theta)
    a = np.where(small, 1.0 - theta**2 / 6.0, np.sin(safe) / safe)
    b = np.where(small, 0.5 - theta**2 / 24.0, (1.0 - np.cos(safe)) / safe**2)
    return np.eye(3) + a * K + b * (K @ K)


def _so3_log(R: np.ndarray) -> np.ndarray:
    """Rotation vectors (..., 3) of rotation matrices (..., 3, 3) with angles below pi."""
    cos = np.clip((np.einsum("...ii->...", R) - 1.0) / 2.0, -1.0, 1.0)
    theta = np.arccos(cos)
    v = np.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1)
    sin = np.sin(theta)
    small = sin < 1e-8
    factor = np.where(small, 0.5 + theta**2 / 12.0, theta / (2.0 * np.where(small, 1.0, sin)))
    return factor[..., None] * v


def _pack_rows(T: int, t_idx: np.ndarray, J: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sparse residual rows (N,) with Jacobians (N, 35) at frames ``t_idx`` (sorted) -> dense per-frame rows
    (T, M, 35) and (T, M), M = most rows in one frame, zero-padded."""
    starts = np.flatnonzero(np.r_[True, t_idx[1:] != t_idx[:-1]])
    counts = np.diff(np.r_[starts, len(t_idx)])
    rank = np.arange(len(t_idx)) - np.repeat(starts, counts)
    M = int(counts.max())
    Jp = np.zeros((T, M, NV))
    rp = np.zeros((T, M))
    Jp[t_idx, rank] = J
    rp[t_idx, rank] = r
    return Jp, rp


def _rotate(R: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``R @ v`` for rotations (..., N, 3, 3) and vectors (N, 3), written out (faster than einsum here)."""
    return R[..., 0] * v[:, 0, None] + R[..., 1] * v[:, 1, None] + R[..., 2] * v[:, 2, None]


def _skew(v: np.ndarray) -> np.ndarray:
    z = np.zeros(v.shape[:-1])
    x, y, w = v[..., 0], v[..., 1], v[..., 2]
    return np.stack([np.stack([z, -w, y], -1), np.stack([w, z, -x], -1), np.stack([-y, x, z], -1)], -2)


def _segment_distance(p1, q1, p2, q2):
    """Closest distance between segments [p1, q1] and [p2, q2] (..., 3), with the closest points' parameters.

    Returns ``d`` (...,), ``s`` and ``u`` (...,) in [0, 1]: closest points ``p1 + s (q1 - p1)``, ``p2 + u (q2 -
    p2)``. Vectorised version of the classic clamped solution (degenerate segments are points).
    """
    d1, d2, r = q1 - p1, q2 - p2, p1 - p2
    a = np.einsum("...i,...i->...", d1, d1)
    e = np.einsum("...i,...i->...", d2, d2)
    f = np.einsum("...i,...i->...", d2, r)
    c = np.einsum("...i,...i->...", d1, r)
    b = np.einsum("...i,...i->...", d1, d2)
    eps = 1e-12
    denom = a * e - b * b
    s = np.where(denom > eps, np.clip((b * f - c * e) / np.where(denom > eps, denom, 1.0), 0.0, 1.0), 0.0)
    s = np.where(a <= eps, 0.0, s)
    u = np.where(e > eps, (b * s + f) / np.where(e > eps, e, 1.0), 0.0)
    # clamp u and recompute s where needed
    u_cl = np.clip(u, 0.0, 1.0)
    s_re = np.where(a > eps, np.clip((b * u_cl - c) / np.where(a > eps, a, 1.0), 0.0, 1.0), 0.0)
    s = np.where(u != u_cl, s_re, s)
    u = u_cl
    diff = (p1 + s[..., None] * d1) - (p2 + u[..., None] * d2)
    return np.linalg.norm(diff, axis=-1), s, u
