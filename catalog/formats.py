"""The motion file formats robot-learning trainers read, written from a :class:`~pipeline.g1_motion.G1Motion`.

Every writer takes a motion already at the target rate (see :func:`pipeline.resample.resample_g1_motion`) and
writes deterministically: the same motion gives the same bytes (no timestamps, fixed number formatting).
What each consumer's model looks like (body axes, velocity reference points, the converters' finite differences)
is in :mod:`pipeline.g1.trainer_bodies`.

``unitree-csv`` (``.csv``, 30 fps by default): Unitree's retargeted-LAFAN1 layout, read by unitree_rl_lab,
BeyondMimic and mjlab's ``csv_to_npz``. One row per frame, comma-separated, no header, 36 columns:
root x, y, z (m), root quaternion **qx, qy, qz, qw** (scalar last), then the 29 joint angles (rad) in Unitree
SDK order (= :data:`pipeline.g1.model.JOINT_NAMES`). The file does not store its rate: pass it to the reader
(``--input_fps``; unitree_rl_lab's converter assumes 60 unless told).

Tracking NPZ (``.npz``, 50 fps by default): what the trainer's own ``csv_to_npz`` would write from our CSV, for the
tracking task's ``MotionLoader``. ``fps`` (1,) float64; ``joint_pos``, ``joint_vel`` (T, 29); ``body_pos_w``
(T, B, 3); ``body_quat_w`` (T, B, 4) **wxyz**; ``body_lin_vel_w``, ``body_ang_vel_w`` (T, B, 3); all float32,
world frame, every body of the consumer's robot in its simulator's order (the task picks the bodies it tracks by
their index in that robot, so the body axis must be the robot's, whole). Joint velocities and the root twist are
the converters' finite differences (second-order central inside, first-order one-sided at the ends; the root
angular velocity at the first and last frame repeats its neighbour), and body velocities are propagated from them
through the kinematic tree, as the simulator does. Also ``joint_names`` (29,) spelled as the trainers' models
spell them (``left_hip_pitch_joint``) and ``body_names`` (B,), unicode string arrays (no pickling needed); the
loaders index the arrays they need by key, so these extra keys are ignored.

- ``mjlab-npz``: mjlab's G1 (30 bodies, MuJoCo depth-first order = :data:`~pipeline.g1.model.BODY_NAMES`,
  joints in SDK order); body velocities of the body frame origins (``body_link_*``).
- ``isaaclab-npz``: an Isaac Lab articulation built from Unitree's G1 URDF by Isaac Lab's converter, whose
  ``merge_fixed_joints`` default merges the fixed links: 30 bodies and 29 joints in PhysX breadth-first order
  (:data:`~pipeline.g1.model.ISAAC_BODY_NAMES`, :data:`~pipeline.g1.model.ISAAC_JOINT_NAMES`). BeyondMimic;
  unitree_rl_lab when its robot is spawned from the URDF. Linear velocities are those of the bodies' centres of
  mass (Isaac Lab's ``body_lin_vel_w``), the pelvis centre of mass moving at the pelvis origin's finite-difference
  velocity as the converters set it.
- ``isaaclab-npz-all-links``: the same for an articulation that keeps the URDF's 9 fixed links (pelvis contour,
  IMUs, logo, head, cameras, rubber hands) as bodies: 39 bodies, breadth-first, the fixed links' poses from their
  fixed transforms (a USD imported without merging fixed joints).

``gmr-pkl`` (``.pkl``, 30 fps by default): GMR's robot motion pickle, a dict with ``fps`` (int when the rate is
whole, else float), ``root_pos`` (T, 3), ``root_rot`` (T, 4) **xyzw**, ``dof_pos`` (T, 29) in SDK order,
``local_body_pos`` (T, 38, 3) (body origins from forward kinematics with the root at the origin, unrotated, as
GMR's ``KinematicsModel`` computes them) and ``link_body_list`` (GMR's 38 ``unitree_g1`` bodies, its order:
:data:`pipeline.g1.trainer_bodies.GMR_BODY_NAMES`).
"""

