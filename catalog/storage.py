"""Run outputs on a local disk, a shared filesystem or an object store, through ``pyarrow.fs``.

A run folder (see :mod:`catalog.layout`) can live anywhere pyarrow has a filesystem for: a plain path or
``file://`` URI (local disk, or an NFS/Lustre/EFS mount shared by every node), ``s3://bucket/prefix``
(``?region=...``, ``?endpoint_override=...`` go in the URI; credentials come from the usual AWS chain),
``gs://bucket/prefix`` (Google credentials chain), ``hdfs://``, ``abfs://``.

Object stores have no rename, so a video cannot be published there with one atomic ``rename`` as
:mod:`catalog.writer` does locally. Instead the run keeps its local folder as staging and mirrors each published
video folder with :func:`put_tree`, whose order gives the same guarantee to anyone who trusts only the marker:

1. the remote folder's old completion files are deleted, so a half-replaced folder never looks done;
2. every other file is uploaded (each object PUT is atomic; on filesystems that rename, each file is written to a
   hidden temporary name and renamed);
3. remote files the new folder does not have are deleted (a redone video may have fewer clips);
4. the completion files are uploaded, last.

Completion files (:func:`catalog.layout.is_completion_name`) are the markers ``_done.<config_hash>`` and a failed
video's one file ``videos.failed.<config_hash>.parquet``, which is its row and its marker at once: a failed
video is one object on the remote, uploaded in step 4.

A copy cut at any point leaves a folder without a marker, which :func:`list_markers` does not count, so resume
redoes that video. :func:`get_tree` pulls a remote catalog's Parquet fragments into a local cache (incrementally,
by size and modification time) for DuckDB to query.

Paths inside a filesystem are ``/``-separated strings as pyarrow spells them (``bucket/prefix/...`` for object
stores, absolute paths for the local filesystem, root-relative for a ``SubTreeFileSystem``).
"""

from __future__ import annotations

import os
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, NamedTuple

import pyarrow as pa
import pyarrow.fs as pafs

from catalog.layout import DONE_PREFIX, SCHEMA_DIR, completion_names, done_marker_name, is_completion_name, shard_of
from ingest.errors import ConfigError, G1ForgeError, WriteError

#: Completion markers are ``_done.<config_hash>`` files directly inside a video folder (see catalog.layout); a
#: failed video's ``videos.failed.<config_hash>.parquet`` completes its folder too (:func:`is_completion_name`).
MARKER_PREFIX = DONE_PREFIX
DATA_DIR = "data"
CHUNK_BYTES = 8 << 20

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
#: Filesystems with directories and an atomic rename (everything else is treated as an object store).
_RENAMING_TYPES = {"local", "hdfs"}


class StorageError(G1ForgeError):
    """Reading or listing a remote run folder failed (network, credentials, permissions); retryable."""

    reason = "storage"
    retryable = True


class OutputRoot(NamedTuple):
    """A run folder's filesystem and its base path inside it (unpacks as ``fs, base = open_output(uri)``)."""

    fs: pafs.FileSystem
    base: str

    def join(self, *parts: str) -> str:
        return join(self.base, *parts)

    @property
    def is_local(self) -> bool:
        """True when ``base`` is a plain path of this machine (local disk or a mounted shared filesystem)."""
        return _base_type(self.fs) == "local"


@dataclass
class TransferStats:
    """What a copy did: files and bytes copied, files left alone (already up to date), remote files deleted."""

    files: int = 0
    bytes: int = 0
    skipped: int = 0
    deleted: int = 0


# -- locations ---------------------------------------------------------------------------------------------


def is_remote(uri: str | os.PathLike) -> bool:
    """True for a URI with a scheme other than ``file://`` (``s3://``, ``gs://``, ...)."""
    text = os.fspath(uri)
    return bool(_SCHEME.match(text)) and not text.lower().startswith("file://")


