"""The driver of ``g1forge run``: plan, skip what is done, fan videos out to Ray workers, keep counts.

Resume is by ``video_id`` + configuration hash: a video whose folder holds ``_done.<config_hash>`` is finished.
Workers publish each video atomically with its marker written last (:mod:`catalog.writer`), so the driver can be
killed at any moment: the next run skips what was published and redoes the rest, giving the same catalog.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa

from catalog import db
from catalog.layout import FORMAT_VERSION, RunLayout
from catalog.writer import (DiskFull, clean_staging, disk_full_as, says_disk_full, write_parquet_atomic,
                            write_schema_fragments, write_text_atomic)
from cluster.config import RunConfig
from ingest.errors import ConfigError, MissingDependencyError, NoGPU
from ingest.items import VideoItem
from pipeline.process import code_version, failed_outcome

log = logging.getLogger("g1forge")


@dataclass
class ExecOptions:
    """How a run executes; none of this changes results, so none of it is in the configuration hash.

    workers: pose workers (default: the GPUs Ray sees divided by ``gpus_per_pose_worker`` for a GPU backend,
        else the CPUs divided by the backend's ``cpus_per_worker``).
    gpus_per_pose_worker: GPUs each pose worker reserves (default: the backend's; fractional packs several
        workers on one GPU, e.g. 0.5 for two).
    finish_workers: CPU workers for clips, metrics and retargeting (default: the CPUs the pose workers leave,
        at least 1). fetch_workers: download/probe lanes.
    force: redo videos that are already done. retry_failed: redo the videos whose row is ``failed``.
    staging_dir: the local run folder of a run whose output is an object store (default: a cache folder).
    max_attempts: tries per video when its worker dies (data errors are never retried).
    per_actor: calls queued on each worker so it never idles between videos.
    """

    workers: int | None = None
    force: bool = False
    retry_failed: bool = False
    fail_on_error: bool = False
    progress: bool = True
    ray_address: str | None = None
    max_attempts: int = 3
    per_actor: int = 2
    gpus_per_pose_worker: float | None = None
    finish_workers: int | None = None
    fetch_workers: int = 4
    staging_dir: str | None = None


@dataclass
class RunReport:
    run_id: str
    out_dir: str
    config_hash: str
    inputs: int = 0
    duplicates: int = 0
    already_done: int = 0
    processed: int = 0
    unpublished: int = 0
    retries: int = 0
    counts: dict = field(default_factory=dict)
    reasons: dict = field(default_factory=dict)
    frames: int = 0
    elapsed_s: float = 0.0
    interrupted: bool = False
    plan: dict = field(default_factory=dict)
    stages: dict = field(default_factory=dict)
    workers: list = field(default_factory=list)
    #: seconds since run() began at which each milestone was reached: ``prepared`` (run folder, schema fragments
    #: and DuckDB views written), ``collected`` (inputs listed and their ids computed), ``planned`` (plan written,
    #: done videos skipped), ``ray_ready`` (Ray initialised or joined), ``stream_start`` (actors created, first
    #: submission), ``first_publish``/``last_publish`` (first and last video published by the writer),
    #: ``stream_end`` and ``ray_down`` (actors killed and, if this run started Ray, Ray shut down)
    timings: dict = field(default_factory=dict)

    def pose_utilisation(self) -> float | None:
        """Mean busy/wall share of the pose workers, as they measured it (None before any ran)."""
        pose = [w for w in self.workers if w.get("stage") == "pose" and w.get("wall_s", 0) > 0]
        return sum(w["utilisation"] for w in pose) / len(pose) if pose else None

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary(self) -> str:
        c = self.counts
        lines = [
            f"g1forge: {self.inputs} inputs ({self.duplicates} duplicates dropped), {self.already_done} already done, "
            f"{self.processed} processed in {self.elapsed_s:.1f} s ({self.frames_per_s:.1f} frames/s)",
            f"  ok {c.get('ok', 0)}, filtered {c.get('filtered', 0)}, failed {c.get('failed', 0)}"
            + (f", {self.retries} retried after a worker died" if self.retries else "")
            + (f", {self.unpublished} could not be written (will be retried)" if self.unpublished else ""),
        ]
        for reason, n in sorted(self.reasons.items(), key=lambda kv: -kv[1])[:8]:
            lines.append(f"  {n:6d} x {reason}")
        if self.stages:
            lines.append("  stages: " + ", ".join(
                f"{name} {st['done']} done" + (f" / {st['failed']} failed" if st["failed"] else "")
                + (f" / {st['retried']} retried" if st["retried"] else "") for name, st in self.stages.items()))
        util = self.pose_utilisation()
        if util is not None:
            lines.append(f"  pose workers busy {100 * util:.0f}% of their time (measured by the workers)")
        lines.append(f"  catalog: g1forge query {self.out_dir} \"SELECT status, count(*) FROM videos GROUP BY 1\"")
        return "\n".join(lines)


def prepare_run_folder(layout: RunLayout, config: RunConfig) -> None:
    """Create the run folder, its info file, schema fragments and DuckDB views; clear staging debris.

    Raises :class:`DiskFull` naming the file when the disk is full (the previous info file stays as it was)."""
    with disk_full_as(str(layout.root)):
        layout.root.mkdir(parents=True, exist_ok=True)
    info = {}
    if layout.info_path.exists():
        info = json.loads(layout.info_path.read_text())
        if int(info.get("format_version", 0)) > FORMAT_VERSION:
            raise ConfigError(f"{layout.root} was written by a newer g1forge (format {info['format_version']}); "
                              f"upgrade g1forge or use another --out folder")
    info.setdefault("created_at", datetime.now(timezone.utc).isoformat())
    info.update(format_version=FORMAT_VERSION, code_version=code_version(), config=config.to_dict(),
                config_hash=config.config_hash())
    with disk_full_as(str(layout.info_path)):
        write_text_atomic(layout.info_path, json.dumps(info, indent=2, default=str))
    clean_staging(layout)
    from pipeline.process import RETARGET_COLUMNS
    from pipeline.quality import METRIC_NAMES
    from pipeline.robot_metrics import ROBOT_METRIC_NAMES
    from pipeline.trajectory import TRAJECTORY_METRIC_NAMES

    with disk_full_as(f"the schema fragments under {layout.data_dir}"):
        write_schema_fragments(layout, [*METRIC_NAMES, *TRAJECTORY_METRIC_NAMES, *ROBOT_METRIC_NAMES,
                                        *RETARGET_COLUMNS])
    with disk_full_as(f"{layout.duckdb_path} (the catalog's views)"):
        db.write_views(layout)


def collect(inputs: list[str], list_files: list[str], backend_name: str):
    """Collect the run's items with the extensions the backend reads."""
    from ingest.sources import VIDEO_EXTENSIONS, collect_items
    from pipeline.backends.base import backend_class

    exts = getattr(backend_class(backend_name), "input_extensions", None) or VIDEO_EXTENSIONS
    return collect_items(list(inputs), list(list_files), extensions=tuple(exts))


def write_plan(layout: RunLayout, items: list[VideoItem]) -> None:
    table = pa.table({"video_id": [i.video_id for i in items], "uri": [i.uri for i in items]})
    with disk_full_as(str(layout.plan_path)):
        write_parquet_atomic(table, layout.plan_path)


def run(inputs: list[str], list_files: list[str], out_dir: str | Path, config: RunConfig,
        opts: ExecOptions | None = None, items: list[VideoItem] | None = None) -> RunReport:
    """Process every input into ``out_dir``; returns the report (see :class:`RunReport`).

    The run holds the run folder's run lock (exclusive: a second run on the folder stops at once with
    :class:`cluster.folder_lock.FolderBusy`) and its catalog lock (shared, so ``g1forge compact`` cannot start
    meanwhile, see :func:`catalog.compact.run_lock`) from start to end. The rest is :func:`_run_in_folder`.
    A full disk at any write of the run stops it with :class:`catalog.writer.DiskFull` (its ``report`` attribute
    holds what was done); finished videos are kept and the same command resumes.

    ``out_dir`` may be an object-store URI (``s3://bucket/run``): the run then works in a local staging folder
    (``opts.staging_dir`` or :func:`catalog.mirror.default_staging_dir`) mirrored there video by video, and
    resume asks the remote which videos are done (see :mod:`catalog.mirror`).
    """
    from catalog.compact import run_lock
    from catalog.mirror import Mirror, default_staging_dir, is_remote
    from cluster.folder_lock import hold_run_folder

    opts = opts or ExecOptions()
    mirror = None
    if is_remote(str(out_dir)):
        mirror = Mirror(str(out_dir))
        out_dir = opts.staging_dir or default_staging_dir(str(out_dir))
    layout = RunLayout.at(out_dir)
    with disk_full_as(f"the run folder {layout.root}"):
        layout.root.mkdir(parents=True, exist_ok=True)
        with hold_run_folder(layout), run_lock(layout):
            return _run_in_folder(inputs, list_files, layout, mirror, config, opts, items)


def _run_in_folder(inputs: list[str], list_files: list[str], layout: RunLayout, mirror, config: RunConfig,
                   opts: ExecOptions, items: list[VideoItem] | None = None) -> RunReport:
    """The body of :func:`run`, in the local run folder ``layout`` (mirrored to ``mirror`` when not None)."""
    t0 = time.perf_counter()
    chash = config.config_hash()
    report = RunReport(run_id=datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6],
                       out_dir=mirror.uri if mirror else str(layout.root), config_hash=chash)
    prepare_run_folder(layout, config)
    _mark(report, "prepared")
    if items is None:
        collected = collect(inputs, _local_lists(list_files, layout), config.backend)
        items, report.duplicates = collected.items, collected.num_duplicates
    _mark(report, "collected")
    report.inputs = len(items) + report.duplicates
    write_plan(layout, items)
    if mirror is not None:
        remote_done = mirror.done_ids(chash)
        if opts.retry_failed:
            mirror.pull_catalog(layout.root)
        is_done = remote_done.__contains__
    else:
        def is_done(video_id: str) -> bool:
            return layout.is_done(video_id, chash)  # a marker, or a failed video's one file
    failed = _failed_ids(layout, chash) if opts.retry_failed and not opts.force else set()
    todo = [it for it in items if opts.force or it.video_id in failed or not is_done(it.video_id)]
    report.already_done = len(items) - len(todo)
    _mark(report, "planned")
    if opts.progress:
        print(f"g1forge: {len(items)} videos ({report.already_done} already done, {len(todo)} to do) -> "
              f"{report.out_dir}", file=sys.stderr, flush=True)
    stopped: DiskFull | None = None
    if todo:
        try:
            _execute(todo, layout, config, opts, report, mirror.uri if mirror else None)
        except KeyboardInterrupt:
            report.interrupted = True
        except DiskFull as exc:
            report.interrupted, stopped = True, exc
    report.elapsed_s = time.perf_counter() - t0
    report.timings = {k: round(v - t0, 6) for k, v in report.timings.items()}
    try:
        stats_path = _write_stats(layout, report)
        if mirror is not None:
            mirror.push_run_files(layout, stats_path)
    except DiskFull as exc:
        stopped = stopped or exc
    if stopped is not None:
        stopped.report = report
        raise stopped
    return report


