"""Publishing a failed video as one file: ``data/<shard>/<video_id>/videos.failed.<config_hash>.parquet``.

A video that failed has one row of ``videos`` and nothing else (no tracks, clips or motion files). Writing it as
:func:`catalog.writer.publish_video` writes a video (three fragments and a marker) costs four files per failure:
10,000 missing inputs left 40,010 files, 400,000 objects at 100,000 inputs on an object store. Here the row's
file is the marker too: its name carries the configuration hash, so resume still decides by a file's existence
(:meth:`catalog.layout.RunLayout.is_done`), the ``videos`` view reads it through its fragment glob, compaction
merges it like any fragment (and leaves ``_done.<config_hash>`` in its place) and a mirror uploads it last, as a
marker (:func:`catalog.storage.put_tree`).

The publish is atomic like a full video's: the file is written into a staging folder under ``OUT/tmp`` that
replaces the video's folder by one rename (the same swap :mod:`catalog.writer` uses, and the same test-only
fault hook), so a folder never holds a failed row next to an older publish's fragments.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from catalog import schema as S
from catalog import writer
from catalog.layout import RunLayout, failed_fragment_name


def is_row_only(status: str, track_rows: list, clip_rows: list, motion_files: int) -> bool:
    """Whether a video is published as one file: it failed and has no track, clip or motion file."""
    return status == "failed" and not track_rows and not clip_rows and motion_files == 0


def publish_failed_row(layout: RunLayout, video_id: str, config_hash: str, video_row: dict) -> Path:
    """Publish the failed ``video_row`` as the folder of ``video_id`` holding one file; returns that folder.

    Replaces whatever folder the video had (an older failure, or an ok video redone with ``--force``). Several
    processes may publish the same video at once; one complete folder remains. Raises :class:`WriteError` when
    the file cannot be written (disk full, permissions); nothing is published then.
    """
    if video_row.get("status") != "failed":
        raise ValueError(f"{video_id}: only a failed row is published as one file, got {video_row.get('status')!r}")
    name = failed_fragment_name(config_hash)

    def fill(staging: Path) -> None:
        pq.write_table(S.table_from_rows([video_row], S.VIDEOS), staging / name)

    return writer.publish_staged(layout, video_id, fill, name, "the failed row")
