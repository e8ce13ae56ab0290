"""Import existing 4D-Humans / PHALP results pickles (``phalp-pkl`` backend): multi-person, no video needed.

The input item's ``uri`` is the ``.pkl`` written by PHALP's ``track()`` (``joblib.dump`` of a dict keyed by frame
path; see ``shared/reference/4d-humans.md``). What is kept:

- Real observations only: ``tracked_time == 0`` (PHALP's "ghosts", tracks carried through frames where they
  were not detected, are stale copies and are dropped). Frames are ordered by their ``time`` (0-based frame
  index), which becomes ``frame_idx``.
- Camera-frame joints: ``3d_joints`` (45, 3) + ``camera`` (3,), OpenCV axes, metres, for a pinhole camera with
  focal length ``5000 * max(H, W) / 256`` pixels and the principal point at the image centre (``size`` = [H, W]).
- 2D keypoints: ``2d_joints`` (90,) interleaved x, y normalised by ``N = max(H, W)`` in the zero-padded square
  image, back to pixels as ``x * N - (N - W) // 2``, ``y * N - (N - H) // 2``.
- Joint mapping onto :data:`pipeline.skeleton.BODY_JOINTS`: the OpenPose rows (SMPL joint centres and foot
  vertices) for hips, knees, ankles, shoulders, elbows, wrists, nose; heel = Heel, toe = BigToe; head = the
  H36M head row (43). ``pelvis`` is the midpoint of the two OpenPose hip rows and ``neck`` the midpoint of the
  two shoulder rows, as :mod:`pipeline.skeleton` defines them for every backend (the MPII pelvis row 39 and the
  OpenPose MidHip/Neck rows come from other regressors and would not be the midpoints of the hips/shoulders we
  output). The 2D keypoints of pelvis and neck are the midpoints of the 2D hips / shoulders.
- ``joint_conf`` is 1.0 (PHALP has no per-joint confidence); ``det_conf`` = ``conf`` (detector score);
  ``bbox_xywh_px`` = ``bbox``; SMPL parameters kept (``global_orient (1,3,3)``, ``body_pose (23,3,3)``,
  ``betas (10,)``, translation = ``camera``); ``shot_boundary`` from the per-frame ``shot`` flags.
- With ``smpl_model_dir`` (or ``$G1FORGE_SMPL_DIR``) the hips, knees, ankles, shoulders, elbows, wrists, pelvis,
  neck and head are instead SMPL joint centres evaluated with smplx from the kept SMPL parameters
  (:mod:`pipeline.smpl_joints`); heels, toes and nose stay the OpenPose rows. The version gets ``+smpl-joints``.
- The frame rate is not in the pickle: a video with the same stem beside the pickle is probed for its average
  rate (PyAV); otherwise the ``fps`` option (default 30.0). ``background_motion`` is None (frames unseen).

Security: unpickling runs code chosen by whoever wrote the file. Only import pickles you produced or trust.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ingest.errors import BadResultFile, ConfigError, InputNotFound, NoPerson
from ingest.items import VideoItem
from pipeline.backends.base import PoseBackend, options_from_dict, register_backend
from pipeline.motion import HumanTrack, PoseResult, SMPLParams
from pipeline.skeleton import BODY_JOINTS, averaging_matrix
from pipeline.smpl_joints import ENV_SMPL_DIR, SMPL_JOINTS_VERSION_TAG, resolve_smpl_model_dir, with_smpl_joints

NUM_PHALP_JOINTS = 45

#: Rows of PHALP's 45-joint ``3d_joints`` / ``2d_joints`` (OpenPose BODY_25, then the 19 extra joints).
PHALP_ROWS: dict[str, int] = {
    "nose": 0,
    "op_neck": 1,
    "right_shoulder": 2,
    "right_elbow": 3,
    "right_wrist": 4,
    "left_shoulder": 5,
    "left_elbow": 6,
    "left_wrist": 7,
    "op_mid_hip": 8,
    "right_hip": 9,
    "right_knee": 10,
    "right_ankle": 11,
    "left_hip": 12,
    "left_knee": 13,
    "left_ankle": 14,
    "right_eye": 15,
    "left_eye": 16,
    "right_ear": 17,
    "left_ear": 18,
    "left_big_toe": 19,
    "left_small_toe": 20,
    "left_heel": 21,
    "right_big_toe": 22,
    "right_small_toe": 23,
    "right_heel": 24,
    "mpii_pelvis": 39,
    "h36m_head": 43,
}

#: Body joints that are not the PHALP row of the same name: the mean of these rows.
BODY_FROM_PHALP: dict[str, tuple[str, ...]] = {
    "pelvis": ("left_hip", "right_hip"),
    "left_toe": ("left_big_toe",),
    "right_toe": ("right_big_toe",),
    "neck": ("left_shoulder", "right_shoulder"),
    "head": ("h36m_head",),
}


_MAP, _ = averaging_matrix(PHALP_ROWS, BODY_FROM_PHALP, NUM_PHALP_JOINTS)


def body_from_phalp(joints: np.ndarray) -> np.ndarray:
    """Map (..., 45, C) PHALP joint arrays to (..., J, C) :data:`BODY_JOINTS` (midpoint joints averaged)."""
    return np.einsum("jk,...kc->...jc", _MAP, np.asarray(joints, dtype=np.float64))


def phalp_focal_px(height: int, width: int) -> float:
    """Focal length in pixels PHALP/HMR2 use for the full image: ``5000 * max(H, W) / 256``."""
    return 5000.0 * max(height, width) / 256.0


def phalp_2d_to_px(joints_2d: np.ndarray, height: int, width: int) -> np.ndarray:
    """(..., 90) interleaved normalised PHALP 2D joints to (..., 45, 2) pixels of the original image."""
    n = max(height, width)
    xy = np.asarray(joints_2d, dtype=np.float64).reshape(*np.shape(joints_2d)[:-1], NUM_PHALP_JOINTS, 2)
    return xy * n - np.array([(n - width) // 2, (n - height) // 2], dtype=np.float64)


def load_results_pickle(path: str | Path):
    """Load a PHALP results file with joblib (its writer), or plain :mod:`pickle` when joblib is missing.

    Raises :class:`BadResultFile` when the file is not a readable pickle (truncated, another format, or it
    needs classes that are not installed). Security: loading a pickle runs code; only load trusted files.
    """
    path = Path(path)
    try:
        import joblib  # noqa: PLC0415 - optional; plain pickle reads uncompressed files
    except ImportError:
        joblib = None
    try:
        if joblib is not None:
            return joblib.load(path)
        with open(path, "rb") as fh:
            return pickle.load(fh)
    except FileNotFoundError as exc:
        raise InputNotFound(f"{path} does not exist; check the path of the PHALP results file") from exc
    except MemoryError:
        raise
    except Exception as exc:  # unpickling raises almost anything on a bad file
        hint = "" if joblib is not None else " (joblib is not installed: compressed files need pip install joblib)"
        raise BadResultFile(
            f"{path} is not a readable PHALP results pickle ({type(exc).__name__}: {exc}){hint}; "
            "give the .pkl written by 4D-Humans/PHALP track(), re-running it if the file was truncated"
        ) from exc


@dataclass
class _Obs:
    """One real observation of one person (arrays as stored in the pickle)."""

    time: int
    tid: int
    joints_3d: np.ndarray
    camera: np.ndarray
    joints_2d: np.ndarray
    bbox: np.ndarray
    conf: float
    size_hw: tuple[int, int]
    smpl: dict | None


def _frame_field(frame: dict, key: str, where: str, n: int, *, required: bool = True):
    value = frame.get(key)
    if value is None:
        if required:
            raise BadResultFile(f"{where}: missing per-person list {key!r}; is this a PHALP results pickle?")
        return None
    if len(value) != n:
        raise BadResultFile(f"{where}: {key!r} has {len(value)} entries but 'tid' has {n}; the file is inconsistent")
    return value


def _array(value, shape: tuple[int, ...], what: str) -> np.ndarray:
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise BadResultFile(f"{what} is not numeric ({type(value).__name__})") from exc
    if a.size != int(np.prod(shape)):
        raise BadResultFile(f"{what} has shape {a.shape}, expected {shape}; is this a 4D-Humans/PHALP pickle?")
    return a.reshape(shape)


def parse_observations(results, source: str = "results") -> tuple[list[_Obs], dict[int, bool], int]:
    """Real observations of a loaded PHALP results dict.

    Returns ``(observations, shot_flags, num_frames)``: observations sorted by (time, tid); shot_flags maps
    frame time -> whether a new shot starts there; num_frames is ``max(time) + 1`` (0 for an empty dict).
    Raises :class:`BadResultFile` when ``results`` is not a dict of PHALP frame records.
    """
    if not isinstance(results, dict):
        raise BadResultFile(
            f"{source} holds a {type(results).__name__}, not PHALP's dict of frames; give the .pkl written by track()"
        )
    frames = []
    for key, frame in results.items():
        if not isinstance(frame, dict) or "time" not in frame or "tid" not in frame:
            raise BadResultFile(
                f"{source}: entry {key!r} is not a PHALP frame record (a dict with 'time' and 'tid'); "
                "give the .pkl written by track()"
            )
        try:
            t = int(frame["time"])
        except (TypeError, ValueError) as exc:
            raise BadResultFile(f"{source}: entry {key!r} has a non-integer 'time' {frame['time']!r}") from exc
        if t < 0:
            raise BadResultFile(f"{source}: entry {key!r} has a negative 'time' {t}")
        frames.append((t, key, frame))
    frames.sort(key=lambda x: x[0])
    observations: list[_Obs] = []
    shots: dict[int, bool] = {}
    for t, key, frame in frames:
        where = f"{source}: frame {key!r}"
        shots[t] = bool(frame.get("shot", 0))
        tids = list(frame["tid"])
        n = len(tids)
        if n == 0:
            continue
        tracked_time = _frame_field(frame, "tracked_time", where, n, required=False)
        if tracked_time is not None:
            real = [int(tt) == 0 for tt in tracked_time]
        elif frame.get("tracked_ids") is not None:
            ids = {int(i) for i in frame["tracked_ids"]}
            real = [int(tid) in ids for tid in tids]
        else:
            raise BadResultFile(f"{where}: neither 'tracked_time' nor 'tracked_ids'; cannot tell real from ghost")
        j3d = _frame_field(frame, "3d_joints", where, n)
        cam = _frame_field(frame, "camera", where, n)
        j2d = _frame_field(frame, "2d_joints", where, n)
        bbox = _frame_field(frame, "bbox", where, n)
        size = _frame_field(frame, "size", where, n)
        conf = _frame_field(frame, "conf", where, n, required=False)
        smpl = _frame_field(frame, "smpl", where, n, required=False)
        seen: set[int] = set()
        for p in range(n):
            if not real[p]:
                continue
            tid = int(tids[p])
            if tid in seen:
                raise BadResultFile(f"{where}: track {tid} appears twice as a real observation")
            seen.add(tid)
            hw = _array(size[p], (2,), f"{where} 'size'")
            observations.append(
                _Obs(
                    time=t,
                    tid=tid,
                    joints_3d=_array(j3d[p], (NUM_PHALP_JOINTS, 3), f"{where} '3d_joints'"),
                    camera=_array(cam[p], (3,), f"{where} 'camera'"),
                    joints_2d=_array(j2d[p], (2 * NUM_PHALP_JOINTS,), f"{where} '2d_joints'"),
                    bbox=_array(bbox[p], (4,), f"{where} 'bbox'"),
                    conf=float(conf[p]) if conf is not None else 1.0,
                    size_hw=(int(hw[0]), int(hw[1])),
                    smpl=smpl[p] if smpl is not None else None,
                )
            )
    num_frames = frames[-1][0] + 1 if frames else 0
    observations.sort(key=lambda o: (o.time, o.tid))
    return observations, shots, num_frames


def _smpl_params(obs: list[_Obs], where: str) -> SMPLParams | None:
    if any(not isinstance(o.smpl, dict) for o in obs):
        return None
    try:
        go = np.stack([_array(o.smpl["global_orient"], (3, 3), f"{where} smpl global_orient") for o in obs])
        bp = np.stack([_array(o.smpl["body_pose"], (23, 3, 3), f"{where} smpl body_pose") for o in obs])
        betas = np.stack([_array(o.smpl["betas"], (10,), f"{where} smpl betas") for o in obs])
    except KeyError as exc:
        raise BadResultFile(f"{where}: smpl dict lacks {exc.args[0]!r}") from exc
    transl = np.stack([o.camera for o in obs])
    return SMPLParams(
        global_orient_rotmat=go.astype(np.float32),
        body_pose_rotmat=bp.astype(np.float32),
        betas=betas.astype(np.float32),
        transl_cam_m=transl.astype(np.float32),
    )


def probe_fps_beside(pkl_path: Path) -> float | None:
    """Average frame rate of a video with the same stem next to ``pkl_path`` (PyAV), or None; a rate no video can
    have (a broken time base, :func:`ingest.probe.frame_rate_problem`) is not taken."""
    from ingest.probe import frame_rate_problem  # noqa: PLC0415

    candidates = sorted(p for p in pkl_path.parent.glob(pkl_path.stem + ".*") if p.suffix.lower() != ".pkl")
    if not candidates:
        return None
    try:
        import av  # noqa: PLC0415
    except ImportError:
        return None
    for cand in candidates:
        try:
            with av.open(str(cand)) as container:
                if container.streams.video:
                    rate = container.streams.video[0].average_rate
                    if rate and float(rate) > 0 and frame_rate_problem(float(rate)) is None:
                        return float(rate)
        except Exception:  # not a video: try the next candidate
            continue
    return None


def pose_result_from_phalp(
    results,
    *,
    source: str,
    fps: float,
    backend: str,
    backend_version: str,
    frame_time_s: np.ndarray | None = None,
    frame_offset: int = 0,
    start_s: float | None = None,
    end_s: float | None = None,
    smpl_model_dir: str | Path | None = None,
) -> PoseResult:
    """Convert a PHALP / 4D-Humans results dict (as ``track()`` returns it or ``joblib.load`` reads it).

    Used by the ``phalp-pkl`` importer and by the ``4dhumans`` GPU backend, so both give identical tracks.

    results: the dict keyed by frame (see the module docstring); only real observations are kept.
    source: names the input in error messages.
    fps: the source's average frame rate (frames / second).
    frame_time_s: (N,) presentation times of frames 0..N-1 of the whole video, or None to use ``idx / fps``.
    frame_offset: index of the video frame PHALP's ``time == 0`` refers to (> 0 when tracking started part way
        into the video); ``frame_idx = frame_offset + time``.
    start_s, end_s: keep observations with ``start_s <= frame time < end_s`` (None = open).
    smpl_model_dir: folder with ``SMPL_NEUTRAL.pkl``: the joints of :data:`pipeline.smpl_joints.SMPL_TO_BODY`
        become SMPL joint centres evaluated with smplx (see :mod:`pipeline.smpl_joints`); None keeps the
        pickle's rows. ``extra["joints_source"]`` says which (``"smpl"`` or ``"phalp_rows"``).
    Raises :class:`NoPerson` when nothing real is left, :class:`BadResultFile` for inconsistent data (also when
    SMPL joints are asked for and an observation has no ``smpl`` entry).
    """
    observations, shots, num_results_frames = parse_observations(results, source)
    if not observations:
        raise NoPerson(f"{source} holds {num_results_frames} frames but no real (non-ghost) observation of a person")
    if not fps > 0:
        raise BadResultFile(f"{source}: frame rate {fps!r} is not > 0; give the fps of the source video")
    sizes = {o.size_hw for o in observations}
    if len(sizes) > 1:
        raise BadResultFile(f"{source}: frames disagree on the image size {sorted(sizes)}; one video per file")
    h, w = sizes.pop()
    if h <= 0 or w <= 0:
        raise BadResultFile(f"{source}: invalid image size {h}x{w} in 'size'")
    if frame_time_s is None:
        num_frames = frame_offset + num_results_frames
        frame_time_s = np.arange(num_frames, dtype=np.float64) / fps
    else:
        frame_time_s = np.asarray(frame_time_s, dtype=np.float64)
        num_frames = len(frame_time_s)
        if frame_offset + num_results_frames > num_frames:
            raise BadResultFile(f"{source}: results reach frame {frame_offset + num_results_frames - 1} but the "
                                f"video has {num_frames} frames")
    shot_boundary = np.zeros(num_frames, dtype=bool)
    for t, flag in shots.items():
        if flag and 0 < frame_offset + t < num_frames:
            shot_boundary[frame_offset + t] = True

    by_tid: dict[int, list[_Obs]] = {}
    for o in observations:
        t_s = frame_time_s[frame_offset + o.time]
        if (start_s is not None and t_s < start_s - 1e-9) or (end_s is not None and t_s >= end_s):
            continue
        by_tid.setdefault(o.tid, []).append(o)
    tracks = [_track(tid, obs, h, w, frame_time_s, source, frame_offset) for tid, obs in sorted(by_tid.items())]
    if not tracks:
        raise NoPerson(f"{source}: no real observation between {start_s} s and {end_s} s")
    if smpl_model_dir is not None:
        missing = [tr.track_id for tr in tracks if tr.smpl is None]
        if missing:
            raise BadResultFile(f"{source}: tracks {missing} have no 'smpl' parameters, so SMPL joints cannot be "
                                "computed; unset smpl_model_dir to use the file's 3d_joints")
        tracks = [with_smpl_joints(tr, smpl_model_dir) for tr in tracks]
    return PoseResult(
        tracks=tracks,
        num_frames=int(num_frames),
        fps=float(fps),
        image_size_hw=(h, w),
        focal_px=float(phalp_focal_px(h, w)),
        frame_time_s=frame_time_s,
        shot_boundary=shot_boundary,
        background_motion=None,
        backend=backend,
        backend_version=backend_version,
        extra={"num_observations": len(observations),
               "joints_source": "smpl" if smpl_model_dir is not None else "phalp_rows"},
    )


@dataclass
class PhalpPklOptions:
    """Options of the ``phalp-pkl`` backend.

    fps: frame rate used when no video with the pickle's stem lies beside it (frames / second).
    probe_video: look for that video at all.
    smpl_model_dir: folder with ``SMPL_NEUTRAL.pkl`` (default ``$G1FORGE_SMPL_DIR``, else None): body joints
        become SMPL joint centres computed with smplx (see :mod:`pipeline.smpl_joints`); None keeps the pickle's
        ``3d_joints`` rows.
    """

    fps: float = 30.0
    probe_video: bool = True
    smpl_model_dir: str | None = None

    @classmethod
    def from_dict(cls, options: dict) -> PhalpPklOptions:
        opts = options_from_dict(cls, options, "phalp-pkl")
        if not opts.fps > 0:
            raise ConfigError(f"fps must be > 0 frames per second, got {opts.fps}")
        return opts


@register_backend("phalp-pkl")
class PhalpPklBackend(PoseBackend):
    """Reads 4D-Humans/PHALP ``.pkl`` results; see the module docstring. Options: :class:`PhalpPklOptions`."""

    version = "phalp-pkl-1"
    needs_video = False
    light_pose = True
    input_extensions = (".pkl",)
    result_env = (ENV_SMPL_DIR,)

    def __init__(self, **options):
        self.options = PhalpPklOptions.from_dict(options)
        self.smpl_model_dir = resolve_smpl_model_dir(self.options.smpl_model_dir)
        if self.smpl_model_dir is not None:
            self.version = f"{type(self).version}+{SMPL_JOINTS_VERSION_TAG}"

    def process(self, item: VideoItem, video_path: str | None) -> PoseResult:
        uri = video_path or item.uri
        if uri.startswith("file://"):
            uri = uri[len("file://") :]
        path = Path(uri)
        if not path.is_file():
            raise InputNotFound(f"{path} does not exist or is not a file; give the path of a PHALP .pkl")
        results = load_results_pickle(path)
        fps = (self.options.probe_video and probe_fps_beside(path)) or self.options.fps
        return pose_result_from_phalp(results, source=str(path), fps=fps, start_s=item.start_s, end_s=item.end_s,
                                      backend=self.name, backend_version=self.version,
                                      smpl_model_dir=self.smpl_model_dir)


def _track(tid: int, obs: list[_Obs], h: int, w: int, frame_time_s: np.ndarray, where: str,
           frame_offset: int = 0) -> HumanTrack:
    frame_idx = np.array([o.time for o in obs], dtype=np.int64) + frame_offset
    j3d = np.stack([o.joints_3d for o in obs]) + np.stack([o.camera for o in obs])[:, None, :]
    kp = phalp_2d_to_px(np.stack([o.joints_2d for o in obs]), h, w)
    t = len(obs)
    return HumanTrack(
        track_id=tid,
        frame_idx=frame_idx,
        time_s=frame_time_s[frame_idx],
        joint_names=BODY_JOINTS,
        joints_cam_m=body_from_phalp(j3d).astype(np.float32),
        joint_conf=np.ones((t, len(BODY_JOINTS)), dtype=np.float32),
        det_conf=np.array([o.conf for o in obs], dtype=np.float32),
        keypoints_px=body_from_phalp(kp).astype(np.float32),
        bbox_xywh_px=np.stack([o.bbox for o in obs]).astype(np.float32),
        smpl=_smpl_params(obs, f"{where} track {tid}"),
    )
