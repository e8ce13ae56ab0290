"""The G1 kinematic model: names and orders, limits, and forward kinematics in numpy and torch.

The model is read from an MJCF (the bundled :data:`DEFAULT_MJCF_PATH` or a user file with the same 29 hinge
joint names) by :func:`load_g1`, which uses MuJoCo once to compile the file and keeps plain numpy arrays.
Importing this module imports neither torch nor mujoco.

Frames and conventions
----------------------
- World: metres, z up. Quaternions are ``wxyz`` (scalar first, MuJoCo convention).
- ``body_pos_m[b]`` / ``body_quat_wxyz[b]``: body ``b``'s origin and orientation in its parent's frame at zero
  joint angle. A hinge rotates the child about ``joint_axis[b]`` (child frame) through the anchor
  ``joint_anchor_m[b]`` (child frame; zero for the G1) by ``q - joint_ref_rad``.
  The local transform is ``T(body_pos) R(body_quat) T(anchor) R(axis, q - ref) T(-anchor)``.
- The root body (``body_names[0]``, the pelvis) is placed directly by the root pose; its file offset is ignored,
  as MuJoCo does for a body with a free joint.
- Joint angle arrays are always in :data:`JOINT_NAMES` order (Unitree SDK = CSV order), whatever the order in
  the file.

Limits
------
Effort limits come from the joints' ``actuatorfrcrange``; velocity limits from ``<custom>`` numerics named
``velocity_limit_rad_s:<joint>_joint`` (MuJoCo has no velocity-limit attribute). A user MJCF without them gets
the Unitree motor tables :data:`MOTOR_EFFORT_LIMIT_NM` and :data:`MOTOR_VELOCITY_LIMIT_RAD_S`.
"""

from __future__ import annotations

import functools
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ingest.errors import ConfigError, require_module
from pipeline.rotations import quat_multiply as _quat_mul
from pipeline.rotations import quat_rotate as _quat_rotate
from pipeline.rotations import quat_to_matrix as quat_wxyz_to_rotmat  # noqa: F401 (part of the API)

DEFAULT_MJCF_PATH = Path(__file__).with_name("g1_29dof.xml")

JOINT_NAMES: tuple[str, ...] = (
    "left_hip_pitch", "left_hip_roll", "left_hip_yaw", "left_knee", "left_ankle_pitch", "left_ankle_roll",
    "right_hip_pitch", "right_hip_roll", "right_hip_yaw", "right_knee", "right_ankle_pitch", "right_ankle_roll",
    "waist_yaw", "waist_roll", "waist_pitch",
    "left_shoulder_pitch", "left_shoulder_roll", "left_shoulder_yaw", "left_elbow",
    "left_wrist_roll", "left_wrist_pitch", "left_wrist_yaw",
    "right_shoulder_pitch", "right_shoulder_roll", "right_shoulder_yaw", "right_elbow",
    "right_wrist_roll", "right_wrist_pitch", "right_wrist_yaw",
)  # fmt: skip
"""The 29 hinges in MuJoCo qpos order = Unitree SDK order = CSV order (XML names minus ``_joint``)."""

JOINT_SUFFIX = "_joint"

_BODY_TREE: tuple[tuple[str, str | None], ...] = (
    ("pelvis", None),
    ("left_hip_pitch_link", "pelvis"),
    ("left_hip_roll_link", "left_hip_pitch_link"),
    ("left_hip_yaw_link", "left_hip_roll_link"),
    ("left_knee_link", "left_hip_yaw_link"),
    ("left_ankle_pitch_link", "left_knee_link"),
    ("left_ankle_roll_link", "left_ankle_pitch_link"),
    ("right_hip_pitch_link", "pelvis"),
    ("right_hip_roll_link", "right_hip_pitch_link"),
    ("right_hip_yaw_link", "right_hip_roll_link"),
    ("right_knee_link", "right_hip_yaw_link"),
    ("right_ankle_pitch_link", "right_knee_link"),
    ("right_ankle_roll_link", "right_ankle_pitch_link"),
    ("waist_yaw_link", "pelvis"),
    ("waist_roll_link", "waist_yaw_link"),
    ("torso_link", "waist_roll_link"),
    ("left_shoulder_pitch_link", "torso_link"),
    ("left_shoulder_roll_link", "left_shoulder_pitch_link"),
    ("left_shoulder_yaw_link", "left_shoulder_roll_link"),
    ("left_elbow_link", "left_shoulder_yaw_link"),
    ("left_wrist_roll_link", "left_elbow_link"),
    ("left_wrist_pitch_link", "left_wrist_roll_link"),
    ("left_wrist_yaw_link", "left_wrist_pitch_link"),
    ("right_shoulder_pitch_link", "torso_link"),
    ("right_shoulder_roll_link", "right_shoulder_pitch_link"),
    ("right_shoulder_yaw_link", "right_shoulder_roll_link"),
    ("right_elbow_link", "right_shoulder_yaw_link"),
    ("right_wrist_roll_link", "right_elbow_link"),
    ("right_wrist_pitch_link", "right_wrist_roll_link"),
    ("right_wrist_yaw_link", "right_wrist_pitch_link"),
)

