"""A synthetic run folder of any size, in exactly the layout and schema that ``g1forge run`` writes.

:func:`make_catalog` prepares the folder with the real :func:`cluster.run.prepare_run_folder` (info file, schema
fragments, DuckDB views), then writes one folder per video as the writer publishes it: ``videos.parquet``
(one row), ``tracks.parquet``, ``clips.parquet`` (the writer's schemas, written with the same ``pq.write_table``
defaults), an empty ``clips/`` folder and the ``_done.<config_hash>`` marker. Motion ``.npz`` files are not
written (the rows carry the paths where they would be): catalog benchmarks do not read them.

Rows are drawn with numpy for a whole chunk of videos at once and sliced per video, so a million clips
(~125,000 video folders) are written in minutes rather than hours; chunks run in parallel processes
(``workers``) and are deterministic given ``seed``.

Value ranges are plausible, not measured: ok clips last 2-10 s, ~85 % of clip windows are ok, ~3 % of videos are
failed or filtered with no tracks or clips, ``jitter_m_s3`` is log-normal around 25 m/s^3.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from catalog import schema as S
from catalog.layout import RunLayout

#: Videos generated (and written) per task.
CHUNK_VIDEOS = 2000
#: Threads writing one chunk's files.
WRITE_THREADS = 8


@dataclass(frozen=True)
class SyntheticCatalog:
    """What :func:`make_catalog` wrote."""

    root: Path
    num_videos: int
    num_clips: int
    num_tracks: int
    config_hash: str
    build_time_s: float


def metric_names() -> list[str]:
    """The metric columns a real run gives the clips table (human, robot and retargeting columns)."""
    from pipeline.process import RETARGET_COLUMNS
    from pipeline.quality import METRIC_NAMES
    from pipeline.robot_metrics import ROBOT_METRIC_NAMES

    return [*METRIC_NAMES, *ROBOT_METRIC_NAMES, *RETARGET_COLUMNS]


def video_id_of(seed: int, k: int) -> str:
    """The ``k``-th synthetic video id (``file-<16 hex>``, like local files)."""
    return "file-" + hashlib.sha1(f"synthetic:{seed}:{k}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class _Plan:
    root: str
    seed: int
    num_clips: int
    clips_per_video: int
    num_clip_videos: int
    num_videos: int
    config_hash: str
    code_version: str
    metric_names: tuple[str, ...]


def make_catalog(root: str | Path, num_clips: int, clips_per_video: int = 8, *, seed: int = 0,
                 empty_video_frac: float = 0.03, workers: int = 1) -> SyntheticCatalog:
    """Write a run folder at ``root`` (must not hold one yet) with ``num_clips`` clip rows.

    clips_per_video: clips of each video that has clips (the last one gets the remainder).
    empty_video_frac: extra videos, as a fraction of those with clips, that end failed or filtered with no
        tracks and no clips (as unreadable files and videos without people do).
    workers: processes writing chunks of :data:`CHUNK_VIDEOS` videos in parallel.
    """
    from cluster.config import RunConfig
    from cluster.run import prepare_run_folder
    from pipeline.process import code_version

    t0 = time.perf_counter()
    layout = RunLayout.at(root)
    if layout.info_path.exists():
        raise FileExistsError(f"{layout.root} already holds a run folder; give a new path")
    config = RunConfig()
    prepare_run_folder(layout, config)
    num_clip_videos = math.ceil(num_clips / clips_per_video) if num_clips else 0
    num_videos = num_clip_videos + int(round(num_clip_videos * empty_video_frac))
    plan = _Plan(str(layout.root), seed, num_clips, clips_per_video, num_clip_videos, num_videos,
                 config.config_hash(), code_version(), tuple(metric_names()))
    chunks = [(plan, k0, min(k0 + CHUNK_VIDEOS, num_videos)) for k0 in range(0, num_videos, CHUNK_VIDEOS)]
    if workers > 1 and len(chunks) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            counts = list(pool.map(_write_chunk, chunks))
    else:
        counts = [_write_chunk(c) for c in chunks]
    n_tracks = sum(c[0] for c in counts)
    n_clips = sum(c[1] for c in counts)
    assert n_clips == num_clips, (n_clips, num_clips)
    return SyntheticCatalog(layout.root, num_videos, n_clips, n_tracks, plan.config_hash,
                            time.perf_counter() - t0)


def _write_chunk(task: tuple[_Plan, int, int]) -> tuple[int, int]:
    """Generate and write videos ``[k0, k1)``; returns (tracks, clips) written."""
    plan, k0, k1 = task
    layout = RunLayout.at(plan.root)
    rng = np.random.default_rng([plan.seed, k0])
    ks = np.arange(k0, k1)
    ids = [video_id_of(plan.seed, int(k)) for k in ks]
    last = plan.num_clip_videos - 1
    n_clips = np.where(ks < plan.num_clip_videos, plan.clips_per_video, 0)
    if plan.num_clips % plan.clips_per_video and last in ks:
        n_clips[ks == last] = plan.num_clips % plan.clips_per_video
    n_tracks = np.minimum(n_clips, rng.integers(1, 4, len(ks)))
    fps = rng.choice([25.0, 30.0, 29.97, 60.0], len(ks))
    clips, clip_track = _clips(plan, rng, ids, fps, n_clips, n_tracks)
    tracks = _tracks(rng, ids, fps, n_tracks, clips, clip_track)
    videos = _videos(plan, rng, ids, fps, n_clips, n_tracks, clips)
    t_off = np.concatenate([[0], np.cumsum(n_tracks)])
    c_off = np.concatenate([[0], np.cumsum(n_clips)])
    statuses = videos.column("status").to_pylist()

    def write_video(j: int) -> None:
        vid = ids[j]
        d = layout.video_dir(vid)
        (d / "clips").mkdir(parents=True)
        pq.write_table(videos.slice(j, 1), d / "videos.parquet")
        pq.write_table(tracks.slice(t_off[j], n_tracks[j]), d / "tracks.parquet")
        pq.write_table(clips.slice(c_off[j], n_clips[j]), d / "clips.parquet")
        marker = {"video_id": vid, "config_hash": plan.config_hash, "status": statuses[j]}
        (d / f"_done.{plan.config_hash}").write_text(json.dumps(marker))

    with ThreadPoolExecutor(WRITE_THREADS) as pool:  # file creation is I/O-bound; pyarrow releases the GIL
        list(pool.map(write_video, range(len(ids))))
    return int(n_tracks.sum()), int(n_clips.sum())


def _lognormal(rng, median: float, sigma: float, n: int) -> np.ndarray:
    return median * np.exp(sigma * rng.standard_normal(n))


def _clips(plan: _Plan, rng, ids: list[str], video_fps: np.ndarray, n_clips: np.ndarray,
           n_tracks: np.ndarray) -> tuple[pa.Table, np.ndarray]:
    n = int(n_clips.sum())
    video_of = np.repeat(np.arange(len(ids)), n_clips)
    first = np.repeat(np.concatenate([[0], np.cumsum(n_clips)[:-1]]), n_clips)
    idx_in_video = np.arange(n) - first
    track = (idx_in_video % np.maximum(np.repeat(n_tracks, n_clips), 1)).astype(np.int32)
    ok = rng.random(n) < 0.85
    fps = np.repeat(video_fps, n_clips)
    duration_s = np.where(ok, rng.uniform(2.0, 10.0, n), rng.uniform(0.2, 2.0, n))
    num_frames = np.maximum(np.round(duration_s * fps).astype(np.int64), 1)
    duration_s = num_frames / fps
    start_frame = _within_video_start(num_frames, n_clips)  # windows follow one another in each video
    end_frame = start_frame + num_frames - 1
    vids = [ids[i] for i in video_of]
    clip_ids = [f"{v}-t{t}-f{a:06d}-{b:06d}" for v, t, a, b in zip(vids, track, start_frame, end_frame)]
    shard = {v: RunLayout.clip_motion_relpath(v, "X")[:-len("X.npz")] for v in ids}
    reason = np.where(ok, "", np.where(rng.random(n) < 0.7, "too_short: window shorter than min_clip_s",
                                       "low_confidence: joints below min_joint_conf"))
    cols: dict[str, object] = {
        "clip_id": clip_ids,
        "video_id": vids,
        "track_id": track,
        "status": np.where(ok, "ok", "filtered"),
        "reason": reason,
        "start_frame": start_frame,
        "end_frame": end_frame,
        "start_s": start_frame / fps,
        "end_s": end_frame / fps,
        "duration_s": duration_s,
        "num_frames": num_frames,
        "fps": fps,
        "joint_set": np.full(n, "g1forge_body20"),
        "has_smpl": np.zeros(n, bool),
        "motion_path": [shard[v] + c + ".npz" if o else None for v, c, o in zip(vids, clip_ids, ok)],
        "g1_motion_path": [shard[v] + c + ".g1.npz" if o else None for v, c, o in zip(vids, clip_ids, ok)],
    }
    robot = set(plan.metric_names[plan.metric_names.index("keybody_err_mean_m"):]) \
        if "keybody_err_mean_m" in plan.metric_names else set()
    for name in plan.metric_names:
        if name in cols:
            continue
        values = _metric(rng, name, n)
        if name in robot:
            values = np.where(ok, values, np.nan)
        cols[name] = values
    schema = S.clips_schema(list(plan.metric_names))
    arrays = [_array(cols[f.name], f.type, nan_is_null=f.name in robot) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema), track


def _within_video_start(num_frames: np.ndarray, n_clips: np.ndarray) -> np.ndarray:
    """First frame of each clip when each video's clips follow one another from frame 0."""
    ends = np.cumsum(num_frames)
    starts_global = ends - num_frames
    video_first = np.repeat(np.concatenate([[0], np.cumsum(n_clips)[:-1]]), n_clips)
    return (starts_global - starts_global[video_first]).astype(np.int64) if len(num_frames) else starts_global


