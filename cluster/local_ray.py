"""The local Ray a run starts: started with retries, taken down with the run however the run ends, cleaned up.

Start-up. On a loaded machine ``ray.init`` gives up when the raylet has not registered within Ray's wait ("The
current node timed out during startup"; 30 s, fixed in Ray's ``node.py``) or the GCS has not written its port
within ``$RAY_gcs_server_port_wait_time_s`` (Ray's default 30 s). :func:`start_local` raises the GCS wait (unless
the user set it) and tries :data:`START_ATTEMPTS` times, waiting longer between tries; after a failed try it
kills whatever that try started and removes its half-made session folder. When every try fails the run stops
with :class:`RayStartFailed`, a one-line message and its own exit code.

Ownership. The GCS, the raylet and the workers of a Ray this run starts carry ``$G1FORGE_RAY_OWNER=<token>``
in their environment (set only while ``ray.init`` spawns the GCS and raylet; workers inherit it from the
raylet). The raylet's agents inherit it too, but rename themselves over their environment, so right after
``ray.init`` the driver also records the pids (and start times) of every process below the token's carriers.
The session folder gets a marker file (:data:`MARKER_FILE`) with the token, those processes and the driver.
So this module only ever touches what a g1forge run started, never a user's own Ray.

Dying with the driver. Ray ties its GCS and raylet to the driver (the kernel kills them when the driver dies),
but the workers notice only seconds later and the dashboard and runtime-env agents not at all. A small watchdog
process (``python -m cluster.local_ray``, in its own session so that a signal to the driver's process group does
not reach it) holds the read end of a pipe whose write end only the driver holds: the kernel closes it when the
driver dies, however it dies (SIGKILL included), and the watchdog then SIGKILLs every process carrying the
token and removes the session folder. A run that ends normally closes the pipe itself after ``ray.shutdown``,
with the same effect. :func:`clean_dead_sessions`, at the start of every run, removes the marked session folders
of drivers that are gone (e.g. when the watchdog was killed too) and kills their leftover processes.
Process discovery reads ``/proc`` (Linux); elsewhere the watchdog and the clean-up find nothing to do.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from ingest.errors import G1ForgeError

#: Environment variable carrying the owning run's token into every process of a Ray it starts.
OWNER_ENV = "G1FORGE_RAY_OWNER"
#: File written into a session folder of a Ray a run started: token, driver pid and start time.
MARKER_FILE = "g1forge-owner.json"
#: Tries of ``ray.init`` for a local Ray, and the pause before try ``n`` (``n * START_BACKOFF_S``).
START_ATTEMPTS = 3
START_BACKOFF_S = 5.0
#: Ray's wait for the GCS to write its port (seconds), per try, unless the user set the variable.
GCS_WAIT_ENV = "RAY_gcs_server_port_wait_time_s"
GCS_WAIT_S = (60, 120, 240)
#: How long killing a Ray's processes may take before giving up on the ones that will not die.
KILL_TIMEOUT_S = 10.0
#: How long a run that ends waits for its watchdog to finish the clean-up.
WATCHDOG_WAIT_S = 10.0

_PROC = Path("/proc")


class RayStartFailed(G1ForgeError):
    """Ray could not be started (or joined) for the run; nothing was processed (:attr:`exit_code`)."""

    reason = "ray_start"
    exit_code = 4


def ray_temp_dir() -> Path:
    """Ray's temporary folder on this machine (``$RAY_TMPDIR/ray``, ``$TMPDIR/ray`` or ``/tmp/ray``)."""
    try:
        from ray._common.utils import get_default_ray_temp_dir
    except ImportError:
        base = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
        return Path(base) / "ray"
    return Path(get_default_ray_temp_dir())


