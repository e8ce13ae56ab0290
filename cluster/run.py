"""The driver of ``g1forge run``: plan, skip what is done, fan videos out to Ray workers, keep counts.

Resume is by ``video_id`` + configuration hash: a video whose folder holds ``_done.<config_hash>`` is finished.
Workers publish each video atomically with its marker written last (:mod:`catalog.writer`), so the driver can be
killed at any moment: the next run skips what was published and redoes the rest, giving the same catalog.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import uuid
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa

from catalog import db
from catalog.layout import FORMAT_VERSION, RunLayout
from catalog.writer import clean_staging, write_parquet_atomic, write_schema_fragments
from cluster.config import RunConfig
from ingest.errors import ConfigError, MissingDependencyError, NoGPU, WorkerLost
from ingest.items import VideoItem
from pipeline.process import code_version, failed_outcome

log = logging.getLogger("g1forge")


@dataclass
class ExecOptions:
    """How a run executes; none of this changes results, so none of it is in the configuration hash.

    workers: worker processes (default: the CPUs Ray sees divided by the backend's ``cpus_per_worker``).
    force: redo videos that are already done.
    max_attempts: tries per video when its worker dies (data errors are never retried).
    in_flight_per_worker: videos queued on each worker so it never idles between videos.
    """

    workers: int | None = None
    force: bool = False
    fail_on_error: bool = False
    progress: bool = True
    ray_address: str | None = None
    max_attempts: int = 3
    in_flight_per_worker: int = 2


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
    workers: list = field(default_factory=list)

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
        lines.append(f"  catalog: g1forge query {self.out_dir} \"SELECT status, count(*) FROM videos GROUP BY 1\"")
        return "\n".join(lines)


def prepare_run_folder(layout: RunLayout, config: RunConfig) -> None:
    """Create the run folder, its info file, schema fragments and DuckDB views; clear staging debris."""
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
    tmp = layout.info_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(info, indent=2, default=str))
    os.replace(tmp, layout.info_path)
    clean_staging(layout)
    from pipeline.process import RETARGET_COLUMNS
    from pipeline.quality import METRIC_NAMES
    from pipeline.robot_metrics import ROBOT_METRIC_NAMES

    write_schema_fragments(layout, [*METRIC_NAMES, *ROBOT_METRIC_NAMES, *RETARGET_COLUMNS])
    db.write_views(layout)


def collect(inputs: list[str], list_files: list[str], backend_name: str):
    """Collect the run's items with the extensions the backend reads."""
    from ingest.sources import VIDEO_EXTENSIONS, collect_items
    from pipeline.backends.base import backend_class

    exts = getattr(backend_class(backend_name), "input_extensions", None) or VIDEO_EXTENSIONS
    return collect_items(list(inputs), list(list_files), extensions=tuple(exts))


def write_plan(layout: RunLayout, items: list[VideoItem]) -> None:
    table = pa.table({"video_id": [i.video_id for i in items], "uri": [i.uri for i in items]})
    write_parquet_atomic(table, layout.plan_path)


def run(inputs: list[str], list_files: list[str], out_dir: str | Path, config: RunConfig,
        opts: ExecOptions | None = None, items: list[VideoItem] | None = None) -> RunReport:
    """Process every input into ``out_dir``; returns the report (see :class:`RunReport`)."""
    opts = opts or ExecOptions()
    t0 = time.perf_counter()
    layout = RunLayout.at(out_dir)
    chash = config.config_hash()
    report = RunReport(run_id=datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6],
                       out_dir=str(layout.root), config_hash=chash)
    prepare_run_folder(layout, config)
    if items is None:
        collected = collect(inputs, list_files, config.backend)
        items, report.duplicates = collected.items, collected.num_duplicates
    report.inputs = len(items) + report.duplicates
    write_plan(layout, items)
    todo = [it for it in items if opts.force or not layout.done_marker(it.video_id, chash).exists()]
    report.already_done = len(items) - len(todo)
    if opts.progress:
        print(f"g1forge: {len(items)} videos ({report.already_done} already done, {len(todo)} to do) -> {layout.root}",
              file=sys.stderr, flush=True)
    if todo:
        try:
            _execute(todo, layout, config, opts, report)
        except KeyboardInterrupt:
            report.interrupted = True
    report.elapsed_s = time.perf_counter() - t0
    _write_stats(layout, report)
    return report


