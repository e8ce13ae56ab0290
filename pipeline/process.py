"""One video, start to finish: source → probe → pose → clips → catalog rows. Never raises for bad input.

:func:`process_video` is the unit of work of every executor (the local Ray pool today, a cluster tomorrow): it
turns a :class:`ingest.items.VideoItem` into a :class:`VideoOutcome` whose rows go into the catalog as they are.
Whatever goes wrong becomes the video row's ``status`` and ``reason``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from catalog.layout import RunLayout
from ingest.errors import G1ForgeError, InputNotFound, NoPerson, RangeOutsideVideo, classify_exception
from ingest.items import VideoItem
from pipeline.backends.base import PoseBackend
from pipeline.motion import HumanClip, PoseResult
from pipeline.skeleton import JOINT_SET_NAME


def code_version() -> str:
    """The installed g1forge version (recorded with every row as provenance)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("g1forge")
    except PackageNotFoundError:
        return "0+unknown"


@dataclass
class VideoOutcome:
    """The catalog rows of one video and the clips whose motion files go with them."""

    video_row: dict
    track_rows: list[dict] = field(default_factory=list)
    clip_rows: list[dict] = field(default_factory=list)
    clips: list[HumanClip] = field(default_factory=list)
    g1_motions: list = field(default_factory=list)  # G1Motion of each clip in ``clips`` that retargeted
    error: G1ForgeError | None = None

    @property
    def status(self) -> str:
        return self.video_row["status"]


def base_video_row(item: VideoItem, config_hash: str, backend: str, attempts: int = 1) -> dict:
    """The columns of a video row known before any work (what a failed row still carries)."""
    return {
        "video_id": item.video_id,
        "uri": item.uri,
        "source_kind": item.kind,
        "status": "failed",
        "reason": "",
        "attempts": attempts,
        "config_hash": config_hash,
        "backend": backend,
        "backend_version": None,
        "code_version": code_version(),
        "tags": list(item.tags),
        "license": item.license,
        "range_start_s": item.start_s,
        "range_end_s": item.end_s,
        "finished_at": datetime.now(timezone.utc),
    }


def failed_outcome(item: VideoItem, config_hash: str, backend: str, error: BaseException,
                   attempts: int = 1) -> VideoOutcome:
    """A one-row outcome for an input that failed before or outside :func:`process_video`."""
    err = classify_exception(error)
    row = base_video_row(item, config_hash, backend, attempts)
    row.update(status=err.status, reason=err.catalog_reason())
    return VideoOutcome(video_row=row, error=err)


#: Clip columns the G1 stage adds besides :data:`pipeline.robot_metrics.ROBOT_METRIC_NAMES`.
RETARGET_COLUMNS = ("retarget_time_s", "retarget_iterations")


class RetargetStage:
    """Retargets ok clips to the G1 and scores them; built once per worker (the model is loaded once)."""

    def __init__(self, config, mjcf_path: str | None = None):
        from pipeline.g1.model import load_g1

        self.config = config
        self.model = load_g1(mjcf_path)

    def __call__(self, clip: HumanClip):
        """Returns ``(G1Motion, robot metrics)`` for ``clip``."""
        from pipeline.retarget import retarget_clip
        from pipeline.robot_metrics import robot_metrics

        result = retarget_clip(clip, self.model, self.config)
        metrics = robot_metrics(result.motion, self.model, result.targets, result.contact)
        metrics["retarget_time_s"] = result.stats.time_s
        metrics["retarget_iterations"] = float(result.stats.iterations)
        return result.motion, metrics


@dataclass
class Fetched:
    """A video made local and probed: what the pose stage needs, small enough to travel between workers.

    row: the video row so far (base columns, probe columns, ``download_time_s``); path: the local file the
    backend reads (None when the backend reads nothing). ``error`` is set when fetching failed; the row then
    carries its status and reason.
    """

    item: VideoItem
    row: dict
    path: str | None = None
    error: G1ForgeError | None = None


def fetch_video(item: VideoItem, config, download_dir: Path, config_hash: str, backend_name: str,
                needs_video: bool = True, attempts: int = 1) -> Fetched:
    """Stage 1: resolve or download ``item`` and probe it. Never raises for bad input (see ``Fetched.error``)."""
    t0 = time.perf_counter()
    row = base_video_row(item, config_hash, backend_name, attempts)
    fetched = Fetched(item=item, row=row)
    try:
        if item.list_error:
            from ingest.sources import entry_error

            raise entry_error(item)
        path = _local_path(item, config, download_dir, row)
        if needs_video:
            _probe_into(path, row)
            _check_range(item, row)
        fetched.path = str(path) if path is not None else None
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # every other failure becomes this video's reason
        fetched.error = _fail_row(row, exc)
    _add_time(row, t0)
    return fetched


