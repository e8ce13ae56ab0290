"""``g1forge export``: write the G1 motions of selected clips in a trainer's format, with a manifest and a
dataset card.

Selection (:mod:`catalog.selection`): the ``ok`` clips of a run folder that have a G1 motion, filtered by a SQL
predicate (``--where "duration_s > 3 AND license = 'cc-by'"``), optionally a seeded random sample
(``--sample N --seed S``), balanced over the values of a column or expression (``--balance source_kind``),
capped (``--limit``) and split into train and validation by video (``--val-frac 0.1``). The catalog is opened
read-only.

Output in ``dest``:

- one folder per clip, ``<clip_id>/``, holding ``motion.<ext>`` (see :mod:`catalog.formats`) and ``clip.json``
  (where the clip came from: clip, video and track ids, source, licence, backend, configuration hash, code
  versions, format, fps, frames, duration, g1_ready and quality score). This is what the trainers take as they
  are: mjlab's and BeyondMimic's trainers load one ``motion.npz`` per run (a local path, or a W&B registry
  artifact holding ``motion.npz``: ``g1forge publish``, :mod:`catalog.publish`), unitree_rl_lab's converter
  writes ``motion.npz`` beside ``motion.csv``. With ``--val-frac`` the folders go into ``train/`` and ``val/``,
  otherwise straight into ``dest``. ``layout="flat"`` writes ``<clip_id>.<ext>`` files instead (tools that read
  a folder of motion files, e.g. GMR's dataset scripts);
- ``manifest.parquet`` + ``manifest.csv``: one row per exported clip, ordered by ``clip_id``: where it came from
  (source uri and kind, licence, tags, backend and version, configuration hash, the run's code version and the
  exporting g1forge's), what the file holds (path relative to ``dest``, format, fps, frames, duration), its split
  and balance group, and every other clip column (metrics, and ``g1_ready``, ``quality_score``,
  ``fail_reasons`` where the catalog has them). The Parquet file also carries the export parameters as JSON in
  its schema metadata (key ``g1forge.export``);
- ``README.md`` (the dataset card), ``metrics.png`` and ``duration.png`` (see :mod:`catalog.card`);
- ``.g1forge-export``, a marker naming the folder as an export folder.

Motion files are written by ``workers`` processes when there are enough clips (the bytes do not depend on it).
:attr:`ExportReport.timings_s` says where the time went. Exporting the same selection again gives
byte-identical files. ``dest`` must be new, empty or an earlier export
folder (marker present); re-exporting into an export folder first removes its motion files, manifests, card and
plots, so no clip of an earlier selection lingers where a trainer would read it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from catalog import db
from catalog.formats import FORMATS, atomic_write_bytes, get_format, write_motion
from catalog.layout import RunLayout
from catalog.schema import CLIP_BASE
from catalog.selection import Selected, SelectionSpec, select_clips, split_of
from ingest.errors import ConfigError, G1ForgeError
from pipeline.resample import resample_g1_motion

MANIFEST_PARQUET = "manifest.parquet"
MANIFEST_CSV = "manifest.csv"
EXPORT_MARKER = ".g1forge-export"
SPLITS = ("train", "val")
PARQUET_METADATA_KEY = b"g1forge.export"
#: Export layouts: one folder per clip (``<clip_id>/motion.<ext>`` + ``clip.json``), or flat ``<clip_id>.<ext>``.
LAYOUTS = ("folders", "flat")
MOTION_STEM = "motion"
CLIP_INFO = "clip.json"
#: Manifest columns copied into each clip folder's ``clip.json`` (when the catalog has them).
CLIP_INFO_COLUMNS = ("clip_id", "video_id", "track_id", "format", "fps", "num_frames", "duration_s",
                     "clip_start_s", "clip_end_s", "source_uri", "source_kind", "license", "tags", "backend",
                     "backend_version", "config_hash", "code_version", "export_code_version", "g1_ready",
                     "quality_score")

#: Provenance columns joined from the ``videos`` table: (manifest column, videos column).
_VIDEO_COLUMNS = (("source_uri", "uri"), ("source_kind", "source_kind"), ("license", "license"),
                  ("tags", "tags"), ("backend", "backend"), ("backend_version", "backend_version"),
                  ("config_hash", "config_hash"), ("code_version", "code_version"))

_MANIFEST_BASE = pa.schema(
    [
        ("clip_id", pa.string()),
        ("video_id", pa.string()),
        ("track_id", pa.int32()),
        ("split", pa.string()),
        ("file", pa.string()),
        ("format", pa.string()),
        ("fps", pa.float64()),
        ("num_frames", pa.int64()),
        ("duration_s", pa.float64()),
        ("clip_start_s", pa.float64()),
        ("clip_end_s", pa.float64()),
        ("source_uri", pa.string()),
        ("source_kind", pa.string()),
        ("license", pa.string()),
        ("tags", pa.list_(pa.string())),
        ("backend", pa.string()),
        ("backend_version", pa.string()),
        ("config_hash", pa.string()),
        ("code_version", pa.string()),
        ("export_code_version", pa.string()),
        ("balance_group", pa.string()),
        ("sample_key", pa.string()),
        ("g1_motion_path", pa.string()),
    ]
)


@dataclass
class ExportReport:
    """What an export did. ``files`` are paths inside ``dest`` (``train/x.csv`` with a split); ``skipped``
    holds ``(clip_id, why)``; ``split_counts`` clips per split; ``group_sizes`` / ``quotas`` the candidates and
    the clips asked of each balance group; ``timings_s`` the seconds spent selecting, writing motion files
    (including folder preparation), writing the manifest and the card."""

    dest: Path
    format: str
    fps: float
    num_selected: int
    num_candidates: int = 0
    files: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    split_counts: dict[str, int] = field(default_factory=dict)
    group_sizes: dict[str, int] = field(default_factory=dict)
    quotas: dict[str, int] = field(default_factory=dict)
    manifest_parquet: Path | None = None
    manifest_csv: Path | None = None
    card: Path | None = None
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def num_exported(self) -> int:
        return len(self.files)

    def summary(self) -> str:
        lines = [f"exported {self.num_exported} of {self.num_selected} selected clips "
                 f"({self.num_candidates} matched) as {self.format} at {self.fps:g} fps to {self.dest}"]
        if len(self.split_counts) > 1 or "val" in self.split_counts:
            lines.append("  " + ", ".join(f"{s}: {n}" for s, n in self.split_counts.items()))
        lines += [f"  skipped {cid}: {why}" for cid, why in self.skipped]
        if self.manifest_parquet is not None:
            lines.append(f"manifest: {self.manifest_parquet} ({self.manifest_csv.name} alongside)")
        if self.card is not None:
            lines.append(f"dataset card: {self.card}")
        return "\n".join(lines)


def export(run_dir: str | Path, where: str | None, fmt: str, dest: str | Path, *, fps: float | None = None,
           limit: int | None = None, sample: int | None = None, seed: int = 0, balance: str | None = None,
           val_frac: float | None = None, workers: int = 1, model=None, layout: str = "folders") -> ExportReport:
    """Export the selected clips' G1 motions from the run folder ``run_dir`` as ``fmt`` into ``dest``.

    where: SQL boolean expression over the clip and video columns (None or blank: every ok clip with a G1
    motion). sample, seed, balance, limit, val_frac: see :mod:`catalog.selection`. fps: output rate (default: the
    format's, 30 for CSV and pickle, 50 for the NPZ formats). workers: processes writing motion files (the
    files do not depend on it). model: the :class:`pipeline.g1.model.G1Model` used for forward kinematics
    (default: the bundled G1). layout: ``"folders"`` (one folder per clip holding ``motion.<ext>`` and
    ``clip.json``) or ``"flat"`` (``<clip_id>.<ext>`` files). Raises :class:`ConfigError` for a bad format, rate,
    option, layout, folder or predicate; clips whose motion file cannot be read are skipped and listed in the
    report.
    """
    _format_and_rate(fmt, fps)  # a bad format, rate, layout or worker count fails before the catalog is read
    _check_workers(workers)
    _check_layout(layout)
    spec = SelectionSpec(where=where, sample=sample, seed=seed, balance=balance, limit=limit,
                         val_frac=val_frac).validate()
    t0 = time.perf_counter()
    selection = select_for_export(run_dir, spec)
    t_select = time.perf_counter() - t0
    report = write_export(selection, fmt, dest, fps=fps, workers=workers, model=model, layout=layout)
    report.timings_s = {"select": t_select, **report.timings_s}
    return report


@dataclass
class ExportSelection:
    """The clips an export takes (:class:`catalog.selection.Selected`), where from, and the manifest's extra
    clip columns (typed fields: metrics and any other clip column)."""

    layout: RunLayout
    spec: SelectionSpec
    selected: Selected
    extra_cols: list[pa.Field]


def select_for_export(run_dir: str | Path, spec: SelectionSpec) -> ExportSelection:
    """Run ``spec`` on the run folder's catalog (read-only)."""
    layout = RunLayout.at(run_dir)
    con = db.connect(layout.root)
    try:
        selected = select_clips(con, spec.validate(), run_label=str(layout.root))
    finally:
        con.close()
    skip = set(CLIP_BASE.names) | set(_MANIFEST_BASE.names)
    schema = selected.table.schema
    extra = [schema.field(n) for n in sorted(set(selected.clip_columns) - skip) if n in schema.names]
    return ExportSelection(layout, spec, selected, extra)


