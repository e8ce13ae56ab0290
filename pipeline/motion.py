"""The human-motion representation shared by every pose backend.

A backend turns one video into a :class:`PoseResult`: a list of :class:`HumanTrack` (one per person) plus
per-frame signals of the whole video. Frames are numbered by their 0-based decode index ``frame_idx``; the
presentation time of each is ``time_s`` (seconds from the start of the video; not ``frame_idx / fps`` for
variable-frame-rate video).

Coordinate frames
- ``camera``: OpenCV pinhole camera at the origin, x right, y down, z forward (into the scene), metres.
- ``world``: metric, z up, ground plane at z = 0, produced by :mod:`pipeline.world` per clip.

Shapes use T = frames of the track, J = ``len(joint_names)`` (normally :data:`pipeline.skeleton.BODY_JOINTS`),
N = frames of the whole video.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class SMPLParams:
    """SMPL parameters per observed frame, when the backend has them (4D-Humans does, MediaPipe does not).

    global_orient_rotmat: (T, 3, 3) body orientation in the camera frame.
    body_pose_rotmat: (T, 23, 3, 3) joint rotations relative to their parents.
    betas: (T, 10) shape coefficients.
    transl_cam_m: (T, 3) translation of the SMPL body in the camera frame (metres).
    """

    global_orient_rotmat: np.ndarray
    body_pose_rotmat: np.ndarray
    betas: np.ndarray
    transl_cam_m: np.ndarray


@dataclass
class HumanTrack:
    """One person followed through a video, observed frames only (no interpolated or ghost frames).

    track_id: the backend's person id, unique within the video.
    frame_idx: (T,) int64, strictly increasing decode indices of the observed frames (gaps allowed).
    time_s: (T,) float64, presentation time of those frames.
    joint_names: names of the J joints, in order.
    joints_cam_m: (T, J, 3) float32 joint positions in the camera frame, metres.
    joint_conf: (T, J) float32 per-joint confidence in [0, 1] (visibility for MediaPipe, 1.0 where unknown).
    keypoints_px: (T, J, 2) float32 image coordinates (x, y) in pixels of the original frame, or None.
    bbox_xywh_px: (T, 4) float32 person box (x, y, w, h) in pixels, or None.
    det_conf: (T,) float32 detector confidence of the person in each frame.
    smpl: SMPL parameters when the backend provides them, else None.
    """

    track_id: int
    frame_idx: np.ndarray
    time_s: np.ndarray
    joint_names: tuple[str, ...]
    joints_cam_m: np.ndarray
    joint_conf: np.ndarray
    det_conf: np.ndarray
    keypoints_px: np.ndarray | None = None
    bbox_xywh_px: np.ndarray | None = None
    smpl: SMPLParams | None = None

    def __post_init__(self) -> None:
        problems = []
        t = len(self.frame_idx)
        j = len(self.joint_names)
        if self.time_s.shape != (t,):
            problems.append(f"time_s shape {self.time_s.shape} != ({t},)")
        if self.joints_cam_m.shape != (t, j, 3):
            problems.append(f"joints_cam_m shape {self.joints_cam_m.shape} != ({t}, {j}, 3)")
        if self.joint_conf.shape != (t, j):
            problems.append(f"joint_conf shape {self.joint_conf.shape} != ({t}, {j})")
        if self.det_conf.shape != (t,):
            problems.append(f"det_conf shape {self.det_conf.shape} != ({t},)")
        if self.keypoints_px is not None and self.keypoints_px.shape != (t, j, 2):
            problems.append(f"keypoints_px shape {self.keypoints_px.shape} != ({t}, {j}, 2)")
        if self.bbox_xywh_px is not None and self.bbox_xywh_px.shape != (t, 4):
            problems.append(f"bbox_xywh_px shape {self.bbox_xywh_px.shape} != ({t}, 4)")
        if t > 1 and np.any(np.diff(self.frame_idx) <= 0):
            problems.append("frame_idx must be strictly increasing")
        if problems:
            raise ValueError(f"HumanTrack {self.track_id}: " + "; ".join(problems))

    @property
    def num_frames(self) -> int:
        return len(self.frame_idx)


@dataclass
class PoseResult:
    """What a backend returns for one video.

    tracks: every person track found (may be empty: the video then ends as ``filtered / no_person``).
    num_frames: N, frames decoded from the video (or covered by the results file).
    fps: average frame rate of the source (frames / duration).
    image_size_hw: (H, W) in pixels of the frames the keypoints refer to (after rotation metadata is applied).
    focal_px: focal length of the pinhole camera used for ``joints_cam_m`` (pixels).
    frame_time_s: (N,) presentation time of every frame.
    shot_boundary: (N,) bool, True where a new shot starts at that frame (frame 0 is never a boundary).
    background_motion: (N,) float32, mean absolute change of the image outside person boxes between a frame and
        the one before it, on a 0-1 intensity scale (0 for frame 0), or None when frames were not seen.
    backend: registry name of the backend; backend_version: its version string.
    camera_motion: the camera's motion from the background (:class:`pipeline.camera_motion.CameraMotion`) over
        the last ``camera_motion.num_frames`` frames (frames skipped before a range start have none), or None
        when the backend saw no frames (a static camera is then assumed).
    """

    tracks: list[HumanTrack]
    num_frames: int
    fps: float
    image_size_hw: tuple[int, int]
    focal_px: float
    frame_time_s: np.ndarray
    shot_boundary: np.ndarray
    background_motion: np.ndarray | None
    backend: str
    backend_version: str
    extra: dict = field(default_factory=dict)
    camera_motion: object | None = None  # pipeline.camera_motion.CameraMotion (not imported: keeps this light)

    def camera_window(self, first_frame: int, last_frame: int):
        """The camera motion over frames ``[first_frame, last_frame]`` (orientations relative to the first), or
        None when unknown for any of them."""
        cm = self.camera_motion
        if cm is None:
            return None
        offset = self.num_frames - cm.num_frames
        if first_frame < offset or last_frame - offset >= cm.num_frames:
            return None
        return cm.window(first_frame - offset, last_frame - offset + 1)


@dataclass
class HumanClip:
    """A clean window of one track, aligned to the world frame (z up, ground at z = 0, metres).

    clip_id: deterministic, from video_id, track_id and the frame range (see :func:`pipeline.clips.make_clip_id`).
    frame_idx: (T,) decode indices, consecutive apart from gaps the segmenter tolerates.
    time_s: (T,) presentation times in seconds.
    fps: the clip's frame rate (frames / second, from the source).
    joints_world_m: (T, J, 3) float32 joint positions in the world frame, metres; heading normalised so that
        the person faces +x at the clip's first frame and the pelvis starts above the origin.
    joint_conf: (T, J) float32 confidence.
    T_world_from_camera: (4, 4) float64 rigid transform used for the whole clip (static camera assumed).
    smpl: SMPL parameters over the clip with ``global_orient_rotmat`` and ``transl_cam_m`` still in the
        camera frame (apply ``T_world_from_camera`` to move them), or None.
    foot_contact: (T, 4) bool, contact flags of :data:`pipeline.skeleton.FOOT_JOINTS` (after alignment).
    metrics: human-side quality metrics, name -> float; names carry units (``jitter_m_s3``).
    status: ``"ok"`` or ``"filtered"``; reason: why filtered (``"too_short: ..."``), else ``""``.
    keypoints_px: (T, J, 2) float32 image coordinates (x, y) in pixels of the source frame (frames of
        ``image_size_hw``), interpolated like the joints over missing frames; None when the backend has none.
    image_size_hw: (H, W) in pixels of the frames ``keypoints_px`` refer to (upright), or None.
    """

    clip_id: str
    video_id: str
    track_id: int
    frame_idx: np.ndarray
    time_s: np.ndarray
    fps: float
    joint_names: tuple[str, ...]
    joints_world_m: np.ndarray
    joint_conf: np.ndarray
    T_world_from_camera: np.ndarray
    foot_contact: np.ndarray
    smpl: SMPLParams | None = None
    metrics: dict = field(default_factory=dict)
    status: str = "ok"
    reason: str = ""
    keypoints_px: np.ndarray | None = None
    image_size_hw: tuple[int, int] | None = None

    @property
    def num_frames(self) -> int:
        return len(self.frame_idx)

    @property
    def duration_s(self) -> float:
        return float(self.num_frames / self.fps) if self.fps > 0 else 0.0