@dataclass
class StartedRay:
    """Ray as a run started (``token`` set: a local Ray with its watchdog) or joined it; :meth:`stop` at the end."""

    token: str | None = None
    session_dir: Path | None = None
    watchdog: subprocess.Popen | None = None
    pipe_fd: int | None = field(default=None, repr=False)

    def stop(self, ray) -> None:
        """Shut Ray down (a joined cluster: disconnect) and let the watchdog remove what is left."""
        try:
            ray.shutdown()
        finally:
            self.release()

    def release(self) -> None:
        """Close the watchdog's pipe (it then kills this Ray's leftover processes and removes its session
        folder) and wait a little for it to finish."""
        if self.pipe_fd is not None:
            os.close(self.pipe_fd)
            self.pipe_fd = None
        if self.watchdog is not None:
            try:
                self.watchdog.wait(timeout=WATCHDOG_WAIT_S)
            except subprocess.TimeoutExpired:
                pass  # it finishes on its own; the next run's clean-up covers the rest

    def announce(self, session_dir: Path | None, processes: dict[int, int | None]) -> None:
        """Tell the watchdog this Ray's session folder and the processes it started (pid -> start ticks)."""
        self.session_dir = session_dir
        lines = [f"process {pid} {ticks}" for pid, ticks in processes.items()]
        if session_dir is not None:
            lines.append(f"session {session_dir}")
        if self.pipe_fd is not None and lines:
            try:
                os.write(self.pipe_fd, ("\n".join(lines) + "\n").encode("utf-8"))
            except OSError:
                pass


def join(ray, address: str, init_kwargs: dict) -> StartedRay:
    """Connect to the running Ray cluster at ``address``; :class:`RayStartFailed` with the fix if it cannot."""
    try:
        ray.init(address=address, **init_kwargs)
    except Exception as exc:
        _shutdown_quietly(ray)
        raise RayStartFailed(f"could not join the Ray cluster at {address} (--ray-address or $RAY_ADDRESS): "
                             f"{_first_line(exc)}; check that it runs (ray status) and the address, or leave "
                             "out --ray-address to start a local Ray") from exc
    return StartedRay()


def start_local(ray, init_kwargs: dict) -> StartedRay:
    """Start a local Ray owned by this run, trying up to :data:`START_ATTEMPTS` times (see the module doc).

    Raises :class:`RayStartFailed` when no try succeeds, or :class:`catalog.writer.DiskFull` when Ray's
    temporary folder is full; nothing of the failed tries is left running.
    """
    from catalog.writer import DiskFull, is_disk_full

    temp_dir = ray_temp_dir()
    clean_dead_sessions(temp_dir)
    started = StartedRay(token=uuid.uuid4().hex)
    _start_watchdog(started, temp_dir)
    try:
        for attempt in range(1, START_ATTEMPTS + 1):
            env = {OWNER_ENV: started.token}
            if GCS_WAIT_ENV not in os.environ:
                env[GCS_WAIT_ENV] = str(GCS_WAIT_S[min(attempt, len(GCS_WAIT_S)) - 1])
            try:
                with _environment(env):
                    ray.init(**init_kwargs)
                break
            except Exception as exc:
                _shutdown_quietly(ray)
                remove_owned(started.token, temp_dir)
                if is_disk_full(exc):
                    raise DiskFull(f"Ray's session folder under {temp_dir}") from exc
                if attempt == START_ATTEMPTS:
                    raise RayStartFailed(
                        f"Ray could not start on this machine ({START_ATTEMPTS} tries; last: {_first_line(exc)}); "
                        "the machine may be overloaded: wait for the load to drop and run the same command again "
                        "(finished videos are kept), or join a running cluster with --ray-address") from exc
                time.sleep(START_BACKOFF_S * attempt)
    except BaseException:
        started.release()
        raise
    processes = owned_processes(started.token)
    session_dir = _session_dir(ray)
    if session_dir is not None:
        _write_marker(session_dir, started.token, processes)
    started.announce(session_dir, processes)
    return started


