"""Exact SMPL joint centres from 4D-Humans' SMPL parameters, where the user has the SMPL model file.

PHALP's ``3d_joints`` rows are regressed keypoints (OpenPose / H36M conventions). When the SMPL model is available
(``SMPL_NEUTRAL.pkl``, the plain-numpy pickle 4D-Humans itself loads; see ``shared/reference/4d-humans.md``), the
body joints can instead be the SMPL skeleton's own joint centres, evaluated by ``smplx.SMPL`` from the kept
:class:`pipeline.motion.SMPLParams`:

    joints_cam_m = SMPL(betas, global_orient, body_pose).joints[:, :24] + transl_cam_m

HMR2 predicts ``global_orient`` directly in the OpenCV camera frame (x right, y down, z forward) and ``camera`` is
the body's translation in that frame, so the result is in the camera frame of :mod:`pipeline.motion`, metres.

Joint semantics change for the joints in :data:`SMPL_TO_BODY`: they become SMPL joint centres (``pelvis`` is SMPL's
pelvis joint, not the midpoint of the hips; ``neck`` is SMPL's neck joint, not the midpoint of the shoulders;
``head`` is SMPL's head joint). Heels, toes and nose have no SMPL joint and stay the pickle's OpenPose rows
(surface points of the same SMPL mesh). ``keypoints_px`` (the pickle's 2D rows) is left as it is.

torch and smplx are imported on first use (they are never imported with the package). Security: the model file
is a pickle; loading it runs code chosen by whoever wrote it. Only use model files you trust.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np

from ingest.errors import ConfigError, MissingDependencyError, require_module
from pipeline.motion import HumanTrack, SMPLParams
from pipeline.skeleton import joint_index

#: Environment variable that sets ``smpl_model_dir`` when the backend option is not given.
ENV_SMPL_DIR = "G1FORGE_SMPL_DIR"

#: Appended to a backend's version string (``"phalp-pkl-1+smpl-joints"``) when it outputs SMPL joints.
SMPL_JOINTS_VERSION_TAG = "smpl-joints"

#: File name ``smplx.SMPL`` reads from the model folder (gender ``neutral``).
SMPL_MODEL_FILE = "SMPL_NEUTRAL.pkl"

NUM_SMPL_JOINTS = 24

#: The 24 SMPL joints in smplx's order (``smplx.joint_names.JOINT_NAMES[:22]`` + the two hands).
SMPL_JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hand",
    "right_hand",
)

#: Body joint (:data:`pipeline.skeleton.BODY_JOINTS` name) -> SMPL joint index. Joints not listed (heels, toes,
#: nose) keep their source rows.
SMPL_TO_BODY: dict[str, int] = {
    "pelvis": 0,
    "left_hip": 1,
    "right_hip": 2,
    "left_knee": 4,
    "right_knee": 5,
    "left_ankle": 7,
    "right_ankle": 8,
    "neck": 12,
    "head": 15,
    "left_shoulder": 16,
    "right_shoulder": 17,
    "left_elbow": 18,
    "right_elbow": 19,
    "left_wrist": 20,
    "right_wrist": 21,
}

#: Frames evaluated per smplx call (bounds memory: ~T x V x 16 floats per call).
CHUNK_FRAMES = 256

_MODELS: dict[str, object] = {}
_LOCK = threading.Lock()


def resolve_smpl_model_dir(smpl_model_dir: str | os.PathLike | None) -> Path | None:
    """The SMPL model folder: the option if given, else ``$G1FORGE_SMPL_DIR``, else None (keep pickle joints).

    Raises :class:`MissingDependencyError` naming the expected file when the folder has no ``SMPL_NEUTRAL.pkl``.
    """
    raw = smpl_model_dir if smpl_model_dir not in (None, "") else os.environ.get(ENV_SMPL_DIR) or None
    if raw is None:
        return None
    folder = Path(raw).expanduser()
    path = folder / SMPL_MODEL_FILE
    if not path.is_file():
        raise MissingDependencyError(
            f"SMPL model file {path} does not exist: put the plain-numpy {SMPL_MODEL_FILE} (the file 4D-Humans "
            f"loads, converted from the official SMPL neutral model) there, or unset smpl_model_dir / "
            f"{ENV_SMPL_DIR} to keep the results file's joints"
        )
    return folder


def _load_model(model_dir: Path):
    """``smplx.SMPL`` for ``model_dir``, built once per folder and cached (CPU, float32, eval only)."""
    key = str(Path(model_dir).expanduser().resolve())
    with _LOCK:
        model = _MODELS.get(key)
        if model is not None:
            return model
        smplx = require_module("smplx", "SMPL joints (smpl_model_dir)", "pip install 'g1forge[gpu]' (smplx, torch)")
        path = Path(key) / SMPL_MODEL_FILE
        if not path.is_file():
            raise MissingDependencyError(f"SMPL model file {path} does not exist; put {SMPL_MODEL_FILE} in {key}")
        try:
            # smplx prints a warning about 10 shape coefficients for every SMPL file: keep worker logs clean.
            with contextlib.redirect_stdout(io.StringIO()):
                model = smplx.SMPL(key, gender="neutral", batch_size=1)
        except Exception as exc:  # unpickling / shape errors of a wrong file
            raise ConfigError(
                f"{path} is not a usable SMPL model ({type(exc).__name__}: {exc}); it must be the plain-numpy "
                "pickle 4D-Humans uses (the official file needs chumpy: convert it once)"
            ) from exc
        model.eval()
        _MODELS[key] = model
        return model


def smpl_joints_cam_m(smpl: SMPLParams, model_dir: str | os.PathLike) -> np.ndarray:
    """The 24 SMPL joint centres in the camera frame.

    smpl: T frames of parameters (rotation matrices, betas (T, 10), ``transl_cam_m`` (T, 3) metres).
    model_dir: folder holding ``SMPL_NEUTRAL.pkl``.
    Returns (T, 24, 3) float64, metres, OpenCV camera axes, in :data:`SMPL_JOINT_NAMES` order.
    """
    torch = require_module("torch", "SMPL joints (smpl_model_dir)", "pip install torch")
    model = _load_model(Path(model_dir))
    go = np.asarray(smpl.global_orient_rotmat, dtype=np.float32).reshape(-1, 1, 3, 3)
    t = len(go)
    bp = np.asarray(smpl.body_pose_rotmat, dtype=np.float32).reshape(t, 23, 3, 3)
    betas = np.asarray(smpl.betas, dtype=np.float32).reshape(t, -1)
    transl = np.asarray(smpl.transl_cam_m, dtype=np.float32).reshape(t, 3)
    if betas.shape[1] != model.num_betas:
        raise ConfigError(f"SMPL betas have {betas.shape[1]} coefficients but the model uses {model.num_betas}")
    out = np.zeros((t, NUM_SMPL_JOINTS, 3), dtype=np.float64)
    with torch.no_grad():
        for s in range(0, t, CHUNK_FRAMES):
            e = min(s + CHUNK_FRAMES, t)
            res = model(
                betas=torch.from_numpy(betas[s:e]),
                global_orient=torch.from_numpy(go[s:e]),
                body_pose=torch.from_numpy(bp[s:e]),
                transl=torch.from_numpy(transl[s:e]),
                pose2rot=False,
                return_verts=False,
            )
            out[s:e] = res.joints[:, :NUM_SMPL_JOINTS].double().numpy()
    return out


def with_smpl_joints(track: HumanTrack, model_dir: str | os.PathLike) -> HumanTrack:
    """A copy of ``track`` whose :data:`SMPL_TO_BODY` joints are SMPL joint centres (see the module docstring).

    The other joints, ``keypoints_px``, confidences and the SMPL parameters are unchanged. Raises
    :class:`ConfigError` when the track has no SMPL parameters or its joints are not named as in SMPL_TO_BODY.
    """
    if track.smpl is None:
        raise ConfigError(f"track {track.track_id} has no SMPL parameters; SMPL joints need a 4D-Humans result")
    names = list(SMPL_TO_BODY)
    try:
        cols = [list(track.joint_names).index(n) for n in names]
    except ValueError as exc:
        raise ConfigError(f"track {track.track_id} lacks a body joint SMPL replaces: {exc}") from None
    smpl_j = smpl_joints_cam_m(track.smpl, model_dir)
    joints = np.array(track.joints_cam_m, dtype=np.float32, copy=True)
    joints[:, cols] = smpl_j[:, [SMPL_TO_BODY[n] for n in names]].astype(np.float32)
    return replace(track, joints_cam_m=joints)


#: Indices into :data:`pipeline.skeleton.BODY_JOINTS` replaced by SMPL joints (for tests and docs).
REPLACED_BODY_INDICES: tuple[int, ...] = tuple(joint_index(*SMPL_TO_BODY))
