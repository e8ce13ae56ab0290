"""The single-person CPU pose backend ``mediapipe-legacy``: MediaPipe BlazePose (legacy ``mp.solutions.pose``,
full model), one person. The default is ``mediapipe`` (:mod:`pipeline.backends.mediapipe_multi`), every person.

Per video: frames stream from :func:`ingest.decode.iter_frames` (RGB, upright, optionally downsized) into one
``mp.solutions.pose.Pose(static_image_mode=False, model_complexity=1)`` that lives as long as the backend.
Only ``model_complexity=1`` works offline: mediapipe 0.10.21 ships ``pose_landmark_full.tflite`` in the wheel,
while 0 and 2 download their models at run time.

Reuse across videos: the ``Pose`` graph keeps state between frames (the tracking region from the previous
frame's landmarks, and the landmark smoothing filters). Fed a new video without a reset, the first frames of
the new video are computed from the previous video's state (measured: landmarks differ from a fresh ``Pose`` by
up to 0.2 image widths over the first frames). ``Pose.reset()`` restarts the graph run, which clears that
state; results after a reset are identical to a fresh ``Pose``. The reset costs ~0.1 s (the first frame after
it re-initialises the calculators) against ~0.16 s for a new object, so the backend keeps one ``Pose`` and resets
it at the start of every video.

Outputs, per frame where MediaPipe finds the person (track 0; frames without a person are gaps):
- ``keypoints_px``: the 2D landmarks (normalised to the frame MediaPipe saw) times the full-resolution upright
  size; downsizing does not change normalised coordinates, so they refer to original pixels.
- ``joints_cam_m``: ``pose_world_landmarks`` + a per-frame root translation. The world landmarks are metric,
  centred between the hips, with axes aligned to the camera: x right, y down, z away from the camera (checked
  on the shared runner video: the nose is above the hips with y < 0, x grows with image x, and the shoulder
  nearer the camera has the smaller z, as the 2D landmarks' relative depth says). So they are already in the
  OpenCV camera orientation and only lack a translation, solved by
  :func:`pipeline.camera.solve_root_translation_batch` from the 2D keypoints (weights = visibility) with the
  focal length of :func:`pipeline.camera.default_focal_px` (image diagonal unless ``focal_px``/``fov_deg``).
  MediaPipe's bodies come out ~5-10 % small (nose-to-ankle 1.24-1.32 m for adults), so depth is
  underestimated by the same factor; scale is corrected downstream, not here.
- ``joint_conf``: landmark visibility (the minimum of the two landmarks for midpoint joints).
- ``bbox_xywh_px``: extent of the 33 landmarks, clipped to the image. ``det_conf``: mean visibility of the 33
  landmarks (the legacy API exposes no detector score).

Joint mapping onto :data:`pipeline.skeleton.BODY_JOINTS`: pelvis = mid-hips, neck = mid-shoulders,
head = mid-ears, toe = foot_index, heel = heel, the rest one-to-one.
"""

from __future__ import annotations

import time
from contextlib import closing
from dataclasses import dataclass

import numpy as np

from ingest.decode import iter_frames, prefetch
from ingest.errors import BackendError, ConfigError, MissingDependencyError
from ingest.items import VideoItem
from pipeline.backends.base import PoseBackend, options_from_dict, register_backend
from pipeline.camera import default_focal_px, principal_point_px, solve_root_translation_batch
from pipeline.camera_motion import CameraMotionAccumulator
from pipeline.frame_signals import FrameSignalAccumulator
from pipeline.motion import HumanTrack, PoseResult
from pipeline.skeleton import BODY_JOINTS, averaging_matrix

#: MediaPipe Pose landmark indices.
MP_LANDMARKS: dict[str, int] = {
    "nose": 0,
    "left_ear": 7,
    "right_ear": 8,
    "left_shoulder": 11,
    "right_shoulder": 12,
    "left_elbow": 13,
    "right_elbow": 14,
    "left_wrist": 15,
    "right_wrist": 16,
    "left_hip": 23,
    "right_hip": 24,
    "left_knee": 25,
    "right_knee": 26,
    "left_ankle": 27,
    "right_ankle": 28,
    "left_heel": 29,
    "right_heel": 30,
    "left_foot_index": 31,
    "right_foot_index": 32,
}
NUM_MP_LANDMARKS = 33