def _mark(report: RunReport, milestone: str) -> None:
    """Record when ``milestone`` was reached (``perf_counter``; :func:`run` makes it relative to its start)."""
    report.timings[milestone] = time.perf_counter()


def _local_lists(list_files: list[str], layout: RunLayout) -> list[str]:
    """List files as local paths: a list on an object store is copied into the run's ``state/lists/`` first."""
    from catalog import storage
    from catalog.mirror import is_remote

    out = []
    for lf in list_files:
        if is_remote(lf):
            fs, path = storage.open_output(lf)
            name = hashlib.sha256(lf.encode("utf-8")).hexdigest()[:12] + "-" + Path(path).name
            local = layout.state_dir / "lists" / name
            storage.get_file(fs, path, local)
            out.append(str(local))
        else:
            out.append(lf)
    return out


@dataclass(frozen=True)
class StagePlan:
    """How many actors each stage gets and what each reserves from Ray (logical CPUs and GPUs)."""

    fetch_workers: int
    pose_workers: int
    pose_cpus: float
    pose_gpus: float
    finish_workers: int
    finish_cpus: float

    def describe(self) -> str:
        gpu = f", {self.pose_gpus:g} GPU each" if self.pose_gpus else ""
        return (f"{self.fetch_workers} fetch, {self.pose_workers} pose ({self.pose_cpus:g} CPU{gpu}), "
                f"{self.finish_workers} finish ({self.finish_cpus:g} CPU), 1 writer")


