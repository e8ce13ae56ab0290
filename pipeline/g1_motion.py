"""A retargeted G1 motion: the project's robot-side clip schema and its ``.npz`` file.

All arrays are in the world frame of the clip (metres, z up, ground at z = 0).

==================  ============  ==========================================================================
key                 shape         meaning
==================  ============  ==========================================================================
``format``          ()            ``"g1forge.g1_motion"``; ``format_version`` () int
``clip_id``         ()            the human clip it was retargeted from
``fps``             ()            frames per second (the clip's own rate)
``root_pos_m``      (T, 3)        pelvis position
``root_quat_wxyz``  (T, 4)        pelvis orientation, scalar first (MuJoCo convention)
``joint_names``     (29,)         :data:`pipeline.g1.model.JOINT_NAMES` (SDK / CSV order)
``joint_pos_rad``   (T, 29)       joint angles
``body_names``      (B,)          :data:`pipeline.g1.model.BODY_NAMES` (MuJoCo depth-first order)
``body_pos_m``      (T, B, 3)     body origins from forward kinematics
``body_quat_wxyz``  (T, B, 4)     body orientations from forward kinematics
==================  ============  ==========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

FORMAT = "g1forge.g1_motion"
FORMAT_VERSION = 1


@dataclass
class G1Motion:
    """See the module docstring for shapes and frames."""

    clip_id: str
    fps: float
    root_pos_m: np.ndarray
    root_quat_wxyz: np.ndarray
    joint_names: tuple[str, ...]
    joint_pos_rad: np.ndarray
    body_names: tuple[str, ...]
    body_pos_m: np.ndarray
    body_quat_wxyz: np.ndarray

    def __post_init__(self) -> None:
        t = len(self.root_pos_m)
        problems = []
        for name, arr, shape in (
            ("root_pos_m", self.root_pos_m, (t, 3)),
            ("root_quat_wxyz", self.root_quat_wxyz, (t, 4)),
            ("joint_pos_rad", self.joint_pos_rad, (t, len(self.joint_names))),
            ("body_pos_m", self.body_pos_m, (t, len(self.body_names), 3)),
            ("body_quat_wxyz", self.body_quat_wxyz, (t, len(self.body_names), 4)),
        ):
            if np.shape(arr) != shape:
                problems.append(f"{name} shape {np.shape(arr)} != {shape}")
        if problems:
            raise ValueError(f"G1Motion {self.clip_id}: " + "; ".join(problems))

    @property
    def num_frames(self) -> int:
        return len(self.root_pos_m)

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps if self.fps > 0 else 0.0


def save_g1_motion(motion: G1Motion, path: str | Path) -> None:
    with open(path, "wb") as f:
        np.savez(
            f,
            format=np.array(FORMAT),
            format_version=np.array(FORMAT_VERSION),
            clip_id=np.array(motion.clip_id),
            fps=np.array(motion.fps, dtype=np.float64),
            root_pos_m=np.asarray(motion.root_pos_m, dtype=np.float64),
            root_quat_wxyz=np.asarray(motion.root_quat_wxyz, dtype=np.float64),
            joint_names=np.array(motion.joint_names),
            joint_pos_rad=np.asarray(motion.joint_pos_rad, dtype=np.float64),
            body_names=np.array(motion.body_names),
            body_pos_m=np.asarray(motion.body_pos_m, dtype=np.float32),
            body_quat_wxyz=np.asarray(motion.body_quat_wxyz, dtype=np.float32),
        )


def load_g1_motion(path: str | Path) -> G1Motion:
    with np.load(path, allow_pickle=False) as z:
        if str(z["format"]) != FORMAT:
            raise ValueError(f"{path} is not a g1forge G1 motion (format {z['format']!r})")
        return G1Motion(
            clip_id=str(z["clip_id"]),
            fps=float(z["fps"]),
            root_pos_m=z["root_pos_m"],
            root_quat_wxyz=z["root_quat_wxyz"],
            joint_names=tuple(str(n) for n in z["joint_names"]),
            joint_pos_rad=z["joint_pos_rad"],
            body_names=tuple(str(n) for n in z["body_names"]),
            body_pos_m=z["body_pos_m"].astype(np.float64),
            body_quat_wxyz=z["body_quat_wxyz"].astype(np.float64),
        )
