"""The G1 as the training stacks' own models see it: their body axes, and body velocities as their converters
record them.

Our MJCF (:mod:`pipeline.g1.model`) has the 30 moving bodies. The consumers of an export differ:

- **mjlab** simulates the G1 MJCF of its wheel: the same 30 bodies in MuJoCo depth-first order
  (:data:`pipeline.g1.model.BODY_NAMES`). Its ``csv_to_npz`` records ``body_link_*`` velocities: those of each
  body frame's **origin**.
- **Isaac Lab** (BeyondMimic, unitree_rl_lab) orders the articulation's links breadth-first (PhysX). Which links
  exist depends on how Unitree's URDF was turned into USD: Isaac Lab's ``UrdfConverterCfg.merge_fixed_joints``
  defaults to True (Isaac Lab 2.x), so a robot spawned from the URDF (BeyondMimic's ``G1_CYLINDER_CFG``,
  unitree_rl_lab's URDF spawn) has the 30 moving links, the fixed links (IMUs, head, logo, cameras, pelvis
  contour, rubber hands) merged into their parents: :func:`isaac_body_names` ``("merged")``. An articulation
  imported without merging keeps the 9 fixed links as bodies: 39 links, :func:`isaac_body_names`
  ``("all-links")``. Isaac Lab's ``body_lin_vel_w`` is the velocity of each link's **centre of mass**
  (``body_com_lin_vel_w``), and ``write_root_state_to_sim`` takes the root velocity as that of the root's centre
  of mass, so the converters, which pass the finite-difference velocity of the pelvis origin there, record every
  body's centre-of-mass velocity of a motion whose pelvis centre of mass moves at that velocity.
- **GMR** lists the 38 bodies of its own MJCF (our 30 plus toe links, rubber hands, head, a head marker, the
  torso IMU and the pelvis contour), depth-first, and stores their origins in the root frame (:data:`GMR_BODY_NAMES`).

Every converter (mjlab, BeyondMimic and unitree_rl_lab ``csv_to_npz``) computes, at the output rate: joint and
root linear velocities by ``torch.gradient`` (second-order central differences inside, first-order one-sided at
the two ends), the root angular velocity from ``q(t+1) q(t-1)^-1`` over ``2 dt`` with the first and last value
repeating their neighbour, and then lets the simulator propagate those to every body (the body velocities are
the rigid-body kinematics of the root twist plus the joint rates, not differences of body positions).
:func:`converter_velocities` and :func:`body_velocities` compute the same numbers.

Sources of the numbers below (facts read from the files, written into our own tables):
:data:`URDF_SOURCE` for the URDF fixed links, :data:`GMR_SOURCE` for GMR's extra bodies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ingest.errors import ConfigError
from pipeline.rotations import quat_conjugate, quat_multiply, quat_to_rotvec

URDF_SOURCE = "unitreerobotics/unitree_ros@d6f13aa robots/g1_description/g1_29dof_rev_1_0.urdf"
"""Unitree's public G1 29-DoF URDF (BSD-3-Clause), the description Isaac Lab's converter loads."""

GMR_SOURCE = "YanjieZe/GMR@4f9e8b7 assets/unitree_g1/g1_mocap_29dof.xml"
"""GMR's G1 MJCF (MIT), read by its ``KinematicsModel`` for ``local_body_pos`` / ``link_body_list``."""


@dataclass(frozen=True)
class AttachedBody:
    """A body rigidly attached to another (no joint): its origin ``pos_m`` (3,) and orientation ``quat_wxyz``
    (4,) in the parent's frame; ``com_m`` (3,) its own centre of mass in its frame (zeros where it has none)."""

    name: str
    parent: str
    pos_m: tuple[float, float, float]
    quat_wxyz: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)
    com_m: tuple[float, float, float] = (0.0, 0.0, 0.0)


def _quat_from_urdf_rpy(roll: float, pitch: float, yaw: float) -> tuple[float, float, float, float]:
    """URDF ``rpy`` (fixed axes x, y, z: ``R = Rz(yaw) Ry(pitch) Rx(roll)``) as a wxyz quaternion."""
    cr, sr = np.cos(roll / 2), np.sin(roll / 2)
    cp, sp = np.cos(pitch / 2), np.sin(pitch / 2)
    cy, sy = np.cos(yaw / 2), np.sin(yaw / 2)
    return (float(cr * cp * cy + sr * sp * sy), float(sr * cp * cy - cr * sp * sy),
            float(cr * sp * cy + sr * cp * sy), float(cr * cp * sy - sr * sp * cy))


