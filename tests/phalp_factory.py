"""Synthetic 4D-Humans / PHALP results pickles with known ground truth (fast: milliseconds per file).

The files follow the format in ``shared/reference/4d-humans.md``: a dict keyed by frame path in frame order, one
entry for every processed frame (people or not), per-person lists aligned with ``tid``, "ghost" entries
(``tracked_time > 0``, stale copies of the last observation) for up to 50 frames after a track is lost,
back-filled first observations appended at the end of their frames' lists, per-frame order not sorted by tid,
``3d_joints`` (45, 3) without translation (row 44 zero), ``camera`` translation, ``2d_joints`` (90,) normalised in
the zero-padded square image, float32 SMPL rotation matrices, ``mask``, ``extra_data``, ``class_name``,
``center``, ``scale``, ``conf``, ``bbox``, ``size`` = [H, W], ``time``, ``shot``, ``frame_path``.

Typical use::

    tracks = synthetic_tracks(num_people=2, num_frames=100, seed=1)
    fake = make_phalp_pickle(tmp_path / "video.pkl", tracks, size_hw=(720, 1280), shots=[60])
    fake.expected[tracks[0].track_id].joints_cam_m   # what the importer must return, (T, 20, 3)

Ground truth is given on :data:`pipeline.skeleton.BODY_JOINTS` in the OpenCV camera frame (metres). Any object
with ``track_id``, ``frame_idx`` (T,) and ``joints_cam_m`` (T, 20, 3) works (e.g. a
:class:`pipeline.motion.HumanTrack`); ``det_conf`` and SMPL arrays are used when present, generated otherwise.
PHALP's format stores the hips and shoulders, not ``pelvis`` and ``neck``: those are read back as midpoints of
the hips / shoulders, so ``expected`` holds the ground truth with that rule applied (identical to the input for
the tracks of :func:`synthetic_tracks`, which are built that way). Rows the importer must *not* use (OpenPose
MidHip and Neck, MPII pelvis, the LSP/H36M duplicates) are written with small offsets from the true points, so
a wrong row choice shows up as a mismatch.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.skeleton import BODY_JOINTS

J = {name: i for i, name in enumerate(BODY_JOINTS)}
GHOST_MAX_FRAMES = 50  # PHALP keeps a lost track (as a ghost) this many frames
BACKFILL_FRAMES = 4  # PHALP back-fills this many frames when a track is confirmed
NUM_PHALP_JOINTS = 45

# 45-row layout: (source body joint, offset in metres) per row. Rows the importer should read carry no offset.
_ROW_SOURCES: list[tuple[str, tuple[float, float, float]]] = [
    ("nose", (0, 0, 0)),  # 0 Nose
    ("neck", (0, -0.06, 0.01)),  # 1 OpenPose Neck (decoy: not the mid-shoulder point)
    ("right_shoulder", (0, 0, 0)),  # 2
    ("right_elbow", (0, 0, 0)),  # 3
    ("right_wrist", (0, 0, 0)),  # 4
    ("left_shoulder", (0, 0, 0)),  # 5
    ("left_elbow", (0, 0, 0)),  # 6
    ("left_wrist", (0, 0, 0)),  # 7
    ("pelvis", (0, -0.04, 0.01)),  # 8 MidHip (decoy)
    ("right_hip", (0, 0, 0)),  # 9
    ("right_knee", (0, 0, 0)),  # 10
    ("right_ankle", (0, 0, 0)),  # 11
    ("left_hip", (0, 0, 0)),  # 12
    ("left_knee", (0, 0, 0)),  # 13
    ("left_ankle", (0, 0, 0)),  # 14
    ("nose", (-0.03, -0.03, 0.02)),  # 15 REye
    ("nose", (0.03, -0.03, 0.02)),  # 16 LEye
    ("head", (-0.07, 0.0, 0.03)),  # 17 REar
    ("head", (0.07, 0.0, 0.03)),  # 18 LEar
    ("left_toe", (0, 0, 0)),  # 19 LBigToe
    ("left_toe", (0.04, 0.0, -0.01)),  # 20 LSmallToe
    ("left_heel", (0, 0, 0)),  # 21 LHeel
    ("right_toe", (0, 0, 0)),  # 22 RBigToe
    ("right_toe", (-0.04, 0.0, -0.01)),  # 23 RSmallToe
    ("right_heel", (0, 0, 0)),  # 24 RHeel
    ("right_ankle", (0.01, 0.02, 0.0)),  # 25 R ankle (LSP-style duplicates, decoys)
    ("right_knee", (0.01, 0.02, 0.0)),  # 26
    ("right_hip", (-0.02, 0.03, 0.0)),  # 27
    ("left_hip", (0.02, 0.03, 0.0)),  # 28
    ("left_knee", (-0.01, 0.02, 0.0)),  # 29
    ("left_ankle", (-0.01, 0.02, 0.0)),  # 30
    ("right_wrist", (0.01, 0.01, 0.0)),  # 31
    ("right_elbow", (0.01, 0.01, 0.0)),  # 32
    ("right_shoulder", (0.02, 0.02, 0.0)),  # 33
    ("left_shoulder", (-0.02, 0.02, 0.0)),  # 34
    ("left_elbow", (-0.01, 0.01, 0.0)),  # 35
    ("left_wrist", (-0.01, 0.01, 0.0)),  # 36
    ("neck", (0, -0.08, 0.0)),  # 37 neck (LSP)
    ("head", (0, -0.12, 0.0)),  # 38 head top
    ("pelvis", (0, 0.03, 0.0)),  # 39 pelvis (MPII) (decoy)
    ("neck", (0, 0.05, 0.02)),  # 40 thorax
    ("pelvis", (0, -0.2, 0.02)),  # 41 spine (H36M)
    ("head", (0, 0.08, -0.05)),  # 42 jaw
    ("head", (0, 0, 0)),  # 43 head (H36M)
    ("pelvis", (0, 0, 0)),  # 44 all zeros in 3d_joints (see below)
]
_ROW_IDX = np.array([J[name] for name, _ in _ROW_SOURCES])
_ROW_OFF = np.array([off for _, off in _ROW_SOURCES], dtype=np.float64)
_CAMERA_OFFSET_M = np.array([0.0, 0.05, 0.0])  # SMPL translation relative to the true pelvis


@dataclass
class GroundTruthTrack:
    """A person as the tracker should report it: camera-frame joints on BODY_JOINTS and SMPL arrays.

    frame_idx: (T,) strictly increasing observed frames. joints_cam_m: (T, 20, 3) metres, OpenCV camera frame.
    det_conf: (T,) detector scores. global_orient_rotmat (T, 3, 3), body_pose_rotmat (T, 23, 3, 3), betas (T, 10).
    """

    track_id: int
    frame_idx: np.ndarray
    joints_cam_m: np.ndarray
    det_conf: np.ndarray
    global_orient_rotmat: np.ndarray
    body_pose_rotmat: np.ndarray
    betas: np.ndarray


@dataclass
class ExpectedTrack:
    """What an importer must return for one track (float64; compare within float32 tolerance)."""

    track_id: int
    frame_idx: np.ndarray  # (T,)
    joints_cam_m: np.ndarray  # (T, 20, 3)
    keypoints_px: np.ndarray  # (T, 20, 2)
    bbox_xywh_px: np.ndarray  # (T, 4)
    det_conf: np.ndarray  # (T,)
    global_orient_rotmat: np.ndarray  # (T, 3, 3)
    body_pose_rotmat: np.ndarray  # (T, 23, 3, 3)
    betas: np.ndarray  # (T, 10)
    transl_cam_m: np.ndarray  # (T, 3)


@dataclass
class PhalpPickle:
    """A written (or built) fake results file and the ground truth to compare an importer with."""

    path: Path | None
    size_hw: tuple[int, int]
    focal_px: float
    num_frames: int
    shot_frames: tuple[int, ...]
    num_real: int
    num_ghosts: int
    expected: dict[int, ExpectedTrack]


# --- ground truth ------------------------------------------------------------------------------------------

# Standing template, metres, OpenCV axes (x right in the image = the person's left when facing the camera,
# y down, z away from the camera), origin at the pelvis. Pelvis and neck are midpoints by construction.
_TEMPLATE = {
    "left_hip": (0.10, 0.0, 0.0),
    "right_hip": (-0.10, 0.0, 0.0),
    "left_knee": (0.11, 0.44, 0.02),
    "right_knee": (-0.11, 0.44, 0.02),
    "left_ankle": (0.11, 0.86, 0.04),
    "right_ankle": (-0.11, 0.86, 0.04),
    "left_heel": (0.11, 0.92, 0.09),
    "right_heel": (-0.11, 0.92, 0.09),
    "left_toe": (0.12, 0.93, -0.12),
    "right_toe": (-0.12, 0.93, -0.12),
    "left_shoulder": (0.19, -0.50, 0.0),
    "right_shoulder": (-0.19, -0.50, 0.0),
    "head": (0.0, -0.70, 0.0),
    "nose": (0.0, -0.68, -0.10),
    "left_elbow": (0.24, -0.22, 0.02),
    "right_elbow": (-0.24, -0.22, 0.02),
    "left_wrist": (0.26, 0.04, -0.02),
    "right_wrist": (-0.26, 0.04, -0.02),
}


def _template() -> np.ndarray:
    t = np.zeros((len(BODY_JOINTS), 3))
    for name, xyz in _TEMPLATE.items():
        t[J[name]] = xyz
    t[J["pelvis"]] = (t[J["left_hip"]] + t[J["right_hip"]]) / 2
    t[J["neck"]] = (t[J["left_shoulder"]] + t[J["right_shoulder"]]) / 2
    return t


def _rotmats(axis_angle: np.ndarray) -> np.ndarray:
    """(..., 3) axis-angle vectors to (..., 3, 3) rotation matrices (Rodrigues), vectorised."""
    theta = np.linalg.norm(axis_angle, axis=-1, keepdims=True)
    k = axis_angle / np.where(theta > 1e-12, theta, 1.0)
    kx, ky, kz = k[..., 0], k[..., 1], k[..., 2]
    zero = np.zeros_like(kx)
    K = np.stack([zero, -kz, ky, kz, zero, -kx, -ky, kx, zero], axis=-1).reshape(*k.shape[:-1], 3, 3)
    s = np.sin(theta)[..., None]
    c = np.cos(theta)[..., None]
    eye = np.broadcast_to(np.eye(3), K.shape)
    return eye + s * K + (1 - c) * (K @ K)


def synthetic_track(
    track_id: int,
    frame_idx: Sequence[int],
    *,
    seed: int = 0,
    start_xyz_m: tuple[float, float, float] = (-1.0, 0.0, 5.0),
    velocity_m_s: tuple[float, float, float] = (0.8, 0.0, 0.3),
    fps: float = 30.0,
) -> GroundTruthTrack:
    """A person walking across the view: a rigid template plus limb swing, pelvis moving at ``velocity_m_s``.

    Pelvis = mid-hips and neck = mid-shoulders hold exactly (the PHALP format cannot carry anything else).
    """
    rng = np.random.default_rng(seed)
    fi = np.asarray(frame_idx, dtype=np.int64)
    t = fi / fps
    n = len(fi)
    tpl = _template()
    joints = np.broadcast_to(tpl, (n, *tpl.shape)).copy()
    swing = 0.12 * np.sin(2 * np.pi * 1.0 * t + rng.uniform(0, 2 * np.pi))
    for side, sign in (("left", 1.0), ("right", -1.0)):
        for part, gain in (("knee", 0.5), ("ankle", 1.0), ("heel", 1.0), ("toe", 1.0)):
            joints[:, J[f"{side}_{part}"], 2] += sign * gain * swing
        for part, gain in (("elbow", 0.5), ("wrist", 1.0)):
            joints[:, J[f"{side}_{part}"], 2] -= sign * gain * swing
    pelvis = np.asarray(start_xyz_m) + np.outer(t - t[0] if n else t, velocity_m_s)
    joints += pelvis[:, None, :]
    joints[:, J["pelvis"]] = (joints[:, J["left_hip"]] + joints[:, J["right_hip"]]) / 2
    joints[:, J["neck"]] = (joints[:, J["left_shoulder"]] + joints[:, J["right_shoulder"]]) / 2
    return GroundTruthTrack(
        track_id=int(track_id),
        frame_idx=fi,
        joints_cam_m=joints,
        det_conf=rng.uniform(0.85, 1.0, n),
        global_orient_rotmat=_rotmats(rng.normal(0, 0.3, (n, 3))),
        body_pose_rotmat=_rotmats(rng.normal(0, 0.2, (n, 23, 3))),
        betas=np.broadcast_to(rng.normal(0, 1, 10), (n, 10)).copy(),
    )


def synthetic_tracks(
    num_people: int, num_frames: int, *, seed: int = 0, gap: bool = True, fps: float = 30.0
) -> list[GroundTruthTrack]:
    """``num_people`` tracks (ids 1, 2, ...) side by side over ``num_frames`` frames.

    With ``gap`` each person misses a few frames somewhere in the middle (ghosts fill them in the file), and
    people after the first start a little later and leave a little earlier (ghosts follow them to the end), so
    tracks overlap without being identical.
    """
    tracks = []
    for p in range(num_people):
        start = min(p * 3, max(num_frames - 1, 0))
        stop = num_frames - 4 * p if gap and num_frames - 4 * p > start + 1 else num_frames
        frames = np.arange(start, stop)
        if gap and len(frames) > 20:
            g0 = len(frames) // 3 + 2 * p
            frames = np.concatenate([frames[:g0], frames[g0 + 3 + p :]])
        tracks.append(
            synthetic_track(
                p + 1,
                frames,
                seed=seed * 1000 + p,
                start_xyz_m=(-1.5 + 1.2 * p, 0.0, 4.5 + 1.5 * p),
                velocity_m_s=(0.6 + 0.1 * p, 0.0, 0.2),
                fps=fps,
            )
        )
    return tracks


# --- the file ----------------------------------------------------------------------------------------------


def _project(points: np.ndarray, focal: float, cx: float, cy: float) -> np.ndarray:
    return focal * points[..., :2] / points[..., 2:3] + np.array([cx, cy])


def _get(track, name: str, default):
    value = getattr(track, name, None)
    if value is None and getattr(track, "smpl", None) is not None:
        smpl = track.smpl
        value = {
            "global_orient_rotmat": smpl.global_orient_rotmat,
            "body_pose_rotmat": smpl.body_pose_rotmat,
            "betas": smpl.betas,
        }.get(name)
    return np.asarray(value if value is not None else default)


def build_phalp_results(
    tracks: Sequence,
    *,
    size_hw: tuple[int, int] = (720, 1280),
    num_frames: int | None = None,
    ghosts: bool = True,
    backfill: bool = True,
    shots: Sequence[int] = (),
    seed: int = 0,
    frame_dir: str = "outputs/_DEMO/video/img",
) -> tuple[dict, PhalpPickle]:
    """The results dict (as ``joblib.load`` returns it) and its ground truth; see :func:`make_phalp_pickle`."""
    rng = np.random.default_rng(seed)
    h, w = int(size_hw[0]), int(size_hw[1])
    n_sq = max(h, w)
    pad = np.array([(n_sq - w) // 2, (n_sq - h) // 2], dtype=np.float64)
    focal = 5000.0 * n_sq / 256.0
    cx, cy = w / 2.0, h / 2.0
    if num_frames is None:
        num_frames = max((int(np.asarray(t.frame_idx)[-1]) + 1 for t in tracks if len(t.frame_idx)), default=0)
    shot_set = {int(s) for s in shots}

    # Per-track arrays, vectorised over frames.
    per_track = []
    expected: dict[int, ExpectedTrack] = {}
    for tr in tracks:
        fi = np.asarray(tr.frame_idx, dtype=np.int64)
        gt = np.asarray(tr.joints_cam_m, dtype=np.float64)
        n = len(fi)
        if n and (fi[0] < 0 or fi[-1] >= num_frames or np.any(np.diff(fi) <= 0)):
            raise ValueError(f"track {tr.track_id}: frame_idx must be increasing within [0, {num_frames})")
        rows = gt[:, _ROW_IDX] + _ROW_OFF  # (T, 45, 3) camera frame
        camera = gt[:, J["pelvis"]] + _CAMERA_OFFSET_M
        rows[:, 44] = camera  # so that row 44 of 3d_joints is exactly zero
        j3d = (rows - camera[:, None]).astype(np.float32)
        j3d[:, 44] = 0.0
        px = _project(rows, focal, cx, cy)  # (T, 45, 2)
        j2d = ((px + pad) / n_sq).reshape(n, 90).astype(np.float32)
        lo, hi = px[:, :44].min(1), px[:, :44].max(1)
        margin = 0.1 * (hi - lo)
        bbox = np.concatenate([lo - margin, hi - lo + 2 * margin], axis=1).astype(np.float32)
        conf = _get(tr, "det_conf", np.ones(n)).astype(np.float32)
        go = _get(tr, "global_orient_rotmat", np.broadcast_to(np.eye(3), (n, 3, 3))).astype(np.float32)
        bp = _get(tr, "body_pose_rotmat", np.broadcast_to(np.eye(3), (n, 23, 3, 3))).astype(np.float32)
        betas = _get(tr, "betas", np.zeros((n, 10))).astype(np.float32)
        cam32 = camera.astype(np.float32)
        smpl = [{"global_orient": go[k][None], "body_pose": bp[k], "betas": betas[k]} for k in range(n)]
        per_track.append(
            (int(tr.track_id), fi, list(j3d), list(cam32), list(j2d), list(bbox), list(conf), smpl)
        )

        exp_j = gt.copy()
        exp_j[:, J["pelvis"]] = (gt[:, J["left_hip"]] + gt[:, J["right_hip"]]) / 2
        exp_j[:, J["neck"]] = (gt[:, J["left_shoulder"]] + gt[:, J["right_shoulder"]]) / 2
        exp_kp = _project(gt, focal, cx, cy)
        exp_kp[:, J["pelvis"]] = (exp_kp[:, J["left_hip"]] + exp_kp[:, J["right_hip"]]) / 2
        exp_kp[:, J["neck"]] = (exp_kp[:, J["left_shoulder"]] + exp_kp[:, J["right_shoulder"]]) / 2
        expected[int(tr.track_id)] = ExpectedTrack(
            track_id=int(tr.track_id),
            frame_idx=fi.copy(),
            joints_cam_m=exp_j,
            keypoints_px=exp_kp,
            bbox_xywh_px=bbox.astype(np.float64),
            det_conf=conf.astype(np.float64),
            global_orient_rotmat=go.astype(np.float64),
            body_pose_rotmat=bp.astype(np.float64),
            betas=betas.astype(np.float64),
            transl_cam_m=camera,
        )

    # Entries per frame: (tracked_time, track slot, observation index, back-filled?)
    regular: list[list[tuple[int, int, int]]] = [[] for _ in range(num_frames)]
    late: list[list[tuple[int, int, int]]] = [[] for _ in range(num_frames)]
    num_ghosts = 0
    for slot, (tid, fi, *_rest) in enumerate(per_track):
        for k, f in enumerate(fi):
            (late if backfill and k < BACKFILL_FRAMES else regular)[f].append((0, slot, k))
            if ghosts:
                nxt = fi[k + 1] if k + 1 < len(fi) else num_frames
                for g in range(int(f) + 1, min(int(f) + GHOST_MAX_FRAMES + 1, int(nxt))):
                    regular[g].append((g - int(f), slot, k))
                    num_ghosts += 1

    empty_rle = {"size": [h, w], "counts": b""}
    camera_bbox = np.array([0.9, 0.0, 0.0], dtype=np.float32)  # weak-perspective [s, tx, ty]; unused by importers
    results: dict = {}
    for t in range(num_frames):
        entries = [regular[t][i] for i in rng.permutation(len(regular[t]))] + late[t]
        frame_path = f"{frame_dir}/{t + 1:06d}.jpg"
        rec: dict = {"time": t, "shot": int(t in shot_set), "frame_path": frame_path}
        cols: dict[str, list] = {
            k: []
            for k in (
                "tid", "bbox", "tracked_time", "tracked_ids", "tracked_bbox", "center", "scale", "size",
                "img_path", "img_name", "class_name", "conf", "annotations", "smpl", "camera", "camera_bbox",
                "3d_joints", "2d_joints", "mask", "extra_data",
            )
        }
        for det, (tt, slot, k) in enumerate(entries):
            tid, fi, j3d, cam, j2d, bbox, conf, smpl = per_track[slot]
            box = bbox[k]
            cols["tid"].append(tid)
            cols["bbox"].append(box)
            cols["tracked_time"].append(tt)
            if tt == 0:
                cols["tracked_ids"].append(tid)
                cols["tracked_bbox"].append(box)
            cols["center"].append(box[:2] + box[2:] / 2)
            cols["scale"].append(float(1.2 * max(box[2], box[3]) / n_sq))
            cols["size"].append([h, w])
            cols["img_path"].append(frame_path)
            cols["img_name"].append(frame_path.rsplit("/", 1)[-1])
            cols["class_name"].append(0)
            cols["conf"].append(conf[k])
            cols["annotations"].append([])
            cols["smpl"].append(smpl[k])
            cols["camera"].append(cam[k])
            cols["camera_bbox"].append(camera_bbox)
            cols["3d_joints"].append(j3d[k])
            cols["2d_joints"].append(j2d[k])
            cols["mask"].append([empty_rle])  # placeholder RLE: importers do not read masks
            cols["extra_data"].append(det)
        rec.update(cols)
        results[frame_path] = rec

    info = PhalpPickle(
        path=None,
        size_hw=(h, w),
        focal_px=focal,
        num_frames=int(num_frames),
        shot_frames=tuple(sorted(s for s in shot_set if 0 <= s < num_frames)),
        num_real=int(sum(len(t[1]) for t in per_track)),
        num_ghosts=num_ghosts,
        expected=expected,
    )
    return results, info


def make_phalp_pickle(
    path: str | Path,
    tracks: Sequence | int,
    *,
    size_hw: tuple[int, int] = (720, 1280),
    num_frames: int | None = None,
    ghosts: bool = True,
    backfill: bool = True,
    shots: Sequence[int] = (),
    seed: int = 0,
    writer: str = "pickle",
    compress: int = 3,
) -> PhalpPickle:
    """Write a fake PHALP results pickle to ``path`` and return its ground truth.

    tracks: ground-truth tracks (see :class:`GroundTruthTrack`), or an int: that many :func:`synthetic_tracks`
        over ``num_frames`` (default 100) frames.
    size_hw: image size (H, W) in pixels. num_frames: frames in the file (default: one past the last observation).
    ghosts: write ghost entries (``tracked_time`` 1..50, stale copies) after every observation that is not
        followed by one in the next frame. backfill: write each track's first 4 observations at the end of their
        frames' lists, as PHALP does when it confirms a track. shots: frames flagged ``shot = 1``.
    seed: per-frame entry order. writer: ``"pickle"`` (plain pickle: ~20 ms for 100 frames x 2 people, and
        ``joblib.load`` reads it) or ``"joblib"`` (``joblib.dump(..., compress=compress)`` exactly as PHALP writes,
        ~6x slower because joblib handles every small array on its own).
    """
    if isinstance(tracks, int):
        num_frames = 100 if num_frames is None else num_frames
        tracks = synthetic_tracks(tracks, num_frames, seed=seed)
    results, info = build_phalp_results(
        tracks, size_hw=size_hw, num_frames=num_frames, ghosts=ghosts, backfill=backfill, shots=shots, seed=seed
    )
    path = Path(path)
    if writer == "joblib":
        import joblib

        joblib.dump(results, path, compress=compress)
    elif writer == "pickle":
        with open(path, "wb") as fh:
            pickle.dump(results, fh, protocol=pickle.HIGHEST_PROTOCOL)
    else:
        raise ValueError(f"writer must be 'joblib' or 'pickle', got {writer!r}")
    info.path = path
    return info
