"""Benchmark: re-scoring a large catalog with new quality thresholds (``g1forge rescore``).

Catalog: a synthetic run folder from :func:`bench.synthetic_catalog.make_catalog` (the real layout and schema,
per-video fragments), compacted with :func:`catalog.compact.compact` as a large catalog would be; or an existing
run folder given with ``--catalog``.

Measured (wall time, this process):

- ``rescore_default_s``: :func:`catalog.scoring.rescore` installing the bundled defaults (validate the file,
  read the clips columns, rewrite the views, count ready clips and fail reasons before and after);
- ``rescore_lenient_s`` then ``rescore_strict_s``: the same with the bundled rules' bounds moved to the data's
  own 1 % / 5 % quantiles (so the ready counts move: the synthetic values are not measured ones and the
  defaults leave few clips ready), the figure the issue asks for; ``views_s`` is the part spent rewriting the
  views, the rest is the two counting scans (ready clips, top fail reasons) before and after;
- ``materialise_scores_s``: ``SELECT count(*) FILTER (WHERE g1_ready), avg(quality_score),
  sum(len(fail_reasons)) FROM clips``, which computes every clip's three scores (best and median of
  ``--repeat``), next to ``baseline_scan_s``, a scan of two plain columns of the same view, for scale.

No video is re-run and no Parquet file is rewritten: the script checks that the data files' sizes and mtimes are
unchanged. Results are printed and written to ``bench/results/rescore.json``.

Usage: ``python bench/bench_rescore.py [--clips 1000000] [--clips-per-video 8] [--dir DIR] [--workers 2]``
(``--clips 20000`` for a quick check; ``--catalog DIR`` to reuse a run folder, whose thresholds are put back to
the bundled defaults at the end).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

RESULTS = ROOT / "bench" / "results" / "rescore.json"
MATERIALISE = ("SELECT count(*) FILTER (WHERE g1_ready) AS ready, avg(quality_score) AS mean_score, "
               "sum(len(fail_reasons)) AS reasons FROM clips")
BASELINE = "SELECT count(*) FILTER (WHERE status = 'ok') AS ok, avg(jitter_m_s3) AS mean_jitter FROM clips"


def _quantile_file(root: Path, fail_frac: float, dest: Path) -> Path:
    """The bundled rules with each range bound moved to the synthetic data's own quantile, so that each rule fails
    about ``fail_frac`` of the clips (at each bound). The synthetic values are plausible, not measured (most
    fractions are uniform in [0, 1]), so the bundled defaults leave few clips ready; these files give counts
    that move. Gates stay as they are."""
    from catalog.db import connect
    from catalog.scoring import default_thresholds

    rules = default_thresholds().rules
    exprs = []
    for r in rules:
        if r.kind == "range":
            exprs.append(f'quantile_cont("{r.column}", {fail_frac})' if r.min is not None else "NULL")
            exprs.append(f'quantile_cont("{r.column}", {1 - fail_frac})' if r.max is not None else "NULL")
    con = connect(root)
    try:
        values = iter(con.execute(f"SELECT {', '.join(exprs)} FROM clips WHERE status = 'ok'").fetchone())
    finally:
        con.close()
    lines = ["format = 1"]
    for r in rules:
        lines += ["", "[[rule]]", f'column = "{r.column}"', f'reason = "{r.reason}"']
        if r.kind == "in":
            lines.append("in = [" + ", ".join(f'"{v}"' for v in r.allowed) + "]")
        elif r.kind == "present":
            lines.append("present = true")
        else:
            lo, hi = next(values), next(values)
            lines += [f"min = {float(lo)!r}"] if lo is not None else []
            lines += [f"max = {float(hi)!r}"] if hi is not None else []
            lines += [f"scale = {r.scale_value!r}", f"weight = {r.weight!r}"]
    dest.write_text("\n".join(lines) + "\n")
    return dest


def _data_stats(root: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime_ns) of every Parquet file under data/."""
    out = {}
    for dirpath, _, names in os.walk(root / "data"):
        for n in names:
            if n.endswith(".parquet"):
                st = os.stat(os.path.join(dirpath, n))
                out[os.path.join(dirpath, n)] = (st.st_size, st.st_mtime_ns)
    return out