#: Body joints that are not the MediaPipe landmark of the same name: the mean of these landmarks.
BODY_FROM_MP: dict[str, tuple[str, ...]] = {
    "pelvis": ("left_hip", "right_hip"),
    "left_toe": ("left_foot_index",),
    "right_toe": ("right_foot_index",),
    "neck": ("left_shoulder", "right_shoulder"),
    "head": ("left_ear", "right_ear"),
}


_MAP, _CONF_PAIRS = averaging_matrix(MP_LANDMARKS, BODY_FROM_MP, NUM_MP_LANDMARKS)
_MAP = _MAP.astype(np.float32)


def body_from_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """Map (..., 33, C) MediaPipe landmark arrays to (..., J, C) :data:`BODY_JOINTS` (midpoints averaged)."""
    return np.einsum("jl,...lc->...jc", _MAP, landmarks)


def body_conf_from_visibility(visibility: np.ndarray) -> np.ndarray:
    """Map (..., 33) visibilities to (..., J) joint confidences; a midpoint joint takes the lower of its two."""
    v = np.asarray(visibility)
    return np.minimum(v[..., _CONF_PAIRS[:, 0]], v[..., _CONF_PAIRS[:, 1]])


@dataclass
class MediaPipeOptions:
    """Options of the ``mediapipe`` backend.

    max_side_px: downsize frames so the long side is at most this many pixels before pose estimation (None =
        full resolution). MediaPipe resizes to 256 px internally, so this mostly saves RGB conversion time.
    min_detection_confidence, min_tracking_confidence: MediaPipe's thresholds (0-1).
    focal_px: focal length in pixels of the source video; fov_deg: its diagonal field of view in degrees.
        Neither: focal = image diagonal (see :func:`pipeline.camera.default_focal_px`).
    model_complexity: must be 1 (the only model shipped in the wheel).
    smooth_landmarks: MediaPipe's temporal landmark filter.
    thread_count: decoder threads (0 = one per core).
    prefetch_frames: frames decoded ahead in a background thread, overlapping decoding with inference.
    """

    max_side_px: int | None = 640
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    focal_px: float | None = None
    fov_deg: float | None = None
    model_complexity: int = 1
    smooth_landmarks: bool = True
    thread_count: int = 0
    prefetch_frames: int = 4

    @classmethod
    def from_dict(cls, options: dict) -> MediaPipeOptions:
        opts = options_from_dict(cls, options, "mediapipe-legacy")
        problems = []
        if opts.model_complexity != 1:
            problems.append(
                f"model_complexity={opts.model_complexity} is not available offline: mediapipe 0.10.21 ships only "
                "the full model; use model_complexity=1"
            )
        problems += shared_option_problems(opts)
        if problems:
            raise ConfigError("; ".join(problems))
        return opts


def shared_option_problems(opts) -> list[str]:
    """What is wrong with the options both MediaPipe backends have: the two confidences, ``prefetch_frames``,
    ``max_side_px`` and the camera (``focal_px``, ``fov_deg``); an empty list when all are valid."""
    problems = []
    for name in ("min_detection_confidence", "min_tracking_confidence"):
        if not 0.0 <= getattr(opts, name) <= 1.0:
            problems.append(f"{name} must be in [0, 1], got {getattr(opts, name)}")
    if opts.prefetch_frames < 1:
        problems.append(f"prefetch_frames must be >= 1, got {opts.prefetch_frames}")
    if opts.max_side_px is not None and opts.max_side_px < 64:
        problems.append(f"max_side_px must be >= 64 or None, got {opts.max_side_px}")
    if opts.focal_px is not None and not opts.focal_px > 0:
        problems.append(f"focal_px must be > 0, got {opts.focal_px}")
    if opts.fov_deg is not None and not 0 < opts.fov_deg < 180:
        problems.append(f"fov_deg must be in (0, 180), got {opts.fov_deg}")
    return problems


def _import_mediapipe():
    try:
        import mediapipe as mp  # noqa: PLC0415 - heavy optional import
    except ImportError as exc:
        raise MissingDependencyError(
            "the mediapipe backend needs mediapipe 0.10.21: pip install 'mediapipe==0.10.21'"
        ) from exc
    return mp