BODY_NAMES: tuple[str, ...] = tuple(name for name, _ in _BODY_TREE)
"""The 30 bodies of the bundled model (pelvis first, world excluded) in MuJoCo depth-first order (mjlab NPZ)."""

BODY_PARENT_INDEX: tuple[int, ...] = tuple(-1 if p is None else BODY_NAMES.index(p) for _, p in _BODY_TREE)
"""Parent of each :data:`BODY_NAMES` entry (-1 for the pelvis)."""

_BODY_JOINT: dict[str, str] = {  # the hinge that moves each body (every body but the pelvis has one)
    "left_hip_pitch_link": "left_hip_pitch", "left_hip_roll_link": "left_hip_roll",
    "left_hip_yaw_link": "left_hip_yaw", "left_knee_link": "left_knee",
    "left_ankle_pitch_link": "left_ankle_pitch", "left_ankle_roll_link": "left_ankle_roll",
    "right_hip_pitch_link": "right_hip_pitch", "right_hip_roll_link": "right_hip_roll",
    "right_hip_yaw_link": "right_hip_yaw", "right_knee_link": "right_knee",
    "right_ankle_pitch_link": "right_ankle_pitch", "right_ankle_roll_link": "right_ankle_roll",
    "waist_yaw_link": "waist_yaw", "waist_roll_link": "waist_roll", "torso_link": "waist_pitch",
    "left_shoulder_pitch_link": "left_shoulder_pitch", "left_shoulder_roll_link": "left_shoulder_roll",
    "left_shoulder_yaw_link": "left_shoulder_yaw", "left_elbow_link": "left_elbow",
    "left_wrist_roll_link": "left_wrist_roll", "left_wrist_pitch_link": "left_wrist_pitch",
    "left_wrist_yaw_link": "left_wrist_yaw",
    "right_shoulder_pitch_link": "right_shoulder_pitch", "right_shoulder_roll_link": "right_shoulder_roll",
    "right_shoulder_yaw_link": "right_shoulder_yaw", "right_elbow_link": "right_elbow",
    "right_wrist_roll_link": "right_wrist_roll", "right_wrist_pitch_link": "right_wrist_pitch",
    "right_wrist_yaw_link": "right_wrist_yaw",
}  # fmt: skip

TRACKED_BODIES: tuple[str, ...] = (
    "pelvis",
    "left_hip_roll_link", "left_knee_link", "left_ankle_roll_link",
    "right_hip_roll_link", "right_knee_link", "right_ankle_roll_link",
    "torso_link",
    "left_shoulder_roll_link", "left_elbow_link", "left_wrist_yaw_link",
    "right_shoulder_roll_link", "right_elbow_link", "right_wrist_yaw_link",
)  # fmt: skip
"""The 14 bodies training trackers (BeyondMimic, mjlab) follow, in MuJoCo order."""

ANCHOR_BODY = "torso_link"
"""The trackers' anchor body."""

FOOT_BODIES: tuple[str, str] = ("left_ankle_roll_link", "right_ankle_roll_link")
HAND_BODIES: tuple[str, str] = ("left_wrist_yaw_link", "right_wrist_yaw_link")

STANDING_PELVIS_HEIGHT_M = 0.792
"""Pelvis height of the bundled model standing on z = 0 with every joint at zero (soles 0.035 m below the ankle
roll origins)."""

_MOTORS = {  # Unitree motor specs: (effort N m, velocity rad/s); linkage joints use two 5020 motors
    "7520-14": (88.0, 32.0),
    "7520-22": (139.0, 20.0),
    "5020": (25.0, 37.0),
    "2x5020": (50.0, 37.0),
    "4010": (5.0, 22.0),
}


def _motor_of(joint: str) -> str:
    j = joint.removeprefix("left_").removeprefix("right_")
    if j in ("hip_pitch", "hip_yaw", "waist_yaw"):
        return "7520-14"
    if j in ("hip_roll", "knee"):
        return "7520-22"
    if j in ("ankle_pitch", "ankle_roll", "waist_roll", "waist_pitch"):
        return "2x5020"
    if j in ("wrist_pitch", "wrist_yaw"):
        return "4010"
    return "5020"  # shoulders, elbows, wrist roll