def _execute(todo: list[VideoItem], layout: RunLayout, config: RunConfig, opts: ExecOptions,
             report: RunReport) -> None:
    ray = _import_ray()
    from ray.exceptions import RayActorError, WorkerCrashedError

    from cluster.progress import Progress
    from cluster.worker import VideoWorker, publish_outcome

    from pipeline.backends.base import backend_class

    backend_cls = backend_class(config.backend)
    cpus_per_worker = backend_cls.cpus_per_worker
    gpus_per_worker = float(backend_cls.gpus_per_worker or 0)
    started_here = _init_ray(ray, opts, cpus_per_worker)
    actors = []
    try:
        chash = config.config_hash()
        if gpus_per_worker:
            total_gpus = float(ray.cluster_resources().get("GPU", 0))
            if total_gpus < gpus_per_worker:
                _fail_all(todo, layout, config, report, NoGPU(
                    f"the {config.backend} backend needs {gpus_per_worker:g} GPU per worker and this Ray cluster "
                    f"has {total_gpus:g}; run on a CUDA machine or join one with --ray-address "
                    f"(g1forge doctor {config.backend} says what is missing)"))
                return
            n_workers = opts.workers or int(total_gpus // gpus_per_worker)
        else:
            n_workers = opts.workers or int(ray.available_resources().get("CPU", 1)) // cpus_per_worker
        n_workers = max(1, min(n_workers, len(todo)))
        # with --workers above what the CPUs allow, workers share cores rather than wait for them
        num_cpus = cpus_per_worker if opts.workers is None else 1
        Actor = ray.remote(num_cpus=num_cpus, num_gpus=gpus_per_worker, max_restarts=-1)(VideoWorker)
        actors = [Actor.remote(config.to_dict(), str(layout.root)) for _ in range(n_workers)]
        queue = deque((item, 1) for item in todo)
        pending: dict = {}
        load = [0] * n_workers
        cap = max(1, opts.in_flight_per_worker)
        with Progress(total=len(todo), enabled=opts.progress) as bar:
            while queue or pending:
                while queue and min(load) < cap:
                    w = load.index(min(load))
                    item, attempt = queue.popleft()
                    pending[actors[w].process.remote(item, attempt)] = (item, attempt, w)
                    load[w] += 1
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                for ref in ready:
                    item, attempt, w = pending.pop(ref)
                    load[w] -= 1
                    try:
                        summary = ray.get(ref)
                    except (RayActorError, WorkerCrashedError) as exc:
                        if attempt < opts.max_attempts:
                            report.retries += 1
                            queue.appendleft((item, attempt + 1))
                            continue
                        outcome = failed_outcome(item, chash, config.backend,
                                                 WorkerLost(f"the worker died {attempt} times on this video "
                                                            f"({type(exc).__name__})"), attempt)
                        publish_outcome(layout, outcome, chash)
                        summary = {"status": "failed", "reason": outcome.video_row["reason"], "frames": 0,
                                   "published": True}
                    _count(report, summary)
                    bar.update(summary)
        report.workers = ray.get([a.stats.remote() for a in actors], timeout=30)
    finally:
        for a in actors:
            try:
                ray.kill(a)
            except Exception:
                pass
        if started_here:
            ray.shutdown()


def _fail_all(todo: list[VideoItem], layout: RunLayout, config: RunConfig, report: RunReport, error) -> None:
    """Record every video of ``todo`` as failed with ``error`` (nothing could run them)."""
    from cluster.worker import publish_outcome

    chash = config.config_hash()
    for item in todo:
        outcome = failed_outcome(item, chash, config.backend, error)
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


def _init_ray(ray, opts: ExecOptions, cpus_per_worker: int = 1) -> bool:
    """Join ``--ray-address``/``RAY_ADDRESS`` if given, else start a local Ray; returns True if started here."""
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = opts.ray_address or os.environ.get("RAY_ADDRESS")
    kwargs = dict(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False,
                  configure_logging=True)
    if address:
        ray.init(address=address, **kwargs)
    else:
        ncpu = max(opts.workers or 0, os.cpu_count() or 1, cpus_per_worker)
        ray.init(num_cpus=ncpu, object_store_memory=256 * 1024**2, **kwargs)
    return True


def _write_stats(layout: RunLayout, report: RunReport) -> None:
    layout.runs_dir.mkdir(parents=True, exist_ok=True)
    d = asdict(report)
    d["frames_per_s"] = report.frames_per_s
    d["finished_at"] = datetime.now(timezone.utc).isoformat()
    tmp = layout.runs_dir / f".{report.run_id}.json.tmp"
    tmp.write_text(json.dumps(d, indent=2, default=str))
    os.replace(tmp, layout.runs_dir / f"{report.run_id}.json")


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
        left = sum(not layout.done_marker(v, chash).exists() for v in ids)
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