def pose_video(fetched: Fetched, backend: PoseBackend) -> PoseResult:
    """Stage 2: run the pose backend on a fetched video; fills the row's pose columns. Raises on failure."""
    t0 = time.perf_counter()
    row = fetched.row
    row["backend_version"] = backend.version
    try:
        result = backend.process(fetched.item, fetched.path)
        row["pose_time_s"] = time.perf_counter() - t0
        row.update(frames_processed=int(result.num_frames), focal_px=float(result.focal_px),
                   backend_version=result.backend_version or backend.version)
        if row.get("fps") is None:
            row["fps"] = float(result.fps)
            row["num_frames"] = int(result.num_frames)
            row["width_px"], row["height_px"] = int(result.image_size_hw[1]), int(result.image_size_hw[0])
    finally:
        _add_time(row, t0)
    return result


def finish_video(row: dict, result: PoseResult, config, retarget: RetargetStage | None = None) -> VideoOutcome:
    """Stage 3: clips, world alignment and metrics, then (with ``retarget``) the G1 stage for every ok clip.

    row: the video row from :func:`pose_video`. Never raises for bad input.
    """
    t0 = time.perf_counter()
    outcome = VideoOutcome(video_row=row)
    try:
        _clips_into(outcome, result, config)
        if retarget is not None:
            t_rt = time.perf_counter()
            _retarget_into(outcome, retarget)
            row["retarget_time_s"] = time.perf_counter() - t_rt
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # every other failure becomes this video's reason
        outcome.error = _fail_row(row, exc)
        outcome.track_rows, outcome.clip_rows, outcome.clips, outcome.g1_motions = [], [], [], []
    _add_time(row, t0)
    row["finished_at"] = datetime.now(timezone.utc)
    return outcome


def failed_pose_outcome(fetched: Fetched, exc: BaseException) -> VideoOutcome:
    """The outcome of a fetched video whose pose stage raised ``exc``."""
    err = _fail_row(fetched.row, exc)
    fetched.row["finished_at"] = datetime.now(timezone.utc)
    return VideoOutcome(video_row=fetched.row, error=err)


def fetched_outcome(fetched: Fetched) -> VideoOutcome:
    """The outcome of a video whose fetch failed (``fetched.error`` is set)."""
    fetched.row["finished_at"] = datetime.now(timezone.utc)
    return VideoOutcome(video_row=fetched.row, error=fetched.error)


def process_video(item: VideoItem, backend: PoseBackend, config, download_dir: Path, config_hash: str,
                  attempts: int = 1, retarget: RetargetStage | None = None) -> VideoOutcome:
    """Run one video through every stage in this process: :func:`fetch_video`, :func:`pose_video`,
    :func:`finish_video`. The cluster runs the same stages in separate workers.

    config: a :class:`cluster.config.RunConfig` (its ``clip`` and ``download`` parts are used here).
    Returns the outcome; only ``KeyboardInterrupt``/``SystemExit`` propagate.
    """
    fetched = fetch_video(item, config, download_dir, config_hash, backend.name, backend.needs_video, attempts)
    if fetched.error is not None:
        return fetched_outcome(fetched)
    try:
        result = pose_video(fetched, backend)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        return failed_pose_outcome(fetched, exc)
    return finish_video(fetched.row, result, config, retarget)


def _fail_row(row: dict, exc: BaseException) -> G1ForgeError:
    err = classify_exception(exc)
    row.update(status=err.status, reason=err.catalog_reason())
    return err


def _add_time(row: dict, t0: float) -> None:
    """Accumulate a stage's wall time into ``process_time_s`` (the video's time summed over its stages)."""
    row["process_time_s"] = float(row.get("process_time_s") or 0.0) + time.perf_counter() - t0


def _local_path(item: VideoItem, config, download_dir: Path, row: dict) -> Path | None:
    if item.kind == "file":
        path = Path(item.uri)
        if not path.is_file():
            raise InputNotFound(f"{item.uri} does not exist or is not a file; check the path")
        return path
    from ingest.download import download_video

    t0 = time.perf_counter()
    d = config.download
    path = download_video(item, download_dir, max_height=d.max_height, socket_timeout_s=d.socket_timeout_s,
                          retries=d.retries, max_bytes=d.max_bytes, use_pytube_fallback=d.use_pytube_fallback,
                          deadline_s=getattr(d, "deadline_s", None))
    row["download_time_s"] = time.perf_counter() - t0
    return Path(path)


def _check_range(item: VideoItem, row: dict) -> None:
    """Raise :class:`RangeOutsideVideo` when the item's ``start_s`` is at or past the probed duration."""
    duration_s = row.get("duration_s")
    if item.start_s is not None and duration_s and item.start_s >= duration_s:
        raise RangeOutsideVideo(f"start_s={item.start_s:g} s is at or after the end of the video ({duration_s:.2f} s): "
                                "fix start_s/end_s in the list")


def _probe_into(path: Path, row: dict) -> None:
    from ingest.probe import probe_video

    p = probe_video(path)
    row.update(duration_s=p.duration_s, fps=p.fps, is_vfr=p.is_vfr, width_px=p.width, height_px=p.height,
               rotation_deg=p.rotation_deg, codec=p.codec, num_frames=p.num_frames, size_bytes=p.size_bytes,
               has_audio=p.has_audio)


