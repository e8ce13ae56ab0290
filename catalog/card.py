"""The dataset card of an export folder: ``README.md`` with what was exported and how, and two plots.

``README.md``: the command that reproduces the export (where, sample, seed, balance, limit, split, format, fps),
clips / duration / frames / source videos per split, clips per balance group (candidates, asked, exported),
licences, source kinds, backends, configuration hashes and code versions, the file layout, a table of the key
metrics (count, median, 5th / 95th percentiles, min, max) and the clips that could not be exported.

``metrics.png``: a grid of histograms of the key metrics (:func:`key_metrics`, range clipped to the 0.5th-99.5th
percentiles so one outlier does not squash the rest); ``duration.png``: clip durations
stacked by split. Plots are drawn with matplotlib's Agg canvas (no pyplot, no global backend change, the default
style whatever the user's matplotlibrc says) and saved without the ``Software`` text chunk, so the same rows give
the same PNG bytes. The card holds no time stamps and no local paths, so a re-export is byte-identical.
"""

from __future__ import annotations

import math
import shlex
from collections import Counter
from pathlib import Path

import numpy as np

from catalog.formats import FORMATS, atomic_write_bytes
from ingest.errors import require_module

CARD = "README.md"
METRICS_PNG = "metrics.png"
DURATION_PNG = "duration.png"
CARD_FILES = (CARD, METRICS_PNG, DURATION_PNG)
MAX_PLOTS = 12
MAX_LISTED_SKIPS = 20

#: Metrics plotted first when the clips have them: human-side quality, robot-side quality, a combined score.
KEY_METRICS = (
    "quality_score", "jitter_m_s3", "root_jerk_m_s3", "foot_contact_score", "foot_sliding_mm_per_frame",
    "tracked_frac", "conf_mean", "keybody_err_mean_m", "joint_limit_near_frac", "joint_speed_peak_frac",
    "robot_foot_sliding_mm_per_frame", "robot_foot_penetration_max_m", "base_wrench_force_per_weight",
    "self_collision_frames",
)  # fmt: skip


def key_metrics(metric_columns: list[str]) -> list[str]:
    """The metrics to plot and tabulate: :data:`KEY_METRICS` that exist, then the other metric columns in name
    order, at most :data:`MAX_PLOTS`."""
    present = set(metric_columns)
    first = [m for m in KEY_METRICS if m in present]
    rest = sorted(present - set(first))
    return (first + rest)[:MAX_PLOTS]


def finite_values(rows: list[dict], column: str) -> np.ndarray:
    """(n,) float64: the column's finite values (NULL, NaN and inf dropped), in row order."""
    vals = [r.get(column) for r in rows]
    arr = np.array([float(v) for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)],
                   dtype=np.float64)
    return arr[np.isfinite(arr)]


# --- markdown -------------------------------------------------------------------------------------------------


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _num(x: float) -> str:
    return "" if x is None or not math.isfinite(x) else f"{x:.4g}"


def _table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return out


def command_line(params: dict) -> str:
    """The ``g1forge export`` command that reproduces these parameters (``RUN`` and ``DEST`` stand for the
    run and export folders)."""
    parts = ["g1forge", "export", "RUN"]
    if params.get("where"):
        parts += ["--where", shlex.quote(params["where"])]
    parts += ["--format", params["format"], "--fps", f"{params['fps']:g}"]
    if params.get("layout", "folders") != "folders":
        parts += ["--layout", params["layout"]]
    for key, flag in (("sample", "--sample"), ("balance", "--balance"), ("limit", "--limit"),
                      ("val_frac", "--val-frac")):
        if params.get(key) is not None:
            parts += [flag, shlex.quote(str(params[key]))]
    if any(params.get(k) is not None for k in ("sample", "balance", "val_frac")):
        parts += ["--seed", str(params["seed"])]
    return " ".join(parts + ["--dest", "DEST"])


def _counted(rows: list[dict], key) -> list[list]:
    clips = Counter(key(r) for r in rows)
    videos = Counter(k for k, _ in {(key(r), r.get("video_id")) for r in rows})
    return [[k if k not in (None, "") else "(none)", clips[k], videos[k]]
            for k in sorted(clips, key=lambda k: (-clips[k], str(k)))]


