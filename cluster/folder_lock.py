"""One run at a time per run folder: ``OUT/state/run.lock``, held exclusively for a run's whole life.

Two runs on one folder would both see the same videos as not done and both process every one of them. A run
therefore takes an exclusive ``flock`` on ``state/run.lock`` before it plans, without waiting: a second run on
the folder stops at once with :class:`FolderBusy`, naming the first (its pid, host and start time, which the
holder writes into the file). The lock belongs to the open file, not to the file's existence: it ends with the
holding process however that process ends (a SIGKILLed run leaves no stale lock), and the file itself is never
removed. Compaction's lock (``state/catalog.lock``, :func:`catalog.compact.run_lock`) is a separate one.

The lock works where ``flock`` does: local disks and NFS. Two machines writing one object-store folder
(``--out s3://...``) each lock their own staging folder, which this does not cover.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from catalog.layout import RunLayout
from ingest.errors import G1ForgeError

LOCK_FILE = "run.lock"


class FolderBusy(G1ForgeError):
    """Another run is writing the run folder; this run stops before doing anything (:attr:`exit_code`)."""

    reason = "busy"
    exit_code = 5


def lock_path(layout: RunLayout) -> Path:
    """Where the run folder's run lock lives."""
    return layout.state_dir / LOCK_FILE


def _holder_text(path: Path) -> str:
    """Who holds the lock, as its holder wrote it (``pid N on HOST, started T``), or what is known."""
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info.get("pid"):
        return "pid unknown"
    host = info.get("host")
    where = f" on {host}" if host and host != socket.gethostname() else ""
    return f"pid {info['pid']}{where}, started {info.get('started_at', '?')}"


@contextlib.contextmanager
def hold_run_folder(layout: RunLayout) -> Iterator[None]:
    """Hold the run folder's run lock for the block; :class:`FolderBusy` at once when another run holds it.

    On a platform without ``flock`` nothing is locked (runs then rely on the documented rule: one run per folder).
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    path = lock_path(layout)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderBusy(f"another g1forge run is writing {layout.root} ({_holder_text(path)}): wait for it "
                             "or use another --out") from None
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode("utf-8"), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