def _clips_into(outcome: VideoOutcome, result: PoseResult, config) -> None:
    from dataclasses import replace

    from pipeline.clips import build_clips
    from pipeline.identity import split_identity_jumps

    row = outcome.video_row
    video_id = row["video_id"]
    if not result.tracks:
        raise NoPerson(f"no person found in {result.num_frames} frames")
    tracks, source_track_ids = split_identity_jumps(result.tracks, config.clip.identity, result.shot_boundary)
    result = replace(result, tracks=tracks)
    clips = build_clips(result, video_id, config.clip)
    by_track: dict[int, list[HumanClip]] = {}
    for clip in clips:
        by_track.setdefault(clip.track_id, []).append(clip)
        outcome.clip_rows.append(clip_row(clip, video_id))
    for track in result.tracks:
        tc = by_track.get(track.track_id, [])
        n_ok = sum(c.status == "ok" for c in tc)
        span = int(track.frame_idx[-1] - track.frame_idx[0] + 1) if track.num_frames else 0
        outcome.track_rows.append({
            "video_id": video_id,
            "track_id": int(track.track_id),
            "source_track_id": int(source_track_ids[track.track_id]),
            "status": "ok" if n_ok else "filtered",
            "reason": "" if n_ok else _no_clip_reason(tc),
            "num_frames": int(track.num_frames),
            "first_frame": int(track.frame_idx[0]) if track.num_frames else None,
            "last_frame": int(track.frame_idx[-1]) if track.num_frames else None,
            "start_s": float(track.time_s[0]) if track.num_frames else None,
            "end_s": float(track.time_s[-1]) if track.num_frames else None,
            "tracked_frac": track.num_frames / span if span else 0.0,
            "det_conf_mean": float(np.mean(track.det_conf)) if track.num_frames else None,
            "joint_conf_mean": float(np.mean(track.joint_conf)) if track.num_frames else None,
            "has_smpl": track.smpl is not None,
            "num_clips": len(tc),
            "num_clips_ok": n_ok,
        })
    outcome.clips = [c for c in clips if c.status == "ok"]
    n_ok = len(outcome.clips)
    row.update(num_tracks=len(result.tracks), num_clips=len(clips), num_clips_ok=n_ok,
               clips_duration_s=float(sum(c.duration_s for c in outcome.clips)))
    if n_ok:
        row.update(status="ok", reason="")
    else:
        row.update(status="filtered", reason=_no_clip_reason(clips))


def _retarget_into(outcome: VideoOutcome, retarget: RetargetStage) -> None:
    """Retarget every ok clip; a clip whose retargeting fails becomes ``failed`` with the reason, not the video."""
    rows = {r["clip_id"]: r for r in outcome.clip_rows}
    tracks = {r["track_id"]: r for r in outcome.track_rows}
    kept = []
    for clip in outcome.clips:
        row = rows[clip.clip_id]
        try:
            motion, metrics = retarget(clip)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            err = classify_exception(exc)
            row.update(status="failed", reason=f"retarget: {err.catalog_reason()}", motion_path=None)
            tracks[clip.track_id]["num_clips_ok"] -= 1
            continue
        row.update({k: float(v) for k, v in metrics.items()})
        row["g1_motion_path"] = RunLayout.g1_motion_relpath(outcome.video_row["video_id"], clip.clip_id)
        kept.append(clip)
        outcome.g1_motions.append(motion)
    outcome.clips = kept
    n_ok = len(kept)
    vrow = outcome.video_row
    vrow.update(num_clips_ok=n_ok, clips_duration_s=float(sum(c.duration_s for c in kept)))
    if n_ok == 0 and vrow["status"] == "ok":
        vrow.update(status="failed", reason="retarget: every clip failed to retarget (see the clips table)")


def _no_clip_reason(clips: list[HumanClip]) -> str:
    if not clips:
        return "no_clip: no segment long enough"
    codes = sorted({c.reason.split(":")[0] for c in clips if c.reason})
    return f"no_clip: all {len(clips)} windows filtered ({', '.join(codes) or 'unknown'})"


def clip_row(clip: HumanClip, video_id: str) -> dict:
    """The catalog row of a clip: ids, span, status and its metrics as float columns."""
    n = clip.num_frames
    row = {
        "clip_id": clip.clip_id,
        "video_id": video_id,
        "track_id": int(clip.track_id),
        "status": clip.status,
        "reason": clip.reason,
        "start_frame": int(clip.frame_idx[0]) if n else None,
        "end_frame": int(clip.frame_idx[-1]) if n else None,
        "start_s": float(clip.time_s[0]) if n else None,
        "end_s": float(clip.time_s[-1]) if n else None,
        "duration_s": clip.duration_s,
        "num_frames": n,
        "fps": float(clip.fps),
        "joint_set": JOINT_SET_NAME,
        "has_smpl": clip.smpl is not None,
        "motion_path": RunLayout.clip_motion_relpath(video_id, clip.clip_id) if clip.status == "ok" else None,
    }
    for name, value in clip.metrics.items():
        if name not in row:
            row[name] = None if value is None else float(value)
    return row