# The URDF's 9 fixed joints (origin xyz, rpy) in the file's order, with the child link's inertial origin where the
# link has an <inertial> (imu_in_*, d435_link and mid360_link have none). From URDF_SOURCE.
URDF_FIXED_LINKS: tuple[AttachedBody, ...] = (
    AttachedBody("pelvis_contour_link", "pelvis", (0.0, 0.0, 0.0)),
    AttachedBody("logo_link", "torso_link", (0.0039635, 0.0, -0.044)),
    AttachedBody("head_link", "torso_link", (0.0039635, 0.0, -0.044), com_m=(0.005267, 0.000299, 0.449869)),
    AttachedBody("imu_in_torso", "torso_link", (-0.03959, -0.00224, 0.14792)),
    AttachedBody("imu_in_pelvis", "pelvis", (0.04525, 0.0, -0.08339)),
    AttachedBody("d435_link", "torso_link", (0.0576235, 0.01753, 0.42987),
                 _quat_from_urdf_rpy(0.0, 0.8307767239493009, 0.0)),
    AttachedBody("mid360_link", "torso_link", (0.0002835, 0.00003, 0.428434),
                 _quat_from_urdf_rpy(np.pi, 0.05112069379091391, 0.0)),
    AttachedBody("left_rubber_hand", "left_wrist_yaw_link", (0.0415, 0.003, 0.0),
                 com_m=(0.05361311, -0.00295905, 0.00215413)),
    AttachedBody("right_rubber_hand", "right_wrist_yaw_link", (0.0415, -0.003, 0.0),
                 com_m=(0.05361311, 0.00295905, 0.00215413)),
)  # fmt: skip

URDF_LINK_ORDER: tuple[str, ...] = (
    "pelvis", "pelvis_contour_link",
    "left_hip_pitch_link", "left_hip_roll_link", "left_hip_yaw_link", "left_knee_link", "left_ankle_pitch_link",
    "left_ankle_roll_link",
    "right_hip_pitch_link", "right_hip_roll_link", "right_hip_yaw_link", "right_knee_link", "right_ankle_pitch_link",
    "right_ankle_roll_link",
    "waist_yaw_link", "waist_roll_link", "torso_link", "logo_link", "head_link", "imu_in_torso", "imu_in_pelvis",
    "d435_link", "mid360_link",
    "left_shoulder_pitch_link", "left_shoulder_roll_link", "left_shoulder_yaw_link", "left_elbow_link",
    "left_wrist_roll_link", "left_wrist_pitch_link", "left_wrist_yaw_link", "left_rubber_hand",
    "right_shoulder_pitch_link", "right_shoulder_roll_link", "right_shoulder_yaw_link", "right_elbow_link",
    "right_wrist_roll_link", "right_wrist_pitch_link", "right_wrist_yaw_link", "right_rubber_hand",
)  # fmt: skip
"""The URDF's 39 links in file order (siblings keep this order in the articulation: PhysX lists links breadth-first,
children in the order the importer creates them)."""

URDF_UNMERGED_COM_M: dict[str, tuple[float, float, float]] = {
    "pelvis": (0.0, 0.0, -0.07605),
    "torso_link": (0.000931, 0.000346, 0.15082),
    "left_wrist_yaw_link": (0.02200382, 0.00049485, 0.00053861),
    "right_wrist_yaw_link": (0.02200382, -0.00049485, 0.00053861),
}
"""Centres of mass (link frame) of the URDF links that have fixed children, before merging: an articulation that
keeps the fixed links has these (merged, they are those of our MJCF, within 0.03 mm). From URDF_SOURCE."""