def card_markdown(rows: list[dict], params: dict, report, metric_columns: list[str]) -> str:
    """The card's text. rows: the manifest rows; params: :func:`catalog.export.export_parameters`; report: the
    :class:`catalog.export.ExportReport` (format, counts, groups, skipped)."""
    fmt = FORMATS[params["format"]]
    splits = list(report.split_counts) or ["train"]
    total_s = sum(r["duration_s"] for r in rows)
    lines = [
        "# G1 motion training set",
        "",
        f"{len(rows)} clips ({total_s:.1f} s, {_hms(total_s)}) of Unitree G1 (29 DoF) motion retargeted from "
        f"videos of people, as `{fmt.name}` at {params['fps']:g} fps. Exported by g1forge "
        f"{params['exporter_code_version']}.",
        "",
        "## How it was selected",
        "",
        "```",
        command_line(params),
        "```",
        "",
    ]
    lines += _table(["parameter", "value"], [
        ["where", f"`{params['where']}`" if params.get("where") else "(every ok clip with a G1 motion)"],
        ["sample", params.get("sample") if params.get("sample") is not None else "(all)"],
        ["seed", params["seed"]],
        ["balance", f"`{params['balance']}`" if params.get("balance") else "(none)"],
        ["limit", params.get("limit") if params.get("limit") is not None else "(none)"],
        ["validation fraction", params.get("val_frac") if params.get("val_frac") is not None else "(no split)"],
        ["format", f"`{fmt.name}` ({fmt.description})"],
        ["fps", f"{params['fps']:g}"],
    ])
    lines += ["", f"{report.num_candidates} clips matched, {report.num_selected} were selected, "
                  f"{len(rows)} exported, {len(report.skipped)} skipped.", ""]
    if params.get("sample") is not None or params.get("balance"):
        lines += ["Clips are taken in the order of sha256(\"<seed>:<clip_id>\"), a random order fixed by the "
                  "seed; a balanced selection gives each group an equal share of the sample, groups smaller than "
                  "their share give all their clips and the rest is shared among the others.", ""]
    if params.get("val_frac") is not None:
        lines += ["The split is by video: a video is `val` when sha256(\"<seed>:split:<video_id>\"), read as a "
                  "number in [0, 1), is below the validation fraction, so clips of one video never straddle "
                  "train and validation and a video keeps its split when others are added.", ""]

    lines += ["## Contents", ""]
    body = []
    for s in splits + ["all"]:
        part = rows if s == "all" else [r for r in rows if r["split"] == s]
        dur = sum(r["duration_s"] for r in part)
        body.append([s, len(part), f"{dur:.1f}", _hms(dur), sum(r["num_frames"] for r in part),
                     len({r["video_id"] for r in part})])
    lines += _table(["split", "clips", "duration (s)", "h:mm:ss", "frames", "source videos"], body)
    if params.get("balance"):
        lines += ["", f"### Balance groups (`{params['balance']}`)", ""]
        grp = [[g, report.group_sizes.get(g, 0), report.quotas.get(g, 0)]
               + [sum(1 for r in rows if r["balance_group"] == g and r["split"] == s) for s in splits]
               for g in report.group_sizes]
        lines += _table(["group", "candidates", "asked"] + [f"exported {s}" for s in splits], grp)

    lines += ["", "## Sources and provenance", "", "Licences (check each source's terms before training):", ""]
    lines += _table(["licence", "clips", "videos"], _counted(rows, lambda r: r.get("license")))
    lines += ["", "Source kinds:", ""]
    lines += _table(["source kind", "clips", "videos"], _counted(rows, lambda r: r.get("source_kind")))
    lines += ["", "Pose backends and the run's code:", ""]
    lines += _table(["backend", "backend version", "configuration hash", "g1forge (run)", "clips"], [
        [*k, n] for k, n in sorted(Counter(
            (r.get("backend") or "", r.get("backend_version") or "", r.get("config_hash") or "",
             r.get("code_version") or "") for r in rows).items())])

    lines += ["", "## Files", ""]
    folders = params.get("layout", "folders") == "folders"
    where = "`train/` and `val/`" if params.get("val_frac") is not None else "this folder"
    if folders:
        lines += [f"One folder per clip, `<clip_id>/`, in {where}, holding `motion.{fmt.ext}` ({params['fps']:g} fps) "
                  "and `clip.json` (its source, licence, backend, configuration hash, code versions, frames, "
                  "duration and quality). "]
    else:
        lines += [f"One `.{fmt.ext}` file per clip, named `<clip_id>.{fmt.ext}`, in {where}."]
    lines[-1] += ("`manifest.parquet` and `manifest.csv` list every file with its split, fps, source, licence, "
                  "backend, configuration hash, code versions and metrics (the Parquet file also holds the export "
                  "parameters in its metadata, key `g1forge.export`).")
    lines += [""]
    if rows:
        from catalog.trainers import training_steps

        example = sorted(rows, key=lambda r: r["clip_id"])[0]
        steps = training_steps(fmt.name, params["fps"], example["file"], example["clip_id"])
        if steps:
            lines += ["## Training with it", "", f"For the clip `{example['clip_id']}` (any other the same way):",
                      ""] + steps + [""]

    metrics = key_metrics(metric_columns)
    lines += ["## Quality metrics", ""]
    if metrics:
        stats = []
        for m in metrics:
            v = finite_values(rows, m)
            if len(v):
                p5, med, p95 = np.percentile(v, [5, 50, 95])
                stats.append([f"`{m}`", len(v), _num(med), _num(p5), _num(p95), _num(v.min()), _num(v.max())])
            else:
                stats.append([f"`{m}`", 0, "", "", "", "", ""])
        lines += _table(["metric", "n", "median", "p5", "p95", "min", "max"], stats)
        lines += [""]
    lines += [f"![metric distributions]({METRICS_PNG})", "", f"![clip durations]({DURATION_PNG})", ""]
    if report.skipped:
        lines += ["## Skipped", "", f"{len(report.skipped)} selected clips could not be exported:", ""]
        lines += [f"- `{cid}`: {why}" for cid, why in report.skipped[:MAX_LISTED_SKIPS]]
        if len(report.skipped) > MAX_LISTED_SKIPS:
            lines.append(f"- ... and {len(report.skipped) - MAX_LISTED_SKIPS} more")
        lines.append("")
    return "\n".join(lines)


