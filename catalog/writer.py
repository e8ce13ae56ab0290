"""Writing one video's outputs so that a reader never sees half of them.

Everything for a video (its three Parquet fragments, its clip motion files and, last, the completion marker) is
written into a staging folder under ``OUT/tmp`` and then published with one ``rename`` onto
``OUT/data/<shard>/<video_id>``. A process killed at any moment leaves either the previous complete folder or the
new complete folder, plus at most some debris in ``OUT/tmp`` that the next run removes.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq

from catalog import schema as S
from catalog.layout import RunLayout
from ingest.errors import WriteError

#: Test-only fault hook: called with the staging folder before publishing (e.g. to inject a disk-full error).
_before_publish_hook: Callable[[Path], None] | None = None


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def write_schema_fragments(layout: RunLayout, metric_names: list[str]) -> None:
    """Zero-row fragments holding each table's full schema, so views exist (typed) before any video is done."""
    for table, schema in (("videos", S.VIDEOS), ("tracks", S.TRACKS), ("clips", S.clips_schema(metric_names))):
        write_parquet_atomic(schema.empty_table(), layout.schema_fragment(table))


def _writer_alive(entry: Path) -> bool:
    """Whether the process that staged ``entry`` (``<video_id>.<pid>.<hex>``) still runs: a worker of a killed
    driver can outlive it for a moment, and deleting its staging folder would make it publish a false
    write failure."""
    parts = entry.name.split(".")
    if len(parts) != 3 or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_staging(layout: RunLayout) -> int:
    """Remove leftovers of killed runs from ``OUT/tmp`` (not the folders of writers still running); returns
    how many entries were removed."""
    if not layout.tmp_dir.exists():
        return 0
    n = 0
    for entry in layout.tmp_dir.iterdir():
        if _writer_alive(entry):
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        n += 1
    return n


#: How often a publish moves a competing folder away and tries again before giving up.
_PUBLISH_ATTEMPTS = 8


def _swap_into_place(staging: Path, final: Path, trash: Path, marker_name: str) -> None:
    """Rename the complete folder ``staging`` onto ``final``, replacing what is there.

    A folder only ever reaches ``final`` by a rename of a complete staging folder, so whatever another
    process put there is complete too. Concurrent writers race at two points, both handled here: the folder
    to move away was already moved away by another writer (``FileNotFoundError``: nothing to move), and
    another writer's folder lands between our move and our rename (``ENOTEMPTY``/``EEXIST``): if it carries
    the same completion marker it is an equally valid publish of this video, so ours is dropped; otherwise it
    is moved away in turn, up to :data:`_PUBLISH_ATTEMPTS` times. ``staging`` and any replaced folder are
    removed; raises :class:`OSError` only for real write failures.
    """
    for attempt in range(_PUBLISH_ATTEMPTS):
        moved_away = trash.with_name(f"{trash.name}.{attempt}")
        try:
            os.replace(final, moved_away)
        except FileNotFoundError:
            moved_away = None  # no folder there, or another writer just moved it away
        try:
            os.replace(staging, final)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            if (final / marker_name).is_file():  # another writer's complete publish landed first
                shutil.rmtree(staging, ignore_errors=True)
                return
            continue
        finally:
            if moved_away is not None:
                shutil.rmtree(moved_away, ignore_errors=True)
        return
    raise OSError(errno.EBUSY, f"{final} kept being replaced by other writers during {_PUBLISH_ATTEMPTS} attempts")


def publish_video(
    layout: RunLayout,
    video_id: str,
    config_hash: str,
    video_row: dict,
    track_rows: list[dict],
    clip_rows: list[dict],
    metric_names: list[str],
    write_motions: Callable[[Path], None] | None = None,
) -> Path:
    """Stage and atomically publish a video's fragments; returns the published folder.

    write_motions: called with the staged ``clips/`` folder to write the clip motion files into it.
    Raises :class:`WriteError` when anything cannot be written (disk full, permissions); nothing is published.

    Several processes may publish the same video at once (a retried video whose first worker was presumed dead
    but still ran): each returns normally and one complete folder remains, the last renamed or, when another
    writer's complete folder of the same configuration lands first, that one (see :func:`_swap_into_place`).
    """
    staging = layout.tmp_dir / f"{video_id}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    try:
        (staging / "clips").mkdir(parents=True)
        pq.write_table(S.table_from_rows([video_row], S.VIDEOS), staging / "videos.parquet")
        pq.write_table(S.table_from_rows(track_rows, S.TRACKS), staging / "tracks.parquet")
        pq.write_table(S.table_from_rows(clip_rows, S.clips_schema(metric_names)), staging / "clips.parquet")
        if write_motions is not None:
            write_motions(staging / "clips")
        marker = {"video_id": video_id, "config_hash": config_hash, "status": video_row.get("status")}
        (staging / f"_done.{config_hash}").write_text(json.dumps(marker))
        if _before_publish_hook is not None:
            _before_publish_hook(staging)
        final = layout.video_dir(video_id)
        final.parent.mkdir(parents=True, exist_ok=True)
        _swap_into_place(staging, final, layout.tmp_dir / f"old.{video_id}.{uuid.uuid4().hex[:8]}",
                         f"_done.{config_hash}")
        return final
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise WriteError(f"could not write the outputs of {video_id}: {exc}; free disk space or fix permissions "
                         f"under {layout.root}, then run again") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