# GMR's bodies that our MJCF lacks: origins in the parent frame (all unrotated). From GMR_SOURCE.
GMR_EXTRA_BODIES: tuple[AttachedBody, ...] = (
    AttachedBody("left_toe_link", "left_ankle_roll_link", (0.1, 0.0, -0.02)),
    AttachedBody("pelvis_contour_link", "pelvis", (0.0, 0.0, 0.0)),
    AttachedBody("right_toe_link", "right_ankle_roll_link", (0.1, 0.0, -0.02)),
    AttachedBody("head_link", "torso_link", (0.0039635, 0.0, -0.044)),
    AttachedBody("head_mocap", "torso_link", (0.0, 0.0, 0.4)),
    AttachedBody("imu_in_torso", "torso_link", (-0.03959, -0.00224, 0.14792)),
    AttachedBody("left_rubber_hand", "left_wrist_yaw_link", (0.0415, 0.003, 0.0)),
    AttachedBody("right_rubber_hand", "right_wrist_yaw_link", (0.0415, -0.003, 0.0)),
)

GMR_BODY_NAMES: tuple[str, ...] = (
    "pelvis",
    "left_hip_pitch_link", "left_hip_roll_link", "left_hip_yaw_link", "left_knee_link", "left_ankle_pitch_link",
    "left_ankle_roll_link", "left_toe_link",
    "pelvis_contour_link",
    "right_hip_pitch_link", "right_hip_roll_link", "right_hip_yaw_link", "right_knee_link",
    "right_ankle_pitch_link", "right_ankle_roll_link", "right_toe_link",
    "waist_yaw_link", "waist_roll_link", "torso_link", "head_link", "head_mocap", "imu_in_torso",
    "left_shoulder_pitch_link", "left_shoulder_roll_link", "left_shoulder_yaw_link", "left_elbow_link",
    "left_wrist_roll_link", "left_wrist_pitch_link", "left_wrist_yaw_link", "left_rubber_hand",
    "right_shoulder_pitch_link", "right_shoulder_roll_link", "right_shoulder_yaw_link", "right_elbow_link",
    "right_wrist_roll_link", "right_wrist_pitch_link", "right_wrist_yaw_link", "right_rubber_hand",
)  # fmt: skip
"""GMR's ``link_body_list`` for ``unitree_g1``: its MJCF's bodies in depth-first pre-order (38)."""

ISAAC_BODY_SETS: tuple[str, ...] = ("merged", "all-links")
"""Isaac Lab articulation variants: fixed links merged into their parents (30 bodies, the converter's default)
or kept (39 bodies)."""

JOINT_SUFFIX = "_joint"


def trainer_joint_name(name: str) -> str:
    """A joint as the trainers' models spell it: ``left_hip_pitch`` -> ``left_hip_pitch_joint``."""
    return name if name.endswith(JOINT_SUFFIX) else name + JOINT_SUFFIX


# ---------------------------------------------------------------------------------------------- kinematic tree


@dataclass(frozen=True, eq=False)
class BodyTree:
    """A body axis with its kinematics: the model's bodies plus attached ones, in ``body_names`` order.

    ``source_index`` (B,): row in the extended pose arrays (model bodies, then ``attached``) of each body;
    ``parent_index`` (B,) in this order (-1 for the root); ``joint_index`` (B,) the model joint moving each body
    (-1: none); ``axis_b`` / ``anchor_b`` (B, 3) hinge axis and anchor in the body frame; ``com_b`` (B, 3)
    centre of mass in the body frame; ``chain`` (B, B) 1 where column k is body b itself or an ancestor of b,
    the root excluded.
    """

    body_names: tuple[str, ...]
    source_index: np.ndarray
    attached: tuple[AttachedBody, ...]
    parent_index: np.ndarray
    joint_index: np.ndarray
    axis_b: np.ndarray
    anchor_b: np.ndarray
    com_b: np.ndarray
    chain: np.ndarray

    @property
    def num_bodies(self) -> int:
        return len(self.body_names)