@register_backend("mediapipe-legacy")
class MediaPipeBackend(PoseBackend):
    """Single-person CPU backend; see the module docstring for conventions. Options: :class:`MediaPipeOptions`.

    No longer the default (``mediapipe`` is :mod:`pipeline.backends.mediapipe_multi`, every person); kept as
    the baseline of ``bench/bench_multi_person.py`` and for runs that want MediaPipe's own smoothing."""

    needs_video = True
    # one worker per core: measured on 2 cores over 3 copies of the shared videos, 2 workers ran 41 frames/s
    # end to end and 1 worker 30 frames/s (bench/run_bench.py)
    cpus_per_worker = 1

    def __init__(self, **options):
        self.options = MediaPipeOptions.from_dict(options)
        mp = _import_mediapipe()
        self._mp = mp
        self.version = f"mediapipe-{mp.__version__}/pose_full"
        self._pose = None
        #: seconds spent inside ``Pose.process`` and frames processed in the last video (for throughput stats)
        self.last_inference_s = 0.0
        self.last_num_frames = 0

    def _get_pose(self):
        if self._pose is None:
            o = self.options
            self._pose = self._mp.solutions.pose.Pose(
                static_image_mode=False,
                model_complexity=o.model_complexity,
                smooth_landmarks=o.smooth_landmarks,
                enable_segmentation=False,
                min_detection_confidence=o.min_detection_confidence,
                min_tracking_confidence=o.min_tracking_confidence,
            )
        else:
            self._pose.reset()  # clear tracking and smoothing state carried from the previous video
        return self._pose

    def close(self) -> None:
        if self._pose is not None:
            self._pose.close()
            self._pose = None

    def process(self, item: VideoItem, video_path: str | None) -> PoseResult:
        if video_path is None:
            raise ConfigError("the mediapipe-legacy backend needs a video file; it got none "
                              "(was the download skipped?)")
        o = self.options
        pose = self._get_pose()
        frames = iter_frames(
            video_path, start_s=item.start_s, end_s=item.end_s, max_side_px=o.max_side_px, thread_count=o.thread_count
        )
        h_src, w_src = frames.source_hw
        scale_xy = np.array([w_src, h_src], dtype=np.float32)
        signals = FrameSignalAccumulator()
        camera = CameraMotionAccumulator(fps=frames.average_fps if frames.average_fps > 0 else None)
        times: list[float] = []
        first_idx = None
        obs_idx: list[int] = []
        obs_lm2d: list[np.ndarray] = []  # (33, 3): x, y normalised, visibility
        obs_world: list[np.ndarray] = []  # (33, 3) metres
        infer_s = 0.0
        with frames, closing(prefetch(frames, depth=o.prefetch_frames)) as stream:
            for fr in stream:
                if first_idx is None:
                    first_idx = fr.frame_idx
                rgb = fr.rgb
                rgb.flags.writeable = False  # lets MediaPipe wrap the buffer without a copy
                t0 = time.perf_counter()
                try:
                    res = pose.process(rgb)
                except Exception as exc:  # mediapipe raises RuntimeError/ValueError from its graph
                    msg = f"mediapipe failed on frame {fr.frame_idx}: {type(exc).__name__}: {exc}"
                    raise BackendError(msg) from exc
                infer_s += time.perf_counter() - t0
                times.append(fr.time_s)
                box_small = None
                found = _landmark_arrays(res)
                if found is not None:
                    lm, wl = found
                    obs_idx.append(fr.frame_idx)
                    obs_lm2d.append(lm)
                    obs_world.append(wl)
                    size_xy = np.array([rgb.shape[1], rgb.shape[0]], np.float32)
                    box_small = _landmark_box(lm[:, :2] * size_xy, rgb.shape)
                signals.update(rgb, None if box_small is None else box_small[None])
                camera.update(rgb, None if box_small is None else box_small[None], time_s=fr.time_s)
        self.last_inference_s = infer_s
        self.last_num_frames = len(times)

        lead = frames.leading_times_s
        n_lead = len(lead) if first_idx is not None else 0
        frame_time_s = np.concatenate([lead[:n_lead], np.asarray(times, dtype=np.float64)])
        shot, motion = signals.result()
        shot_boundary = np.concatenate([np.zeros(n_lead, bool), shot])
        background_motion = np.concatenate([np.full(n_lead, np.nan, np.float32), motion]).astype(np.float32)
        if len(shot_boundary):
            shot_boundary[0] = False

        focal = default_focal_px(w_src, h_src, o.fov_deg, focal_px=o.focal_px)
        fps = frames.average_fps
        if not fps > 0 and len(times) > 1:
            fps = (len(times) - 1) / (times[-1] - times[0])
        tracks = []
        if obs_idx:
            lm2d, world = np.stack(obs_lm2d), np.stack(obs_world)
            track = _build_track(np.asarray(obs_idx), frame_time_s, lm2d, world, scale_xy, focal, (h_src, w_src))
            if track is not None:
                tracks.append(track)
        return PoseResult(
            tracks=tracks,
            num_frames=len(frame_time_s),
            fps=float(fps),
            image_size_hw=(int(h_src), int(w_src)),
            focal_px=float(focal),
            frame_time_s=frame_time_s,
            shot_boundary=shot_boundary,
            background_motion=background_motion,
            backend=self.name,
            backend_version=self.version,
            camera_motion=camera.result() if camera.num_frames else None,
            extra={
                "first_frame_idx": int(first_idx) if first_idx is not None else n_lead,
                "inference_s": infer_s,
                "frames_with_person": len(obs_idx),
                "rotation_ccw_deg": frames.rotation_ccw_deg,
            },
        )