def _metric(rng, name: str, n: int) -> np.ndarray:
    """Plausible values for a metric column, by its name and unit."""
    spec = {
        "jitter_m_s3": lambda: _lognormal(rng, 25.0, 0.6, n),
        "root_jerk_m_s3": lambda: _lognormal(rng, 15.0, 0.6, n),
        "accel_mean_m_s2": lambda: _lognormal(rng, 2.0, 0.5, n),
        "foot_sliding_mm_per_frame": lambda: _lognormal(rng, 8.0, 0.7, n),
        "robot_foot_sliding_mm_per_frame": lambda: _lognormal(rng, 5.0, 0.7, n),
        "pelvis_height_min_m": lambda: rng.uniform(0.5, 0.95, n),
        "pelvis_height_max_m": lambda: rng.uniform(0.95, 1.3, n),
        "person_height_px_median": lambda: rng.uniform(80.0, 900.0, n),
        "people_in_frame_max": lambda: rng.integers(1, 6, n).astype(float),
        "world_up_method_id": lambda: rng.integers(0, 4, n).astype(float),
        "world_up_body_angle_deg": lambda: rng.uniform(0.0, 20.0, n),
        "camera_height_m": lambda: rng.uniform(0.8, 2.5, n),
        "joint_limit_violations": lambda: np.zeros(n),
        "self_collision_frames": lambda: rng.poisson(0.5, n).astype(float),
        "retarget_iterations": lambda: rng.integers(5, 60, n).astype(float),
        "retarget_time_s": lambda: rng.uniform(0.2, 3.0, n),
        "base_wrench_force_per_weight": lambda: _lognormal(rng, 1.1, 0.2, n),
        "base_wrench_force_per_weight_p95": lambda: _lognormal(rng, 1.6, 0.3, n),
        "jerk_mean_rad_s3": lambda: _lognormal(rng, 40.0, 0.6, n),
    }.get(name)
    if spec is not None:
        return spec()
    if name.endswith("_frac") or name.endswith("_score") or name.endswith("_mean") or name.endswith("_cv"):
        return rng.uniform(0.0, 1.0, n)
    return _lognormal(rng, 0.05, 0.8, n)  # lengths in metres, gaps in seconds: small positive numbers


