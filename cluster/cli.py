"""The ``g1forge`` command line: ``run``, ``query``, ``export``, ``status``, ``doctor`` and ``setup``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ingest.errors import G1ForgeError


def _parse_option(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="g1forge", description="Videos of people in, G1-ready motion clips and a "
                                "SQL catalog out.")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="process videos into clips and a catalog (resumable)")
    r.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="video files, folders (recursive), globs, http(s) URLs or YouTube links")
    r.add_argument("--list", dest="lists", action="append", default=[], metavar="FILE",
                   help="a .txt/.csv/.jsonl/.parquet list with a 'uri' column (optional start_s, end_s, tags, "
                        "license); repeatable")
    r.add_argument("--out", required=True, metavar="DIR", help="run folder (catalog, clips, cache)")
    r.add_argument("--backend", default="mediapipe",
                   help="pose backend: mediapipe (CPU, default), phalp-pkl, 4dhumans (CUDA GPU; see g1forge doctor)")
    r.add_argument("--backend-option", dest="backend_options", action="append", default=[], type=_parse_option,
                   metavar="KEY=VALUE", help="backend option, e.g. focal_px=1400 or max_side_px=640; repeatable")
    r.add_argument("--min-clip-s", type=float, help="shortest clip kept (default 2)")
    r.add_argument("--max-clip-s", type=float, help="longest clip window (default 10)")
    r.add_argument("--g1-mjcf", metavar="FILE", help="another G1 MJCF with the same 29 joint names (default: the "
                                                     "bundled g1_29dof.xml)")
    r.add_argument("--max-height", type=int, default=720, help="download height cap for remote videos")
    r.add_argument("--workers", type=int, help="worker processes (default: one per CPU core)")
    r.add_argument("--ray-address", help="join an existing Ray cluster (default: $RAY_ADDRESS or a local Ray)")
    r.add_argument("--force", action="store_true", help="redo videos that are already done")
    r.add_argument("--fail-on-error", action="store_true", help="exit 1 if any video failed")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")

    q = sub.add_parser("query", help="run read-only SQL over a run's catalog (tables videos, tracks, clips)")
    q.add_argument("out", metavar="DIR")
    q.add_argument("sql")
    q.add_argument("--format", choices=("table", "csv", "json"), default="table")
    q.add_argument("--max-rows", type=int, default=50, help="rows shown in table format")

    e = sub.add_parser("export", help="write selected clips' G1 motions in a trainer's format, with a manifest")
    e.add_argument("out", metavar="DIR")
    e.add_argument("--where", help="SQL predicate over the clips table, e.g. \"duration_s > 4 AND jitter_m_s3 < 500\"")
    from catalog.formats import FORMATS

    e.add_argument("--format", required=True, dest="fmt", choices=list(FORMATS),
                   help="; ".join(f"{f.name}: {f.description}" for f in FORMATS.values()))
    e.add_argument("--dest", required=True, metavar="FOLDER")
    e.add_argument("--fps", type=float, help="output rate (default: 30 for unitree-csv and gmr-pkl, 50 for the "
                                              "NPZ formats)")
    e.add_argument("--limit", type=int, help="export at most this many clips")

    s = sub.add_parser("status", help="counts by status and reason, throughput, what is left")
    s.add_argument("out", metavar="DIR")
    s.add_argument("--json", action="store_true")

    d = sub.add_parser("doctor", help="for each backend: can it run here, and if not, the exact fix")
    d.add_argument("backends", nargs="*", metavar="BACKEND", help="only these backends (default: all)")
    d.add_argument("--strict", action="store_true", help="exit 1 if any checked backend cannot run")
    d.add_argument("--json", action="store_true")

    from cluster.setup_gpu import add_arguments

    g = sub.add_parser("setup", help="install the 4D-Humans GPU stack at pinned commits and its verified weights")
    add_arguments(g)
    return p


def _run(args) -> int:
    import dataclasses

    from cluster.config import RunConfig
    from cluster.run import ExecOptions, run
    from pipeline.clips import ClipConfig

    if not args.inputs and not args.lists:
        print("g1forge run: give at least one INPUT or --list FILE (see g1forge run --help)", file=sys.stderr)
        return 2
    clip_overrides = {k: v for k, v in (("min_clip_s", args.min_clip_s), ("max_clip_s", args.max_clip_s))
                      if v is not None}
    config = RunConfig(backend=args.backend, backend_options=dict(args.backend_options),
                       clip=dataclasses.replace(ClipConfig(), **clip_overrides),
                       g1_mjcf=str(Path(args.g1_mjcf).resolve()) if args.g1_mjcf else None)
    config.download.max_height = args.max_height
    opts = ExecOptions(workers=args.workers, force=args.force, fail_on_error=args.fail_on_error,
                       progress=not args.no_progress, ray_address=args.ray_address)
    report = run(args.inputs, args.lists, args.out, config, opts)
    print(report.summary())
    if report.interrupted:
        print(f"interrupted: finished videos are saved; run the same command again to resume "
              f"({report.processed} done in this run)", file=sys.stderr)
        return 130
    if args.fail_on_error and report.counts.get("failed", 0):
        return 1
    return 0


def _query(args) -> int:
    from catalog.db import format_table, run_query

    table = run_query(args.out, args.sql)
    print(format_table(table, args.format, args.max_rows))
    return 0


def _export(args) -> int:
    from catalog.export import export

    report = export(args.out, args.where, args.fmt, args.dest, fps=args.fps, limit=args.limit)
    print(report.summary())
    return 0


def _status(args) -> int:
    from cluster.run import format_status, status_counts

    st = status_counts(args.out)
    print(json.dumps(st, indent=2, default=str) if args.json else format_status(st))
    return 0


def _doctor(args) -> int:
    from cluster.doctor import main as doctor_main

    return doctor_main(args)


def _setup(args) -> int:
    from cluster.setup_gpu import main as setup_main

    return setup_main(args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"run": _run, "query": _query, "export": _export, "status": _status, "doctor": _doctor,
               "setup": _setup}[args.command]
    try:
        return handler(args)
    except G1ForgeError as exc:
        print(f"g1forge {args.command}: {exc.catalog_reason()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