def _tree(model, attached: tuple[AttachedBody, ...], order: list[str], com_override: dict[str, tuple] | None
          ) -> BodyTree:
    names = list(model.body_names) + [a.name for a in attached]
    if len(set(names)) != len(names):
        raise ConfigError(f"{model.mjcf_path}: attached bodies clash with the model's bodies")
    for a in attached:
        if a.parent not in names:
            raise ConfigError(f"the G1 model {model.mjcf_path} has no body {a.parent!r} to attach {a.name!r} to")
    if sorted(order) != sorted(names):
        extra, missing = sorted(set(names) - set(order)), sorted(set(order) - set(names))
        raise ConfigError(f"the G1 model {model.mjcf_path} does not have the consumer's bodies: it has "
                          f"{extra or 'no'} extra and lacks {missing or 'none'}; export with the bundled G1")
    parent_ext = list(model.parent_index) + [names.index(a.parent) for a in attached]
    joint_ext = list(model.body_joint_index) + [-1] * len(attached)
    axis_ext = np.concatenate([model.joint_axis, np.zeros((len(attached), 3))])
    anchor_ext = np.concatenate([model.joint_anchor_m, np.zeros((len(attached), 3))])
    com_ext = np.concatenate([model.body_com_m, np.array([a.com_m for a in attached]).reshape(-1, 3)])
    for name, com in (com_override or {}).items():
        if name in names:
            com_ext[names.index(name)] = com
    src = np.array([names.index(n) for n in order], dtype=np.int64)
    pos_in_order = {int(s): i for i, s in enumerate(src)}
    parent = np.array([-1 if parent_ext[s] < 0 else pos_in_order[parent_ext[s]] for s in src], dtype=np.int64)
    chain = np.zeros((len(order), len(order)))
    for b in range(len(order)):
        k = b
        while k >= 0 and parent[k] >= 0:
            chain[b, k] = 1.0
            k = int(parent[k])
    return BodyTree(
        body_names=tuple(order), source_index=src, attached=tuple(attached), parent_index=parent,
        joint_index=np.array([joint_ext[s] for s in src], dtype=np.int64), axis_b=axis_ext[src],
        anchor_b=anchor_ext[src], com_b=com_ext[src], chain=chain,
    )


def _cached(model, key, build):
    cache = model._cache  # G1Model keeps derived data here (not pickled)
    if key not in cache:
        cache[key] = build()
    return cache[key]


def mjlab_tree(model) -> BodyTree:
    """mjlab's body axis: the model's bodies in its (MuJoCo depth-first) order."""
    return _cached(model, ("trainer_tree", "mjlab"),
                   lambda: _tree(model, (), list(model.body_names), None))


def isaac_tree(model, body_set: str = "merged") -> BodyTree:
    """An Isaac Lab articulation's body axis (PhysX breadth-first order) for ``body_set`` in
    :data:`ISAAC_BODY_SETS`; centres of mass as that articulation has them."""
    if body_set not in ISAAC_BODY_SETS:
        raise ConfigError(f"unknown Isaac Lab body set {body_set!r}; choose one of {', '.join(ISAAC_BODY_SETS)}")

    def build() -> BodyTree:
        from pipeline.g1.model import breadth_first_order

        attached = URDF_FIXED_LINKS if body_set == "all-links" else ()
        names = list(model.body_names) + [a.name for a in attached]
        rank = {n: i for i, n in enumerate(URDF_LINK_ORDER)}
        # siblings in the URDF's order (bodies of a user MJCF that the URDF lacks keep the file's order, last)
        file_order = sorted(range(len(names)), key=lambda i: (rank.get(names[i], len(rank)), i))
        parent_ext = list(model.parent_index) + [names.index(a.parent) for a in attached]
        pos = {s: i for i, s in enumerate(file_order)}
        parents = [-1 if parent_ext[s] < 0 else pos[parent_ext[s]] for s in file_order]
        if any(p >= i for i, p in enumerate(parents)):  # a child listed before its parent: use the model's order
            file_order = list(range(len(names)))
            parents = parent_ext
        order = [names[file_order[i]] for i in breadth_first_order(parents)]
        override = URDF_UNMERGED_COM_M if body_set == "all-links" else None
        return _tree(model, attached, order, override)

    return _cached(model, ("trainer_tree", "isaac", body_set), build)


def gmr_tree(model) -> BodyTree:
    """GMR's body axis for ``unitree_g1`` (:data:`GMR_BODY_NAMES`)."""
    return _cached(model, ("trainer_tree", "gmr"),
                   lambda: _tree(model, GMR_EXTRA_BODIES, list(GMR_BODY_NAMES), None))


def isaac_body_names(body_set: str = "merged", model=None) -> tuple[str, ...]:
    """The Isaac Lab body axis (names, breadth-first) for ``body_set`` (of the bundled G1 unless ``model``)."""
    if model is None:
        from pipeline.g1.model import load_g1

        model = load_g1()
    return isaac_tree(model, body_set).body_names


