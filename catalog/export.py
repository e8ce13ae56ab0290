"""``g1forge export``: write the G1 motions of selected clips in a trainer's format, with a manifest.

Selection: the ``ok`` clips of a run folder that have a G1 motion (``g1_motion_path`` set), filtered by an optional
SQL predicate over the ``clips`` table's columns (``--where "duration_s > 3 AND jitter_m_s3 < 40"``; video
columns are reachable through a subquery, e.g. ``video_id IN (SELECT video_id FROM videos WHERE license =
'cc-by')``), ordered by ``clip_id``, at most ``limit`` of them. The catalog is opened read-only.

Output in ``dest``: one file per clip, ``<clip_id>.<ext>`` (see :mod:`catalog.formats`), and
``manifest.parquet`` + ``manifest.csv`` with one row per exported clip: where the file came from (source uri,
backend, versions, configuration hash), what it holds (format, fps, frames, duration) and the clip's metric
columns. Exporting the same selection again gives byte-identical files.
"""

from __future__ import annotations

import csv
import io
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from catalog import db
from catalog.formats import atomic_write_bytes, get_format, write_motion
from catalog.layout import RunLayout
from catalog.schema import CLIP_BASE
from ingest.errors import ConfigError, G1ForgeError
from pipeline.resample import resample_g1_motion

MANIFEST_PARQUET = "manifest.parquet"
MANIFEST_CSV = "manifest.csv"

#: Provenance columns joined from the ``videos`` table: (manifest column, videos column).
_VIDEO_COLUMNS = (("source_uri", "uri"), ("license", "license"), ("backend", "backend"),
                  ("backend_version", "backend_version"), ("config_hash", "config_hash"),
                  ("code_version", "code_version"))

_MANIFEST_BASE = pa.schema(
    [
        ("clip_id", pa.string()),
        ("video_id", pa.string()),
        ("track_id", pa.int32()),
        ("file", pa.string()),
        ("format", pa.string()),
        ("fps", pa.float64()),
        ("num_frames", pa.int64()),
        ("duration_s", pa.float64()),
        ("clip_start_s", pa.float64()),
        ("clip_end_s", pa.float64()),
        ("source_uri", pa.string()),
        ("license", pa.string()),
        ("backend", pa.string()),
        ("backend_version", pa.string()),
        ("config_hash", pa.string()),
        ("code_version", pa.string()),
        ("g1_motion_path", pa.string()),
    ]
)


@dataclass
class ExportReport:
    """What an export did. ``files`` are names inside ``dest``; ``skipped`` holds ``(clip_id, why)``."""

    dest: Path
    format: str
    fps: float
    num_selected: int
    files: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    manifest_parquet: Path | None = None
    manifest_csv: Path | None = None

    @property
    def num_exported(self) -> int:
        return len(self.files)

    def summary(self) -> str:
        lines = [f"exported {self.num_exported} of {self.num_selected} selected clips as {self.format} "
                 f"at {self.fps:g} fps to {self.dest}"]
        lines += [f"  skipped {cid}: {why}" for cid, why in self.skipped]
        if self.manifest_parquet is not None:
            lines.append(f"manifest: {self.manifest_parquet} ({self.manifest_csv.name} alongside)")
        return "\n".join(lines)


def export(run_dir: str | Path, where: str | None, fmt: str, dest: str | Path, *, fps: float | None = None,
           limit: int | None = None, model=None) -> ExportReport:
    """Export the selected clips' G1 motions from the run folder ``run_dir`` as ``fmt`` into ``dest``.

    where: SQL boolean expression over the clips table (None or blank: every ok clip with a G1 motion).
    fps: output rate (default: the format's, 30 for CSV and pickle, 50 for the NPZ formats). limit: at most
    this many clips (the first by clip_id). model: the :class:`pipeline.g1.model.G1Model` used for forward
    kinematics (default: the bundled G1). Raises :class:`ConfigError` for a bad format, rate, limit, folder or
    predicate; clips whose motion file cannot be read are skipped and listed in the report.
    """
    spec = get_format(fmt)
    out_fps = float(spec.default_fps if fps is None else fps)
    if not math.isfinite(out_fps) or out_fps <= 0:
        raise ConfigError(f"--fps must be a positive number of frames per second (got {fps!r})")
    if limit is not None and (int(limit) != limit or limit < 0):
        raise ConfigError(f"--limit must be a whole number >= 0 (got {limit!r})")
    layout = RunLayout.at(run_dir)
    rows, metric_cols = _select(layout, where, limit)

    dest = Path(dest).expanduser()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the export folder {dest}: {exc}; choose a writable --dest") from None
    report = ExportReport(dest=dest, format=fmt, fps=out_fps, num_selected=len(rows))
    if spec.needs_bodies and model is None and rows:
        from pipeline.g1.model import load_g1

        model = load_g1()

    manifest_rows = []
    for row in rows:
        clip_id = row["clip_id"]
        try:
            name = _file_name(clip_id, spec.ext)
            motion = _load_motion(layout, row["g1_motion_path"])
            out = resample_g1_motion(motion, out_fps, model, bodies=spec.needs_bodies)
            if out.num_frames == 0:
                raise ValueError("the motion has no frames")
            write_motion(fmt, out, dest / name)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, G1ForgeError) as exc:
            report.skipped.append((clip_id, f"{type(exc).__name__}: {exc}"))
            continue
        report.files.append(name)
        manifest_rows.append(_manifest_row(row, name, fmt, out, metric_cols))

    report.manifest_parquet, report.manifest_csv = _write_manifest(dest, manifest_rows, metric_cols)
    return report


