"""Small run folders for the compaction tests, written by the real run-folder code (``prepare_run_folder`` and
``publish_video``), and helpers to read every row of a catalog back."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from catalog.layout import RunLayout
from catalog.writer import publish_video
from cluster.config import RunConfig
from cluster.run import prepare_run_folder

CONFIG = RunConfig(backend="phalp-pkl")
ORDER = {"videos": "video_id", "tracks": "video_id, track_id", "clips": "clip_id"}
#: The statement format-1 g1forge stored for each view (catalog/db.py before compaction existed).
V1_VIEW = ("CREATE OR REPLACE VIEW {table} AS "
           "SELECT * FROM read_parquet('data/*/*/{table}.parquet', union_by_name = true)")


def metric_names() -> list[str]:
    from pipeline.process import RETARGET_COLUMNS
    from pipeline.quality import METRIC_NAMES
    from pipeline.robot_metrics import ROBOT_METRIC_NAMES
    from pipeline.trajectory import TRAJECTORY_METRIC_NAMES

    return [*METRIC_NAMES, *TRAJECTORY_METRIC_NAMES, *ROBOT_METRIC_NAMES, *RETARGET_COLUMNS]


def video_id(i: int) -> str:
    return f"file-{i:016x}"


def new_run_folder(root: Path) -> RunLayout:
    layout = RunLayout.at(root)
    prepare_run_folder(layout, CONFIG)
    return layout


def publish(layout: RunLayout, vid: str, n_tracks: int, n_clips: int, *, seed: int = 0,
            extra_metrics: tuple[str, ...] = (), status: str | None = None) -> None:
    """Publish one video with ``n_tracks`` tracks and ``n_clips`` clips (values drawn from ``seed``)."""
    rng = np.random.default_rng(seed)
    chash = CONFIG.config_hash()
    status = status or ("ok" if n_clips else "filtered")
    video_row = {
        "video_id": vid, "uri": f"/videos/{vid}.mp4", "source_kind": "local", "status": status,
        "reason": "" if status == "ok" else "no_person: nobody in the video", "attempts": 1,
        "config_hash": chash, "backend": "phalp-pkl", "tags": ["walk", f"s{seed}"] if seed % 2 else [],
        "license": "cc-by" if seed % 3 else None, "duration_s": float(rng.uniform(5, 60)), "fps": 30.0,
        "is_vfr": bool(seed % 2), "width_px": 1920, "height_px": 1080, "num_frames": int(rng.integers(100, 900)),
        "num_tracks": n_tracks, "num_clips": n_clips, "num_clips_ok": n_clips,
        "finished_at": datetime(2025, 5, 1, tzinfo=timezone.utc) + timedelta(seconds=seed),
    }
    track_rows = [{"video_id": vid, "track_id": t, "status": "ok", "reason": "",
                   "num_frames": int(rng.integers(30, 300)), "tracked_frac": float(rng.uniform()),
                   "has_smpl": True, "num_clips": n_clips}
                  for t in range(n_tracks)]
    clip_rows = []
    names = metric_names() + list(extra_metrics)
    for c in range(n_clips):
        clip_id = f"{vid}-t{c % max(n_tracks, 1)}-f{c * 100:06d}-{c * 100 + 99:06d}"
        row = {"clip_id": clip_id, "video_id": vid, "track_id": c % max(n_tracks, 1), "status": "ok", "reason": "",
               "start_frame": c * 100, "end_frame": c * 100 + 99, "duration_s": float(rng.uniform(2, 10)),
               "num_frames": 100, "fps": 30.0, "joint_set": "g1forge_body20", "has_smpl": True,
               "motion_path": RunLayout.clip_motion_relpath(vid, clip_id),
               "g1_motion_path": RunLayout.g1_motion_relpath(vid, clip_id)}
        for name in names:
            if name not in row:
                row[name] = math.nan if rng.uniform() < 0.1 else float(rng.uniform(0, 100))
        clip_rows.append(row)

    def write_motions(folder: Path) -> None:
        for r in clip_rows:
            (folder / f"{r['clip_id']}.npz").write_bytes(f"human {r['clip_id']} {seed}".encode())
            (folder / f"{r['clip_id']}.g1.npz").write_bytes(f"g1 {r['clip_id']} {seed}".encode())

    publish_video(layout, vid, chash, video_row, track_rows, clip_rows, names, write_motions)


def make_catalog(root: Path, num_videos: int = 10, seed: int = 0) -> RunLayout:
    """A run folder of ``num_videos`` videos: some without tracks or clips, some whose clips fragment has an
    extra metric column (a newer code version's), NaN metrics, list and timestamp columns."""
    layout = new_run_folder(root)
    for i in range(num_videos):
        n_clips = 0 if i % 4 == 3 else 1 + i % 3
        publish(layout, video_id(i), n_tracks=0 if n_clips == 0 else 1 + i % 2, n_clips=n_clips, seed=seed + i,
                extra_metrics=("extra_metric_m",) if i % 3 == 1 else ())
    return layout


def all_rows(run_dir: Path) -> dict[str, list[dict]]:
    """Every row of every view (NaN made comparable), in a fixed order."""
    from catalog import open_catalog

    con = open_catalog(run_dir)
    try:
        out = {}
        for table, order in ORDER.items():
            rows = con.sql(f"SELECT * FROM {table} ORDER BY {order}").to_arrow_table().to_pylist()
            out[table] = [{k: ("NaN" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
                          for r in rows]
        return out
    finally:
        con.close()


def files_under(root: Path) -> dict[str, int]:
    """Relative path -> size of every file under ``root``."""
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}


def make_v1(layout: RunLayout) -> None:
    """Turn a folder written by this code into exactly what format-1 g1forge wrote: info stamped 1 (no
    history), no compaction state or quality thresholds file, and format 1's view statements."""
    import duckdb

    info = json.loads(layout.info_path.read_text())
    info["format_version"] = 1
    info.pop("format_history", None)
    layout.info_path.write_text(json.dumps(info, indent=2))
    (layout.root / "quality.toml").unlink(missing_ok=True)
    assert not layout.compacted_dir.exists()
    layout.duckdb_path.unlink()
    con = duckdb.connect(str(layout.duckdb_path))
    try:
        con.execute(f"SET file_search_path = '{layout.root}'")
        for table in ORDER:
            con.execute(V1_VIEW.format(table=table))
    finally:
        con.close()