def _array(values, typ: pa.DataType, nan_is_null: bool = False) -> pa.Array:
    if isinstance(values, np.ndarray) and values.dtype.kind == "f" and nan_is_null:
        return pa.array(values, type=typ, from_pandas=True)
    if isinstance(values, np.ndarray) and values.dtype.kind == "U":
        values = values.tolist()
    return pa.array(values, type=typ)


def _tracks(rng, ids: list[str], video_fps: np.ndarray, n_tracks: np.ndarray, clips: pa.Table,
            clip_track: np.ndarray) -> pa.Table:
    n = int(n_tracks.sum())
    video_of = np.repeat(np.arange(len(ids)), n_tracks)
    first = np.repeat(np.concatenate([[0], np.cumsum(n_tracks)[:-1]]), n_tracks)
    track_id = (np.arange(n) - first).astype(np.int32)
    # clips per (video, track), from the clips table
    order = {v: i for i, v in enumerate(ids)}
    clip_video = np.array([order[v] for v in clips.column("video_id").to_pylist()], dtype=np.int64)
    key_t = video_of.astype(np.int64) * 16 + track_id
    key_c = clip_video * 16 + clip_track.astype(np.int64)
    ok_c = np.array(clips.column("status").to_pylist()) == "ok" if clips.num_rows else np.zeros(0, bool)
    uniq, inv = np.unique(np.concatenate([key_t, key_c]), return_inverse=True)
    num_clips = np.bincount(inv[n:], minlength=len(uniq))[inv[:n]]
    num_ok = np.bincount(inv[n:], weights=ok_c, minlength=len(uniq))[inv[:n]].astype(np.int32)
    frames = rng.integers(60, 2000, n).astype(np.int64)
    fps = np.repeat(video_fps, n_tracks)
    first_frame = rng.integers(0, 100, n).astype(np.int64)
    cols = {
        "video_id": [ids[i] for i in video_of],
        "track_id": track_id,
        "source_track_id": track_id,  # no identity split in the synthetic catalog
        "status": np.where(num_ok > 0, "ok", "filtered").tolist(),
        "reason": np.where(num_ok > 0, "", "no_clip: every window filtered").tolist(),
        "num_frames": frames,
        "first_frame": first_frame,
        "last_frame": first_frame + frames - 1,
        "start_s": first_frame / fps,
        "end_s": (first_frame + frames - 1) / fps,
        "tracked_frac": rng.uniform(0.6, 1.0, n),
        "det_conf_mean": rng.uniform(0.5, 1.0, n),
        "joint_conf_mean": rng.uniform(0.4, 1.0, n),
        "has_smpl": np.zeros(n, bool),
        "num_clips": num_clips.astype(np.int32),
        "num_clips_ok": num_ok,
    }
    return pa.Table.from_arrays([_array(cols[f.name], f.type) for f in S.TRACKS], schema=S.TRACKS)