def _landmark_arrays(res) -> tuple[np.ndarray, np.ndarray] | None:
    """(33, 3) normalised x, y + visibility and (33, 3) world metres from a ``Pose.process`` result, or None."""
    if res.pose_landmarks is None or res.pose_world_landmarks is None:
        return None
    lm = np.array([(p.x, p.y, p.visibility) for p in res.pose_landmarks.landmark], dtype=np.float32)
    wl = np.array([(p.x, p.y, p.z) for p in res.pose_world_landmarks.landmark], dtype=np.float32)
    return lm, wl


def _landmark_box(points_px: np.ndarray, shape) -> np.ndarray:
    """(4,) x, y, w, h box of (33, 2) landmark pixels, clipped to the image of ``shape`` (H, W, ...)."""
    h, w = shape[:2]
    x0, y0 = np.clip(points_px.min(0), 0, [w, h])
    x1, y1 = np.clip(points_px.max(0), 0, [w, h])
    return np.array([x0, y0, x1 - x0, y1 - y0], dtype=np.float32)


def _build_track(
    frame_idx: np.ndarray,
    frame_time_s: np.ndarray,
    lm2d: np.ndarray,
    world: np.ndarray,
    scale_xy: np.ndarray,
    focal_px: float,
    size_hw: tuple[int, int],
    track_id: int = 0,
    det_conf: np.ndarray | None = None,
) -> HumanTrack | None:
    """One :class:`HumanTrack` from per-frame landmarks: lm2d (T, 33, 3) normalised x, y + visibility,
    world (T, 33, 3) metres; det_conf (T,) the detection confidence (default: the mean visibility). Frames
    whose root translation cannot be solved are dropped (gaps)."""
    h, w = size_hw
    lm_px = lm2d[..., :2] * scale_xy  # (T, 33, 2) original pixels
    vis = lm2d[..., 2]
    kp = body_from_landmarks(lm_px)  # (T, J, 2)
    body = body_from_landmarks(world)  # (T, J, 3) hip-centred, camera-aligned
    conf = body_conf_from_visibility(vis).astype(np.float32)
    t_cam = solve_root_translation_batch(body, kp, conf, focal_px, principal_point_px(w, h))
    ok = np.isfinite(t_cam).all(-1)
    if not ok.any():
        return None
    boxes = np.stack([_landmark_box(p, (h, w)) for p in lm_px])
    return HumanTrack(
        track_id=int(track_id),
        frame_idx=frame_idx[ok].astype(np.int64),
        time_s=frame_time_s[frame_idx[ok]].astype(np.float64),
        joint_names=BODY_JOINTS,
        joints_cam_m=(body + t_cam[:, None, :])[ok].astype(np.float32),
        joint_conf=conf[ok],
        det_conf=(vis.mean(-1) if det_conf is None else np.asarray(det_conf))[ok].astype(np.float32),
        keypoints_px=kp[ok].astype(np.float32),
        bbox_xywh_px=boxes[ok].astype(np.float32),
    )