from __future__ import annotations

import io
import os
import pickle
import uuid
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from ingest.errors import BadResultFile, ConfigError
from pipeline.g1_motion import G1Motion
from pipeline.rotations import quat_conjugate, quat_continuous, wxyz_to_xyzw, xyzw_to_wxyz

CSV_NUM_COLUMNS = 36
_CSV_FLOAT = "%.9g"  # 9 significant digits: every float32 value round-trips, float64 to ~1e-9 relative
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed member time stamp: byte-identical archives


@dataclass(frozen=True)
class TrainerFormat:
    """One export format: its file extension, default rate (fps) and whether it needs body kinematics."""

    name: str
    ext: str
    default_fps: float
    needs_bodies: bool
    description: str


FORMATS: dict[str, TrainerFormat] = {
    f.name: f
    for f in (
        TrainerFormat("unitree-csv", "csv", 30.0, False,
                      "36-column CSV, root xyz + quat xyzw + 29 joints (unitree_rl_lab, BeyondMimic, mjlab)"),
        TrainerFormat("mjlab-npz", "npz", 50.0, True,
                      "mjlab tracking NPZ: 30 bodies in MuJoCo depth-first order, body-origin velocities"),
        TrainerFormat("isaaclab-npz", "npz", 50.0, True,
                      "Isaac Lab tracking NPZ (BeyondMimic; unitree_rl_lab spawning Unitree's URDF): 30 bodies, "
                      "fixed links merged, PhysX breadth-first order, centre-of-mass velocities"),
        TrainerFormat("isaaclab-npz-all-links", "npz", 50.0, True,
                      "Isaac Lab tracking NPZ for an articulation that keeps the URDF's fixed links (a USD imported "
                      "without merging): 39 bodies, PhysX breadth-first order, centre-of-mass velocities"),
        TrainerFormat("gmr-pkl", "pkl", 30.0, True,
                      "GMR robot motion pickle: root xyzw, 29 joints, GMR's 38 unitree_g1 bodies in the root frame"),
    )
}


def get_format(name: str) -> TrainerFormat:
    """The :class:`TrainerFormat` called ``name``; :class:`ConfigError` naming the choices otherwise."""
    try:
        return FORMATS[name]
    except KeyError:
        raise ConfigError(f"unknown export format {name!r}; choose one of {', '.join(FORMATS)}") from None


