"""Helpers for tests that run g1forge end to end: comparing catalogs, running the CLI in a subprocess."""

from __future__ import annotations

import hashlib
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

from catalog.db import connect
from catalog.layout import RunLayout

#: Columns that legitimately differ between two runs of the same inputs (timings, run-dependent counters).
VOLATILE = {"download_time_s", "pose_time_s", "retarget_time_s", "process_time_s", "finished_at", "attempts"}
ORDER = {"videos": "video_id", "tracks": "video_id, track_id", "clips": "clip_id"}


def catalog_snapshot(run_dir: Path) -> dict:
    """Every table's rows (volatile columns dropped, rows sorted) and a digest of every clip motion file."""
    con = connect(run_dir)
    try:
        snap = {}
        for table, order in ORDER.items():
            cols = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall() if r[0] not in VOLATILE]
            rows = con.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY {order}").fetchall()
            snap[table] = (cols, [tuple(_comparable(v) for v in row) for row in rows])
    finally:
        con.close()
    layout = RunLayout.at(run_dir)
    snap["motion_files"] = {
        str(p.relative_to(layout.root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(layout.data_dir.glob("*/*/clips/*.npz"))
    }
    return snap


def _comparable(value):
    """NaN compares unequal to itself; make it a marker so identical catalogs compare equal."""
    return "NaN" if isinstance(value, float) and math.isnan(value) else value


def cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``g1forge ARGS`` in a subprocess (its own session, so stray Ray processes can be cleaned up)."""
    proc = subprocess.Popen([sys.executable, "-m", "cluster.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        kill_session(proc.pid)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def kill_session(pid: int) -> None:
    """SIGKILL every process left in the session/process group led by ``pid``."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first), or None when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def is_running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (Linux ``/proc``)."""
    fields = _proc_stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` in the process tree (children, their children, ...), from ``/proc``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _proc_stat(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return {p for p in found if is_running(p)}