def open_output(uri: str | os.PathLike) -> OutputRoot:
    """The filesystem and base path of ``uri``: a plain path (``~`` expanded, made absolute), ``file://...``,
    ``s3://bucket/prefix``, ``gs://bucket/prefix`` or any other URI ``pyarrow.fs.FileSystem.from_uri`` knows.

    Works for a file URI too (e.g. a list file): ``base`` is then that file's path. Nothing is created.
    Raises :class:`ConfigError` for a URI pyarrow cannot parse and :class:`StorageError` when the filesystem
    cannot be reached (for ``s3://`` without ``?region=`` pyarrow asks S3 for the bucket's region).
    """
    text = os.fspath(uri)
    if not _SCHEME.match(text):
        return OutputRoot(pafs.LocalFileSystem(), Path(text).expanduser().resolve().as_posix())
    try:
        fs, path = pafs.FileSystem.from_uri(text)
    except (pa.ArrowInvalid, ValueError) as exc:
        raise ConfigError(f"cannot use {text!r} as a location ({exc}); give a local path, file:///abs/path, "
                          "s3://bucket/prefix, gs://bucket/prefix or another URI pyarrow.fs supports") from None
    except (OSError, pa.ArrowException) as exc:
        raise StorageError(f"cannot reach {text} ({exc}); check the network and credentials (AWS_* / "
                           "GOOGLE_APPLICATION_CREDENTIALS), or add ?region=... to an s3:// URI") from None
    return OutputRoot(fs, path.rstrip("/") or path)


def join(base: str, *parts: str) -> str:
    """Join ``/``-separated path parts without doubling slashes; an empty ``base`` stays relative."""
    out = base.rstrip("/") if base not in ("", "/") else base
    for part in parts:
        part = part.strip("/")
        if not part:
            continue
        out = part if out == "" else (out + part if out.endswith("/") else f"{out}/{part}")
    return out


def video_dir(base: str, video_id: str) -> str:
    """``<base>/data/<shard>/<video_id>``: where a video's folder lives (the layout of :mod:`catalog.layout`)."""
    return join(base, DATA_DIR, shard_of(video_id), video_id)


def marker_name(config_hash: str) -> str:
    return done_marker_name(config_hash)


def exists(fs: pafs.FileSystem, path: str) -> bool:
    """Whether ``path`` (a file or a directory/prefix) exists. Raises :class:`StorageError` when it cannot tell."""
    try:
        return fs.get_file_info(path).type != pafs.FileType.NotFound
    except (OSError, pa.ArrowException) as exc:
        raise StorageError(f"cannot check {path} ({exc}); check the network and credentials") from None


# -- upload ------------------------------------------------------------------------------------------------


def put_file(fs: pafs.FileSystem, local_path: str | os.PathLike, remote_path: str) -> int:
    """Copy one local file to ``remote_path`` (replacing it); returns the bytes copied.

    Filesystems with a rename (local, shared mounts, HDFS) get a hidden temporary file renamed into place, so a
    reader never sees half a file; object stores get one PUT. Raises :class:`WriteError` on failure.
    """
    local_path = Path(local_path)
    renames = _base_type(fs) in _RENAMING_TYPES
    target = remote_path
    try:
        if renames:
            parent, _, name = remote_path.rpartition("/")
            if parent:
                fs.create_dir(parent, recursive=True)
            target = join(parent, f".{name}.{uuid.uuid4().hex[:12]}.tmp") if parent else f".{name}.tmp"
        with open(local_path, "rb") as src, fs.open_output_stream(target) as dst:
            n = 0
            while block := src.read(CHUNK_BYTES):
                dst.write(block)
                n += len(block)
        if renames:
            fs.move(target, remote_path)
        return n
    except (OSError, pa.ArrowException) as exc:
        if renames and target != remote_path:
            _delete_quietly(fs, target)
        raise WriteError(f"could not copy {local_path} to {remote_path}: {exc}; check write access, credentials "
                         "and free space there, then run again") from None