def clean_dead_sessions(temp_dir: Path | None = None) -> list[Path]:
    """Remove the session folders of Rays that g1forge runs started (marked) and whose driver is gone, after
    killing whatever of their processes is still alive; returns the folders removed. Unmarked sessions (a
    user's own Ray) and those of running drivers are never touched."""
    temp_dir = temp_dir or ray_temp_dir()
    removed = []
    try:
        candidates = sorted(temp_dir.glob("session_*"))
    except OSError:
        return removed
    for session in candidates:
        if session.is_symlink() or not session.is_dir():
            continue
        try:
            info = json.loads((session / MARKER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(info, dict) or _alive(info.get("driver_pid"), info.get("driver_start")):
            continue
        kill_owned(str(info.get("token") or ""), _listed(info.get("processes")))
        shutil.rmtree(session, ignore_errors=True)
        removed.append(session)
    _drop_dangling_latest(temp_dir)
    return removed


def owned_processes(token: str, listed: dict[int, int | None] | None = None) -> dict[int, int | None]:
    """The live processes a Ray owned by ``token`` consists of, as pid -> start ticks: those whose environment
    carries the token, those of ``listed`` still running with the same start ticks, and every process below
    either (this process and zombies excluded). Empty where there is no ``/proc``."""
    needle = f"{OWNER_ENV}={token}".encode("utf-8") if token else None
    table = _process_table()
    seeds = {pid for pid, (_, ticks) in table.items()
             if (listed and pid in listed and listed[pid] in (None, ticks)) or (needle and _carries(pid, needle))}
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), list(seeds)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, []))
    found.discard(os.getpid())
    return {pid: table[pid][1] for pid in sorted(found)}


def kill_owned(token: str, listed: dict[int, int | None] | None = None,
               timeout_s: float = KILL_TIMEOUT_S) -> set[Path]:
    """SIGKILL the processes of :func:`owned_processes` until none is left (or ``timeout_s`` passed); returns
    the Ray session folders they were using (from their command lines and open files)."""
    sessions: set[Path] = set()
    deadline = time.monotonic() + timeout_s
    while True:
        pids = owned_processes(token, listed)
        if not pids or time.monotonic() > deadline:
            return sessions
        for pid in pids:
            sessions.update(_sessions_of(pid))
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.05)


def remove_owned(token: str, temp_dir: Path, listed: dict[int, int | None] | None = None,
                 known: Path | None = None) -> None:
    """Kill the processes of a Ray owned by ``token`` (see :func:`owned_processes`) and remove the session
    folders under ``temp_dir`` they used, plus ``known`` (the session folder the driver announced)."""
    sessions = kill_owned(token, listed)
    if known is not None:
        sessions.add(known)
    root = temp_dir.resolve()
    for session in sessions:
        if session.name.startswith("session_") and session.resolve().parent == root:
            shutil.rmtree(session, ignore_errors=True)
    _drop_dangling_latest(temp_dir)


# --- the watchdog process ----------------------------------------------------------------------------------