def write_export(selection: ExportSelection, fmt: str, dest: str | Path, *, fps: float | None = None,
                 workers: int = 1, model=None, layout: str = "folders") -> ExportReport:
    """Write the selected clips as ``fmt`` into ``dest`` with the manifest and the card (see :func:`export`)."""
    fmt_spec, out_fps = _format_and_rate(fmt, fps)
    _check_workers(workers)
    _check_layout(layout)
    spec, selected = selection.spec, selection.selected
    rows = selected.table.to_pylist()
    t0 = time.perf_counter()
    dest = Path(dest).expanduser()
    _prepare_dest(dest, split=spec.val_frac is not None)
    report = ExportReport(dest=dest, format=fmt, fps=out_fps, num_selected=len(rows),
                          num_candidates=selected.num_candidates, group_sizes=selected.group_sizes,
                          quotas=selected.quotas)
    from pipeline.process import code_version

    exporter_version = code_version()
    splits = [split_of(row["video_id"], spec.seed, spec.val_frac) for row in rows]
    names = [_file_name(row["clip_id"], fmt_spec.ext, layout) for row in rows]
    rels = [None if name is None else f"{split}/{name}" if spec.val_frac is not None else name
            for name, split in zip(names, splits)]
    tasks = [(str(selection.layout.root), row["clip_id"], row["g1_motion_path"], rel, str(dest), fmt, out_fps)
             for row, rel in zip(rows, rels)]
    outcomes = _write_clips(tasks, fmt_spec.needs_bodies, workers, model)
    manifest_rows = []
    for row, split, rel, (ok, info) in zip(rows, splits, rels, outcomes):
        if not ok:
            report.skipped.append((row["clip_id"], info))
            continue
        report.files.append(rel)
        report.split_counts[split] = report.split_counts.get(split, 0) + 1
        manifest_rows.append(_manifest_row(row, rel, split, fmt, info, selection.extra_cols, exporter_version))
        if layout == "folders":
            _write_clip_info(dest / rel, manifest_rows[-1])
    report.split_counts = {s: report.split_counts.get(s, 0) for s in (SPLITS if spec.val_frac is not None else
                                                                      SPLITS[:1])}
    t_files = time.perf_counter()

    params = export_parameters(spec, fmt, out_fps, exporter_version, layout)
    from catalog.scoring import thresholds_hash

    params["quality_thresholds_hash"] = thresholds_hash(selection.layout)  # which g1_ready/quality_score rules
    schema = manifest_schema(selection.extra_cols).with_metadata(
        {PARQUET_METADATA_KEY: json.dumps(params, sort_keys=True).encode("utf-8")})
    report.manifest_parquet, report.manifest_csv = _write_manifest(dest, manifest_rows, schema)
    t_manifest = time.perf_counter()

    from catalog.card import write_card

    report.card = write_card(dest, manifest_rows, params, report, metric_columns=[
        f.name for f in selection.extra_cols if pa.types.is_floating(f.type) or pa.types.is_integer(f.type)])
    report.timings_s = {"files": t_files - t0, "manifest": t_manifest - t_files,
                        "card": time.perf_counter() - t_manifest}
    return report