# ---------------------------------------------------------------------------------------------- poses


def tree_poses(tree: BodyTree, body_pos_w: np.ndarray, body_quat_w: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """World poses (T, B, 3) and (T, B, 4) wxyz of ``tree``'s bodies, from the model's FK poses (T, Bm, 3/4):
    attached bodies from their fixed offsets, then everything in ``tree.body_names`` order."""
    pos = tree_positions(tree, body_pos_w, body_quat_w)
    quat = np.asarray(body_quat_w, dtype=np.float64)
    if tree.attached:
        parents = _attached_parents(tree, quat.shape[1])
        qp = quat[:, parents]
        q_off = np.array([a.quat_wxyz for a in tree.attached], dtype=np.float64)
        quat = np.concatenate([quat, quat_multiply(qp, np.broadcast_to(q_off, qp.shape))], axis=1)
    return pos, quat[:, tree.source_index]


def tree_positions(tree: BodyTree, body_pos_w: np.ndarray, body_quat_w: np.ndarray) -> np.ndarray:
    """The positions part of :func:`tree_poses`: body origins (T, B, 3) in ``tree.body_names`` order."""
    pos = np.asarray(body_pos_w, dtype=np.float64)
    if tree.attached:
        quat = np.asarray(body_quat_w, dtype=np.float64)
        parents = _attached_parents(tree, pos.shape[1])
        offset = np.array([a.pos_m for a in tree.attached], dtype=np.float64)
        pos = np.concatenate([pos, pos[:, parents] + rotate(quat[:, parents], offset)], axis=1)
    return pos[:, tree.source_index]


def _attached_parents(tree: BodyTree, num_model_bodies: int) -> np.ndarray:
    return np.array([_parent_column(tree, a.parent, num_model_bodies) for a in tree.attached], dtype=np.int64)


def _parent_column(tree: BodyTree, parent: str, num_model_bodies: int) -> int:
    """Column of ``parent`` in the model's FK arrays (attached bodies hang from model bodies)."""
    s = int(tree.source_index[tree.body_names.index(parent)])
    if s >= num_model_bodies:
        raise ConfigError(f"attached body parent {parent!r} is itself attached; attach to a model body")
    return s


# ---------------------------------------------------------------------------------------------- velocities


def gradient(values: np.ndarray, dt_s: float) -> np.ndarray:
    """``torch.gradient`` along time (axis 0) with its defaults: ``(v[t+1] - v[t-1]) / 2dt`` inside,
    ``(v[1] - v[0]) / dt`` and ``(v[T-1] - v[T-2]) / dt`` at the ends; zeros when T < 2."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return np.zeros_like(v)
    return np.gradient(v, dt_s, axis=0, edge_order=1)


def so3_derivative(quat_wxyz: np.ndarray, dt_s: float) -> np.ndarray:
    """World angular velocity (T, 3) of a rotation sequence as the converters compute it:
    ``rotvec(q[t+1] q[t-1]^-1) / 2dt`` inside, the first and last value repeating their neighbour.
    T == 2: the one-sided ``rotvec(q[1] q[0]^-1) / dt`` for both frames (the converters fail there); T < 2: zeros."""
    q = np.asarray(quat_wxyz, dtype=np.float64)
    n = len(q)
    out = np.zeros(q.shape[:-1] + (3,))
    if n < 2:
        return out
    if n == 2:
        out[:] = quat_to_rotvec(quat_multiply(q[1], quat_conjugate(q[0]))) / dt_s
        return out
    out[1:-1] = quat_to_rotvec(quat_multiply(q[2:], quat_conjugate(q[:-2]))) / (2.0 * dt_s)
    out[0], out[-1] = out[1], out[-2]
    return out


@dataclass
class ConverterVelocities:
    """Root and joint velocities as ``csv_to_npz`` computes them (world frame; joints in the model's order)."""

    root_lin_vel_m_s: np.ndarray  # (T, 3) of the root body origin
    root_ang_vel_rad_s: np.ndarray  # (T, 3)
    joint_vel_rad_s: np.ndarray  # (T, 29)


def converter_velocities(root_pos_m: np.ndarray, root_quat_wxyz: np.ndarray, joint_pos_rad: np.ndarray,
                         fps: float) -> ConverterVelocities:
    """The converters' finite differences at ``fps`` (see the module docstring)."""
    dt = 1.0 / float(fps)
    return ConverterVelocities(root_lin_vel_m_s=gradient(root_pos_m, dt),
                               root_ang_vel_rad_s=so3_derivative(root_quat_wxyz, dt),
                               joint_vel_rad_s=gradient(joint_pos_rad, dt))


def body_velocities(tree: BodyTree, body_pos_w: np.ndarray, body_quat_w: np.ndarray, vel: ConverterVelocities,
                    point: str = "origin") -> tuple[np.ndarray, np.ndarray]:
    """Linear (T, B, 3) and angular (T, B, 3) world velocities of ``tree``'s bodies, propagated from the root
    twist and the joint rates as a simulator does after the converter writes them.

    body_pos_w / body_quat_w: (T, B, ·) poses in ``tree`` order (:func:`tree_poses`). point: ``"origin"``, the body
    frame origins, with ``vel.root_lin_vel_m_s`` the root origin's velocity (mjlab: MuJoCo's free joint); or
    ``"com"``, the centres of mass (``tree.com_b``), with ``vel.root_lin_vel_m_s`` taken as the root's centre of
    mass velocity (Isaac Lab: ``write_root_state_to_sim`` then ``body_lin_vel_w``).

    With ``w_k = qdot_k axis_k`` (world) and ``a_k`` the hinge anchor of body k:
    ``omega_b = omega_root + sum_k w_k`` and ``v(x_b) = v_root + omega_root x (x_b - x_root)
    + sum_k w_k x (x_b - a_k)`` over the bodies k on the chain from the root to b.
    """
    if point not in ("origin", "com"):
        raise ValueError(f"point must be 'origin' or 'com', got {point!r}")
    pos = np.asarray(body_pos_w, dtype=np.float64)
    quat = np.asarray(body_quat_w, dtype=np.float64)
    t, nb = pos.shape[:2]
    qdot = np.zeros((t, nb))
    has_joint = tree.joint_index >= 0
    qdot[:, has_joint] = np.asarray(vel.joint_vel_rad_s, dtype=np.float64)[:, tree.joint_index[has_joint]]
    axis_w = rotate(quat, tree.axis_b)
    w = qdot[..., None] * axis_w  # (T, B, 3)
    anchor_w = pos
    if np.any(tree.anchor_b != 0.0):
        anchor_w = pos + rotate(quat, tree.anchor_b)
    if point == "com":
        x = pos + rotate(quat, tree.com_b)
    else:
        x = pos
    root = int(np.flatnonzero(tree.parent_index < 0)[0])
    omega_root = np.asarray(vel.root_ang_vel_rad_s, dtype=np.float64)
    w_sum = _chain_sum(tree.chain, w)
    w_moment = _chain_sum(tree.chain, _cross(w, anchor_w))
    ang = omega_root[:, None, :] + w_sum
    lin = (np.asarray(vel.root_lin_vel_m_s, dtype=np.float64)[:, None, :]
           + _cross(omega_root[:, None, :], x - x[:, root : root + 1])
           + _cross(w_sum, x) - w_moment)
    return lin, ang


def _chain_sum(chain: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``out[t, b] = sum_k chain[b, k] values[t, k]`` for (T, B, 3) values, as one matrix product."""
    t, b, c = values.shape
    flat = np.ascontiguousarray(values.transpose(1, 0, 2)).reshape(b, t * c)
    return (chain @ flat).reshape(b, t, c).transpose(1, 0, 2)


def rotate(quat_wxyz: np.ndarray, vec: np.ndarray) -> np.ndarray:
    """(..., 3) vectors rotated by (..., 4) unit quaternions (broadcast); :func:`pipeline.rotations.quat_rotate`
    without ``np.cross``'s overhead."""
    w = quat_wxyz[..., :1]
    u = quat_wxyz[..., 1:]
    t = 2.0 * _cross(u, vec)
    return vec + w * t + _cross(u, t)


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross product over the last axis of broadcastable (..., 3) arrays."""
    a0, a1, a2 = a[..., 0], a[..., 1], a[..., 2]
    b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
    return np.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], axis=-1)
