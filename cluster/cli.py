"""The ``g1forge`` command line: ``run``, ``query``, ``export``, ``publish``, ``status``, ``compact``,
``rescore``, ``preview``, ``doctor`` and ``setup``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ingest.errors import G1ForgeError

#: What ``g1forge run`` exits with. An error class that ends a run its own way carries its code as
#: ``exit_code`` (catalog.writer.DiskFull, cluster.local_ray.RayStartFailed, cluster.folder_lock.FolderBusy);
#: any other G1ForgeError exits 2.
RUN_EXIT_CODES = {
    0: "the run completed (bad inputs are rows of the catalog, not errors)",
    1: "--fail-on-error and a video failed",
    2: "bad arguments, configuration or list file (the message says what to fix)",
    3: "disk full: free space and run the same command again (finished videos are kept)",
    4: "Ray could not start (or --ray-address could not be joined): run again when the machine is less loaded",
    5: "another g1forge run is writing the same --out folder: wait for it or use another --out",
    130: "interrupted (Ctrl-C): run the same command again to resume",
}


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

    r = sub.add_parser("run", help="process videos into clips and a catalog (resumable)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="exit codes:\n" + "\n".join(f"  {code:3d}  {what}"
                                                          for code, what in RUN_EXIT_CODES.items()))
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
    r.add_argument("--workers", "--pose-workers", dest="workers", type=int,
                   help="pose workers (default: one per GPU for a GPU backend, one per CPU core for mediapipe)")
    r.add_argument("--gpus-per-pose-worker", type=float, metavar="GPUS",
                   help="GPUs each pose worker reserves; a fraction packs several on one GPU, e.g. 0.5 (default: "
                        "the backend's)")
    r.add_argument("--finish-workers", type=int, help="CPU workers for clips, metrics and G1 retargeting")
    r.add_argument("--fetch-workers", type=int, default=4, help="download/probe lanes (default 4)")
    r.add_argument("--max-attempts", type=int, default=3,
                   help="tries per video when a worker or node dies under it (default 3)")
    r.add_argument("--ray-address", help="join an existing Ray cluster (default: $RAY_ADDRESS or a local Ray)")
    r.add_argument("--staging-dir", metavar="DIR", help="with --out s3://... or gs://...: the local run folder "
                                                         "mirrored there (default: ~/.cache/g1forge/runs/<hash>)")
    r.add_argument("--force", action="store_true", help="redo videos that are already done")
    r.add_argument("--retry-failed", action="store_true", help="redo the videos whose row is failed (only those "
                                                               "and the ones not done yet)")
    r.add_argument("--fail-on-error", action="store_true", help="exit 1 if any video failed")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")

    q = sub.add_parser("query", help="run read-only SQL over a run's catalog (tables videos, tracks, clips)")
    q.add_argument("out", metavar="DIR")
    q.add_argument("sql")
    q.add_argument("--format", choices=("table", "csv", "json"), default="table")
    q.add_argument("--max-rows", type=int, default=50, help="rows shown in table format")

    e = sub.add_parser("export", help="write selected clips' G1 motions in a trainer's format, with a manifest")
    e.add_argument("out", metavar="DIR")
    e.add_argument("--where", help="SQL predicate over the clips columns and their video's, e.g. \"duration_s > 4 "
                                   "AND jitter_m_s3 < 500 AND license = 'cc-by'\"")
    from catalog.formats import FORMATS

    e.add_argument("--format", required=True, dest="fmt", choices=list(FORMATS),
                   help="; ".join(f"{f.name}: {f.description}" for f in FORMATS.values()))
    e.add_argument("--dest", required=True, metavar="FOLDER")
    e.add_argument("--fps", type=float, help="output rate (default: 30 for unitree-csv and gmr-pkl, 50 for the "
                                              "NPZ formats)")
    e.add_argument("--limit", type=int, help="export at most this many clips (the first in clip id order, or in "
                                              "the seeded random order with --sample/--balance)")
    e.add_argument("--sample", type=int, metavar="N", help="a uniform random sample of N clips, fixed by --seed")
    e.add_argument("--seed", type=int, default=0, help="seed of --sample, --balance and --val-frac (default 0)")
    e.add_argument("--balance", metavar="COLUMN", help="equal share per value of a clips or videos column or SQL "
                                                       "expression, e.g. source_kind, license, \"tags[1]\"")
    e.add_argument("--val-frac", type=float, metavar="F", help="put about this fraction of the source videos "
                   "(whole videos, by hash) into val/, the rest into train/")
    e.add_argument("--workers", type=int, help="processes writing motion files (default: one per CPU core; "
                                               "small exports use one)")
    e.add_argument("--layout", choices=("folders", "flat"), default="folders",
                   help="folders (default): <clip_id>/motion.<ext> + clip.json per clip, as trainers load them; "
                        "flat: <clip_id>.<ext> files")

    pb = sub.add_parser("publish", help="log an npz export's clips as W&B 'motions' artifacts, linked into the "
                                        "registry mjlab and BeyondMimic train from (needs g1forge[wandb])")
    pb.add_argument("export_dir", metavar="EXPORT")
    pb.add_argument("--project", default="g1forge", help="W&B project of the publishing run (default g1forge)")
    pb.add_argument("--entity", help="W&B entity (default: yours)")
    pb.add_argument("--splits", default="train,all", help="comma-separated: train, val, all (an export without "
                                                          "--val-frac); default train,all")
    pb.add_argument("--no-link", action="store_true", help="log the artifacts without linking them into the "
                                                          "registry")
    pb.add_argument("--offline", action="store_true", help="W&B offline mode: log into the local run folder "
                                                          "only (wandb sync uploads it later)")

    s = sub.add_parser("status", help="counts by status and reason, throughput, what is left")
    s.add_argument("out", metavar="DIR")
    s.add_argument("--json", action="store_true")

    c = sub.add_parser("compact", help="merge a run's per-video catalog fragments into a few large files (much "
                                       "faster queries); safe to interrupt and re-run; not while a run writes")
    c.add_argument("out", metavar="DIR")
    c.add_argument("--threads", type=int, help="DuckDB threads for the merge (default: all cores)")
    c.add_argument("--memory-limit", metavar="SIZE", help="DuckDB memory limit for the merge, e.g. 4GB (default: "
                                                          "80%% of RAM; larger merges spill to DIR/tmp)")
    c.add_argument("--json", action="store_true")

    rs = sub.add_parser("rescore", help="apply quality thresholds to a run's catalog (g1_ready, quality_score, "
                                        "fail_reasons) without re-running any video")
    rs.add_argument("out", metavar="DIR")
    rs.add_argument("--thresholds", metavar="FILE", help="a quality thresholds TOML to install as DIR/quality.toml "
                                                         "(default: re-apply the current one)")

    pv = sub.add_parser("preview", help="an mp4 of one clip: source frames with keypoints beside the retargeted G1")
    pv.add_argument("out", metavar="DIR")
    pv.add_argument("clip_id", metavar="CLIP_ID")
    pv.add_argument("--dest", metavar="FILE.mp4", help="output file (default: DIR/previews/CLIP_ID.mp4)")
    pv.add_argument("--renderer", choices=("auto", "mujoco", "stick"), default="auto",
                    help="G1 panel: MuJoCo offscreen (auto falls back to a stick figure when it cannot render)")
    pv.add_argument("--width", type=int, default=1280, metavar="PX", help="frame width, both panels (default 1280)")

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
    opts = ExecOptions(workers=args.workers, force=args.force, retry_failed=args.retry_failed,
                       fail_on_error=args.fail_on_error, progress=not args.no_progress,
                       ray_address=args.ray_address, max_attempts=args.max_attempts,
                       gpus_per_pose_worker=args.gpus_per_pose_worker, finish_workers=args.finish_workers,
                       fetch_workers=args.fetch_workers, staging_dir=args.staging_dir)
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
    import os

    from catalog.export import export

    report = export(args.out, args.where, args.fmt, args.dest, fps=args.fps, limit=args.limit, sample=args.sample,
                    seed=args.seed, balance=args.balance, val_frac=args.val_frac,
                    workers=args.workers if args.workers is not None else (os.cpu_count() or 1),
                    layout=args.layout)
    print(report.summary())
    return 0


def _publish(args) -> int:
    from catalog.publish import publish

    splits = tuple(s.strip() for s in args.splits.split(",") if s.strip())
    report = publish(args.export_dir, project=args.project, entity=args.entity, splits=splits,
                     link=not args.no_link, offline=args.offline or None)
    print(report.summary())
    return 0


def _status(args) -> int:
    from cluster.run import format_status, status_counts

    st = status_counts(args.out)
    print(json.dumps(st, indent=2, default=str) if args.json else format_status(st))
    return 0


def _compact(args) -> int:
    import dataclasses

    from catalog.compact import compact

    report = compact(args.out, threads=args.threads, memory_limit=args.memory_limit)
    print(json.dumps(dataclasses.asdict(report), indent=2) if args.json else report.summary())
    return 0


def _rescore(args) -> int:
    from catalog.scoring import rescore

    print(rescore(args.out, args.thresholds).summary())
    return 0


def _preview(args) -> int:
    from catalog.preview import preview

    report = preview(args.out, args.clip_id, dest=args.dest, renderer=args.renderer, width_px=args.width)
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    print(report.summary())
    return 0


def _doctor(args) -> int:
    from cluster.doctor import main as doctor_main

    return doctor_main(args)


def _setup(args) -> int:
    from cluster.setup_gpu import main as setup_main

    return setup_main(args)


#: Commands that read a run folder and accept an object-store URI for it (read through a local copy).
_READERS = {"query": False, "status": False, "export": True, "preview": True}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"run": _run, "query": _query, "export": _export, "publish": _publish, "status": _status,
               "compact": _compact, "rescore": _rescore, "preview": _preview, "doctor": _doctor,
               "setup": _setup}[args.command]
    try:
        if args.command in ("compact", "rescore"):
            from catalog.mirror import is_remote

            if is_remote(args.out):
                raise G1ForgeError(f"{args.command} works on a local run folder; run it on the run's staging "
                                   "folder (g1forge run --staging-dir) and run again to mirror, or on a copy",
                                   reason="config")
        if args.command in _READERS:
            from catalog.mirror import local_run_folder

            args.out = local_run_folder(args.out, with_motions=_READERS[args.command])
        return handler(args)
    except G1ForgeError as exc:
        report = getattr(exc, "report", None)  # what a run stopped part way (disk full) had done
        if report is not None:
            print(report.summary())
        print(f"g1forge {args.command}: {exc.catalog_reason()}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