def put_tree(fs: pafs.FileSystem, local_dir: str | os.PathLike, remote_dir: str, *, threads: int = 8) -> TransferStats:
    """Mirror the local folder ``local_dir`` (a staged or published video folder) onto ``remote_dir``.

    Order (see the module docstring): old remote completion files deleted, other files uploaded (``threads`` at a
    time), remote files absent locally deleted, completion files (``_done.*`` and ``videos.failed.*.parquet``
    directly in ``local_dir``) uploaded last.
    Raises :class:`WriteError`; after a failure the remote folder has no marker and the call can be repeated.
    """
    local_dir = Path(local_dir)
    if not local_dir.is_dir():
        raise WriteError(f"{local_dir} is not a folder; nothing to copy to {remote_dir}")
    local_files = sorted(_walk_local(local_dir))
    markers = [rel for rel in local_files if "/" not in rel and is_completion_name(rel)]
    payload = [rel for rel in local_files if rel not in set(markers)]
    stats = TransferStats()
    try:
        remote_files = {rel for rel, _ in _walk_remote(fs, remote_dir)}
    except (OSError, pa.ArrowException) as exc:
        raise WriteError(f"cannot list {remote_dir} ({exc}); check access and credentials, then run again") from None

    old_markers = sorted(rel for rel in remote_files if "/" not in rel and is_completion_name(rel))
    for rel in old_markers:
        _delete(fs, join(remote_dir, rel))
        stats.deleted += 1

    def upload(rel: str) -> int:
        return put_file(fs, local_dir / rel, join(remote_dir, rel))

    for n in _run_all(upload, payload, threads):
        stats.files += 1
        stats.bytes += n

    stale = sorted(remote_files - set(local_files) - set(old_markers))
    for rel in stale:
        _delete(fs, join(remote_dir, rel))
        stats.deleted += 1

    for rel in markers:
        stats.bytes += put_file(fs, local_dir / rel, join(remote_dir, rel))
        stats.files += 1
    return stats


# -- download ----------------------------------------------------------------------------------------------