def _start_watchdog(started: StartedRay, temp_dir: Path) -> None:
    """Start the watchdog of ``started`` (best effort: without one, :func:`clean_dead_sessions` still cleans up)."""
    if not (_PROC / "self" / "environ").exists():
        return
    read_fd, write_fd = os.pipe()  # both ends non-inheritable: no Ray process ever holds the write end
    env = {k: v for k, v in os.environ.items() if k != OWNER_ENV}
    package_root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    try:
        started.watchdog = subprocess.Popen(
            [sys.executable, "-m", "cluster.local_ray", str(read_fd), started.token, str(temp_dir)],
            pass_fds=(read_fd,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, env=env)
    except OSError:
        os.close(write_fd)
        return
    finally:
        os.close(read_fd)
    started.pipe_fd = write_fd


def _watch(read_fd: int, token: str, temp_dir: Path) -> None:
    """The watchdog: wait until the driver closes the pipe (it ended, or died), then remove its Ray."""
    known, listed = None, {}
    with os.fdopen(read_fd, "rb") as pipe:
        for line in pipe:
            kind, _, value = line.decode("utf-8", "replace").strip().partition(" ")
            if kind == "session" and value:
                known = Path(value)
            elif kind == "process":
                pid, _, ticks = value.partition(" ")
                listed[int(pid)] = int(ticks) if ticks.isdigit() else None
    remove_owned(token, temp_dir, listed, known)


# --- helpers -----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for a block, then restore them."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _shutdown_quietly(ray) -> None:
    """``ray.shutdown()`` after a failed start (whatever half of Ray exists); its own errors do not matter."""
    try:
        ray.shutdown()
    except Exception:
        pass


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _session_dir(ray) -> Path | None:
    """The session folder of the Ray this process just started (None when Ray does not say)."""
    try:
        return Path(ray._private.worker._global_node.get_session_dir_path())
    except Exception:
        return None


def _write_marker(session_dir: Path, token: str, processes: dict[int, int | None]) -> None:
    info = {"token": token, "driver_pid": os.getpid(), "driver_start": _start_ticks(os.getpid()),
            "processes": [[pid, ticks] for pid, ticks in processes.items()],
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    try:
        (session_dir / MARKER_FILE).write_text(json.dumps(info))
    except OSError:
        pass  # without a marker the folder is left alone (as a user's own Ray's would be)


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, start ticks since boot) of process ``pid`` from ``/proc``; None when it is gone."""
    try:
        fields = (_PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
        return fields[0], int(fields[1]), int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def _start_ticks(pid: int) -> int | None:
    """When process ``pid`` started (telling it from a later process that reused the pid); None when unknown
    or a zombie."""
    stat = _stat(pid)
    return stat[2] if stat is not None and stat[0] not in ("Z", "X") else None


def _process_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, start ticks) of every live process (zombies excluded)."""
    try:
        entries = [int(e) for e in os.listdir(_PROC) if e.isdigit()]
    except OSError:
        return {}
    table = {}
    for pid in entries:
        stat = _stat(pid)
        if stat is not None and stat[0] not in ("Z", "X"):
            table[pid] = (stat[1], stat[2])
    return table


def _carries(pid: int, needle: bytes) -> bool:
    """Whether the environment of process ``pid`` holds the ``NAME=value`` entry ``needle``."""
    try:
        return needle in (_PROC / str(pid) / "environ").read_bytes().split(b"\0")
    except OSError:
        return False  # gone, or another user's


def _alive(pid, start_ticks) -> bool:
    """Whether the process that wrote a marker (``pid`` started at ``start_ticks``) still runs."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    if (_PROC / "self" / "stat").exists():
        now = _start_ticks(pid)
        return now is not None and (start_ticks is None or now == start_ticks)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sessions_of(pid: int) -> set[Path]:
    """Ray session folders named in a process's command line or open files (``.../session_<...>``)."""
    names = []
    try:
        names += (_PROC / str(pid) / "cmdline").read_bytes().decode("utf-8", "replace").split("\0")
    except OSError:
        pass
    try:
        for fd in os.listdir(_PROC / str(pid) / "fd"):
            try:
                names.append(os.readlink(_PROC / str(pid) / "fd" / fd))
            except OSError:
                continue
    except OSError:
        pass
    found = set()
    for name in names:
        _, sep, rest = name.partition("/session_")
        if sep and rest and not rest.startswith("latest"):
            head = name[: name.index("/session_")].split("=")[-1]
            found.add(Path(head) / ("session_" + rest.split("/", 1)[0]))
    return found


def _listed(processes) -> dict[int, int | None]:
    """A marker's ``processes`` (``[[pid, start_ticks], ...]``) as a dict; malformed entries are dropped."""
    listed = {}
    for entry in processes if isinstance(processes, list) else []:
        if isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], int):
            listed[entry[0]] = entry[1] if isinstance(entry[1], int) else None
    return listed


def _drop_dangling_latest(temp_dir: Path) -> None:
    """Remove Ray's ``session_latest`` link when the session it points to was removed."""
    latest = temp_dir / "session_latest"
    if latest.is_symlink() and not latest.exists():
        try:
            latest.unlink()
        except OSError:
            pass


if __name__ == "__main__":
    _watch(int(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))