def _videos(plan: _Plan, rng, ids: list[str], fps: np.ndarray, n_clips: np.ndarray, n_tracks: np.ndarray,
            clips: pa.Table) -> pa.Table:
    n = len(ids)
    has = n_clips > 0
    failed = ~has & (rng.random(n) < 0.5)
    filtered = ~has & ~failed
    status = np.where(has, "ok", np.where(failed, "failed", "filtered"))
    reason = np.where(has, "", np.where(failed, "decode: the file could not be decoded; re-encode it",
                                        "no_person: no person detected in any frame"))
    vid_index = {v: i for i, v in enumerate(ids)}
    cv = np.array([vid_index[v] for v in clips.column("video_id").to_pylist()], dtype=np.int64)
    dur = np.asarray(clips.column("duration_s").to_numpy(zero_copy_only=False))
    ok = np.array(clips.column("status").to_pylist()) == "ok" if clips.num_rows else np.zeros(0, bool)
    clips_duration_s = np.bincount(cv, weights=np.where(ok, dur, 0.0), minlength=n)
    num_ok = np.bincount(cv, weights=ok, minlength=n).astype(np.int32)
    duration_s = np.bincount(cv, weights=dur, minlength=n) + rng.uniform(1.0, 30.0, n)
    wide = rng.random(n) < 0.5
    width = np.where(wide, 1920, 1280).astype(np.int32)
    height = np.where(wide, 1080, 720).astype(np.int32)
    num_frames = np.round(duration_s * fps).astype(np.int64)
    now_ms = int(datetime(2025, 1, 1, tzinfo=timezone.utc).timestamp() * 1000)
    probed = ~failed
    cols = {
        "video_id": ids,
        "uri": [f"/data/videos/{v}.mp4" for v in ids],
        "source_kind": ["local"] * n,
        "status": status.tolist(),
        "reason": reason.tolist(),
        "attempts": np.ones(n, np.int32),
        "config_hash": [plan.config_hash] * n,
        "backend": ["mediapipe"] * n,
        "backend_version": ["0.10.21"] * n,
        "code_version": [plan.code_version] * n,
        "tags": [["synthetic"] if i % 2 else [] for i in range(n)],
        "license": ["cc-by" if i % 3 else None for i in range(n)],
        "range_start_s": [None] * n,
        "range_end_s": [None] * n,
        "duration_s": _masked(duration_s, probed),
        "fps": _masked(fps, probed),
        "is_vfr": _masked(rng.random(n) < 0.1, probed),
        "width_px": _masked(width, probed),
        "height_px": _masked(height, probed),
        "rotation_deg": _masked(np.zeros(n, np.int32), probed),
        "codec": _masked(np.full(n, "h264"), probed),
        "num_frames": _masked(num_frames, probed),
        "size_bytes": rng.integers(1_000_000, 500_000_000, n).astype(np.int64),
        "has_audio": _masked(rng.random(n) < 0.8, probed),
        "focal_px": _masked(np.hypot(width, height).astype(float), probed),
        "frames_processed": _masked(num_frames, probed),
        "num_tracks": n_tracks.astype(np.int32),
        "num_clips": n_clips.astype(np.int32),
        "num_clips_ok": num_ok,
        "clips_duration_s": clips_duration_s,
        "download_time_s": np.zeros(n),
        "pose_time_s": _masked(duration_s * rng.uniform(0.5, 2.0, n), probed),
        "retarget_time_s": clips_duration_s * 0.2,
        "process_time_s": duration_s * rng.uniform(0.6, 2.5, n),
        "finished_at": pa.array(now_ms + rng.integers(0, 86_400_000, n), type=pa.int64()).cast(
            pa.timestamp("ms", tz="UTC")),
    }
    return pa.Table.from_arrays([cols[f.name] if isinstance(cols[f.name], pa.Array) else _array(cols[f.name], f.type)
                                 for f in S.VIDEOS], schema=S.VIDEOS)


def _masked(values: np.ndarray, keep: np.ndarray) -> list:
    """``values`` as a list with None where ``keep`` is False (a failed video was never probed)."""
    return [v if k else None for v, k in zip(values.tolist(), keep)]


if __name__ == "__main__":  # python bench/synthetic_catalog.py DIR NUM_CLIPS
    import sys

    cat = make_catalog(sys.argv[1], int(sys.argv[2]), workers=int(os.environ.get("WORKERS", "1")))
    print(cat)
