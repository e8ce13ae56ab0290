"""Cluster-scale benchmarks of ``g1forge run`` on Ray (issue 5): orchestration overhead, no-op resume, driver
memory and pose-worker (GPU) idle share.

Every input is a synthetic PHALP results pickle read by the fast ``phalp-pkl`` backend (``tests/phalp_factory``):
one person over 20 frames (0.7 s), too short for a clip, so a video is ``filtered`` with no clip after reading
the pickle, cutting (nothing) into clips and writing its catalog row: almost all of a run is orchestration and
catalog writes. Files are made distinct (distinct ids) by a trailing counter after the pickle, which
``pickle.load`` ignores.

Sub-benchmarks (``--only NAME[,NAME]``; default all):

``overhead``
    ``--videos N`` (1000) videos through :func:`cluster.run.run` in this process (a local Ray it starts and
    stops). The run's milestones (``RunReport.timings``) give its planning, Ray start-up, actor start-up plus
    the first video (first submission to first publish) and shut-down times. Steady wall per video: the span
    between the 10% and 90% quantiles of the videos' ``finished_at`` over the videos between them (start-up,
    pipeline fill and drain fall outside). Work baseline: the same videos through the same stage classes
    (``FetchWorker.fetch`` -> ``PoseWorker.pose`` -> ``FinishWorker.finish`` -> ``CatalogWriter.publish``) one
    after another in this process, no Ray, into another run folder, after one warm-up video (lazy loads).
    ``overhead = steady wall per video - baseline wall per video`` (target <= 20 ms/video); it is negative
    when running the stages side by side on several cores gains more than orchestration costs. Also shown:
    steady wall per video minus the pace of the slowest stage as its Ray workers measured it (busy time per
    call over its actors: what the stream loses beyond its bottleneck), and the driver's own CPU per video
    (all of ``run()``, Ray start-up included).

``noop-resume``
    ``--resume-videos N`` (10,000) finished videos, then ``g1forge run`` (the CLI in a subprocess, as users run
    it) over the same list: it must process nothing. Reported: its wall time from start to exit (median of
    ``--repeats`` runs; target <= 10 s) and the part inside ``run()``. The finished run folder is made once by a
    real run (``run()`` over the list) and cached in the work folder; ``g1forge status`` must report N videos
    and 0 left. Also shown: the id of one local file over 3 MiB (what a resume recomputes for every listed
    local video: the list's pickles are small, real videos are not).

``driver-memory``
    ``--memory-items N[,N]`` (100,000 and 10,000) list entries naming distinct missing ``.pkl`` files (cheap:
    each fails at once with ``input_not_found`` and still gets its catalog row). ``g1forge run`` runs in a child
    process that reports its own peak RSS (``VmHWM``: the driver only, not Ray's processes; see ``_DRIVER``);
    the benchmark samples its RSS and counts the published video folders every 2 s. By default every item is
    processed (100,000 rows take about 10 minutes here); ``--memory-seconds T`` stops the driver with SIGINT (a
    graceful stop) T seconds after its first video is published, and then the RSS growth per published video
    over the second half of that window is shown too (a linear bound for the rest: a full run levels off).
    Target: peak <= 1 GiB at 100,000 items.

``gpu-idle``
    ``--gpu-videos N`` (1000) videos through ``run()`` with a stand-in slow pose stage (``bench-slow-pose``:
    sleeps ``--sleep-s`` (0.2) then reads the pickle; ``bench/slow_pose_backend.py``, found through
    ``$G1FORGE_BACKEND_MODULES``) on ``--gpus`` (2) logical Ray GPUs, one pose worker per GPU. Reported: the
    pose workers' idle share ``1 - RunReport.pose_utilisation()`` (busy / wall as each worker measured it,
    from its first call to the end of the run; target < 5%), and from the stand-in's trace where each worker
    waited (its longest wait, between videos, after its last one). A one-off wait while the finish worker
    starts weighs on short runs: it is a fixed cost, hence the default size.

``--quick`` shrinks every size (overhead 200, noop-resume 1000, driver-memory 20,000/2,000 stopped 20 s after
their first publish, gpu-idle 100). Results are printed as a table (figure, target, pass/fail) and merged into
``bench/results/cluster.json`` (one entry per sub-benchmark). Inputs and the finished no-op folder are cached
in ``--work-dir`` (default: ``$TMPDIR/g1forge-bench-cluster``; ``--fresh`` rebuilds them).

Usage: ``python bench/bench_cluster.py [--only overhead,noop-resume,driver-memory,gpu-idle] [--quick]``
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "bench"
for _p in (ROOT, ROOT / "tests", BENCH_DIR):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

RESULTS = BENCH_DIR / "results" / "cluster.json"
BENCHMARKS = ("overhead", "noop-resume", "driver-memory", "gpu-idle")
TEMPLATE_FRAMES = 20  # 0.7 s at 30 fps: read, found too short for a clip, filtered
MAXRSS_TAG = "G1FORGE_BENCH_MAXRSS_KB"

TARGETS = {
    "overhead_ms_per_video": 20.0,
    "noop_resume_s": 10.0,
    "driver_peak_rss_mb": 1024.0,
    "pose_idle_share": 0.05,
}


# --- inputs ---------------------------------------------------------------------------------------------------


def short_pickles(folder: Path, n: int) -> Path:
    """A list file naming ``n`` distinct 20-frame PHALP pickles in ``folder`` (made once, then reused and
    extended: the first ``n`` of the folder's files, so every list of a size names the same files)."""
    manifest = folder / "manifest.json"
    made = json.loads(manifest.read_text()).get("n", 0) if manifest.exists() else 0
    if made < n:
        from phalp_factory import make_phalp_pickle

        folder.mkdir(parents=True, exist_ok=True)
        template = folder / "template.pkl.tmp"
        make_phalp_pickle(template, 1, num_frames=TEMPLATE_FRAMES, seed=7)
        blob = template.read_bytes()
        template.unlink()
        for i in range(made, n):  # distinct content (and id): pickle.load stops before the counter
            (folder / f"v{i:06d}.pkl").write_bytes(blob + i.to_bytes(8, "little"))
        manifest.write_text(json.dumps({"n": n, "frames": TEMPLATE_FRAMES}))
    lst = folder / f"list-{n}.txt"
    if not lst.exists():
        lst.write_text("".join(f"{folder / f'v{i:06d}.pkl'}\n" for i in range(n)))
    return lst


def phalp_config():
    from cluster.config import RunConfig

    return RunConfig(backend="phalp-pkl")


def cli_cmd(*args: str) -> list[str]:
    """``g1forge ARGS`` as users run it (the console script's module, with this interpreter)."""
    return [sys.executable, "-m", "cluster.cli", *args]


def run_cli(*args: str, timeout: float = 3600) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``g1forge ARGS`` in its own session; returns the completed process and its wall time in seconds."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cli_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        _kill_group(proc.pid)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), time.perf_counter() - t0


def _kill_group(pid: int) -> None:
    """SIGKILL what is left of the process group led by ``pid`` (a child we started in its own session)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _worker_summary(workers: list[dict]) -> dict:
    """Per stage: actors, calls, busy seconds and each actor's utilisation, as the workers measured them."""
    out: dict = {}
    for w in workers:
        s = out.setdefault(w["stage"], {"actors": 0, "calls": 0, "busy_s": 0.0, "utilisation": []})
        s["actors"] += 1
        s["calls"] += w["calls"]
        s["busy_s"] += w["busy_s"]
        s["utilisation"].append(round(w["utilisation"], 4))
    return out


# --- overhead -------------------------------------------------------------------------------------------------


def sequential_baseline(list_file: Path, out: Path) -> dict:
    """The list's videos through the four stage classes one after another in this process (no Ray)."""
    from catalog.layout import RunLayout
    from cluster.run import collect, prepare_run_folder
    from cluster.stages import CatalogWriter, FetchWorker, FinishWorker, PoseWorker

    config = phalp_config()
    items = collect([], [str(list_file)], config.backend).items
    layout = RunLayout.at(out)
    prepare_run_folder(layout, config)
    cfg, root = config.to_dict(), str(layout.root)
    fetch, pose = FetchWorker(cfg, root, False, config.config_hash()), PoseWorker(cfg, root)
    finish, write = FinishWorker(cfg), CatalogWriter(root, config.config_hash())

    def one(item) -> dict:
        fetched = fetch.fetch(item)
        summary, payload = pose.pose(fetched)
        if summary["ok"]:
            _, payload = finish.finish(payload)
        return write.publish(payload)

    one(items[0])  # warm-up (backend and retargeting model loads), not counted
    shutil.rmtree(layout.video_dir(items[0].video_id))
    statuses: dict = {}
    t0 = time.perf_counter()
    for item in items:
        s = one(item)["status"]
        statuses[s] = statuses.get(s, 0) + 1
    wall = time.perf_counter() - t0
    return {"videos": len(items), "wall_s": wall, "ms_per_video": 1e3 * wall / len(items), "statuses": statuses,
            "stage_busy_ms_per_video": {w.stage: round(1e3 * w.busy_s / len(items), 3)
                                        for w in (fetch, pose, finish, write)}}


def steady_ms_per_video(run_dir: Path, lo: float = 0.1, hi: float = 0.9) -> tuple[float, dict]:
    """Wall time per video while the run streams: the span between the ``lo`` and ``hi`` quantiles of the
    videos' ``finished_at`` (the finish stage's clock, one per row) over the videos between them. Start-up,
    the pipeline's fill (work done upstream while the writer starts) and its drain fall outside the window."""
    from catalog.db import run_query

    ts = sorted(r["finished_at"] for r in run_query(run_dir, "SELECT finished_at FROM videos").to_pylist())
    i, j = int(lo * (len(ts) - 1)), int(hi * (len(ts) - 1))
    span_s = (ts[j] - ts[i]).total_seconds()
    return 1e3 * span_s / max(1, j - i), {"from_video": i, "to_video": j, "span_s": span_s}


def bench_overhead(args, work: Path) -> dict:
    from cluster.run import ExecOptions, run

    n = args.videos
    lst = short_pickles(work / "inputs", n)
    base = sequential_baseline(lst, _fresh_dir(work / "overhead-baseline"))
    out = _fresh_dir(work / "overhead-run")
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    report = run([], [str(lst)], out, phalp_config(), ExecOptions(progress=False))
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    t = report.timings
    if report.processed != n or report.unpublished:
        raise SystemExit(f"overhead: the run processed {report.processed} of {n} videos: {report.summary()}")
    steady_ms, window = steady_ms_per_video(out)
    driver_cpu_s = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    res = {
        "videos": n,
        "counts": report.counts,
        "plan": report.plan,
        "run_wall_s": report.elapsed_s,
        "timings_s": t,
        "planning_s": t["planned"],
        "ray_start_s": t["ray_ready"] - t["planned"],
        "actor_start_and_first_video_s": t["first_publish"] - t["stream_start"],
        "streaming_s": t["last_publish"] - t["first_publish"],
        "shutdown_s": t["ray_down"] - t["stream_end"],
        "ray_ms_per_video": steady_ms,
        "steady_window": window,
        "publish_span_ms_per_video": 1e3 * (t["last_publish"] - t["first_publish"]) / max(1, n - 1),
        "baseline": base,
        "baseline_ms_per_video": base["ms_per_video"],
        "overhead_ms_per_video": steady_ms - base["ms_per_video"],
        "driver_cpu_ms_per_video": 1e3 * driver_cpu_s / n,
        "workers": _worker_summary(report.workers),
    }
    # the pace of the slowest stage as its workers measured it (busy per call over its actors)
    pace = {st: 1e3 * w["busy_s"] / max(1, w["calls"]) / w["actors"] for st, w in res["workers"].items()}
    res["stage_pace_ms_per_video"] = {k: round(v, 3) for k, v in pace.items()}
    res["bottleneck_stage"] = max(pace, key=pace.get)
    res["beyond_bottleneck_ms_per_video"] = steady_ms - pace[res["bottleneck_stage"]]
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(work / "overhead-baseline", ignore_errors=True)
    return res


# --- no-op resume ---------------------------------------------------------------------------------------------


def finished_folder(args, work: Path) -> tuple[Path, Path, dict]:
    """A run folder where every video of the list is done (made by a real run once, then cached)."""
    from catalog.layout import RunLayout
    from cluster.run import ExecOptions, run, status_counts

    n = args.resume_videos
    lst = short_pickles(work / "inputs", n)
    out = work / f"noop-{n}"
    config = phalp_config()
    made = None
    info = RunLayout.at(out).info_path
    if info.exists() and json.loads(info.read_text()).get("config_hash") != config.config_hash():
        shutil.rmtree(out)  # made by another version of the results: every video would be redone
    st = status_counts(out) if info.exists() else None
    if st is None or st["planned"] != n or st["left"] != 0:  # not made yet, or its making was interrupted
        print(f"noop-resume: making {n} finished videos with a real run (cached in {out}) ...", file=sys.stderr,
              flush=True)
        report = run([], [str(lst)], out, config, ExecOptions(progress=False))
        made = {"processed": report.processed, "counts": report.counts, "wall_s": report.elapsed_s}
        st = status_counts(out)
    done = sum(st["videos"].values())
    if done != n or st["planned"] != n or st["left"] != 0:
        raise SystemExit(f"noop-resume: {out} holds {done} videos, plan {st['planned']}, {st['left']} left; "
                         f"expected {n} done (rerun with --fresh)")
    return lst, out, {"made_now": made, "status": {"videos": st["videos"], "planned": st["planned"],
                                                     "left": st["left"]}}


def bench_noop_resume(args, work: Path) -> dict:
    lst, out, prep = finished_folder(args, work)
    n = args.resume_videos
    proc, _ = run_cli("status", str(out))
    if proc.returncode != 0 or f"latest plan: {n} videos, 0 left to do" not in proc.stdout:
        raise SystemExit(f"noop-resume: g1forge status does not report {n} done:\n{proc.stdout}\n{proc.stderr}")
    walls, inside = [], []  # inside: run()'s own time (the rest is interpreter start-up and imports)
    for _ in range(args.repeats):
        proc, wall = run_cli("run", "--list", str(lst), "--out", str(out), "--backend", "phalp-pkl",
                             "--no-progress")
        expected = f"{n} already done, 0 processed"
        if proc.returncode != 0 or expected not in proc.stdout:
            raise SystemExit(f"noop-resume: the second run did work or failed (rc {proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
        walls.append(wall)
        stats = json.loads(max((out / "state" / "runs").glob("*.json"), key=lambda f: f.stat().st_mtime).read_text())
        tm = stats.get("timings", {})
        inside.append({"run_s": stats["elapsed_s"], "folder_and_views_s": tm.get("prepared"),
                       "collect_and_ids_s": _diff(tm, "collected", "prepared"),
                       "plan_and_done_checks_s": _diff(tm, "planned", "collected")})
    return {"videos": n, "walls_s": walls, "noop_resume_s": statistics.median(walls), "prepared": prep,
            "inside_run": inside,
            "status_line": f"latest plan: {n} videos, 0 left to do", "hash_cost": large_file_id_cost(work)}


def _diff(timings: dict, later: str, earlier: str) -> float | None:
    return timings[later] - timings[earlier] if later in timings and earlier in timings else None


def large_file_id_cost(work: Path, size_mb: int = 64, files: int = 20) -> dict:
    """What computing the id of a local file larger than 3 MiB costs (three 1 MiB samples hashed), per file:
    a resume hashes every listed file again, so this multiplies by the list length for real video files."""
    from ingest.ids import file_id

    folder = work / "large-files"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(files):
        p = folder / f"big{i}.bin"
        if not p.exists() or p.stat().st_size != size_mb << 20:
            with open(p, "wb") as fh:  # sparse, distinct samples
                fh.truncate(size_mb << 20)
                for off in (0, (size_mb << 19), (size_mb << 20) - 4096):
                    fh.seek(off)
                    fh.write(os.urandom(4096))
        paths.append(p)
    for p in paths:  # page cache warm, as for the pickles
        file_id(p)
    t0 = time.perf_counter()
    for p in paths:
        file_id(p)
    ms = 1e3 * (time.perf_counter() - t0) / files
    return {"file_mb": size_mb, "ms_per_file": ms, "s_per_10000_files": ms * 10}


# --- driver memory --------------------------------------------------------------------------------------------

#: ``g1forge`` with the driver's own peak RSS printed at exit: ``VmHWM`` (the peak of this process image) where
#: /proc has it. ``getrusage(RUSAGE_SELF).ru_maxrss`` is the fallback only: Linux carries it across fork+exec,
#: so a child started from a large parent (this benchmark, after the others) would report the parent's peak.
_DRIVER = f"""
import resource, sys
from cluster.cli import main
def peak_kb():
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    rc = main(sys.argv[1:])
finally:
    print("{MAXRSS_TAG}", peak_kb(), file=sys.stderr, flush=True)
sys.exit(rc)
"""


def missing_list(folder: Path, n: int) -> Path:
    """A list of ``n`` distinct ``.pkl`` paths that do not exist."""
    folder.mkdir(parents=True, exist_ok=True)
    lst = folder / f"missing-{n}.txt"
    if not lst.exists():
        lst.write_text("".join(f"{folder}/absent/batch{i // 1000:03d}/video_{i:07d}.pkl\n" for i in range(n)))
    return lst


def _rss_mb(pid: int) -> tuple[float, float, float] | None:
    """(VmRSS, RssAnon, RssShmem) of ``pid`` in MiB, or None when it is gone. RssShmem counts the pages of Ray's
    shared-memory object store the process has touched; RssAnon is its own heap."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    vals = {}
    for line in text.splitlines():
        if line.startswith(("VmRSS:", "RssAnon:", "RssShmem:")):
            vals[line.split(":")[0]] = int(line.split()[1]) / 1024
    return (vals.get("VmRSS", 0.0), vals.get("RssAnon", 0.0), vals.get("RssShmem", 0.0)) if vals else None


def _published(data_dir: Path) -> int:
    """Video folders published so far (``data/<shard>/<video_id>``)."""
    n = 0
    try:
        shards = [e for e in os.scandir(data_dir) if e.is_dir() and len(e.name) == 2]
    except OSError:
        return 0
    for shard in shards:
        try:
            n += sum(1 for _ in os.scandir(shard.path))
        except OSError:
            pass
    return n


def driver_memory_once(n: int, seconds: float, work: Path) -> dict:
    """``g1forge run`` over ``n`` missing files in a child process; SIGINT ``seconds`` after the first video is
    published (0: let it finish). Returns the child's own peak RSS, its RSS over time and its growth rate."""
    lst = missing_list(work / "missing", n)
    out = _fresh_dir(work / f"memory-{n}")
    plan = out / "state" / "plan.parquet"
    cmd = [sys.executable, "-c", _DRIVER, "run", "--list", str(lst), "--out", str(out), "--backend", "phalp-pkl",
           "--no-progress"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            start_new_session=True)
    captured: dict = {}
    readers = [threading.Thread(target=lambda k=k, f=f: captured.__setitem__(k, f.read()), daemon=True)
               for k, f in (("stdout", proc.stdout), ("stderr", proc.stderr))]
    for r in readers:
        r.start()
    samples = []  # (t_s, rss_mb, published or None, anon_mb, shmem_mb)
    planned_at = streaming_at = interrupted_at = None
    last_count = -10.0
    try:
        while proc.poll() is None:
            now = time.perf_counter() - t0
            rss = _rss_mb(proc.pid)
            if planned_at is None and plan.exists():
                planned_at = now
            published = None
            if planned_at is not None and now - last_count >= 2.0:
                published, last_count = _published(out / "data"), now
                if streaming_at is None and published > 0:
                    streaming_at = now
            if rss is not None:
                samples.append((round(now, 2), round(rss[0], 1), published, round(rss[1], 1), round(rss[2], 1)))
            if (seconds > 0 and streaming_at is not None and interrupted_at is None
                    and now - streaming_at >= seconds):
                interrupted_at = now
                proc.send_signal(signal.SIGINT)  # only the driver: the graceful stop of Ctrl-C
            if interrupted_at is not None and now - interrupted_at > 120:
                break
            time.sleep(0.25)
        proc.wait(timeout=60)
    finally:
        _kill_group(proc.pid)
        for r in readers:
            r.join(timeout=10)
    wall = time.perf_counter() - t0
    err = captured.get("stderr", "")
    maxrss = [line.split()[1] for line in err.splitlines() if line.startswith(MAXRSS_TAG)]
    if not maxrss:
        raise SystemExit(f"driver-memory: the driver reported no peak RSS (rc {proc.returncode}):\n{err[-3000:]}")
    peak_mb = int(maxrss[-1]) / 1024
    published_total = _published(out / "data")
    if published_total == 0:
        raise SystemExit(f"driver-memory: nothing was published:\n{err[-3000:]}")
    # growth while streaming: RSS against videos published, over the second half of the streaming samples
    counted = [(pub, rss) for t, rss, pub, *_ in samples if pub is not None and streaming_at is not None
               and t >= streaming_at and (interrupted_at is None or t < interrupted_at)]
    counted = counted[len(counted) // 2:]
    slope_kb = None
    if len(counted) >= 3 and counted[-1][0] - counted[0][0] >= 100:
        xs, ys = [c[0] for c in counted], [c[1] for c in counted]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        slope_kb = 1024 * sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    remaining = n - published_total
    res = {
        "items": n,
        "rc": proc.returncode,
        "interrupted": interrupted_at is not None,
        "planned_after_s": planned_at,
        "streaming_after_s": streaming_at,
        "ran_s": wall,
        "published": published_total,
        "peak_rss_mb": peak_mb,
        "max_sampled_rss_mb": max((x[1] for x in samples), default=None),
        "max_sampled_shmem_mb": max((x[4] for x in samples), default=None),
        "rss_at_first_publish_mb": next((x[1] for x in samples if streaming_at is not None
                                         and x[0] >= streaming_at), None),
        "rss_growth_kb_per_published_video": slope_kb,
        "extrapolated_full_run_peak_mb": (peak_mb + max(0.0, slope_kb) * remaining / 1024
                                          if slope_kb is not None and remaining > 0 else None),
        "rss_samples": samples[:: max(1, len(samples) // 80)],
    }
    shutil.rmtree(out, ignore_errors=True)
    return res


def bench_driver_memory(args, work: Path) -> dict:
    sizes = [int(x) for x in args.memory_items.split(",")]
    runs = [driver_memory_once(n, args.memory_seconds, work) for n in sizes]
    big = max(runs, key=lambda r: r["items"])
    return {"runs": runs, "items": big["items"], "driver_peak_rss_mb": big["peak_rss_mb"],
            "by_items": {r["items"]: round(r["peak_rss_mb"], 1) for r in runs}}


# --- GPU idle -------------------------------------------------------------------------------------------------


def bench_gpu_idle(args, work: Path) -> dict:
    import ray

    from cluster.config import RunConfig
    from cluster.run import ExecOptions, run
    from pipeline.backends.base import BACKEND_MODULES_ENV

    lst = short_pickles(work / "inputs", args.gpu_videos)
    from slow_pose_backend import TRACE_ENV

    saved = {k: os.environ.get(k) for k in (BACKEND_MODULES_ENV, "PYTHONPATH")}
    # set before ray.init: the local cluster's workers inherit this environment, not this process's sys.path
    os.environ[BACKEND_MODULES_ENV] = "slow_pose_backend"
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH_DIR), saved["PYTHONPATH"]]))
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    out = _fresh_dir(work / "gpu-idle")
    trace = _fresh_dir(work / "gpu-idle-trace")
    trace.mkdir()
    os.environ[TRACE_ENV] = str(trace)
    config = RunConfig(backend="bench-slow-pose", backend_options={"sleep_s": args.sleep_s})
    if ray.is_initialized():
        ray.shutdown()
    cpus = args.ray_cpus or os.cpu_count() or 1
    ray.init(num_cpus=cpus, num_gpus=args.gpus, include_dashboard=False, log_to_driver=False,
             object_store_memory=256 * 2**20, logging_level=logging.ERROR)
    try:
        import catalog.mirror  # noqa: F401  (imported by run() before it starts its clock)

        t_run = time.perf_counter()
        report = run([], [str(lst)], out, config, ExecOptions(progress=False, gpus_per_pose_worker=1))
    finally:
        ray.shutdown()
        os.environ.pop(TRACE_ENV, None)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if report.processed != args.gpu_videos or report.counts.get("failed"):
        raise SystemExit(f"gpu-idle: unexpected outcome: {report.summary()}")
    pose = [w for w in report.workers if w["stage"] == "pose"]
    util = report.pose_utilisation()
    t = report.timings
    res = {
        "videos": args.gpu_videos,
        "gpus": args.gpus,
        "ray_cpus": cpus,
        "sleep_s": args.sleep_s,
        "counts": report.counts,
        "plan": report.plan,
        "pose_workers": [{k: w[k] for k in ("gpu_ids", "calls", "busy_s", "wall_s", "utilisation")} for w in pose],
        "pose_utilisation": util,
        "pose_idle_share": 1.0 - util,
        "streaming_s": t["last_publish"] - t["stream_start"],
        "ideal_pose_wall_s": args.gpu_videos * args.sleep_s / max(1, len(pose)),
        "workers": _worker_summary(report.workers),
        "pose_gaps": pose_gaps(trace, t_run + t["stream_start"], t_run + t["stream_end"]),
    }
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(trace, ignore_errors=True)
    return res


def pose_gaps(trace: Path, stream_start: float, stream_end: float) -> list[dict]:
    """Where each pose worker waited, from the stand-in's trace: before its first video (after the first
    submission), between videos (time outside ``process``: Ray dispatch, the driver's pace, and the worker's
    own code around the backend) and after its last video until the stream ended."""
    out = []
    for f in sorted(trace.glob("pose-*.txt")):
        calls = sorted(tuple(map(float, line.split()[:2])) for line in f.read_text().splitlines())
        gaps = [b[0] - a[1] for a, b in zip(calls, calls[1:])]
        out.append({"calls": len(calls), "head_s": round(calls[0][0] - stream_start, 3),
                    "between_s": round(sum(gaps), 3), "max_gap_s": round(max(gaps, default=0.0), 3),
                    "max_gap_after_call": 1 + max(range(len(gaps)), key=gaps.__getitem__) if gaps else None,
                    "gaps_over_50ms": sum(g > 0.05 for g in gaps),
                    "tail_s": round(stream_end - calls[-1][1], 3),
                    "in_process_s": round(sum(b - a for a, b in calls), 3)})
    return out


# --- driver -----------------------------------------------------------------------------------------------------


def _fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def rows_of(name: str, r: dict) -> list[tuple[str, str, str, str]]:
    """(figure, value, target, pass) rows of one sub-benchmark's result."""
    if name == "overhead":
        ok = r["overhead_ms_per_video"] <= TARGETS["overhead_ms_per_video"]
        return [
            (f"overhead: {r['videos']} videos, Ray steady wall", f"{r['ray_ms_per_video']:.1f} ms/video", "", ""),
            ("overhead: sequential work baseline", f"{r['baseline_ms_per_video']:.1f} ms/video", "", ""),
            ("overhead: per video (steady - baseline)", f"{r['overhead_ms_per_video']:.1f} ms",
             f"<= {TARGETS['overhead_ms_per_video']:g} ms", "PASS" if ok else "FAIL"),
            (f"overhead: steady - slowest stage's pace ({r['bottleneck_stage']})",
             f"{r['beyond_bottleneck_ms_per_video']:.1f} ms/video", "", ""),
            ("overhead: driver CPU (whole run)", f"{r['driver_cpu_ms_per_video']:.1f} ms/video", "", ""),
            ("overhead: Ray start / actors+1st video / shut-down",
             f"{r['ray_start_s']:.1f} / {r['actor_start_and_first_video_s']:.1f} / {r['shutdown_s']:.1f} s", "", ""),
            ("overhead: whole run", f"{r['run_wall_s']:.1f} s", "", ""),
        ]
    if name == "noop-resume":
        ok = r["noop_resume_s"] <= TARGETS["noop_resume_s"]
        return [
            (f"noop-resume: {r['videos']} finished videos (median of {len(r['walls_s'])})",
             f"{r['noop_resume_s']:.2f} s", f"<= {TARGETS['noop_resume_s']:g} s", "PASS" if ok else "FAIL"),
            ("noop-resume: inside run(): all / folder+views / list+ids / plan+done checks (median)",
             " / ".join(_median_s(r["inside_run"], k)
                        for k in ("run_s", "folder_and_views_s", "collect_and_ids_s", "plan_and_done_checks_s")),
             "", ""),
            (f"noop-resume: id of a {r['hash_cost']['file_mb']} MiB file",
             f"{r['hash_cost']['ms_per_file']:.1f} ms ({r['hash_cost']['s_per_10000_files']:.0f} s per 10k)", "", ""),
        ]
    if name == "driver-memory":
        rows = []
        for run_ in r["runs"]:
            ok = run_["peak_rss_mb"] <= TARGETS["driver_peak_rss_mb"]
            how = (f"{run_['published']} published in {run_['ran_s']:.0f} s"
                   + (", SIGINT" if run_["interrupted"] else ", complete"))
            rows.append((f"driver-memory: peak RSS, {run_['items']} items ({how})", f"{run_['peak_rss_mb']:.0f} MiB",
                         f"<= {TARGETS['driver_peak_rss_mb']:g} MiB", "PASS" if ok else "FAIL"))
            if run_["interrupted"] and run_["extrapolated_full_run_peak_mb"] is not None:
                rows.append((f"driver-memory: {run_['items']} items, RSS growth at the end / linear bound",
                             f"{run_['rss_growth_kb_per_published_video']:.2f} KiB/video / "
                             f"{run_['extrapolated_full_run_peak_mb']:.0f} MiB", "", ""))
        return rows
    if name == "gpu-idle":
        ok = r["pose_idle_share"] < TARGETS["pose_idle_share"]
        return [(f"gpu-idle: {r['videos']} videos, {r['gpus']} GPUs, pose {1e3 * r['sleep_s']:.0f} ms",
                 f"{100 * r['pose_idle_share']:.2f}% idle", f"< {100 * TARGETS['pose_idle_share']:g}%",
                 "PASS" if ok else "FAIL"),
                ("gpu-idle: per worker: longest wait / all waits between videos / after last",
                 "; ".join(f"{g['max_gap_s']:.2f} / {g['between_s']:.2f} / {g['tail_s']:.2f} s"
                           for g in r["pose_gaps"]), "", ""),
                ("gpu-idle: streaming wall vs ideal pose wall",
                 f"{r['streaming_s']:.1f} / {r['ideal_pose_wall_s']:.1f} s", "", "")]
    return []


def _median_s(rows: list[dict], key: str) -> str:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return f"{statistics.median(vals):.2f} s" if vals else "-"


def print_table(results: dict) -> None:
    rows = [("figure", "value", "target", "")]
    for name, r in results.items():
        rows += rows_of(name, r)
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for i, row in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=",".join(BENCHMARKS), help=f"comma-separated subset of {', '.join(BENCHMARKS)}")
    ap.add_argument("--quick", action="store_true", help="small sizes (a few minutes in all)")
    ap.add_argument("--videos", type=int, help="overhead: videos (default 1000; quick 200)")
    ap.add_argument("--resume-videos", type=int, help="noop-resume: finished videos (default 10000; quick 1000)")
    ap.add_argument("--repeats", type=int, default=3, help="noop-resume: timed runs (default 3)")
    ap.add_argument("--memory-items", help="driver-memory: list sizes (default 100000,10000; quick 20000,2000)")
    ap.add_argument("--memory-seconds", type=float, help="driver-memory: SIGINT the driver this long after its first "
                                                         "video is published; 0: a full run (default 0; quick 20)")
    ap.add_argument("--gpu-videos", type=int, help="gpu-idle: videos (default 1000; quick 100)")
    ap.add_argument("--gpus", type=int, default=2, help="gpu-idle: logical GPUs = pose workers (default 2)")
    ap.add_argument("--ray-cpus", type=int, help="gpu-idle: logical CPUs of the local Ray (default: the cores)")
    ap.add_argument("--sleep-s", type=float, default=0.2, help="gpu-idle: stand-in pose time per video (0.2 s)")
    ap.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "g1forge-bench-cluster",
                    help="inputs, cached finished run, scratch run folders")
    ap.add_argument("--fresh", action="store_true", help="rebuild the cached inputs and finished run folder")
    ap.add_argument("--keep", action="store_true", help="keep the scratch run folders")
    ap.add_argument("--out", type=Path, default=RESULTS, help="JSON results (merged by sub-benchmark)")
    args = ap.parse_args(argv)
    q = args.quick
    args.videos = args.videos or (200 if q else 1000)
    args.resume_videos = args.resume_videos or (1000 if q else 10_000)
    args.memory_items = args.memory_items or ("20000,2000" if q else "100000,10000")
    if args.memory_seconds is None:
        args.memory_seconds = 20.0 if q else 0.0
    args.gpu_videos = args.gpu_videos or (100 if q else 1000)
    chosen = [b.strip() for b in args.only.split(",") if b.strip()]
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        ap.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    args.work_dir.mkdir(parents=True, exist_ok=True)
    if args.fresh:
        for cached in [args.work_dir / "inputs", *args.work_dir.glob("noop-*")]:
            shutil.rmtree(cached, ignore_errors=True)
    fns = {"overhead": bench_overhead, "noop-resume": bench_noop_resume, "driver-memory": bench_driver_memory,
           "gpu-idle": bench_gpu_idle}
    results = {}
    for name in BENCHMARKS:
        if name not in chosen:
            continue
        load0 = os.getloadavg()
        t0 = time.perf_counter()
        print(f"== {name} ...", file=sys.stderr, flush=True)
        r = fns[name](args, args.work_dir)
        r["bench_s"] = time.perf_counter() - t0
        r["loadavg_before_after"] = [round(load0[0], 2), round(os.getloadavg()[0], 2)]
        r["quick"] = q
        r["measured_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        results[name] = r
        print_table({name: r})
    print()
    print_table(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    merged = json.loads(args.out.read_text()) if args.out.exists() else {}
    merged.setdefault("benchmarks", {}).update(results)
    merged["machine"] = {"cpu_count": os.cpu_count(), "python": platform.python_version(),
                         "platform": platform.platform()}
    args.out.write_text(json.dumps(merged, indent=2, default=str) + "\n")
    print(f"\nresults: {args.out}", file=sys.stderr)
    failed = [name for name, r in results.items() for row in rows_of(name, r) if row[3] == "FAIL"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