# --- helpers --------------------------------------------------------------------------------------------------


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An uncompressed ``.npz`` archive of ``arrays`` (readable by ``numpy.load``) with fixed member time stamps,
    so equal arrays give equal bytes (``numpy.savez`` stamps members with the current time)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for key, value in arrays.items():
            arr = np.asanyarray(value)
            if arr.dtype == object:
                raise TypeError(f"{key}: object arrays would need pickle to load; use a numeric or str dtype")
            member = io.BytesIO()
            np.lib.format.write_array(member, arr, allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


def write_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Atomically write a deterministic ``.npz`` (see :func:`npz_bytes`)."""
    atomic_write_bytes(Path(path), npz_bytes(arrays))


def _columns_by_name(values: np.ndarray, names: tuple[str, ...], wanted: tuple[str, ...], what: str,
                     axis: int = 1) -> np.ndarray:
    """``values`` with its ``axis`` reordered from ``names`` to ``wanted``."""
    if tuple(names) == tuple(wanted):
        return np.asarray(values)
    missing = [n for n in wanted if n not in names]
    if missing:
        raise ConfigError(f"the motion lacks the {what} {missing}; export motions retargeted to the 29-DoF G1")
    index = [list(names).index(n) for n in wanted]
    return np.take(np.asarray(values), index, axis=axis)


def _sdk_joint_names() -> tuple[str, ...]:
    from pipeline.g1.model import JOINT_NAMES

    return tuple(JOINT_NAMES)


# --- Unitree CSV ----------------------------------------------------------------------------------------------


def unitree_csv_bytes(motion: G1Motion) -> bytes:
    """The 36-column CSV of ``motion`` (its rate is not stored in the file)."""
    joints = _columns_by_name(motion.joint_pos_rad, motion.joint_names, _sdk_joint_names(), "joints")
    table = np.concatenate(
        [np.asarray(motion.root_pos_m, dtype=np.float64),
         wxyz_to_xyzw(np.asarray(motion.root_quat_wxyz, dtype=np.float64)),
         np.asarray(joints, dtype=np.float64)],
        axis=1,
    )
    buf = io.StringIO()
    np.savetxt(buf, table, fmt=_CSV_FLOAT, delimiter=",", newline="\n")
    return buf.getvalue().encode("ascii")


def write_unitree_csv(motion: G1Motion, path: str | Path) -> None:
    atomic_write_bytes(Path(path), unitree_csv_bytes(motion))


def read_unitree_csv(path: str | Path, fps: float = 30.0, clip_id: str | None = None) -> G1Motion:
    """A Unitree CSV as a :class:`G1Motion` without bodies (``body_names == ()``) at the given ``fps``."""
    path = Path(path)
    try:
        table = np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64)
    except ValueError as exc:
        raise BadResultFile(f"{path} is not a numeric CSV ({exc}); expected Unitree's 36-column layout") from None
    if table.shape[1] != CSV_NUM_COLUMNS:
        raise BadResultFile(f"{path} has {table.shape[1]} columns; a Unitree G1 CSV has {CSV_NUM_COLUMNS} "
                            "(root xyz, quat xyzw, 29 joints)")
    t = len(table)
    return G1Motion(clip_id=clip_id if clip_id is not None else path.stem, fps=float(fps),
                    root_pos_m=table[:, 0:3], root_quat_wxyz=xyzw_to_wxyz(table[:, 3:7]),
                    joint_names=_sdk_joint_names(), joint_pos_rad=table[:, 7:], body_names=(),
                    body_pos_m=np.zeros((t, 0, 3)), body_quat_wxyz=np.zeros((t, 0, 4)))


# --- tracking NPZ (mjlab, Isaac Lab) --------------------------------------------------------------------------


@dataclass
class TrackingMotion:
    """The arrays of a tracking NPZ (world frame, float32 in the file).

    fps; joint_names (J,), joint_pos (T, J) rad, joint_vel (T, J) rad/s; body_names (B,), body_pos_w (T, B, 3) m,
    body_quat_w (T, B, 4) wxyz, body_lin_vel_w (T, B, 3) m/s, body_ang_vel_w (T, B, 3) rad/s.
    """

    fps: float
    joint_names: tuple[str, ...]
    joint_pos: np.ndarray
    joint_vel: np.ndarray
    body_names: tuple[str, ...]
    body_pos_w: np.ndarray
    body_quat_w: np.ndarray
    body_lin_vel_w: np.ndarray
    body_ang_vel_w: np.ndarray

    @property
    def num_frames(self) -> int:
        return len(self.joint_pos)


TRACKING_TARGETS: dict[str, tuple[str, str | None]] = {  # format -> (simulator, Isaac Lab body set)
    "mjlab-npz": ("mjlab", None),
    "isaaclab-npz": ("isaaclab", "merged"),
    "isaaclab-npz-all-links": ("isaaclab", "all-links"),
}


def _model_or_default(model):
    if model is None:
        from pipeline.g1.model import load_g1

        model = load_g1()
    return model


def _model_arrays(motion: G1Motion, model) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The motion's joints (model order) and body poses (model body order)."""
    if not motion.body_names:
        raise ValueError(f"motion {motion.clip_id} has no body kinematics; resample it with bodies=True")
    joints = _columns_by_name(motion.joint_pos_rad, tuple(motion.joint_names), tuple(model.joint_names), "joints")
    pos = _columns_by_name(motion.body_pos_m, tuple(motion.body_names), tuple(model.body_names), "bodies")
    quat = _columns_by_name(motion.body_quat_wxyz, tuple(motion.body_names), tuple(model.body_names), "bodies")
    return (np.asarray(joints, dtype=np.float64), np.asarray(pos, dtype=np.float64),
            np.asarray(quat, dtype=np.float64))


def tracking_motion(motion: G1Motion, target: str = "mjlab", body_set: str = "merged", model=None
                    ) -> TrackingMotion:
    """The tracking arrays of a motion with bodies, as ``target``'s ``csv_to_npz`` would record them.

    target: ``"mjlab"`` (MuJoCo depth-first bodies, SDK joint order, body origin velocities) or ``"isaaclab"``
    (PhysX breadth-first bodies and joints of ``body_set`` in
    :data:`pipeline.g1.trainer_bodies.ISAAC_BODY_SETS`, centre-of-mass velocities). model: the
    :class:`~pipeline.g1.model.G1Model` whose FK gave the motion's bodies (default: the bundled G1). Body
    quaternions are made sign-continuous over time.
    """
    from pipeline.g1 import trainer_bodies as tb

    model = _model_or_default(model)
    joints, pos_m, quat_m = _model_arrays(motion, model)
    if target == "mjlab":
        tree, point = tb.mjlab_tree(model), "origin"
        joint_order = tuple(model.joint_names)
    elif target == "isaaclab":
        tree, point = tb.isaac_tree(model, body_set), "com"
        joint_order = tuple(model.isaac_joint_names)
    else:
        raise ConfigError(f"unknown tracking target {target!r}; choose mjlab or isaaclab")
    vel = tb.converter_velocities(motion.root_pos_m, motion.root_quat_wxyz, joints, motion.fps)
    pos, quat = tb.tree_poses(tree, pos_m, quat_m)
    lin, ang = tb.body_velocities(tree, pos, quat, vel, point=point)
    jidx = [list(model.joint_names).index(n) for n in joint_order]
    return TrackingMotion(
        fps=float(motion.fps),
        joint_names=tuple(tb.trainer_joint_name(n) for n in joint_order),
        joint_pos=joints[:, jidx],
        joint_vel=vel.joint_vel_rad_s[:, jidx],
        body_names=tree.body_names,
        body_pos_w=pos,
        body_quat_w=quat_continuous(quat),
        body_lin_vel_w=lin,
        body_ang_vel_w=ang,
    )


def reorder_tracking(tm: TrackingMotion, joint_names: tuple[str, ...], body_names: tuple[str, ...]
                     ) -> TrackingMotion:
    """``tm`` with its joint and body axes permuted to the given name orders."""
    def bodies(a):
        return _columns_by_name(a, tm.body_names, tuple(body_names), "bodies")

    def joints(a):
        return _columns_by_name(a, tm.joint_names, tuple(joint_names), "joints")

    return replace(tm, joint_names=tuple(joint_names), joint_pos=joints(tm.joint_pos),
                   joint_vel=joints(tm.joint_vel), body_names=tuple(body_names), body_pos_w=bodies(tm.body_pos_w),
                   body_quat_w=bodies(tm.body_quat_w), body_lin_vel_w=bodies(tm.body_lin_vel_w),
                   body_ang_vel_w=bodies(tm.body_ang_vel_w))


def tracking_npz_arrays(tm: TrackingMotion) -> dict[str, np.ndarray]:
    """The NPZ members, in the order ``csv_to_npz`` writes them, then the names."""
    f32 = np.float32
    return {
        "fps": np.array([tm.fps], dtype=np.float64),
        "joint_pos": np.asarray(tm.joint_pos, dtype=f32),
        "joint_vel": np.asarray(tm.joint_vel, dtype=f32),
        "body_pos_w": np.asarray(tm.body_pos_w, dtype=f32),
        "body_quat_w": np.asarray(tm.body_quat_w, dtype=f32),
        "body_lin_vel_w": np.asarray(tm.body_lin_vel_w, dtype=f32),
        "body_ang_vel_w": np.asarray(tm.body_ang_vel_w, dtype=f32),
        "joint_names": np.array(tm.joint_names, dtype=np.str_),
        "body_names": np.array(tm.body_names, dtype=np.str_),
    }


def write_tracking_npz(tm: TrackingMotion, path: str | Path) -> None:
    write_npz(path, tracking_npz_arrays(tm))


def read_tracking_npz(path: str | Path) -> TrackingMotion:
    """Read a tracking NPZ (ours or ``csv_to_npz``'s; names are empty when the file has none)."""
    with np.load(path, allow_pickle=False) as z:
        def names(key):
            return tuple(str(n) for n in z[key]) if key in z.files else ()

        return TrackingMotion(
            fps=float(np.asarray(z["fps"]).reshape(-1)[0]),
            joint_names=names("joint_names"), joint_pos=z["joint_pos"], joint_vel=z["joint_vel"],
            body_names=names("body_names"), body_pos_w=z["body_pos_w"], body_quat_w=z["body_quat_w"],
            body_lin_vel_w=z["body_lin_vel_w"], body_ang_vel_w=z["body_ang_vel_w"],
        )


# --- GMR pickle -----------------------------------------------------------------------------------------------


def gmr_dict(motion: G1Motion, model=None) -> dict:
    """GMR's robot-motion dict of a motion with bodies (see the module docstring)."""
    from pipeline.g1 import trainer_bodies as tb

    model = _model_or_default(model)
    joints, pos_m, quat_m = _model_arrays(motion, model)
    root_pos = np.asarray(motion.root_pos_m, dtype=np.float64)
    root_quat = np.asarray(motion.root_quat_wxyz, dtype=np.float64)
    tree = tb.gmr_tree(model)
    pos = tb.tree_positions(tree, pos_m, quat_m)
    # FK with the root at the origin, unrotated = the world FK seen from the root frame (a rigid transform)
    local = tb.rotate(quat_conjugate(root_quat)[:, None, :], pos - root_pos[:, None, :])
    sdk = _columns_by_name(joints, tuple(model.joint_names), _sdk_joint_names(), "joints")
    fps = float(motion.fps)
    return {
        "fps": int(round(fps)) if abs(fps - round(fps)) < 1e-9 else fps,
        "root_pos": root_pos,
        "root_rot": wxyz_to_xyzw(root_quat),
        "dof_pos": np.asarray(sdk, dtype=np.float64),
        "local_body_pos": local,
        "link_body_list": [str(n) for n in tree.body_names],
    }


def write_gmr_pkl(motion: G1Motion, path: str | Path, model=None) -> None:
    atomic_write_bytes(Path(path), pickle.dumps(gmr_dict(motion, model), protocol=4))


def read_gmr_pkl(path: str | Path) -> dict:
    """Load a GMR pickle (only open files you trust: pickle can run code)."""
    with open(path, "rb") as f:
        return pickle.load(f)


# --- dispatch -------------------------------------------------------------------------------------------------


def _tracking_writer(fmt: str) -> Callable[..., None]:
    target, body_set = TRACKING_TARGETS[fmt]

    def write(motion: G1Motion, path: Path, model=None) -> None:
        write_tracking_npz(tracking_motion(motion, target, body_set or "merged", model), path)

    return write


def _write_csv(motion: G1Motion, path: Path, model=None) -> None:
    write_unitree_csv(motion, path)


_WRITERS: dict[str, Callable[..., None]] = {
    "unitree-csv": _write_csv,
    **{fmt: _tracking_writer(fmt) for fmt in TRACKING_TARGETS},
    "gmr-pkl": write_gmr_pkl,
}


def write_motion(fmt: str, motion: G1Motion, path: str | Path, model=None) -> None:
    """Write ``motion`` (already at the target rate; with bodies unless the format does not need them) as
    ``fmt`` to ``path``, atomically. model: the G1 model whose FK gave the motion's bodies (default: the
    bundled G1; a user MJCF gives its own axes and centres of mass)."""
    get_format(fmt)
    _WRITERS[fmt](motion, Path(path), model)