# --- plots ----------------------------------------------------------------------------------------------------


def _figure(width_in: float, height_in: float):
    """A matplotlib Figure on an Agg canvas (no pyplot state), drawn in the default style."""
    style = require_module("matplotlib.style", "the export's dataset plots", "pip install matplotlib")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with style.context("default"):
        fig = Figure(figsize=(width_in, height_in), dpi=100)
    FigureCanvasAgg(fig)
    return fig, style


def png_bytes(fig, style) -> bytes:
    """The figure as PNG without the ``Software`` text chunk (the same drawing gives the same bytes)."""
    import io

    buf = io.BytesIO()
    with style.context("default"):
        fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def metrics_png(rows: list[dict], metrics: list[str]) -> bytes:
    """A grid of histograms, three per row, one per metric: 30 bins over the 0.5th-99.5th percentiles of the
    finite values (how many fall outside is in the title)."""
    n = max(len(metrics), 1)
    cols = min(3, n)
    nrows = math.ceil(n / cols)
    fig, style = _figure(4.0 * cols, 3.0 * nrows)
    with style.context("default"):
        axes = fig.subplots(nrows, cols, squeeze=False)
        fig.subplots_adjust(left=0.07, right=0.98, bottom=0.6 / (3.0 * nrows), top=1 - 0.55 / (3.0 * nrows),
                            wspace=0.3, hspace=0.65)
        for ax in axes.flat[len(metrics):]:
            ax.set_axis_off()
        if not metrics:
            axes[0, 0].text(0.5, 0.5, "no metric columns", ha="center", va="center")
        for ax, m in zip(axes.flat, metrics):
            v = finite_values(rows, m)
            title = f"{m}\nn={len(v)}"
            if len(v):
                lo, hi, outside = histogram_range(v)
                if hi > lo and outside:  # long tails would squash the histogram into one bar
                    title += f", {outside} outside p0.5-p99.5 not shown"
                ax.hist(v, bins=30, range=(lo, hi) if hi > lo else None, color="#4477aa")
            else:
                ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(title, fontsize=9)
            ax.tick_params(labelsize=8)
        return png_bytes(fig, style)


def histogram_range(values: np.ndarray) -> tuple[float, float, int]:
    """``(lo, hi, outside)``: the 0.5th and 99.5th percentiles of ``values`` taken as data values (so with few
    clips nothing is cut: interpolated percentiles of two values would lie strictly between them and hide
    both) and how many values fall outside them."""
    lo = float(np.percentile(values, 0.5, method="lower"))
    hi = float(np.percentile(values, 99.5, method="higher"))
    return lo, hi, int(np.sum((values < lo) | (values > hi)))


def duration_png(rows: list[dict], splits: list[str]) -> bytes:
    """A histogram of clip durations (s), stacked by split."""
    fig, style = _figure(6.0, 3.5)
    with style.context("default"):
        ax = fig.subplots()
        fig.subplots_adjust(left=0.12, right=0.97, bottom=0.15, top=0.95)
        data = [np.array([r["duration_s"] for r in rows if r["split"] == s], dtype=np.float64) for s in splits]
        if sum(len(d) for d in data):
            ax.hist(data, bins=30, stacked=True, label=[f"{s} ({len(d)})" for s, d in zip(splits, data)],
                    color=["#4477aa", "#ee6677", "#228833"][:len(data)])
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no clips", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel("clip duration (s)")
        ax.set_ylabel("clips")
        return png_bytes(fig, style)


def write_card(dest: Path, rows: list[dict], params: dict, report, metric_columns: list[str]) -> Path:
    """Write ``README.md``, ``metrics.png`` and ``duration.png`` into ``dest``; returns the card's path."""
    dest = Path(dest)
    splits = list(report.split_counts) or ["train"]
    metrics = key_metrics(metric_columns)
    atomic_write_bytes(dest / METRICS_PNG, metrics_png(rows, metrics))
    atomic_write_bytes(dest / DURATION_PNG, duration_png(rows, splits))
    path = dest / CARD
    atomic_write_bytes(path, card_markdown(rows, params, report, metric_columns).encode("utf-8"))
    return path