def _check_workers(workers) -> None:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"--workers must be a whole number >= 1 (got {workers!r})")


def _check_layout(layout) -> None:
    if layout not in LAYOUTS:
        raise ConfigError(f"--layout must be one of {', '.join(LAYOUTS)} (got {layout!r})")


def _format_and_rate(fmt: str, fps: float | None):
    spec = get_format(fmt)
    out_fps = float(spec.default_fps if fps is None else fps)
    if not math.isfinite(out_fps) or out_fps <= 0:
        raise ConfigError(f"--fps must be a positive number of frames per second (got {fps!r})")
    return spec, out_fps


# --- motion files ---------------------------------------------------------------------------------------------

#: Below this many clips the files are written in this process whatever ``workers`` says (start-up costs more).
MIN_CLIPS_PER_WORKER = 50
_ERRORS_THAT_SKIP = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, G1ForgeError)
_worker_model = None


def _write_clip(task: tuple, model) -> tuple[bool, object]:
    """Read, resample and write one clip. Returns ``(True, (fps, num_frames, duration_s))`` or ``(False, why)``
    for the errors that skip a clip (unreadable or missing file, bad id); anything else raises."""
    run_root, clip_id, relpath, rel, dest, fmt, out_fps = task
    try:
        if rel is None:
            raise ValueError(f"clip id {clip_id!r} cannot be a file name")
        path = Path(run_root) / relpath
        if not path.is_file():
            raise FileNotFoundError(f"G1 motion file {relpath} is missing from the run folder")
        from pipeline.g1_motion import load_g1_motion

        out = resample_g1_motion(load_g1_motion(path), out_fps, model, bodies=get_format(fmt).needs_bodies)
        if out.num_frames == 0:
            raise ValueError("the motion has no frames")
        target = Path(dest) / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        write_motion(fmt, out, target, model)
    except _ERRORS_THAT_SKIP as exc:
        return False, f"{type(exc).__name__}: {exc}"
    return True, (float(out.fps), int(out.num_frames), float(out.duration_s))