def get_file(fs: pafs.FileSystem, remote_path: str, local_path: str | os.PathLike) -> int:
    """Copy ``remote_path`` to ``local_path`` through a temporary file and a rename; returns the bytes copied.
    Raises :class:`StorageError` on failure (nothing is left at ``local_path``)."""
    local_path = Path(local_path)
    local_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = local_path.with_name(f".{local_path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with fs.open_input_stream(remote_path) as src, open(tmp, "wb") as dst:
            n = 0
            while block := src.read(CHUNK_BYTES):
                dst.write(block)
                n += len(block)
        os.replace(tmp, local_path)
        return n
    except (OSError, pa.ArrowException) as exc:
        tmp.unlink(missing_ok=True)
        raise StorageError(f"could not copy {remote_path} to {local_path}: {exc}; check access and credentials, "
                           "then run again") from None


def get_tree(fs: pafs.FileSystem, remote_dir: str, local_dir: str | os.PathLike, *,
             suffixes: tuple[str, ...] | None = (".parquet",), threads: int = 8) -> TransferStats:
    """Pull the files under ``remote_dir`` whose names end with one of ``suffixes`` (None: every file) into
    ``local_dir`` with the same relative paths, e.g. a remote run's ``data/`` Parquet fragments into a local
    cache for DuckDB.

    Incremental: a local copy with the remote file's size and modification time is left alone (``skipped``);
    each copied file gets the remote modification time. Hidden files (in-progress uploads) are not pulled.
    Raises :class:`StorageError`.
    """
    local_dir = Path(local_dir)
    try:
        listing = list(_walk_remote(fs, remote_dir))
    except (OSError, pa.ArrowException) as exc:
        raise StorageError(f"cannot list {remote_dir} ({exc}); check the network and credentials") from None
    stats = TransferStats()
    todo: list[tuple[str, pafs.FileInfo]] = []
    for rel, info in listing:
        if any(part.startswith(".") for part in rel.split("/")):
            continue
        if suffixes is not None and not rel.endswith(tuple(suffixes)):
            continue
        dest = local_dir / rel
        if _up_to_date(dest, info):
            stats.skipped += 1
        else:
            todo.append((rel, info))

    def download(job: tuple[str, pafs.FileInfo]) -> int:
        rel, info = job
        dest = local_dir / rel
        n = get_file(fs, join(remote_dir, rel), dest)
        if info.mtime_ns is not None:
            os.utime(dest, ns=(info.mtime_ns, info.mtime_ns))
        return n

    for n in _run_all(download, todo, threads):
        stats.files += 1
        stats.bytes += n
    return stats


# -- resume ------------------------------------------------------------------------------------------------


def list_markers(fs: pafs.FileSystem, base: str, config_hash: str, *, threads: int = 16) -> set[str]:
    """The video ids whose folder ``<base>/data/<shard>/<video_id>/`` holds ``_done.<config_hash>`` or, for a
    failed video, ``videos.failed.<config_hash>.parquet``.

    One listing of ``data/`` finds the shards, then each shard is listed recursively (``threads`` shards at a
    time; object stores page through 1,000 keys per request, so the cost is about one request per 1,000 files
    of the run). Folders in the wrong shard for their id are ignored. Raises :class:`StorageError`.
    """
    data = join(base, DATA_DIR)
    wanted = set(completion_names(config_hash))
    try:
        top = fs.get_file_info(pafs.FileSelector(data, allow_not_found=True))
    except (OSError, pa.ArrowException) as exc:
        raise StorageError(f"cannot list {data} ({exc}); check the network and credentials") from None
    shards = sorted(info.base_name for info in top if info.type == pafs.FileType.Directory
                    and info.base_name != SCHEMA_DIR and not info.base_name.startswith("."))

    def scan(shard: str) -> set[str]:
        found = set()
        for rel, _ in _walk_remote(fs, join(data, shard)):
            video_id, _, name = rel.partition("/")
            if name in wanted and shard_of(video_id) == shard:
                found.add(video_id)
        return found

    done: set[str] = set()
    try:
        for ids in _run_all(scan, shards, threads):
            done |= ids
    except (OSError, pa.ArrowException) as exc:
        raise StorageError(f"cannot list the video folders under {data} ({exc}); check the network and "
                           "credentials") from None
    return done


# -- helpers -----------------------------------------------------------------------------------------------


def _base_type(fs: pafs.FileSystem) -> str:
    while isinstance(fs, pafs.SubTreeFileSystem):
        fs = fs.base_fs
    return fs.type_name


def _walk_local(root: Path) -> Iterable[str]:
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            yield Path(dirpath, name).relative_to(root).as_posix()


def _walk_remote(fs: pafs.FileSystem, remote_dir: str) -> Iterable[tuple[str, pafs.FileInfo]]:
    """(path relative to ``remote_dir``, info) of every file below it; nothing when it does not exist."""
    infos = fs.get_file_info(pafs.FileSelector(remote_dir, recursive=True, allow_not_found=True))
    prefix = remote_dir.rstrip("/") + "/" if remote_dir.rstrip("/") else ""
    for info in infos:
        if info.type != pafs.FileType.File:
            continue
        path = info.path
        rel = path[len(prefix):] if prefix and path.startswith(prefix) else path.lstrip("/")
        yield rel, info


def _up_to_date(dest: Path, info: pafs.FileInfo) -> bool:
    try:
        st = dest.stat()
    except FileNotFoundError:
        return False
    return st.st_size == info.size and info.mtime_ns is not None and st.st_mtime_ns == info.mtime_ns


def _delete(fs: pafs.FileSystem, path: str) -> None:
    try:
        fs.delete_file(path)
    except FileNotFoundError:
        pass
    except (OSError, pa.ArrowException) as exc:
        raise WriteError(f"could not delete {path} ({exc}); check write access and credentials, then run "
                         "again") from None


def _delete_quietly(fs: pafs.FileSystem, path: str) -> None:
    try:
        fs.delete_file(path)
    except (OSError, pa.ArrowException):
        pass


def _run_all(fn: Callable, jobs: list, threads: int) -> list:
    """``fn`` over ``jobs`` on up to ``threads`` threads; every job finishes, then the first error is raised."""
    if not jobs:
        return []
    if threads <= 1 or len(jobs) == 1:
        return [fn(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=min(threads, len(jobs))) as pool:
        futures = [pool.submit(fn, job) for job in jobs]
    results, first_error = [], None
    for fut in futures:
        exc = fut.exception()
        if exc is not None:
            first_error = first_error or exc
        else:
            results.append(fut.result())
    if first_error is not None:
        raise first_error
    return results


__all__ = [
    "MARKER_PREFIX", "OutputRoot", "StorageError", "TransferStats", "exists", "get_file", "get_tree",
    "is_remote", "join", "list_markers", "marker_name", "open_output", "put_file", "put_tree", "video_dir",
]
