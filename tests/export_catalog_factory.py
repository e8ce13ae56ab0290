"""Small run folders for the export tests: videos with chosen licence, source kind and tags, and ok clips whose
G1 motion files are copies of a few synthetic motions (written once, copied per clip)."""

from __future__ import annotations

import json
from pathlib import Path

from catalog import db, writer
from catalog.layout import RunLayout
from pipeline.g1_motion import save_g1_motion

METRICS = ["g1_key_body_err_mean_m", "jitter_m_s3"]


def new_run(root: Path) -> RunLayout:
    """An empty run folder (info file, schema fragments, views) at ``root``."""
    layout = RunLayout.at(root)
    layout.root.mkdir(parents=True)
    layout.info_path.write_text(json.dumps({"format_version": 1}))
    writer.write_schema_fragments(layout, METRICS)
    db.write_views(layout)
    return layout


def motion_templates(model, folder: Path, lengths=(61, 91)) -> list[bytes]:
    """The bytes of G1 motion files of ``lengths`` frames at 30 fps (``formats_motions.g1_test_motion``)."""
    from formats_motions import g1_test_motion

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, n in enumerate(lengths):
        path = folder / f"template{i}.g1.npz"
        save_g1_motion(g1_test_motion(model, clip_id=f"template{i}", num_frames=n, seed=i), path)
        out.append(path.read_bytes())
    return out


def publish(layout: RunLayout, video_id: str, num_clips: int, *, templates: list[bytes] | None = None,
            license: str | None = "cc-by", source_kind: str = "local", tags: tuple[str, ...] = (),
            jitter=None, extra_statuses: tuple[str, ...] = (), reverse_rows: bool = False) -> list[str]:
    """Publish one video with ``num_clips`` ok clips (``<video_id>-t0-c<k>``) plus one ``filtered`` clip per
    entry of ``extra_statuses``; returns the ok clip ids. templates: motion file bytes, clip k gets
    ``templates[k % len]`` (None: no motion files, rows only). jitter: per-clip values (default 1, 2, ...)."""
    video = {"video_id": video_id, "uri": f"/videos/{video_id}.mp4", "source_kind": source_kind, "status": "ok",
             "reason": "", "backend": "synthetic", "backend_version": "1.0", "config_hash": "cfg123",
             "code_version": "run-1", "license": license, "tags": list(tags)}
    rows, ids = [], []
    for k in range(num_clips + len(extra_statuses)):
        clip_id = f"{video_id}-t0-c{k}"
        ok = k < num_clips
        rows.append({"clip_id": clip_id, "video_id": video_id, "track_id": 0, "status": "ok" if ok else "filtered",
                     "reason": "" if ok else "too_short: test", "start_s": 2.0 * k, "end_s": 2.0 * k + 2.0,
                     "duration_s": 2.0, "num_frames": 61, "fps": 30.0,
                     "jitter_m_s3": float(jitter[k]) if jitter is not None else float(k + 1),
                     "g1_key_body_err_mean_m": 0.01 * (k + 1),
                     "g1_motion_path": layout.g1_motion_relpath(video_id, clip_id) if ok else None})
        if ok:
            ids.append(clip_id)
    if reverse_rows:
        rows.reverse()

    def write_motions(clips_dir: Path) -> None:
        if templates:
            for k, cid in enumerate(ids):
                (clips_dir / f"{cid}.g1.npz").write_bytes(templates[k % len(templates)])

    writer.publish_video(layout, video_id, "cfg123", video, [], rows, METRICS, write_motions)
    return ids