MOTOR_EFFORT_LIMIT_NM: dict[str, float] = {j: _MOTORS[_motor_of(j)][0] for j in JOINT_NAMES}
"""Peak motor torque per joint (N m): fallback for a user MJCF without ``actuatorfrcrange``."""
MOTOR_VELOCITY_LIMIT_RAD_S: dict[str, float] = {j: _MOTORS[_motor_of(j)][1] for j in JOINT_NAMES}
"""Motor velocity limit per joint (rad/s): fallback for a user MJCF without the ``<custom>`` numerics."""

VELOCITY_NUMERIC_PREFIX = "velocity_limit_rad_s:"


def breadth_first_order(parent_index: "np.ndarray | tuple[int, ...]") -> list[int]:
    """Indices of a tree's nodes in breadth-first order, children in their given (XML) order.

    ``parent_index`` (N,): each node's parent (-1 for the root(s)), nodes listed parents first. This is the
    order PhysX (Isaac Lab) gives articulation links.
    """
    parents = [int(p) for p in parent_index]
    children: dict[int, list[int]] = {i: [] for i in range(-1, len(parents))}
    for i, p in enumerate(parents):
        children[p].append(i)
    order: list[int] = []
    queue = deque(children[-1])
    while queue:
        node = queue.popleft()
        order.append(node)
        queue.extend(children[node])
    return order


