"""Benchmark: ``g1forge export`` of a 10,000-clip random sample from a synthetic 1,000,000-clip catalog.

Catalog. :func:`bench.synthetic_catalog.make_catalog` writes the rows of a run folder (one folder per video, the
writer's schemas and layout, 8 clips per video, ~85 % of clips ok) but no motion files; the benchmark then
compacts it (:func:`catalog.compact_catalog`, as ``g1forge compact`` does; ``--no-compact`` keeps the
per-video fragments). The export reads real G1 motion files, so once the selection is known the benchmark
writes them for the selected clips only: nine template motions of 2, 3, ..., 10 s at 30 fps
(``tests/formats_motions.g1_test_motion``: smooth joint sinusoids inside the limits, a walking and yawing root,
FK bodies) are saved once and each selected clip's ``g1_motion_path`` becomes a hard link to the template
nearest its catalog duration. Those files are then read like any others (page cache warm, as in a re-export).

Measured, as a user runs it (library calls of ``g1forge export``): the selection ``--sample 10000 --seed 0``
over the whole catalog (:func:`catalog.export.select_for_export`: DESCRIBE, one pass keeping the candidates'
ids, hashes and groups, one pass reading the chosen rows), with and without ``--balance license``; then per
format and rate the rest of the export (:func:`catalog.export.write_export`: reading, resampling, FK, writing
every file, manifest, dataset card with its plots) on that selection. The end-to-end figure of a case is
``clips / (selection + writing)``; one plain :func:`catalog.export.export` call is timed as a check of that sum.
Cases: ``unitree-csv`` at 30 fps (the motions' own rate: no resampling) and 50 fps; ``mjlab-npz`` at 50 fps
(resampled, FK at the new rate) and 30 fps (FK only); ``isaaclab-npz`` at 50 fps; ``gmr-pkl`` at 30 fps; each
with ``--workers`` processes (default: every core) and, for the first two, with one. Each export folder is
deleted after its case (an NPZ set of 10,000 clips is several GB).

Results go to ``bench/results/export.json`` and a table is printed.

Measured on this project's shared 2-core dev box (load average 8-15 from other jobs throughout, so +-50 % run to
run; figures are lower bounds), 1,000,000 clips in 128,750 videos, compacted: the sample of 10,000 among 849,743
candidates is selected in 3.7 s (5.2 s with ``--balance license``). Writing with 2 workers, clips/s (end to end
including the selection in brackets): unitree-csv 30 fps 228 (210), 50 fps 147 (139); mjlab-npz 50 fps 106
(102), 30 fps 194 (181); isaaclab-npz 50 fps 156 (148); gmr-pkl 30 fps 297 (268). One worker: unitree-csv 30 fps
148, mjlab-npz 50 fps 47. One whole ``export()`` call (unitree-csv): 119 clips/s. An mjlab-npz set of 10,000
clips (2-10 s) at 50 fps is 5.5 GB; the CSV set at 30 fps 0.75 GB.

Usage::

    python bench/bench_export.py [--catalog DIR] [--clips 1000000] [--export 10000] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from formats_motions import g1_test_motion  # noqa: E402
from synthetic_catalog import make_catalog  # noqa: E402

from catalog import compact_catalog, db  # noqa: E402
from catalog.export import export, select_for_export, write_export  # noqa: E402
from catalog.layout import RunLayout  # noqa: E402
from catalog.selection import SelectionSpec  # noqa: E402
from pipeline.g1.model import load_g1  # noqa: E402
from pipeline.g1_motion import save_g1_motion  # noqa: E402

TEMPLATE_FPS = 30.0
TEMPLATE_SECONDS = tuple(range(2, 11))
CASES = (("unitree-csv", 30.0), ("unitree-csv", 50.0), ("mjlab-npz", 50.0), ("mjlab-npz", 30.0),
         ("isaaclab-npz", 50.0), ("gmr-pkl", 30.0))
SINGLE_WORKER_CASES = (("unitree-csv", 30.0), ("mjlab-npz", 50.0))


def ensure_catalog(path: Path, num_clips: int, workers: int, compact: bool, compact_memory: str) -> dict:
    """Build (and compact) the synthetic catalog at ``path`` unless one is there; returns what was done."""
    layout = RunLayout.at(path)
    info: dict = {"catalog": str(layout.root)}
    if not layout.info_path.exists():
        cat = make_catalog(path, num_clips, workers=workers)
        info.update(built_videos=cat.num_videos, build_s=round(cat.build_time_s, 1))
    if compact:
        t0 = time.perf_counter()
        rep = compact_catalog(layout.root, threads=2, memory_limit=compact_memory)
        info.update(compact_s=round(time.perf_counter() - t0, 1), compaction=rep.summary())
    t0 = time.perf_counter()
    info["clips"] = db.run_query(layout.root, "SELECT count(*) AS n FROM clips").column("n")[0].as_py()
    info["count_query_s"] = round(time.perf_counter() - t0, 2)
    return info


def templates(work: Path) -> dict[int, Path]:
    """The template motion files (saved once under ``work``), by duration in seconds."""
    model = load_g1()
    out = {}
    work.mkdir(parents=True, exist_ok=True)
    for s in TEMPLATE_SECONDS:
        path = work / f"template_{s}s.g1.npz"
        if not path.exists():
            save_g1_motion(g1_test_motion(model, clip_id=f"template-{s}s", num_frames=int(s * TEMPLATE_FPS) + 1,
                                          fps=TEMPLATE_FPS, seed=s), path)
        out[s] = path
    return out


def link_motion_files(root: Path, table, paths: dict[int, Path]) -> int:
    """Hard-link the template nearest each selected clip's duration at its ``g1_motion_path``."""
    linked = 0
    for rel, dur in zip(table.column("g1_motion_path").to_pylist(), table.column("duration_s").to_pylist()):
        target = root / rel
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(paths[min(TEMPLATE_SECONDS, key=lambda s: abs(s - dur))], target)
        linked += 1
    return linked


