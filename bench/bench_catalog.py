"""Benchmark: catalog queries over per-video fragments vs after ``g1forge compact``, and compaction time.

A synthetic run folder (:mod:`bench.synthetic_catalog`: the writer's exact layout and schemas, ~8 clips per video)
of ``--clips`` clips is written, then:

1. *before*: each query of :data:`QUERIES` through :func:`catalog.open_catalog` (read-only, sandboxed, the
   real views including the computed quality columns) on the fragments, ``--before-repeats`` times;
2. *compact*: :func:`catalog.compact.compact`, timed (merge, deletion of the fragments, total);
3. *after*: the same queries, ``--repeats`` times; the table shows the median and the first (cold) run.

Query time is execute + fetch on an open connection; opening the connection (``open_s``) is reported apart.
Results go to ``bench/results/catalog-<clips>.json`` and a table is printed. The machine is shared: figures
vary run to run, and the JSON records the load average next to them.

Measured on this project's shared 2-core box (load average 6-12 from other jobs, so +-50 % run to run):

- 200,000 clips, 8 per video (25,750 video folders, 77,250 fragment files): written in 271 s; before
  compaction the filter query took 33 s (23-77 s for the five queries, i.e. ~0.4-1 ms per fragment file);
  compaction 122 s (merge 104 s, deleting the fragments 12 s) into 3 files of 61 MB; after it 0.055-0.18 s
  (filter query 0.115 s median), 290-880x faster, same results.
- 1,000,000 clips, 64 per video (16,094 video folders, 48,282 fragment files; a million clips at 8 per video
  means ~386,000 small files, which does not fit the ~15 minutes this box allows for a benchmark): written in
  80 s; filter query 35 s before, compaction 51 s into 3 files of 292 MB, after it the filter query takes
  0.068 s (target <= 0.2 s), top-100 0.14 s, one video 0.03 s, the join 0.05 s; counting ``g1_ready`` (the
  computed quality columns evaluated over every clip) 0.3 s. With the views live (a run opened the folder
  since), the same filter query costs 0.57 s: listing 16,000 video folders twice.

Usage: ``python bench/bench_catalog.py [--clips 1000000] [--workers 2] [--dir DIR] [--keep]``; quick check:
``--clips 20000``. Writing a million clips takes ~125,000 video folders and ~7 GB of small files.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.synthetic_catalog import make_catalog  # noqa: E402
from catalog import open_catalog  # noqa: E402
from catalog.compact import compact  # noqa: E402

#: name -> SQL; the first is the issue's "typical filter query".
QUERIES = {
    "filter_count": "SELECT count(*) AS n, sum(duration_s) AS s FROM clips "
                    "WHERE status = 'ok' AND duration_s > 4 AND jitter_m_s3 < 40",
    "filter_top100": "SELECT clip_id, duration_s, jitter_m_s3 FROM clips WHERE status = 'ok' AND duration_s > 4 "
                     "AND jitter_m_s3 < 40 AND foot_sliding_mm_per_frame < 10 ORDER BY jitter_m_s3 LIMIT 100",
    "one_video": "SELECT clip_id, status FROM clips WHERE video_id = '{video_id}' ORDER BY clip_id",
    "g1_ready_count": "SELECT count(*) FROM clips WHERE g1_ready",
    "join_videos": "SELECT v.license, count(*) AS n FROM clips c JOIN videos v USING (video_id) "
                   "WHERE c.status = 'ok' GROUP BY ALL ORDER BY ALL",
}


def _time_queries(run_dir: Path, repeats: int, video_id: str, names: list[str]) -> dict:
    out = {}
    for name in names:
        sql = QUERIES[name].format(video_id=video_id)
        times, opens, result = [], [], None
        for _ in range(repeats):
            t0 = time.perf_counter()
            con = open_catalog(run_dir)
            t1 = time.perf_counter()
            try:
                rows = con.sql(sql).fetchall()
            finally:
                con.close()
            times.append(time.perf_counter() - t1)
            opens.append(t1 - t0)
            result = rows if result is None else result
            assert _norm(rows) == _norm(result), f"{name} gave different rows on a repeat"
        out[name] = {"median_s": statistics.median(times), "first_s": times[0], "runs": len(times),
                     "open_s": statistics.median(opens), "result_rows": len(result),
                     "result_head": [list(map(_jsonable, r)) for r in result[:3]]}
    return out


def _norm(rows) -> list:
    """Rows with floats to 10 significant digits (parallel sums differ in the last bits run to run)."""
    return [[float(f"{x:.10g}") if isinstance(x, float) else x for x in r] for r in rows]


def _jsonable(v):
    return v if isinstance(v, (int, float, str, type(None))) else str(v)


def _same_results(before: dict, after: dict) -> bool:
    return all(_norm(before[q]["result_head"]) == _norm(after[q]["result_head"])
               and before[q]["result_rows"] == after[q]["result_rows"] for q in before if q in after)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", type=int, default=1_000_000)
    p.add_argument("--clips-per-video", type=int, default=8)
    p.add_argument("--workers", type=int, default=2, help="processes writing the synthetic fragments")
    p.add_argument("--repeats", type=int, default=5, help="runs of each query after compaction")
    p.add_argument("--before-repeats", type=int, default=1, help="runs of each query before compaction")
    p.add_argument("--before-queries", default=",".join(QUERIES),
                   help="comma-separated queries to time before compaction (each takes minutes at 1M clips)")
    p.add_argument("--dir", type=Path, help="where to write the run folder (default: a temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the run folder")
    p.add_argument("--threads", type=int, help="DuckDB threads for the compaction")
    args = p.parse_args(argv)

    base = args.dir or Path(tempfile.mkdtemp(prefix="g1forge-bench-catalog-"))
    run_dir = base / f"catalog-{args.clips}"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    results: dict = {"clips": args.clips, "clips_per_video": args.clips_per_video, "cpus": os.cpu_count(),
                     "load_avg_start": os.getloadavg()}
    try:
        cat = make_catalog(run_dir, args.clips, args.clips_per_video, workers=args.workers)
        fragments = sum(1 for _ in run_dir.glob("data/*/*/*.parquet")) - 3
        results.update(videos=cat.num_videos, tracks=cat.num_tracks, fragment_files=fragments,
                       generate_s=cat.build_time_s)
        print(f"wrote {cat.num_videos} videos, {cat.num_clips} clips, {fragments} fragment files in "
              f"{cat.build_time_s:.0f} s", file=sys.stderr)
        probe = open_catalog(run_dir)
        try:
            video_id = probe.sql("SELECT min(video_id) FROM videos").fetchall()[0][0]
        finally:
            probe.close()
        before = _time_queries(run_dir, args.before_repeats, video_id,
                               [q for q in args.before_queries.split(",") if q])
        results["before"] = before
        print("before compaction: " + ", ".join(f"{q} {v['median_s']:.2f} s" for q, v in before.items()),
              file=sys.stderr)
        rep = compact(run_dir, threads=args.threads)
        results["compaction"] = {"total_s": rep.elapsed_s, "write_s": rep.write_s, "delete_s": rep.delete_s,
                                 "files": sum(len(v) for v in rep.files.values()), "bytes": rep.bytes_written,
                                 "rows": rep.rows, "sealed": rep.sealed}
        print(rep.summary(), file=sys.stderr)
        after = _time_queries(run_dir, args.repeats, video_id, list(QUERIES))
        results["after"] = after
        results["same_results"] = _same_results(before, after)
        results["load_avg_end"] = os.getloadavg()
    finally:
        if not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
            if args.dir is None:
                shutil.rmtree(base, ignore_errors=True)

    print(_table(results))
    out = ROOT / "bench" / "results" / f"catalog-{args.clips}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"results: {out}")
    return 0 if results["same_results"] else 1


def _table(r: dict) -> str:
    c = r["compaction"]
    lines = [
        f"catalog benchmark: {r['clips']} clips, {r['videos']} videos, {r['fragment_files']} fragment files "
        f"({r['cpus']} CPUs, load {r['load_avg_start'][0]:.1f} -> {r['load_avg_end'][0]:.1f})",
        f"  synthetic catalog written in {r['generate_s']:.0f} s",
        f"  compaction: {c['total_s']:.1f} s (merge {c['write_s']:.1f} s, delete fragments {c['delete_s']:.1f} s) "
        f"-> {c['files']} files, {c['bytes'] / 1e6:.0f} MB",
        "",
        f"  {'query':<16} {'before s':>10} {'after s':>9} {'after cold s':>13} {'speed-up':>9} {'open s':>7} "
        f"{'rows':>6}",
    ]
    for q in QUERIES:
        b, a = r["before"].get(q), r["after"][q]
        before_s = f"{b['median_s']:>10.3f}" if b else f"{'-':>10}"
        speed = f"{b['median_s'] / max(a['median_s'], 1e-9):>8.0f}x" if b else f"{'-':>9}"
        lines.append(f"  {q:<16} {before_s} {a['median_s']:>9.3f} {a['first_s']:>13.3f} {speed} "
                     f"{a['open_s']:>7.3f} {a['result_rows']:>6}")
    lines.append(f"  same results before and after: {r['same_results']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