def _timed_query(root: Path, sql: str, repeat: int) -> tuple[list[float], dict]:
    from catalog.db import connect

    times, row = [], None
    for _ in range(repeat):
        con = connect(root)
        try:
            t = time.perf_counter()
            cur = con.execute(sql)
            names = [d[0] for d in cur.description]
            row = dict(zip(names, cur.fetchone()))
            times.append(time.perf_counter() - t)
        finally:
            con.close()
    return times, row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=1_000_000)
    ap.add_argument("--dir", type=Path, help="where to build the synthetic catalog (default: a temporary folder, "
                                              "removed at the end)")
    ap.add_argument("--catalog", type=Path, help="use this existing run folder instead of building one")
    ap.add_argument("--clips-per-video", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2, help="processes writing the synthetic catalog")
    ap.add_argument("--no-compact", action="store_true", help="score the per-video fragments as they are")
    ap.add_argument("--compact-memory", default="2GB", help="DuckDB memory limit for the compaction (default "
                                                           "%(default)s: the dev box is shared)")
    ap.add_argument("--compact-threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the built catalog")
    ap.add_argument("--results", type=Path, default=RESULTS, help="JSON output (default: %(default)s)")
    args = ap.parse_args()

    from catalog.scoring import DEFAULT_THRESHOLDS_PATH, rescore

    res: dict = {"cpu_count": os.cpu_count(), "platform": platform.platform()}
    tmp = None
    if args.catalog:
        root = args.catalog.resolve()
        res["catalog"] = "given"
    else:
        from synthetic_catalog import make_catalog

        if args.dir:
            root = args.dir.resolve()
            if root.exists():
                shutil.rmtree(root)
        else:
            tmp = Path(tempfile.mkdtemp(prefix="g1forge_bench_rescore_"))
            root = tmp / "run"
        cat = make_catalog(root, args.clips, clips_per_video=args.clips_per_video, workers=args.workers)
        res.update(catalog="synthetic", build_s=cat.build_time_s, videos=cat.num_videos,
                   clips_per_video=args.clips_per_video)
        print(f"built {cat.num_clips:,} clips in {cat.num_videos:,} video folders in {cat.build_time_s:.1f} s",
              flush=True)
    try:
        if not args.no_compact:
            from catalog.compact import compact, read_state
            from catalog.layout import RunLayout

            if not read_state(RunLayout.at(root)).sealed:
                t = time.perf_counter()
                compact(root, threads=args.compact_threads, memory_limit=args.compact_memory)
                res["compact_s"] = time.perf_counter() - t
                print(f"compacted in {res['compact_s']:.1f} s", flush=True)
        res["compacted"] = not args.no_compact
        files = _data_stats(root)
        res["parquet_files"] = len(files)

        t = time.perf_counter()
        rep = rescore(root, DEFAULT_THRESHOLDS_PATH)
        res["rescore_default_s"] = time.perf_counter() - t
        res["default"] = {"clips": rep.after.clips, "ok": rep.after.ok, "ready": rep.after.ready,
                          "views_s": rep.views_s, "top_reasons": rep.after.top_reasons}
        print(rep.summary(), flush=True)

        files_dir = Path(tempfile.mkdtemp(prefix="g1forge_thresholds_"))
        for name, frac in (("lenient", 0.01), ("strict", 0.05)):
            path = _quantile_file(root, frac, files_dir / f"{name}.toml")
            t = time.perf_counter()
            rep = rescore(root, path)
            res[f"rescore_{name}_s"] = time.perf_counter() - t
            res[name] = {"fail_frac_per_bound": frac, "ready_before": rep.before.ready if rep.before else None,
                         "ready": rep.after.ready, "views_s": rep.views_s, "top_reasons": rep.after.top_reasons}
            print(rep.summary(), flush=True)
        shutil.rmtree(files_dir)

        times, row = _timed_query(root, MATERIALISE, args.repeat)
        res["materialise_scores_s"] = {"best": min(times), "median": statistics.median(times), "result": row}
        times, row = _timed_query(root, BASELINE, args.repeat)
        res["baseline_scan_s"] = {"best": min(times), "median": statistics.median(times), "result": row}
        res["clips"] = rep.after.clips

        rescore(root, DEFAULT_THRESHOLDS_PATH)  # leave the folder with the defaults
        res["data_files_unchanged"] = _data_stats(root) == files
        assert res["data_files_unchanged"], "rescoring rewrote a Parquet file"
    finally:
        if tmp is not None and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    print()
    print(f"clips                                {res['clips']:>12,}")
    print(f"parquet files                        {res['parquet_files']:>12,}"
          + ("  (compacted)" if res["compacted"] else ""))
    print(f"rescore, defaults (s)                {res['rescore_default_s']:>12.2f}")
    for name in ("lenient", "strict"):
        r = res[name]
        print(f"{f'rescore, {name} file (s)':<37}{res[f'rescore_{name}_s']:>12.2f}"
              f"  (views {r['views_s']:.2f} s; ready {r['ready_before']:,} -> {r['ready']:,})")
    m, b = res["materialise_scores_s"], res["baseline_scan_s"]
    print(f"materialise every score (s)          {m['best']:>12.3f}  (median {m['median']:.3f})")
    print(f"baseline scan of 2 columns (s)       {b['best']:>12.3f}  (median {b['median']:.3f})")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(res, indent=1, default=str))
    print(f"-> {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