def _init_worker(model, needs_bodies: bool) -> None:
    global _worker_model
    if model is None and needs_bodies:
        from pipeline.g1.model import load_g1

        model = load_g1()
    _worker_model = model


def _write_clip_in_worker(task: tuple) -> tuple[bool, object]:
    return _write_clip(task, _worker_model)


def _write_clips(tasks: list[tuple], needs_bodies: bool, workers: int, model) -> list[tuple[bool, object]]:
    """Every task's outcome, in task order; in ``workers`` spawned processes when there are enough tasks."""
    workers = min(workers, max(1, len(tasks) // MIN_CLIPS_PER_WORKER))
    if needs_bodies and model is None and (tasks and workers == 1):
        from pipeline.g1.model import load_g1

        model = load_g1()
    if workers == 1:
        return [_write_clip(t, model) for t in tasks]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")  # no fork of a process that may hold threads (torch, DuckDB)
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(model if needs_bodies else None, needs_bodies)) as pool:
        chunk = max(1, min(64, len(tasks) // (4 * workers)))
        return list(pool.map(_write_clip_in_worker, tasks, chunksize=chunk))


def export_parameters(spec: SelectionSpec, fmt: str, fps: float, exporter_version: str,
                      layout: str = "folders") -> dict:
    """The parameters an export was made with (recorded in the manifest's metadata and the card)."""
    out = spec.to_dict()
    out.update(format=fmt, fps=fps, exporter_code_version=exporter_version, layout=layout)
    return out


def _write_clip_info(motion_path: Path, manifest_row: dict) -> None:
    """``clip.json`` beside a clip folder's motion file: its :data:`CLIP_INFO_COLUMNS` (sorted keys, no time
    stamps: a re-export is byte-identical)."""
    info = {k: manifest_row.get(k) for k in CLIP_INFO_COLUMNS if k in manifest_row}
    text = json.dumps(info, indent=1, sort_keys=True, default=str, allow_nan=False) + "\n"
    (motion_path.parent / CLIP_INFO).write_bytes(text.encode("utf-8"))  # a new folder: nothing to replace


# --- file names -----------------------------------------------------------------------------------------------


def _file_name(clip_id: str, ext: str, layout: str = "folders") -> str | None:
    """``<clip_id>/motion.<ext>`` (``folders``) or ``<clip_id>.<ext>`` (``flat``), or None when the id cannot be
    a file or folder name (the clip is then skipped)."""
    if not clip_id or "/" in clip_id or "\\" in clip_id or clip_id.startswith(".") or clip_id in SPLITS:
        return None
    return f"{clip_id}/{MOTION_STEM}.{ext}" if layout == "folders" else f"{clip_id}.{ext}"


# --- the export folder ----------------------------------------------------------------------------------------


def _output_suffixes() -> set[str]:
    from catalog.card import CARD_FILES

    return {f".{f.ext}" for f in FORMATS.values()} | {Path(MANIFEST_PARQUET).suffix} | {
        Path(n).suffix for n in CARD_FILES}


def _is_clip_folder(folder: Path, suffixes: set[str]) -> bool:
    """True for a clip folder an earlier export wrote: only ``motion.<ext>`` and ``clip.json`` files inside."""
    names = {MOTION_STEM + s for s in suffixes} | {CLIP_INFO}
    return all(p.is_file() and p.name in names for p in folder.iterdir())


def _prepare_dest(dest: Path, split: bool) -> None:
    """Make ``dest`` ready: create it, or clear an earlier export in it; refuse a folder holding other things."""
    if dest.exists() and not dest.is_dir():
        raise ConfigError(f"--dest {dest} is a file; choose a folder for the export")
    if dest.is_dir():
        visible = [p for p in dest.iterdir() if not p.name.startswith(".")]
        if visible and not (dest / EXPORT_MARKER).is_file():
            raise ConfigError(f"--dest {dest} is not empty and holds no earlier g1forge export; choose a new or "
                              "empty folder (trainers read every motion file in it)")
        suffixes = _output_suffixes()
        for folder in (dest, *(dest / s for s in SPLITS)):
            if not folder.is_dir():
                continue
            for p in folder.iterdir():
                if p.is_file() and p.suffix in suffixes:
                    p.unlink()
                elif p.is_dir() and p.name not in SPLITS and _is_clip_folder(p, suffixes):
                    for f in p.iterdir():
                        f.unlink()
                    p.rmdir()
            if folder != dest and not any(folder.iterdir()):
                folder.rmdir()
    try:
        dest.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(dest / EXPORT_MARKER, b"g1forge export folder: re-exporting replaces its motion files, "
                                                 b"manifests, card and plots\n")
        if split:
            for s in SPLITS:
                (dest / s).mkdir(exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the export folder {dest}: {exc}; choose a writable --dest") from None


# --- manifest -------------------------------------------------------------------------------------------------


def _manifest_row(row: dict, rel: str, split: str, fmt: str, written: tuple[float, int, float],
                  extra_cols: list[pa.Field], exporter_version: str) -> dict:
    fps, num_frames, duration_s = written
    out = {
        "clip_id": row["clip_id"],
        "video_id": row.get("video_id"),
        "track_id": row.get("track_id"),
        "split": split,
        "file": rel,
        "format": fmt,
        "fps": fps,
        "num_frames": num_frames,
        "duration_s": duration_s,
        "clip_start_s": row.get("start_s"),
        "clip_end_s": row.get("end_s"),
        "export_code_version": exporter_version,
        "balance_group": row.get("balance_group"),
        "sample_key": row.get("sample_key"),
        "g1_motion_path": row.get("g1_motion_path"),
    }
    for dst, src in _VIDEO_COLUMNS:
        out[dst] = row.get(src)
    for f in extra_cols:
        out[f.name] = row.get(f.name)
    return out


def manifest_schema(extra_cols: list[pa.Field | str]) -> pa.Schema:
    """The manifest's columns: provenance, split and file description, then the extra clip columns (metrics and
    any other clip column; a bare name is a float64 metric) in name order."""
    base = set(_MANIFEST_BASE.names)
    fields = [f if isinstance(f, pa.Field) else pa.field(f, pa.float64()) for f in extra_cols]
    return pa.schema(list(_MANIFEST_BASE) + [f for f in fields if f.name not in base])


def _csv_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def _write_manifest(dest: Path, rows: list[dict], schema: pa.Schema) -> tuple[Path, Path]:
    import pyarrow.parquet as pq

    table = pa.table({n: [r.get(n) for r in rows] for n in schema.names}, schema=schema)
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    parquet_path = dest / MANIFEST_PARQUET
    atomic_write_bytes(parquet_path, buf.getvalue().to_pybytes())

    text = io.StringIO()
    w = csv.writer(text, lineterminator="\n")
    w.writerow(schema.names)
    for r in rows:
        w.writerow([_csv_cell(r.get(n)) for n in schema.names])
    csv_path = dest / MANIFEST_CSV
    atomic_write_bytes(csv_path, text.getvalue().encode("utf-8"))
    return parquet_path, csv_path
