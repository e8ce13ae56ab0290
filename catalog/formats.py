"""The motion file formats robot-learning trainers read, written from a :class:`~pipeline.g1_motion.G1Motion`.

Every writer takes a motion already at the target rate (see :func:`pipeline.resample.resample_g1_motion`) and
writes deterministically: the same motion gives the same bytes (no timestamps, fixed number formatting).

``unitree-csv`` (``.csv``, 30 fps by default): Unitree's retargeted-LAFAN1 layout, read by unitree_rl_lab,
BeyondMimic and mjlab's ``csv_to_npz``. One row per frame, comma-separated, no header, 36 columns:
root x, y, z (m), root quaternion **qx, qy, qz, qw** (scalar last), then the 29 joint angles (rad) in Unitree
SDK order (= :data:`pipeline.g1.model.JOINT_NAMES`). The file does not store its rate: pass it to the reader
(``--input_fps``).

``mjlab-npz`` / ``isaaclab-npz`` (``.npz``, 50 fps by default): what ``csv_to_npz`` produces and the trackers'
``MotionLoader`` reads. ``fps`` (1,) float64; ``joint_pos``, ``joint_vel`` (T, 29); ``body_pos_w`` (T, 30, 3);
``body_quat_w`` (T, 30, 4) **wxyz**; ``body_lin_vel_w``, ``body_ang_vel_w`` (T, 30, 3); all float32, world
frame, every body of the robot. mjlab: MuJoCo depth-first body and joint order
(:data:`~pipeline.g1.model.BODY_NAMES`, SDK joint order). isaaclab: PhysX breadth-first order
(:data:`~pipeline.g1.model.ISAAC_BODY_NAMES`, :data:`~pipeline.g1.model.ISAAC_JOINT_NAMES`). Both also carry
``joint_names`` (29,) and ``body_names`` (30,) as unicode string arrays (no pickling needed to read them); the
loaders index the arrays they need by key, so extra keys are ignored. Linear body velocities are those of the
body frame origins.

``gmr-pkl`` (``.pkl``, 30 fps by default): GMR's robot motion pickle, a dict with ``fps`` (int when the rate is
whole, else float), ``root_pos`` (T, 3), ``root_rot`` (T, 4) **xyzw**, ``dof_pos`` (T, 29) in SDK order,
``local_body_pos`` (T, 30, 3) (body origins in the pelvis frame) and ``link_body_list`` (30 names, MuJoCo
depth-first order).
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
from pipeline.resample import g1_velocities
from pipeline.rotations import quat_conjugate, quat_continuous, quat_rotate, wxyz_to_xyzw, xyzw_to_wxyz

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
        TrainerFormat("mjlab-npz", "npz", 50.0, True, "mjlab tracking NPZ, MuJoCo depth-first order"),
        TrainerFormat("isaaclab-npz", "npz", 50.0, True,
                      "Isaac Lab tracking NPZ (BeyondMimic, unitree_rl_lab), PhysX breadth-first order"),
        TrainerFormat("gmr-pkl", "pkl", 30.0, True, "GMR robot motion pickle"),
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


def tracking_motion(motion: G1Motion) -> TrackingMotion:
    """The tracking arrays of a motion with bodies, in the motion's own (MuJoCo) order; velocities by finite
    differences at the motion's rate; body quaternions made sign-continuous over time."""
    if not motion.body_names:
        raise ValueError(f"motion {motion.clip_id} has no body kinematics; resample it with bodies=True")
    vel = g1_velocities(motion)
    return TrackingMotion(
        fps=float(motion.fps),
        joint_names=tuple(motion.joint_names),
        joint_pos=np.asarray(motion.joint_pos_rad, dtype=np.float64),
        joint_vel=vel.joint_vel_rad_s,
        body_names=tuple(motion.body_names),
        body_pos_w=np.asarray(motion.body_pos_m, dtype=np.float64),
        body_quat_w=quat_continuous(motion.body_quat_wxyz),
        body_lin_vel_w=vel.body_lin_vel_m_s,
        body_ang_vel_w=vel.body_ang_vel_rad_s,
    )


def reorder_tracking(tm: TrackingMotion, joint_names: tuple[str, ...], body_names: tuple[str, ...]
                     ) -> TrackingMotion:
    """``tm`` with its joint and body axes permuted to the given name orders (e.g. Isaac Lab's)."""
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


def isaac_tracking(tm: TrackingMotion) -> TrackingMotion:
    """``tm`` (MuJoCo order) permuted to PhysX breadth-first order."""
    from pipeline.g1.model import ISAAC_BODY_NAMES, ISAAC_JOINT_NAMES

    return reorder_tracking(tm, tuple(ISAAC_JOINT_NAMES), tuple(ISAAC_BODY_NAMES))


# --- GMR pickle -----------------------------------------------------------------------------------------------


def gmr_dict(motion: G1Motion) -> dict:
    """GMR's robot-motion dict of a motion with bodies (see the module docstring)."""
    if not motion.body_names:
        raise ValueError(f"motion {motion.clip_id} has no body kinematics; resample it with bodies=True")
    joints = _columns_by_name(motion.joint_pos_rad, motion.joint_names, _sdk_joint_names(), "joints")
    root_pos = np.asarray(motion.root_pos_m, dtype=np.float64)
    root_quat = np.asarray(motion.root_quat_wxyz, dtype=np.float64)
    offsets_w = np.asarray(motion.body_pos_m, dtype=np.float64) - root_pos[:, None, :]
    local = quat_rotate(quat_conjugate(root_quat)[:, None, :], offsets_w)
    fps = float(motion.fps)
    return {
        "fps": int(round(fps)) if abs(fps - round(fps)) < 1e-9 else fps,
        "root_pos": root_pos,
        "root_rot": wxyz_to_xyzw(root_quat),
        "dof_pos": np.asarray(joints, dtype=np.float64),
        "local_body_pos": local,
        "link_body_list": [str(n) for n in motion.body_names],
    }


def write_gmr_pkl(motion: G1Motion, path: str | Path) -> None:
    atomic_write_bytes(Path(path), pickle.dumps(gmr_dict(motion), protocol=4))


def read_gmr_pkl(path: str | Path) -> dict:
    """Load a GMR pickle (only open files you trust: pickle can run code)."""
    with open(path, "rb") as f:
        return pickle.load(f)


# --- dispatch -------------------------------------------------------------------------------------------------


def _write_mjlab(motion: G1Motion, path: Path) -> None:
    write_tracking_npz(tracking_motion(motion), path)


def _write_isaac(motion: G1Motion, path: Path) -> None:
    write_tracking_npz(isaac_tracking(tracking_motion(motion)), path)


_WRITERS: dict[str, Callable[[G1Motion, Path], None]] = {
    "unitree-csv": write_unitree_csv,
    "mjlab-npz": _write_mjlab,
    "isaaclab-npz": _write_isaac,
    "gmr-pkl": write_gmr_pkl,
}


def write_motion(fmt: str, motion: G1Motion, path: str | Path) -> None:
    """Write ``motion`` (already at the target rate; with bodies unless the format does not need them) as
    ``fmt`` to ``path``, atomically."""
    get_format(fmt)
    _WRITERS[fmt](motion, Path(path))
