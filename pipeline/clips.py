"""Cut person tracks into clips, align each clip to the world and measure it.

Segmentation of one :class:`pipeline.motion.HumanTrack` (:func:`segment_track`), in this order:

1. Split between consecutive observed frames at a **gap** of more than ``max_gap_s`` of missing frames and at a
   **shot change** (``PoseResult.shot_boundary`` true at a frame after the earlier and up to the later one).
   Shorter gaps stay inside a clip: the clip is built on the regular frame grid, missing frames are filled by
   linear interpolation of the camera-frame joints and get confidence 0 (``metrics["tracked_frac"]`` counts
   them). Clips need a regular grid for the metrics and for retargeting.
2. **Low confidence**: a frame is low-confidence when its mean joint confidence is below ``min_joint_conf`` (or
   a joint is not finite). A run of such frames lasting at least ``low_conf_min_s`` is cut out and kept as a
   filtered segment with reason ``low_confidence``; shorter runs stay inside the clip (their non-finite frames
   are treated as missing).
3. **Windows**: a piece longer than ``max_clip_s`` is cut into ``ceil(duration / max_clip_s)`` equal windows
   (25 s -> 3 x 8.3 s, not 10 + 10 + 5); a piece shorter than ``min_clip_s`` becomes a filtered segment with
   reason ``too_short``. Filtered segments become clips with ``status="filtered"`` so the catalog says why.

Durations are frame-grid spans: (last - first decode index + 1) / fps.

:func:`build_clips` is the stage entry point: segmentation, then :func:`pipeline.world.align_to_world`, then
:func:`pipeline.quality.clip_metrics` for every segment of every track. It is deterministic.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field

import numpy as np

from ingest.errors import BackendError, ConfigError, LowConfidence, TooShort
from pipeline.identity import IdentityGuardConfig, shot_steps
from pipeline.motion import HumanClip, HumanTrack, PoseResult, SMPLParams
from pipeline.quality import clip_metrics
from pipeline.trajectory import TrajectoryConfig, recover_trajectory
from pipeline.world import WorldConfig, align_to_world, median_background_motion, static_camera_score

_SAFE_ID = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class ClipConfig:
    """Settings of clip segmentation, world alignment and metrics (seconds, metres).

    min_clip_s / max_clip_s: clip length range (HumanML3D: 2-10 s).
    max_gap_s: a run of missing frames longer than this splits a track; shorter ones are interpolated.
    min_joint_conf: frames whose mean joint confidence is below this are low-confidence.
    low_conf_min_s: a low-confidence run at least this long is cut out (shorter ones are kept).
    world: settings of :func:`pipeline.world.align_to_world`.
    trajectory: settings of the root trajectory under a moving camera (:mod:`pipeline.trajectory`).
    identity: bounds of the identity-jump guard (:mod:`pipeline.identity`), applied to every track first.
    floating_height_m: a frame floats when its lowest foot point is higher than this.
    static_camera_half_motion: background motion scored 0.5 by :func:`pipeline.world.static_camera_score` (backends
        without camera motion); static_camera_min_score: a clip whose camera scores at least this is on a tripod
        (:meth:`pipeline.camera_motion.CameraMotion.static_camera_score`).
    """

    min_clip_s: float = 2.0
    max_clip_s: float = 10.0
    max_gap_s: float = 0.2
    min_joint_conf: float = 0.5
    low_conf_min_s: float = 0.2
    world: WorldConfig = field(default_factory=WorldConfig)
    trajectory: TrajectoryConfig = field(default_factory=TrajectoryConfig)
    identity: IdentityGuardConfig = field(default_factory=IdentityGuardConfig)
    floating_height_m: float = 0.05
    static_camera_half_motion: float = 0.004
    static_camera_min_score: float = 0.9

    def __post_init__(self) -> None:
        if isinstance(self.world, dict):  # loaded from JSON (``dataclasses.asdict`` round trip)
            try:
                object.__setattr__(self, "world", WorldConfig(**self.world))
            except TypeError as exc:
                raise ConfigError(f"invalid world alignment settings: {exc}") from None
        if isinstance(self.trajectory, dict):
            try:
                object.__setattr__(self, "trajectory", TrajectoryConfig(**self.trajectory))
            except TypeError as exc:
                raise ConfigError(f"invalid trajectory settings: {exc}") from None
        if isinstance(self.identity, dict):
            try:
                object.__setattr__(self, "identity", IdentityGuardConfig(**self.identity))
            except TypeError as exc:
                raise ConfigError(f"invalid identity guard settings: {exc}") from None
        problems = []
        if not isinstance(self.world, WorldConfig):
            problems.append(f"world must be a WorldConfig or a dict of its fields (got {type(self.world).__name__})")
        if not self.min_clip_s > 0:
            problems.append(f"min_clip_s must be > 0 (got {self.min_clip_s!r})")
        if not self.max_clip_s >= 2 * self.min_clip_s:
            problems.append(
                f"max_clip_s must be at least twice min_clip_s so that long pieces split into valid windows "
                f"(got max_clip_s={self.max_clip_s!r}, min_clip_s={self.min_clip_s!r})"
            )
        if not self.max_gap_s >= 0:
            problems.append(f"max_gap_s must be >= 0 (got {self.max_gap_s!r})")
        if not 0 <= self.min_joint_conf <= 1:
            problems.append(f"min_joint_conf must be in [0, 1] (got {self.min_joint_conf!r})")
        if not self.low_conf_min_s >= 0:
            problems.append(f"low_conf_min_s must be >= 0 (got {self.low_conf_min_s!r})")
        if not self.floating_height_m > 0:
            problems.append(f"floating_height_m must be > 0 (got {self.floating_height_m!r})")
        if not self.static_camera_half_motion > 0:
            problems.append(f"static_camera_half_motion must be > 0 (got {self.static_camera_half_motion!r})")
        if problems:
            raise ConfigError("invalid clip settings: " + "; ".join(problems))


@dataclass(frozen=True)
class Segment:
    """A range of a track's observed frames: ``track.frame_idx[start:stop]`` (stop exclusive).

    reason: ``""`` for a usable clip, else the catalog reason of a filtered one (``"too_short: ..."``,
    ``"low_confidence: ..."``).
    """

    start: int
    stop: int
    reason: str = ""

    @property
    def ok(self) -> bool:
        return not self.reason


def make_clip_id(video_id: str, track_id: int, start_frame: int, end_frame: int) -> str:
    """Deterministic clip id ``<video_id>-t<track>-f<start>-<end>`` (frames inclusive, 6+ digits).

    Only ``[A-Za-z0-9_-]`` (usable as a file name): other characters of ``video_id`` become ``_`` and a short
    hash of the original id is appended so that distinct ids stay distinct.
    """
    safe = _SAFE_ID.sub("_", video_id)
    if safe != video_id or not safe:
        safe = f"{safe}_{hashlib.sha1(video_id.encode('utf-8')).hexdigest()[:8]}"
    track = f"{track_id}" if track_id >= 0 else f"m{-track_id}"
    return f"{safe}-t{track}-f{start_frame:06d}-{end_frame:06d}"


def segment_track(
    track: HumanTrack, shot_boundary: np.ndarray | None, config: ClipConfig | None = None, fps: float | None = None
) -> list[Segment]:
    """Cut a track into :class:`Segment` ranges, usable and filtered, covering every observed frame once.

    shot_boundary: (N,) bool over the video's frames, or None. fps: frames per second of the video (default:
    estimated from ``track.time_s``). See the module docstring for the rules. Segments are in frame order.
    """
    cfg = config or ClipConfig()
    n = track.num_frames
    if n == 0:
        return []
    fps = _track_fps(track) if fps is None else float(fps)
    if not fps > 0:
        raise BackendError(f"track {track.track_id}: frame rate {fps!r} is not positive; the backend must set fps")
    fi = np.asarray(track.frame_idx, dtype=np.int64)

    breaks = np.zeros(n, dtype=bool)  # breaks[i]: a new piece starts at observed frame i
    breaks[0] = True
    if n > 1:
        missing = np.diff(fi) - 1
        breaks[1:] |= missing > math.floor(cfg.max_gap_s * fps + 1e-9)
        breaks |= shot_steps(track, shot_boundary)

    low = _low_confidence_frames(track, cfg.min_joint_conf)
    min_low_run = max(1, math.ceil(cfg.low_conf_min_s * fps - 1e-9))
    segments: list[Segment] = []
    starts = np.flatnonzero(breaks)
    for a, b in zip(starts, np.append(starts[1:], n)):
        for s, e, is_low in _split_low_runs(low[a:b], min_low_run):
            if is_low:
                span_s = (fi[a + e - 1] - fi[a + s] + 1) / fps
                reason = LowConfidence(
                    f"{span_s:.2f} s with mean joint confidence < {cfg.min_joint_conf}; "
                    "lower min_joint_conf to keep such stretches"
                ).catalog_reason()
                segments.append(Segment(int(a + s), int(a + e), reason))
            else:
                segments.extend(_windows(fi, int(a + s), int(a + e), fps, cfg))
    return segments


def build_clips(result: PoseResult, video_id: str, config: ClipConfig | None = None) -> list[HumanClip]:
    """Every clip (usable and filtered) of every track of ``result``, world-aligned, with metrics.

    Tracks are taken in ``track_id`` order and segments in frame order; the same input gives identical output.
    Each clip's ``metrics`` has the keys :data:`pipeline.quality.METRIC_NAMES` then
    :data:`pipeline.trajectory.TRAJECTORY_METRIC_NAMES`.
    """
    cfg = config or ClipConfig()
    people = np.zeros(max(result.num_frames, 1), dtype=np.int64)
    for tr in result.tracks:
        fi = tr.frame_idx[(tr.frame_idx >= 0) & (tr.frame_idx < len(people))]
        np.add.at(people, fi, 1)
    clips = []
    for track in sorted(result.tracks, key=lambda tr: tr.track_id):
        for seg in segment_track(track, result.shot_boundary, cfg, fps=result.fps):
            clips.append(_build_clip(result, track, seg, video_id, cfg, people))
    return clips


# --- helpers ----------------------------------------------------------------------------------------


def _track_fps(track: HumanTrack) -> float:
    span_frames = float(track.frame_idx[-1] - track.frame_idx[0]) if track.num_frames > 1 else 0.0
    span_s = float(track.time_s[-1] - track.time_s[0]) if track.num_frames > 1 else 0.0
    if span_frames > 0 and span_s > 0:
        return span_frames / span_s
    raise ConfigError(f"track {track.track_id}: cannot estimate fps from its times; pass fps to segment_track")


def _low_confidence_frames(track: HumanTrack, min_joint_conf: float) -> np.ndarray:
    finite = np.isfinite(track.joints_cam_m).all(axis=(1, 2)) & np.isfinite(track.joint_conf).all(axis=1)
    mean_conf = np.where(finite, np.nan_to_num(track.joint_conf).mean(axis=1), 0.0)
    return ~finite | (mean_conf < min_joint_conf)


def _split_low_runs(low: np.ndarray, min_run: int) -> list[tuple[int, int, bool]]:
    """Split [0, len(low)) into alternating (start, stop, is_low) parts; only low runs >= min_run count."""
    padded = np.concatenate([[0], low.astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(padded))
    runs = [(int(s), int(e)) for s, e in zip(edges[::2], edges[1::2]) if e - s >= min_run]
    parts = []
    pos = 0
    for s, e in runs:
        if s > pos:
            parts.append((pos, s, False))
        parts.append((s, e, True))
        pos = e
    if pos < len(low):
        parts.append((pos, len(low), False))
    return parts


def _windows(fi: np.ndarray, start: int, stop: int, fps: float, cfg: ClipConfig) -> list[Segment]:
    """Equal windows of at most ``max_clip_s`` over observed frames [start, stop), or one too_short segment."""
    first, last = int(fi[start]), int(fi[stop - 1])
    span = last - first + 1
    duration_s = span / fps
    if duration_s < cfg.min_clip_s:
        return [Segment(start, stop, _too_short(duration_s, cfg))]
    k = max(1, math.ceil(duration_s / cfg.max_clip_s - 1e-9))
    edges = first + np.round(np.arange(k + 1) * span / k).astype(np.int64)
    bounds = start + np.searchsorted(fi[start:stop], edges)
    out = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        if b <= a:
            continue
        win_s = (fi[b - 1] - fi[a] + 1) / fps
        out.append(Segment(int(a), int(b), "" if win_s >= cfg.min_clip_s else _too_short(win_s, cfg)))
    return out


def _too_short(duration_s: float, cfg: ClipConfig) -> str:
    return TooShort(
        f"{duration_s:.2f} s is shorter than min_clip_s={cfg.min_clip_s} s; lower min_clip_s to keep it"
    ).catalog_reason()


def _interp_rows(x_obs: np.ndarray, y_obs: np.ndarray, x_grid: np.ndarray) -> np.ndarray:
    """Linear interpolation of rows y_obs (K, ...) at increasing x_obs (K,) onto x_grid (T,) -> (T, ...)."""
    if len(x_obs) == 1:
        return np.repeat(y_obs[:1], len(x_grid), axis=0)
    i = np.clip(np.searchsorted(x_obs, x_grid, side="right") - 1, 0, len(x_obs) - 2)
    w = (x_grid - x_obs[i]) / (x_obs[i + 1] - x_obs[i])
    w = np.clip(w, 0.0, 1.0).reshape((-1,) + (1,) * (y_obs.ndim - 1))
    return (1 - w) * y_obs[i] + w * y_obs[i + 1]


def _nearest_rows(x_obs: np.ndarray, x_grid: np.ndarray) -> np.ndarray:
    """Index into x_obs (K,) of the nearest observation for each x_grid (T,) (the earlier one on ties)."""
    j = np.clip(np.searchsorted(x_obs, x_grid, side="left"), 0, len(x_obs) - 1)
    prev = np.clip(j - 1, 0, len(x_obs) - 1)
    take_prev = np.abs(x_grid - x_obs[prev]) <= np.abs(x_obs[j] - x_grid)
    return np.where(take_prev, prev, j)


def _build_clip(
    result: PoseResult,
    track: HumanTrack,
    seg: Segment,
    video_id: str,
    cfg: ClipConfig,
    people_per_frame: np.ndarray,
) -> HumanClip:
    fps = float(result.fps)
    sl = slice(seg.start, seg.stop)
    fi = np.asarray(track.frame_idx[sl], dtype=np.int64)
    joints_obs = np.asarray(track.joints_cam_m[sl], dtype=np.float64)
    conf_obs = np.asarray(track.joint_conf[sl], dtype=np.float64)
    usable = np.isfinite(joints_obs).all(axis=(1, 2)) & np.isfinite(conf_obs).all(axis=1)
    grid = np.arange(fi[0], fi[-1] + 1, dtype=np.int64)
    t = len(grid)
    pos = fi - fi[0]
    observed = np.zeros(t, dtype=bool)
    observed[pos[usable]] = True
    if not usable.any():  # a filtered stretch of non-finite frames: keep the row, with zero joints
        usable = np.ones_like(usable)
        joints_obs = np.zeros_like(joints_obs)
        conf_obs = np.zeros_like(conf_obs)

    joints_cam = _interp_rows(fi[usable].astype(np.float64), joints_obs[usable], grid.astype(np.float64))
    conf = np.zeros((t, len(track.joint_names)))
    conf[pos[usable]] = conf_obs[usable]
    if result.frame_time_s is not None and len(result.frame_time_s) > grid[-1]:
        time_s = np.asarray(result.frame_time_s, dtype=np.float64)[grid]
    else:
        obs_time_s = np.asarray(track.time_s[sl], dtype=np.float64)
        time_s = _interp_rows(fi.astype(np.float64), obs_time_s, grid.astype(np.float64))

    camera = result.camera_window(int(grid[0]), int(grid[-1]))
    rotations = None if camera is None else camera.R_cam0_from_cam
    translating = None if camera is None else camera.translating()
    camera_score = math.nan if camera is None else camera.static_camera_score()
    trajectory = recover_trajectory(joints_cam, conf, fps, track.joint_names, rotations, translating, cfg.trajectory,
                                    camera_static=camera_score >= cfg.static_camera_min_score)
    aligned = align_to_world(trajectory.joints_m, conf, fps, cfg.world, track.joint_names)

    obs_rows = np.flatnonzero(usable) + seg.start
    in_video = grid[grid < len(people_per_frame)]
    metrics = clip_metrics(
        aligned.joints_world_m,
        conf,
        fps,
        aligned.foot_contact,
        observed=observed,
        det_conf=track.det_conf[obs_rows],
        bbox_xywh_px=None if track.bbox_xywh_px is None else track.bbox_xywh_px[obs_rows],
        keypoints_px=None if track.keypoints_px is None else track.keypoints_px[obs_rows],
        image_size_hw=result.image_size_hw,
        static_camera_score=static_camera_score(result.background_motion, grid,
                                                half_motion=cfg.static_camera_half_motion)
        if camera is None else camera_score,
        background_motion_median=median_background_motion(result.background_motion, grid),
        people_in_frame_max=float(people_per_frame[in_video].max()) if in_video.size else math.nan,
        world_up_method_id=float(aligned.up_method_id),
        world_up_body_angle_deg=aligned.body_up_angle_deg,
        ground_rmse_m=aligned.ground_rmse_m,
        camera_height_m=aligned.camera_height_m,
        joint_names=track.joint_names,
        floating_height_m=cfg.floating_height_m,
    )

    metrics.update(trajectory.metrics(aligned.up_cam, fps,
                                      math.nan if camera is None else camera.rotation_path_deg()))

    smpl = None
    if track.smpl is not None:
        near = _nearest_rows(fi[usable].astype(np.float64), grid.astype(np.float64))
        rows = obs_rows[near]
        sm = track.smpl
        smpl = SMPLParams(
            global_orient_rotmat=np.asarray(sm.global_orient_rotmat[rows]),
            body_pose_rotmat=np.asarray(sm.body_pose_rotmat[rows]),
            betas=np.asarray(sm.betas[rows]),
            transl_cam_m=_interp_rows(
                fi[usable].astype(np.float64),
                np.asarray(sm.transl_cam_m[obs_rows], dtype=np.float64),
                grid.astype(np.float64),
            ).astype(np.asarray(sm.transl_cam_m).dtype),
        )

    keypoints_px = None
    if track.keypoints_px is not None:
        keypoints_px = _interp_rows(
            fi[usable].astype(np.float64), np.asarray(track.keypoints_px[obs_rows], dtype=np.float64),
            grid.astype(np.float64),
        ).astype(np.float32)

    return HumanClip(
        clip_id=make_clip_id(video_id, track.track_id, int(grid[0]), int(grid[-1])),
        video_id=video_id,
        track_id=int(track.track_id),
        frame_idx=grid,
        time_s=time_s,
        fps=fps,
        joint_names=tuple(track.joint_names),
        joints_world_m=aligned.joints_world_m.astype(np.float32),
        joint_conf=conf.astype(np.float32),
        T_world_from_camera=aligned.T_world_from_camera,
        foot_contact=aligned.foot_contact,
        smpl=smpl,
        metrics=metrics,
        status="ok" if seg.ok else "filtered",
        reason=seg.reason,
        keypoints_px=keypoints_px,
        image_size_hw=tuple(int(v) for v in result.image_size_hw) if result.image_size_hw else None,
    )