# --- selection ------------------------------------------------------------------------------------------------


def _select(layout: RunLayout, where: str | None, limit: int | None) -> tuple[list[dict], list[str]]:
    """The selected clip rows (clip columns + provenance) and the clips table's metric column names."""
    con = db.connect(layout.root)
    try:
        columns = {r[0]: r[1] for r in con.execute("DESCRIBE clips").fetchall()}
        if "g1_motion_path" not in columns:
            raise ConfigError(f"the catalog in {layout.root} has no G1 motions (no g1_motion_path column); "
                              "run `g1forge run` with this version to retarget its clips, then export")
        base = set(CLIP_BASE.names)
        metric_cols = sorted(n for n, t in columns.items() if n not in base and t == "DOUBLE")
        predicate = (where or "").strip() or "TRUE"
        video_cols = ", ".join(f"v.{src} AS {dst}" for dst, src in _VIDEO_COLUMNS)
        sql = (
            "WITH sel AS (SELECT * FROM clips WHERE status = 'ok' AND g1_motion_path IS NOT NULL "
            f"AND g1_motion_path <> '' AND ({predicate}\n)) "
            f"SELECT sel.*, {video_cols} FROM sel LEFT JOIN videos v ON v.video_id = sel.video_id "
            "ORDER BY sel.clip_id"
        )
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        try:
            db.check_select_only(sql)  # a predicate cannot smuggle in a second statement (COPY, ...)
            rows = con.sql(sql).to_arrow_table().to_pylist()
        except Exception as exc:  # duckdb's own error types (parser, binder, conversion)
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(
                f"bad --where predicate {where!r}: {msg}. It must be a SQL boolean expression over the clips "
                "table's columns, e.g. \"duration_s > 3 AND video_id = 'file-ab12'\"; list the columns with "
                f"`g1forge query {layout.root} \"DESCRIBE clips\"`") from None
    finally:
        con.close()
    return rows, metric_cols


def _file_name(clip_id: str, ext: str) -> str:
    if not clip_id or "/" in clip_id or "\\" in clip_id or clip_id.startswith("."):
        raise ValueError(f"clip id {clip_id!r} cannot be a file name")
    return f"{clip_id}.{ext}"


def _load_motion(layout: RunLayout, relpath: str):
    from pipeline.g1_motion import load_g1_motion

    path = layout.root / relpath
    if not path.is_file():
        raise FileNotFoundError(f"G1 motion file {relpath} is missing from the run folder")
    return load_g1_motion(path)


# --- manifest -------------------------------------------------------------------------------------------------


def _manifest_row(row: dict, name: str, fmt: str, motion, metric_cols: list[str]) -> dict:
    out = {
        "clip_id": row["clip_id"],
        "video_id": row.get("video_id"),
        "track_id": row.get("track_id"),
        "file": name,
        "format": fmt,
        "fps": float(motion.fps),
        "num_frames": int(motion.num_frames),
        "duration_s": float(motion.duration_s),
        "clip_start_s": row.get("start_s"),
        "clip_end_s": row.get("end_s"),
        "g1_motion_path": row.get("g1_motion_path"),
    }
    for dst, _ in _VIDEO_COLUMNS:
        out[dst] = row.get(dst)
    for name_ in metric_cols:
        out[name_] = row.get(name_)
    return out


def manifest_schema(metric_cols: list[str]) -> pa.Schema:
    """The manifest's columns: provenance and file description, then the clip's metric columns (float64)."""
    base = set(_MANIFEST_BASE.names)
    return pa.schema(list(_MANIFEST_BASE) + [pa.field(n, pa.float64()) for n in metric_cols if n not in base])


def _write_manifest(dest: Path, rows: list[dict], metric_cols: list[str]) -> tuple[Path, Path]:
    import pyarrow.parquet as pq

    schema = manifest_schema(metric_cols)
    table = pa.table({n: [r.get(n) for r in rows] for n in schema.names}, schema=schema)
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    parquet_path = dest / MANIFEST_PARQUET
    atomic_write_bytes(parquet_path, buf.getvalue().to_pybytes())

    text = io.StringIO()
    w = csv.writer(text, lineterminator="\n")
    w.writerow(schema.names)
    for r in rows:
        w.writerow(["" if r.get(n) is None else repr(r[n]) if isinstance(r.get(n), float) else r[n]
                    for n in schema.names])
    csv_path = dest / MANIFEST_CSV
    atomic_write_bytes(csv_path, text.getvalue().encode("utf-8"))
    return parquet_path, csv_path