def _isaac_orders(body_names, parent_index, body_joint: dict[str, str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    bodies = tuple(body_names[i] for i in breadth_first_order(parent_index))
    joints = tuple(body_joint[b] for b in bodies if b in body_joint)
    return bodies, joints


ISAAC_BODY_NAMES, ISAAC_JOINT_NAMES = _isaac_orders(BODY_NAMES, BODY_PARENT_INDEX, _BODY_JOINT)
"""PhysX breadth-first body and joint orders (Isaac Lab / BeyondMimic NPZ)."""


@dataclass(frozen=True, eq=False)
class CollisionCapsules:
    """The model's collision capsules (a sphere is a capsule with ``a == b``), in their body frames.

    ``body_index`` (G,), ``a_m`` / ``b_m`` (G, 3) segment end points, ``radius_m`` (G,), ``names`` (G,),
    ``is_sole`` (G,) bool (geoms that carry the ground-contact bit 1). ``self_pairs`` (P, 2) are the capsule
    index pairs MuJoCo would test for self-collision (contype/conaffinity, parent filter, ``<exclude>``).
    Geoms of other types (boxes, meshes) in a user MJCF are listed in ``skipped``.
    """

    names: tuple[str, ...]
    body_index: np.ndarray
    a_m: np.ndarray
    b_m: np.ndarray
    radius_m: np.ndarray
    is_sole: np.ndarray
    self_pairs: np.ndarray
    skipped: tuple[str, ...] = ()


@dataclass(eq=False)
class G1Model:
    """A compiled G1 description as numpy arrays. ``B`` bodies (30 for the bundled model), root first.

    Read-only once built (arrays are not writeable); share one instance via :func:`load_g1`.
    See the module docstring for the frame conventions.
    """

    mjcf_path: Path
    joint_names: tuple[str, ...]
    body_names: tuple[str, ...]
    parent_index: np.ndarray  # (B,) int, -1 for the root
    body_pos_m: np.ndarray  # (B, 3) origin in the parent frame
    body_quat_wxyz: np.ndarray  # (B, 4) orientation in the parent frame
    joint_axis: np.ndarray  # (B, 3) hinge axis in the body frame; zeros for the root / bodies without a joint
    joint_anchor_m: np.ndarray  # (B, 3) hinge anchor in the body frame
    body_joint_index: np.ndarray  # (B,) index into joint_names, -1 where the body has no hinge
    joint_body_index: np.ndarray  # (29,) body moved by each joint
    joint_ref_rad: np.ndarray  # (29,) angle at which the body sits at its file pose (MuJoCo qpos0)
    joint_qpos_index: np.ndarray  # (29,) address of each joint in the file's qpos
    joint_range_rad: np.ndarray  # (29, 2) lower, upper
    joint_vel_limit_rad_s: np.ndarray  # (29,)
    joint_effort_limit_nm: np.ndarray  # (29,)
    body_mass_kg: np.ndarray  # (B,)
    body_com_m: np.ndarray  # (B, 3) centre of mass in the body frame
    body_inertia_kg_m2: np.ndarray  # (B, 3) principal moments
    body_inertia_quat_wxyz: np.ndarray  # (B, 4) principal axes in the body frame
    total_mass_kg: float
    sites: dict[str, tuple[int, np.ndarray]]  # name -> (body index, position (3,) in the body frame)
    collision: CollisionCapsules
    has_free_joint: bool
    nq: int
    isaac_body_names: tuple[str, ...] = ()
    isaac_joint_names: tuple[str, ...] = ()
    _cache: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    # ------------------------------------------------------------------ lookups

    @property
    def num_bodies(self) -> int:
        return len(self.body_names)

    def body_index(self, name: str) -> int:
        try:
            return self.body_names.index(name)
        except ValueError:
            raise ConfigError(f"the G1 model has no body {name!r}; bodies: {', '.join(self.body_names)}") from None

    def joint_index(self, name: str) -> int:
        try:
            return self.joint_names.index(name.removesuffix(JOINT_SUFFIX))
        except ValueError:
            raise ConfigError(f"the G1 model has no joint {name!r}; joints: {', '.join(self.joint_names)}") from None

    def site_pos(self, name: str) -> np.ndarray:
        """Site ``name``'s position (3,) in metres in its body's frame (see :meth:`site_body`)."""
        return self._site(name)[1].copy()

    def site_body(self, name: str) -> str:
        """The body a site is attached to."""
        return self.body_names[self._site(name)[0]]

    def _site(self, name: str) -> tuple[int, np.ndarray]:
        if name not in self.sites:
            raise ConfigError(f"the G1 model has no site {name!r}; sites: {', '.join(sorted(self.sites))}")
        return self.sites[name]

    def sole_points_m(self, body_name: str) -> np.ndarray:
        """Lowest points (K, 3) of a foot's sole capsules in the body frame: each capsule's two end points moved
        down (body -z) by its radius. For the bundled model 4 points per foot (heel and toe, inner and outer).
        A body without sole geoms (contact bit 1) uses all its collision capsules (e.g. a user MJCF's feet)."""
        b = self.body_index(body_name)
        c = self.collision
        sel = np.flatnonzero((c.body_index == b) & c.is_sole)
        if len(sel) == 0:
            sel = np.flatnonzero(c.body_index == b)
        if len(sel) == 0:
            raise ConfigError(
                f"body {body_name!r} has no collision capsules in {self.mjcf_path}; give the feet capsule geoms"
            )
        down = np.array([0.0, 0.0, 1.0])
        pts = [np.stack([c.a_m[i], c.b_m[i]]) - c.radius_m[i] * down for i in sel]
        return np.concatenate(pts, axis=0)

    # ------------------------------------------------------------------ conversions

    def qpos(self, root_pos_m, root_quat_wxyz, joint_pos_rad) -> np.ndarray:
        """MuJoCo ``qpos`` (T, nq) for this file from a root pose and joint angles in :data:`JOINT_NAMES` order."""
        root_pos_m = np.asarray(root_pos_m, dtype=np.float64)
        root_quat_wxyz = np.asarray(root_quat_wxyz, dtype=np.float64)
        joint_pos_rad = np.asarray(joint_pos_rad, dtype=np.float64)
        out = np.zeros(joint_pos_rad.shape[:-1] + (self.nq,))
        if self.has_free_joint:
            out[..., 0:3] = root_pos_m
            out[..., 3:7] = root_quat_wxyz
        out[..., self.joint_qpos_index] = joint_pos_rad
        return out

    # ------------------------------------------------------------------ forward kinematics

    def fk(self, root_pos_m, root_quat_wxyz, joint_pos_rad) -> tuple[np.ndarray, np.ndarray]:
        """World poses of every body, vectorised over frames.

        ``root_pos_m`` (T, 3), ``root_quat_wxyz`` (T, 4) (normalised here), ``joint_pos_rad`` (T, 29) in
        :data:`JOINT_NAMES` order; any leading shape works in place of ``T``.
        Returns ``body_pos_w_m`` (T, B, 3) and ``body_quat_w_wxyz`` (T, B, 4) in :attr:`body_names` order.
        Quaternion signs are those of the composition (continuous in time when the root quaternion is), not
        canonicalised.
        """
        root_pos = np.asarray(root_pos_m, dtype=np.float64)
        root_quat = np.asarray(root_quat_wxyz, dtype=np.float64)
        q = np.asarray(joint_pos_rad, dtype=np.float64)
        lead = _check_shapes(root_pos.shape, root_quat.shape, q.shape, len(self.joint_names), "fk")
        root_pos = root_pos.reshape(-1, 3)
        root_quat = root_quat.reshape(-1, 4)
        q = q.reshape(-1, len(self.joint_names)) - self.joint_ref_rad
        norm = np.linalg.norm(root_quat, axis=-1, keepdims=True)
        if np.any(norm < 1e-9):
            raise ValueError("fk: a root quaternion has zero norm")
        root_quat = root_quat / norm
        n = len(root_pos)
        pos = np.empty((n, self.num_bodies, 3))
        quat = np.empty((n, self.num_bodies, 4))
        for b in range(self.num_bodies):
            p = self.parent_index[b]
            if p < 0:
                pos[:, b] = root_pos
                quat[:, b] = root_quat
                continue
            qb = _quat_mul(quat[:, p], np.broadcast_to(self.body_quat_wxyz[b], (n, 4)))
            pb = pos[:, p] + _quat_rotate(quat[:, p], np.broadcast_to(self.body_pos_m[b], (n, 3)))
            j = self.body_joint_index[b]
            if j >= 0:
                half = 0.5 * q[:, j]
                qj = np.concatenate([np.cos(half)[:, None], np.sin(half)[:, None] * self.joint_axis[b]], axis=-1)
                anchor = self.joint_anchor_m[b]
                if np.any(anchor != 0.0):
                    a = np.broadcast_to(anchor, (n, 3))
                    pb = pb + _quat_rotate(qb, a - _quat_rotate(qj, a))
                qb = _quat_mul(qb, qj)
            pos[:, b] = pb
            quat[:, b] = qb
        return pos.reshape(lead + (self.num_bodies, 3)), quat.reshape(lead + (self.num_bodies, 4))

    def fk_torch(self, root_pos_m, root_rotmat, joint_pos_rad):
        """Differentiable world poses of every body, all frames at once (torch).

        ``root_pos_m`` (T, 3), ``root_rotmat`` (T, 3, 3) (columns = root axes in the world; not re-orthonormalised),
        ``joint_pos_rad`` (T, 29) in :data:`JOINT_NAMES` order; any leading shape works in place of ``T``; dtype
        and device follow ``joint_pos_rad``. Returns ``body_pos_w_m`` (T, B, 3) and ``body_rotmat_w``
        (T, B, 3, 3). One loop over bodies, batched over frames; gradients flow to all three inputs.
        """
        torch = _import_torch()
        q = joint_pos_rad
        lead = _check_shapes(
            tuple(root_pos_m.shape), tuple(root_rotmat.shape[:-2]) + (4,), tuple(q.shape), len(self.joint_names),
            "fk_torch",
        )
        if tuple(root_rotmat.shape[-2:]) != (3, 3):
            raise ValueError(f"fk_torch: root_rotmat must end in (3, 3), got {tuple(root_rotmat.shape)}")
        c = self._torch_constants(q.dtype, q.device)
        root_pos = root_pos_m.reshape(-1, 3).to(q.dtype)
        root_rot = root_rotmat.reshape(-1, 3, 3).to(q.dtype)
        q = q.reshape(-1, len(self.joint_names)) - c["ref"]
        s, co = torch.sin(q), torch.cos(q)
        eye = c["eye"]
        pos: list[Any] = [None] * self.num_bodies
        rot: list[Any] = [None] * self.num_bodies
        for b in range(self.num_bodies):
            p = int(self.parent_index[b])
            if p < 0:
                pos[b], rot[b] = root_pos, root_rot
                continue
            r_local = c["R_off"][b]
            t_local = c["p_off"][b].expand(root_pos.shape[0], 3)
            j = int(self.body_joint_index[b])
            if j >= 0:
                k, k2 = c["K"][b], c["K2"][b]
                r_joint = eye + s[:, j, None, None] * k + (1.0 - co[:, j, None, None]) * k2  # Rodrigues
                if c["has_anchor"][b]:
                    a = c["anchor"][b]
                    t_local = t_local + (c["R_off"][b] @ (a - r_joint @ a)[..., None])[..., 0]
                r_local = r_local @ r_joint
            rot[b] = rot[p] @ r_local
            pos[b] = pos[p] + (rot[p] @ t_local[..., None])[..., 0]
        body_pos = torch.stack(pos, dim=1)
        body_rot = torch.stack(rot, dim=1)
        return body_pos.reshape(lead + (self.num_bodies, 3)), body_rot.reshape(lead + (self.num_bodies, 3, 3))

    def _torch_constants(self, dtype, device) -> dict[str, Any]:
        key = ("torch", str(dtype), str(device))
        if key not in self._cache:
            torch = _import_torch()

            def t(x):
                return torch.tensor(np.array(x), dtype=dtype, device=device)

            axis = self.joint_axis
            k = np.zeros((self.num_bodies, 3, 3))
            k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
            k[:, 1, 0], k[:, 2, 0], k[:, 2, 1] = axis[:, 2], -axis[:, 1], axis[:, 0]
            self._cache[key] = {
                "R_off": t(quat_wxyz_to_rotmat(self.body_quat_wxyz)),
                "p_off": t(self.body_pos_m),
                "K": t(k),
                "K2": t(k @ k),
                "anchor": t(self.joint_anchor_m),
                "has_anchor": [bool(np.any(a != 0.0)) for a in self.joint_anchor_m],
                "ref": t(self.joint_ref_rad),
                "eye": t(np.eye(3)),
            }
        return self._cache[key]

    # ------------------------------------------------------------------ MuJoCo

    def mj_model(self):
        """A ``mujoco.MjModel`` compiled from :attr:`mjcf_path` (cached; not pickled with this object)."""
        if "mj_model" not in self._cache:
            self._cache["mj_model"] = _compile(self.mjcf_path)
        return self._cache["mj_model"]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cache"] = {}
        return state


# ---------------------------------------------------------------------- loading


def load_g1(mjcf_path: str | Path | None = None) -> G1Model:
    """The bundled G1 model, or a user MJCF with the same 29 hinge joints (``<name>_joint`` or ``<name>``).

    The result is cached per resolved path and shared: treat it as read-only.
    Raises :class:`ConfigError` when the file is missing, does not compile, or lacks/changes G1 joints.
    """
    path = Path(mjcf_path) if mjcf_path is not None else DEFAULT_MJCF_PATH
    path = path.expanduser().resolve()
    if not path.is_file():
        raise ConfigError(
            f"G1 MJCF not found: {path}; pass the path of a MuJoCo XML of the G1, or none for the bundled model"
        )
    return _load_cached(str(path))


@functools.lru_cache(maxsize=8)
def _load_cached(path: str) -> G1Model:
    return _model_from_mj(_compile(Path(path)), Path(path))


def _import_mujoco():
    return require_module("mujoco", "the G1 model", "pip install mujoco")


def _import_torch():
    return require_module("torch", "differentiable G1 kinematics", "pip install torch")


def _compile(path: Path):
    mujoco = _import_mujoco()
    try:
        return mujoco.MjModel.from_xml_path(str(path))
    except ValueError as exc:
        raise ConfigError(f"MuJoCo cannot compile the G1 MJCF {path}: {exc}; fix the file or pass another") from None


def _model_from_mj(m, path: Path) -> G1Model:
    mujoco = _import_mujoco()
    free, hinge = mujoco.mjtJoint.mjJNT_FREE, mujoco.mjtJoint.mjJNT_HINGE

    def name_of(kind, i):
        return mujoco.mj_id2name(m, kind, i) or ""

    # the 29 joints, accepting "<name>_joint" or "<name>"
    file_joints = {name_of(mujoco.mjtObj.mjOBJ_JOINT, j): j for j in range(m.njnt)}
    jids, missing = [], []
    for name in JOINT_NAMES:
        jid = file_joints.get(name + JOINT_SUFFIX, file_joints.get(name))
        if jid is None:
            missing.append(name + JOINT_SUFFIX)
        else:
            jids.append(jid)
    if missing:
        raise ConfigError(
            f"the MJCF {path} is not a G1 with the expected joint names: missing {', '.join(missing)}; "
            f"a G1 model needs the 29 hinges {', '.join(n + JOINT_SUFFIX for n in JOINT_NAMES)}"
        )
    problems = [f"{name_of(mujoco.mjtObj.mjOBJ_JOINT, j)} is not a hinge" for j in jids if m.jnt_type[j] != hinge]

    # the robot: the subtree of the world child that holds the joints, in MuJoCo (depth-first) order
    root_id = int(m.body_rootid[m.jnt_bodyid[jids[0]]])
    bodies = [b for b in range(1, m.nbody) if int(m.body_rootid[b]) == root_id]
    local = {b: i for i, b in enumerate(bodies)}
    known = set(jids)
    free_joints = []
    body_joint = np.full(len(bodies), -1, dtype=np.int64)
    for j in range(m.njnt):
        b = int(m.jnt_bodyid[j])
        if b not in local:
            continue
        if m.jnt_type[j] == free and b == root_id:
            free_joints.append(j)
        elif j not in known:
            problems.append(f"unexpected joint {name_of(mujoco.mjtObj.mjOBJ_JOINT, j) or j} in body "
                            f"{name_of(mujoco.mjtObj.mjOBJ_BODY, b)}")
    for k, j in enumerate(jids):
        i = local.get(int(m.jnt_bodyid[j]))
        if i is None:
            problems.append(f"{JOINT_NAMES[k]} is not in the robot's tree")
        elif body_joint[i] >= 0:
            problems.append(f"body {name_of(mujoco.mjtObj.mjOBJ_BODY, bodies[i])} has more than one G1 joint")
        else:
            body_joint[i] = k
    unlimited = [JOINT_NAMES[k] for k, j in enumerate(jids) if not m.jnt_limited[j]]
    if unlimited:
        problems.append(f"joints without a range: {', '.join(unlimited)} (give every hinge a range)")
    if problems:
        raise ConfigError(f"the MJCF {path} cannot be used as a G1: " + "; ".join(problems))

    body_names = tuple(name_of(mujoco.mjtObj.mjOBJ_BODY, b) for b in bodies)
    absent = [b for b in TRACKED_BODIES if b not in body_names]
    if absent:
        raise ConfigError(f"the MJCF {path} lacks the tracked G1 bodies {', '.join(absent)}; rename its bodies")
    parent = np.array([local.get(int(m.body_parentid[b]), -1) for b in bodies], dtype=np.int64)
    body_pos = np.array(m.body_pos[bodies], dtype=np.float64)
    body_quat = np.array(m.body_quat[bodies], dtype=np.float64)
    body_pos[0], body_quat[0] = 0.0, (1.0, 0.0, 0.0, 0.0)  # the root is placed by the root pose
    body_quat /= np.linalg.norm(body_quat, axis=1, keepdims=True)
    axis = np.zeros((len(bodies), 3))
    anchor = np.zeros((len(bodies), 3))
    joint_body = np.zeros(len(JOINT_NAMES), dtype=np.int64)
    for i, k in enumerate(body_joint):
        if k >= 0:
            j = jids[k]
            axis[i] = m.jnt_axis[j] / np.linalg.norm(m.jnt_axis[j])
            anchor[i] = m.jnt_pos[j]
            joint_body[k] = i
    qpos_index = np.array([m.jnt_qposadr[j] for j in jids], dtype=np.int64)

    effort = np.array([
        max(abs(m.jnt_actfrcrange[j][0]), abs(m.jnt_actfrcrange[j][1])) if m.jnt_actfrclimited[j]
        else MOTOR_EFFORT_LIMIT_NM[name] for name, j in zip(JOINT_NAMES, jids)
    ])  # fmt: skip
    numerics = {name_of(mujoco.mjtObj.mjOBJ_NUMERIC, i): i for i in range(m.nnumeric)}
    velocity = []
    for name, j in zip(JOINT_NAMES, jids):
        key = VELOCITY_NUMERIC_PREFIX + name_of(mujoco.mjtObj.mjOBJ_JOINT, j)
        if key in numerics:
            velocity.append(float(m.numeric_data[m.numeric_adr[numerics[key]]]))
        else:
            velocity.append(MOTOR_VELOCITY_LIMIT_RAD_S[name])

    sites = {
        name_of(mujoco.mjtObj.mjOBJ_SITE, s): (local[int(m.site_bodyid[s])], _frozen(m.site_pos[s]))
        for s in range(m.nsite)
        if int(m.site_bodyid[s]) in local
    }
    bisaac, jisaac = _isaac_orders(
        body_names, parent, {body_names[i]: JOINT_NAMES[k] for i, k in enumerate(body_joint) if k >= 0}
    )
    masses = np.array(m.body_mass[bodies], dtype=np.float64)
    return G1Model(
        mjcf_path=path,
        joint_names=JOINT_NAMES,
        body_names=body_names,
        parent_index=_frozen(parent),
        body_pos_m=_frozen(body_pos),
        body_quat_wxyz=_frozen(body_quat),
        joint_axis=_frozen(axis),
        joint_anchor_m=_frozen(anchor),
        body_joint_index=_frozen(body_joint),
        joint_body_index=_frozen(joint_body),
        joint_ref_rad=_frozen(np.array([m.qpos0[a] for a in qpos_index], dtype=np.float64)),
        joint_qpos_index=_frozen(qpos_index),
        joint_range_rad=_frozen(np.array([m.jnt_range[j] for j in jids], dtype=np.float64)),
        joint_vel_limit_rad_s=_frozen(np.array(velocity, dtype=np.float64)),
        joint_effort_limit_nm=_frozen(effort),
        body_mass_kg=_frozen(masses),
        body_com_m=_frozen(np.array(m.body_ipos[bodies], dtype=np.float64)),
        body_inertia_kg_m2=_frozen(np.array(m.body_inertia[bodies], dtype=np.float64)),
        body_inertia_quat_wxyz=_frozen(np.array(m.body_iquat[bodies], dtype=np.float64)),
        total_mass_kg=float(masses.sum()),
        sites=sites,
        collision=_collision_capsules(m, bodies, local),
        has_free_joint=bool(free_joints),
        nq=int(m.nq),
        isaac_body_names=bisaac,
        isaac_joint_names=jisaac,
    )


def _collision_capsules(m, bodies: list[int], local: dict[int, int]) -> CollisionCapsules:
    """Capsules/spheres with a contact bit, and the self-collision pairs MuJoCo's filters allow."""
    mujoco = _import_mujoco()
    names, body_index, a, b, radius, sole, skipped, gids = [], [], [], [], [], [], [], []
    for g in range(m.ngeom):
        bid = int(m.geom_bodyid[g])
        if bid not in local or (m.geom_contype[g] == 0 and m.geom_conaffinity[g] == 0):
            continue
        name = mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_GEOM, g) or f"geom{g}"
        gtype = m.geom_type[g]
        if gtype == mujoco.mjtGeom.mjGEOM_CAPSULE:
            half = m.geom_size[g][1] * quat_wxyz_to_rotmat(m.geom_quat[g])[:, 2]
        elif gtype == mujoco.mjtGeom.mjGEOM_SPHERE:
            half = np.zeros(3)
        else:
            skipped.append(name)
            continue
        names.append(name)
        gids.append(g)
        body_index.append(local[bid])
        a.append(m.geom_pos[g] - half)
        b.append(m.geom_pos[g] + half)
        radius.append(float(m.geom_size[g][0]))
        sole.append(bool((int(m.geom_contype[g]) | int(m.geom_conaffinity[g])) & 2))
    excluded = {int(s) for s in m.exclude_signature} if m.nexclude else set()
    filter_parent = not (m.opt.disableflags & mujoco.mjtDisableBit.mjDSBL_FILTERPARENT)
    pairs = []
    for i in range(len(gids)):
        for k in range(i + 1, len(gids)):
            g1, g2 = gids[i], gids[k]
            if not (m.geom_contype[g1] & m.geom_conaffinity[g2] or m.geom_contype[g2] & m.geom_conaffinity[g1]):
                continue
            w1, w2 = int(m.body_weldid[m.geom_bodyid[g1]]), int(m.body_weldid[m.geom_bodyid[g2]])
            if w1 == w2:
                continue
            if filter_parent and w1 and w2 and (
                w1 == int(m.body_weldid[m.body_parentid[w2]]) or w2 == int(m.body_weldid[m.body_parentid[w1]])
            ):
                continue
            lo, hi = min(int(m.geom_bodyid[g1]), int(m.geom_bodyid[g2])), max(
                int(m.geom_bodyid[g1]), int(m.geom_bodyid[g2])
            )
            if (lo << 16) + hi in excluded:
                continue
            pairs.append((i, k))
    return CollisionCapsules(
        names=tuple(names),
        body_index=_frozen(np.array(body_index, dtype=np.int64)),
        a_m=_frozen(np.array(a, dtype=np.float64).reshape(-1, 3)),
        b_m=_frozen(np.array(b, dtype=np.float64).reshape(-1, 3)),
        radius_m=_frozen(np.array(radius, dtype=np.float64)),
        is_sole=_frozen(np.array(sole, dtype=bool)),
        self_pairs=_frozen(np.array(pairs, dtype=np.int64).reshape(-1, 2)),
        skipped=tuple(skipped),
    )


# ---------------------------------------------------------------------- small math


def _check_shapes(root_pos, root_quat, q, num_joints: int, where: str) -> tuple[int, ...]:
    lead = tuple(q[:-1])
    if q[-1:] != (num_joints,) or tuple(root_pos) != lead + (3,) or tuple(root_quat) != lead + (4,):
        raise ValueError(
            f"{where}: expected root_pos (..., 3), root rotation (..., 4) or (..., 3, 3) and joint_pos (..., "
            f"{num_joints}) with the same leading shape; got {tuple(root_pos)}, {tuple(root_quat)}, {tuple(q)}"
        )
    return lead


def _frozen(a) -> np.ndarray:
    a = np.array(a)
    a.setflags(write=False)
    return a
