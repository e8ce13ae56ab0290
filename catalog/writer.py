"""Writing one video's outputs so that a reader never sees half of them.

Everything for a video (its three Parquet fragments, its clip motion files and, last, the completion marker) is
written into a staging folder under ``OUT/tmp`` and then published with one ``rename`` onto
``OUT/data/<shard>/<video_id>``. A process killed at any moment leaves either the previous complete folder or the
new complete folder, plus at most some debris in ``OUT/tmp`` that the next run removes.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from catalog import schema as S
from catalog.layout import RunLayout
from ingest.errors import WriteError

#: Test-only fault hook: called with the staging folder before publishing (e.g. to inject a disk-full error).
_before_publish_hook: Callable[[Path], None] | None = None


#: ``errno`` values that mean "no room left": the disk is full or the user's quota is used up.
DISK_FULL_ERRNOS = frozenset(e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if e is not None)
#: Their messages, for errors of libraries that carry the system's text but no ``errno`` (DuckDB, Arrow).
DISK_FULL_TEXTS = tuple(os.strerror(e) for e in sorted(DISK_FULL_ERRNOS))


class DiskFull(WriteError):
    """The run folder's disk (or quota) is full at a write the whole run depends on: the run stops.

    Per-video write failures stay rows (``write: ...``, see :func:`publish_video`); this one ends the run with
    :attr:`exit_code`, keeping every finished video, so the same command resumes once there is space.
    """

    exit_code = 3

    def __init__(self, what: str):
        super().__init__(f"disk full while writing {what}: free space and run the same command again; "
                         "finished videos are kept")
        self.what = what


def says_disk_full(text: str) -> bool:
    """Whether a message (an exception's, or a catalog ``reason``) carries the system's disk-full text."""
    return any(t in text for t in DISK_FULL_TEXTS)


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) says the disk or the quota is full."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DiskFull) or getattr(exc, "errno", None) in DISK_FULL_ERRNOS or says_disk_full(str(exc)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


@contextlib.contextmanager
def disk_full_as(what: str) -> Iterator[None]:
    """Turn a disk-full error (any library's, see :func:`is_disk_full`) inside the block into
    :class:`DiskFull` naming ``what``; a :class:`DiskFull` from deeper down, naming a more precise ``what``,
    and every other error pass through unchanged."""
    try:
        yield
    except DiskFull:
        raise
    except Exception as exc:
        if is_disk_full(exc):
            raise DiskFull(what) from exc
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` through a temporary file and a rename: a failed write (disk full) leaves
    the previous file as it was and no temporary file behind."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` through a temporary file and a rename (no temporary file is left when the
    write fails)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
    marker_name = f"_done.{config_hash}"

    def fill(staging: Path) -> None:
        (staging / "clips").mkdir()
        pq.write_table(S.table_from_rows([video_row], S.VIDEOS), staging / "videos.parquet")
        pq.write_table(S.table_from_rows(track_rows, S.TRACKS), staging / "tracks.parquet")
        pq.write_table(S.table_from_rows(clip_rows, S.clips_schema(metric_names)), staging / "clips.parquet")
        if write_motions is not None:
            write_motions(staging / "clips")
        marker = {"video_id": video_id, "config_hash": config_hash, "status": video_row.get("status")}
        (staging / marker_name).write_text(json.dumps(marker))

    return publish_staged(layout, video_id, fill, marker_name, "the outputs")


def publish_staged(layout: RunLayout, video_id: str, fill: Callable[[Path], None], marker_name: str,
                   what: str) -> Path:
    """Fill a new staging folder under ``OUT/tmp`` with ``fill(staging)`` (it must write ``marker_name`` last)
    and swap it in as the folder of ``video_id`` (:func:`_swap_into_place`); returns that folder. Raises
    :class:`WriteError` naming ``what`` of the video could not be written; the staging folder is removed."""
    staging = layout.tmp_dir / f"{video_id}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    try:
        staging.mkdir(parents=True)
        fill(staging)
        if _before_publish_hook is not None:
            _before_publish_hook(staging)
        final = layout.video_dir(video_id)
        final.parent.mkdir(parents=True, exist_ok=True)
        _swap_into_place(staging, final, layout.tmp_dir / f"old.{video_id}.{uuid.uuid4().hex[:8]}", marker_name)
        return final
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise WriteError(f"could not write {what} of {video_id}: {exc}; free disk space or fix permissions "
                         f"under {layout.root}, then run again") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