def timed_selection(root: Path, spec: SelectionSpec):
    t0 = time.perf_counter()
    sel = select_for_export(root, spec)
    return sel, time.perf_counter() - t0


def run_case(sel, select_s: float, fmt: str, fps: float, workers: int, work: Path, layout: str = "folders") -> dict:
    dest = work / f"out-{fmt}-{fps:g}-{workers}-{layout}"
    shutil.rmtree(dest, ignore_errors=True)
    t0 = time.perf_counter()
    report = write_export(sel, fmt, dest, fps=fps, workers=workers, layout=layout)
    write_s = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    shutil.rmtree(dest, ignore_errors=True)
    n = report.num_exported
    return {"format": fmt, "fps": fps, "resampled": abs(fps - TEMPLATE_FPS) > 1e-9, "workers": workers,
            "layout": layout,
            "clips": n, "skipped": len(report.skipped), "write_s": round(write_s, 2),
            "end_to_end_clips_per_s": round(n / (select_s + write_s), 1),
            "writing_clips_per_s": round(n / write_s, 1),
            "timings_s": {k: round(v, 2) for k, v in report.timings_s.items()}, "bytes": size}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--catalog", type=Path, default=Path("/tmp/g1forge-bench-export/catalog"))
    ap.add_argument("--clips", type=int, default=1_000_000, help="clips of the synthetic catalog (if built)")
    ap.add_argument("--export", type=int, default=10_000, help="clips sampled and exported")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes writing motion files")
    ap.add_argument("--build-workers", type=int, default=2, help="processes building the catalog")
    ap.add_argument("--no-compact", action="store_true", help="keep the per-video fragments")
    ap.add_argument("--compact-memory", default="2GB", help="DuckDB memory limit of the compaction")
    ap.add_argument("--formats", nargs="*", help="only these formats")
    ap.add_argument("--layouts", nargs="+", default=["folders"], choices=["folders", "flat"],
                    help="export layouts, each case run with each in turn (interleaved: compare them by ratio)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "export.json")
    args = ap.parse_args()

    work = args.catalog.parent / "work"
    info = ensure_catalog(args.catalog, args.clips, args.build_workers, not args.no_compact, args.compact_memory)
    print(f"catalog: {info}", flush=True)
    spec = SelectionSpec(sample=args.export, seed=args.seed)
    sel, select_s = timed_selection(args.catalog, spec)
    linked = link_motion_files(sel.layout.root, sel.selected.table, templates(work))
    sel, select_s = timed_selection(args.catalog, spec)  # again, motion files in place (as for a user)
    _, balanced_s = timed_selection(args.catalog, SelectionSpec(sample=args.export, seed=args.seed,
                                                               balance="license"))
    selection = {"candidates": sel.selected.num_candidates, "selected": sel.selected.table.num_rows,
                 "linked": linked, "select_s": round(select_s, 2), "select_balanced_s": round(balanced_s, 2)}
    print(f"selection: {selection}", flush=True)

    results = []
    cases = [(f, r, args.workers) for f, r in CASES] + [(f, r, 1) for f, r in SINGLE_WORKER_CASES
                                                          if args.workers != 1]
    for fmt, fps, workers in cases:
        if args.formats and fmt not in args.formats:
            continue
        for layout in args.layouts:
            r = run_case(sel, select_s, fmt, fps, workers, work, layout)
            results.append(r)
            print(f"{fmt:13s} {fps:4g} fps  {layout:7s}  resampled={str(r['resampled']):5s}  workers={workers}  "
                  f"{r['clips']} clips  "
                  f"write {r['write_s']:7.1f} s  end-to-end {r['end_to_end_clips_per_s']:7.1f} clips/s  "
                  f"(writing {r['writing_clips_per_s']:.1f}/s; {r['timings_s']})", flush=True)

    dest = work / "out-check"
    shutil.rmtree(dest, ignore_errors=True)
    t0 = time.perf_counter()
    check = export(args.catalog, None, "unitree-csv", dest, sample=args.export, seed=args.seed, workers=args.workers)
    check_s = time.perf_counter() - t0
    shutil.rmtree(dest, ignore_errors=True)
    whole = {"format": "unitree-csv", "fps": 30.0, "wall_s": round(check_s, 2),
             "clips_per_s": round(check.num_exported / check_s, 1),
             "timings_s": {k: round(v, 2) for k, v in check.timings_s.items()}}
    print(f"one export() call: {whole}", flush=True)
    out = {"catalog": info, "export": args.export, "seed": args.seed, "cpu_count": os.cpu_count(),
           "selection": selection, "cases": results, "export_call": whole}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