def plan_stages(backend_cls, opts: ExecOptions, total_cpus: float, total_gpus: float, num_videos: int,
                any_remote: bool = True) -> StagePlan:
    """Size the stages for a cluster with ``total_cpus``/``total_gpus`` (Ray's logical resources).

    GPU backend: one pose worker per ``gpus_per_pose_worker`` GPUs, 1 CPU each; the other CPUs finish.
    CPU backend: pose workers take ``cpus_per_worker`` CPUs each; finishing (a small share of the work) shares
    their cores. Light backends (reading result files): one pose worker, the CPUs finish.
    Raises :class:`NoGPU` when a GPU backend meets a cluster without enough GPUs.
    """
    gpus = float(opts.gpus_per_pose_worker if opts.gpus_per_pose_worker is not None
                 else backend_cls.gpus_per_worker or 0)
    cpus = max(1.0, float(total_cpus))
    n = max(1, num_videos)
    if gpus > 0:
        if total_gpus + 1e-9 < gpus:
            raise NoGPU(f"the {backend_cls.name} backend needs {gpus:g} GPU per pose worker and this Ray cluster "
                        f"has {total_gpus:g}; run on a CUDA machine or join one with --ray-address "
                        f"(g1forge doctor {backend_cls.name} says what is missing)")
        n_pose = opts.workers or int(total_gpus / gpus + 1e-9)
        n_pose = min(n_pose, n)
        pose_cpus = min(1.0, cpus / (n_pose + 1))
    elif backend_cls.light_pose:
        n_pose, pose_cpus = min(opts.workers or 1, n), 0.0
    else:
        cpw = max(1, int(backend_cls.cpus_per_worker))
        n_pose = min(opts.workers or max(1, int(cpus) // cpw), n)
        pose_cpus = min(float(cpw), cpus / n_pose)
    free = cpus - n_pose * pose_cpus
    if gpus > 0 or backend_cls.light_pose:
        n_finish = min(opts.finish_workers or max(1, int(free + 1e-9)), n)
        finish_cpus = min(1.0, free / n_finish) if free > 1e-9 else 0.0
    else:
        n_finish = min(opts.finish_workers or max(1, int(cpus) // 4), n)
        finish_cpus = 0.0
    n_fetch = min(max(1, opts.fetch_workers) if any_remote else 1, n)
    return StagePlan(n_fetch, n_pose, _floor4(pose_cpus), gpus, n_finish, _floor4(finish_cpus))


def _floor4(x: float) -> float:
    """``x`` rounded down to 1e-4 (Ray's resource granularity), so that the shares always fit the total."""
    import math

    return math.floor(x * 1e4 + 1e-6) / 1e4


def _execute(todo: list[VideoItem], layout: RunLayout, config: RunConfig, opts: ExecOptions,
             report: RunReport, mirror_uri: str | None = None) -> None:
    ray = _import_ray()
    from cluster.pipeline import PipelineOptions, stream
    from cluster.progress import Progress
    from cluster.stages import CatalogWriter, FetchWorker, FinishWorker, PoseWorker
    from pipeline.backends.base import backend_class

    backend_cls = backend_class(config.backend)
    started = _init_ray(ray, opts, backend_cls.cpus_per_worker)
    _mark(report, "ray_ready")
    actors: list = []
    try:
        res = ray.cluster_resources()
        try:
            plan = plan_stages(backend_cls, opts, res.get("CPU", 1), res.get("GPU", 0), len(todo),
                               any_remote=any(it.kind != "file" for it in todo))
        except NoGPU as exc:
            _fail_all(todo, layout, config, report, exc)
            return
        report.plan = asdict(plan)
        cfg = config.to_dict()
        root = str(layout.root)
        restart = dict(max_restarts=-1)
        Fetch = ray.remote(num_cpus=0, **restart)(FetchWorker)
        Pose = ray.remote(num_cpus=plan.pose_cpus, num_gpus=plan.pose_gpus, **restart)(PoseWorker)
        Finish = ray.remote(num_cpus=plan.finish_cpus, **restart)(FinishWorker)
        Writer = ray.remote(num_cpus=0, **restart)(CatalogWriter)
        chash = report.config_hash  # decided once, on the driver: a worker's node may hash differently
        fetchers = [Fetch.remote(cfg, root, backend_cls.needs_video, chash) for _ in range(plan.fetch_workers)]
        posers = [Pose.remote(cfg, root) for _ in range(plan.pose_workers)]
        finishers = [Finish.remote(cfg) for _ in range(plan.finish_workers)]
        writer = Writer.options(scheduling_strategy=_this_node(ray)).remote(root, chash, mirror_uri)
        actors = [*fetchers, *posers, *finishers, writer]
        popts = PipelineOptions(per_actor=opts.per_actor, max_attempts=opts.max_attempts)
        with Progress(total=len(todo), enabled=opts.progress) as bar:
            if opts.progress:
                print(f"g1forge: stages: {plan.describe()}", file=sys.stderr, flush=True)

            def on_done(summary: dict) -> None:
                _count(report, summary)
                bar.update(summary)
                if "first_publish" not in report.timings:
                    _mark(report, "first_publish")
                _mark(report, "last_publish")
                _stop_if_disk_full(summary)

            _mark(report, "stream_start")
            try:
                result = stream(ray, todo, fetchers, posers, finishers, writer, backend=config.backend,
                                opts=popts, on_done=on_done, on_tick=bar.show_stages)
                report.retries = result.retries
                report.stages = result.stages
                _mark(report, "stream_end")
            finally:
                report.workers = _worker_stats(ray, actors)
    finally:
        for a in actors:
            try:
                ray.kill(a)
            except Exception:
                pass
        if started is not None:
            started.stop(ray)
        _mark(report, "ray_down")


def _stop_if_disk_full(summary: dict) -> None:
    """Stop the run when a video could not be written at all, not even as a failed row, because the disk is
    full: every later video would fail the same way. That video is not done, so the next run does it."""
    if not summary.get("published", True) and says_disk_full(summary.get("reason") or ""):
        raise DiskFull(f"the outputs of {summary.get('video_id', 'a video')}")


def _worker_stats(ray, actors: list) -> list[dict]:
    """Each live worker's own measurements (busy/wall time, GPU ids, model loads); dead ones are skipped."""
    out = []
    for a in actors:
        try:
            out.append(ray.get(a.stats.remote(), timeout=10))
        except Exception:
            continue
    return out


def _this_node(ray):
    """Scheduling that keeps the catalog writer on the driver's node (where the run folder is), if possible."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=True)


def _failed_ids(layout: RunLayout, config_hash: str) -> set[str]:
    """Video ids whose row under ``config_hash`` is ``failed`` (what ``--retry-failed`` redoes): failed rows
    carrying that hash, and failed rows of videos done under it (runs before the hash was decided once on the
    driver could write a worker node's hash into a row next to the driver's marker)."""
    con = db.connect(layout.root)
    try:
        rows = con.execute("SELECT video_id, config_hash FROM videos WHERE status = 'failed'").fetchall()
    finally:
        con.close()
    return {vid for vid, chash in rows if chash == config_hash or layout.is_done(vid, config_hash)}


def _fail_all(todo: list[VideoItem], layout: RunLayout, config: RunConfig, report: RunReport, error) -> None:
    """Record every video of ``todo`` as failed with ``error`` (nothing could run them)."""
    from cluster.stages import publish_outcome

    chash = config.config_hash()
    for item in todo:
        outcome = failed_outcome(item, chash, config.backend, error)
        with disk_full_as(f"the failed row of {item.video_id}"):
            publish_outcome(layout, outcome, chash)
        _count(report, {"status": outcome.status, "reason": outcome.video_row["reason"], "frames": 0})


def _count(report: RunReport, summary: dict) -> None:
    report.processed += 1
    report.counts[summary["status"]] = report.counts.get(summary["status"], 0) + 1
    report.frames += int(summary.get("frames", 0))
    if not summary.get("published", True):
        report.unpublished += 1
    if summary["status"] != "ok":
        code = (summary.get("reason") or "").split(":")[0] or "unknown"
        report.reasons[code] = report.reasons.get(code, 0) + 1


def _import_ray():
    try:
        import ray
    except ImportError:
        raise MissingDependencyError("Ray is not installed: pip install 'ray[data]'") from None
    return ray


def _init_ray(ray, opts: ExecOptions, cpus_per_worker: int = 1):
    """Join ``--ray-address``/``RAY_ADDRESS`` if given, else start a local Ray (with retries, owned by this run:
    see :mod:`cluster.local_ray`). Returns the :class:`cluster.local_ray.StartedRay` to stop at the end, or
    None when Ray was already initialised in this process. Raises ``RayStartFailed`` when Ray cannot start."""
    from cluster.local_ray import join, start_local

    if ray.is_initialized():
        return None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = opts.ray_address or os.environ.get("RAY_ADDRESS")
    kwargs = dict(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False,
                  configure_logging=True)
    if address:
        return join(ray, address, kwargs)
    ncpu = max(opts.workers or 0, os.cpu_count() or 1, cpus_per_worker)
    return start_local(ray, dict(num_cpus=ncpu, object_store_memory=256 * 1024**2, **kwargs))


def _write_stats(layout: RunLayout, report: RunReport) -> Path:
    """Write the run's stats to ``state/runs/<run_id>.json``; :class:`DiskFull` (and no file) when the disk is
    full."""
    d = asdict(report)
    d["frames_per_s"] = report.frames_per_s
    d["finished_at"] = datetime.now(timezone.utc).isoformat()
    final = layout.runs_dir / f"{report.run_id}.json"
    with disk_full_as(str(final)):
        layout.runs_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(final, json.dumps(d, indent=2, default=str))
    return final


def status_counts(run_dir: str | Path) -> dict:
    """Counts by status and reason code, what is left of the latest plan, and the latest run's throughput."""
    layout = RunLayout.at(run_dir)
    con = db.connect(layout.root)
    try:
        by_status = dict(con.execute("SELECT status, count(*) FROM videos GROUP BY 1 ORDER BY 1").fetchall())
        by_reason = con.execute(
            "SELECT status, split_part(reason, ':', 1) AS code, count(*) AS n FROM videos WHERE status <> 'ok' "
            "GROUP BY 1, 2 ORDER BY n DESC").fetchall()
        clips = dict(con.execute("SELECT status, count(*) FROM clips GROUP BY 1").fetchall())
        hours = con.execute("SELECT coalesce(sum(duration_s), 0) / 3600 FROM clips WHERE status = 'ok'").fetchone()[0]
    finally:
        con.close()
    info = json.loads(layout.info_path.read_text())
    chash = info.get("config_hash", "")
    left = None
    if layout.plan_path.exists():
        import pyarrow.parquet as pq

        ids = pq.read_table(layout.plan_path, columns=["video_id"]).column(0).to_pylist()
        left = sum(not layout.is_done(v, chash) for v in ids)  # a marker, or a failed video's one file
        planned = len(ids)
    else:
        planned = 0
    runs = sorted(layout.runs_dir.glob("*.json")) if layout.runs_dir.exists() else []
    last = json.loads(runs[-1].read_text()) if runs else None
    return {"videos": by_status, "reasons": by_reason, "clips": clips, "clip_hours": float(hours),
            "planned": planned, "left": left, "last_run": last}


def format_status(st: dict) -> str:
    v = st["videos"]
    total = sum(v.values())
    lines = [f"videos: {total} in catalog  (ok {v.get('ok', 0)}, filtered {v.get('filtered', 0)}, "
             f"failed {v.get('failed', 0)})"]
    if st["planned"]:
        lines.append(f"latest plan: {st['planned']} videos, {st['left']} left to do")
    c = st["clips"]
    lines.append(f"clips: ok {c.get('ok', 0)}, filtered {c.get('filtered', 0)}  ({st['clip_hours'] * 60:.1f} min of ok clips)")
    if st["reasons"]:
        lines.append("not ok, by reason:")
        lines += [f"  {n:6d}  {status:8s} {code}" for status, code, n in st["reasons"]]
    last = st["last_run"]
    if last:
        lines.append(f"last run {last['run_id']}: {last['processed']} processed in {last['elapsed_s']:.1f} s, "
                     f"{last['frames_per_s']:.1f} frames/s" + (" (interrupted)" if last.get("interrupted") else ""))
    return "\n".join(lines)
