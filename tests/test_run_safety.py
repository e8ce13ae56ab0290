"""A run under hostile conditions: a full disk, a Ray that will not start, two runs on one folder, a SIGKILLed
driver. Each ends with a clear message and its exit code, keeps what was finished, and leaves nothing running."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from catalog import db
from catalog.layout import RunLayout
from catalog.writer import DiskFull
from cluster import cli, local_ray
from cluster.config import RunConfig
from cluster.folder_lock import FolderBusy, hold_run_folder
from cluster.local_ray import MARKER_FILE, OWNER_ENV, RayStartFailed
from cluster.run import ExecOptions, _init_ray, _stop_if_disk_full, run
from phalp_factory import make_phalp_pickle
from run_helpers import cli as cli_process
from run_helpers import descendants, is_running, kill_session

CONFIG = RunConfig(backend="phalp-pkl")
NO_SPACE = os.strerror(errno.ENOSPC)


def _make_inputs(folder: Path, n: int, frames: int = 60) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"v{i:02d}.pkl"
        make_phalp_pickle(p, 1, num_frames=frames, seed=i)
        paths.append(p)
    return paths


def _done_count(out: Path, ids: list[str]) -> int:
    layout = RunLayout.at(out)
    chash = CONFIG.config_hash()
    return sum(layout.is_done(v, chash) for v in ids)


def _file_ids(paths: list[Path]) -> list[str]:
    from ingest.ids import file_id

    return [file_id(p) for p in paths]


@pytest.fixture
def ray_tmp(monkeypatch):
    """A private, short Ray temporary folder (Ray's socket paths must stay under 108 bytes)."""
    folder = tempfile.mkdtemp(prefix="g1r", dir="/tmp")
    monkeypatch.setenv("RAY_TMPDIR", folder)
    yield Path(folder)
    shutil.rmtree(folder, ignore_errors=True)


def _full_disk_at(monkeypatch, hit) -> list[str]:
    """Make ``os.replace`` onto a path for which ``hit(dst)`` is true fail with ENOSPC; returns the hits."""
    real_replace = os.replace
    hits: list[str] = []

    def replace(src, dst, *args, **kwargs):
        if hit(Path(dst)):
            hits.append(str(dst))
            raise OSError(errno.ENOSPC, NO_SPACE, str(dst))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    return hits


def _leftover_tmp(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*.tmp")] if folder.exists() else []


# --- item 3: a full disk --------------------------------------------------------------------------------------


def test_a_full_disk_at_the_info_file_stops_the_run_and_keeps_the_old_one(tmp_path, monkeypatch, reliability_figures):
    out = tmp_path / "out"
    run([], [], out, CONFIG, ExecOptions(progress=False), items=[])
    info_before = (out / "g1forge.json").read_text()
    hits = _full_disk_at(monkeypatch, lambda dst: dst.name == "g1forge.json")
    with pytest.raises(DiskFull) as caught:
        run([], [], out, CONFIG, ExecOptions(progress=False), items=[])
    assert hits and f"disk full while writing {out / 'g1forge.json'}" in str(caught.value)
    assert "run the same command again" in str(caught.value)
    assert (out / "g1forge.json").read_text() == info_before and not _leftover_tmp(out)
    reliability_figures["full_disks"] += 1


def test_a_full_disk_at_the_plan_stops_the_run(tmp_path, monkeypatch, reliability_figures):
    out = tmp_path / "out"
    hits = _full_disk_at(monkeypatch, lambda dst: dst.name == "plan.parquet")
    with pytest.raises(DiskFull, match="plan.parquet: free space"):
        run([], [], out, CONFIG, ExecOptions(progress=False), items=[])
    assert hits and not _leftover_tmp(out / "state")
    reliability_figures["full_disks"] += 1


def test_a_full_disk_at_the_catalog_views_stops_the_run(tmp_path, monkeypatch, reliability_figures):
    import duckdb

    def full(layout):
        raise duckdb.IOException(f'IO Error: Could not write file "{layout.duckdb_path}": {NO_SPACE}')

    monkeypatch.setattr(db, "refresh_views", full)
    with pytest.raises(DiskFull, match=r"catalog\.duckdb \(the catalog's views\): free space"):
        run([], [], tmp_path / "out", CONFIG, ExecOptions(progress=False), items=[])
    reliability_figures["full_disks"] += 1


def test_a_full_disk_at_the_stats_keeps_the_report(tmp_path, monkeypatch, reliability_figures):
    out = tmp_path / "out"
    hits = _full_disk_at(monkeypatch, lambda dst: dst.parent.name == "runs")
    with pytest.raises(DiskFull, match=r"state/runs/.*\.json: free space") as caught:
        run([], [], out, CONFIG, ExecOptions(progress=False), items=[])
    assert hits and caught.value.report.inputs == 0
    assert not list((out / "state" / "runs").iterdir())
    reliability_figures["full_disks"] += 1


def test_only_a_video_that_could_not_be_written_at_all_stops_the_run():
    row_written = {"video_id": "a", "status": "failed", "published": True,
                   "reason": f"write: could not write the outputs of a: [Errno 28] {NO_SPACE}"}
    _stop_if_disk_full(row_written)  # the failed row went through: the run goes on
    _stop_if_disk_full({"video_id": "b", "status": "failed", "published": False,
                        "reason": "write: could not write the outputs of b: [Errno 13] Permission denied"})
    with pytest.raises(DiskFull, match="the outputs of c"):
        _stop_if_disk_full({**row_written, "video_id": "c", "published": False})


@pytest.mark.slow
def test_cli_disk_full_mid_run_and_at_the_end_keeps_finished_videos(tmp_path, monkeypatch, capsys, ray_tmp,
                                                                   reliability_figures):
    """The disk fills mid-run (a video cannot be written at all: the run stops), then at the very end (the
    run's stats): each time one message and exit 3, and the next run goes on where it stopped."""
    import cluster.pipeline as pipeline

    paths = _make_inputs(tmp_path / "in", 4)
    ids = _file_ids(paths)
    out = tmp_path / "out"
    args = ["run", str(tmp_path / "in"), "--backend", "phalp-pkl", "--workers", "1", "--no-progress",
            "--out", str(out)]
    real_stream = pipeline.stream
    unwritten: list[str] = []

    def stream_on_a_full_disk(*a, on_done=None, **kw):
        def on_done_full(summary):
            if not unwritten:  # the writer says: not even the failed row could be written
                unwritten.append(summary["video_id"])
                summary = {**summary, "status": "failed", "published": False,
                           "reason": f"write: could not write the outputs of {summary['video_id']}: "
                                     f"[Errno 28] {NO_SPACE}"}
            on_done(summary)
        return real_stream(*a, on_done=on_done_full, **kw)

    monkeypatch.setattr(pipeline, "stream", stream_on_a_full_disk)
    assert cli.main(args) == 3
    err = capsys.readouterr().err
    assert f"disk full while writing the outputs of {unwritten[0]}: free space and run the same command again" in err
    assert "Traceback" not in err
    monkeypatch.setattr(pipeline, "stream", real_stream)

    real_replace = os.replace
    hits = _full_disk_at(monkeypatch, lambda dst: dst.parent.name == "runs")
    assert cli.main(args) == 3
    captured = capsys.readouterr()
    assert hits and "disk full while writing" in captured.err and "Traceback" not in captured.err
    assert "processed" in captured.out  # the summary of what was done before the stats could not be written
    assert _done_count(out, ids) == 4
    reliability_figures["full_disks"] += 2
    monkeypatch.setattr(os, "replace", real_replace)

    assert cli.main(args) == 0
    assert "4 already done" in capsys.readouterr().out


# --- item 4: Ray start-up under load ------------------------------------------------------------------------


class _FakeRay:
    """``ray.init`` that fails the first ``failures`` calls as Ray does when its raylet does not register in
    time, each time leaving a half-started process behind (one that carries the run's owner token)."""

    def __init__(self, failures: int):
        self.failures = failures
        self.inits: list[dict] = []
        self.shutdowns = 0
        self.half_started: list[subprocess.Popen] = []

    def is_initialized(self) -> bool:
        return False

    def init(self, **kwargs):
        self.inits.append({"owner": os.environ.get(OWNER_ENV),
                           "gcs_wait_s": os.environ.get(local_ray.GCS_WAIT_ENV), **kwargs})
        if len(self.inits) <= self.failures:
            self.half_started.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"]))
            raise Exception("The current node timed out during startup. This could happen because some of the "
                            "raylet failed to startup or the GCS has become overloaded.")

    def shutdown(self):
        self.shutdowns += 1


def _dead_session(temp_dir: Path, name: str, token: str | None) -> Path:
    """A session folder of a Ray whose driver is gone; marked as a g1forge run's when ``token`` is given."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    session = temp_dir / name
    (session / "logs").mkdir(parents=True)
    if token is not None:
        (session / MARKER_FILE).write_text(json.dumps({"token": token, "driver_pid": gone.pid, "driver_start": 1}))
    return session


def test_ray_start_is_retried_after_a_start_up_timeout(tmp_path, monkeypatch, ray_tmp):
    monkeypatch.setattr(local_ray, "START_BACKOFF_S", 0.0)
    monkeypatch.delenv(local_ray.GCS_WAIT_ENV, raising=False)
    old = _dead_session(ray_tmp / "ray", "session_old", "deadbeef")
    fake = _FakeRay(failures=2)
    started = _init_ray(fake, ExecOptions(workers=1))
    try:
        assert len(fake.inits) == 3 and fake.shutdowns == 2
        waits = [int(i["gcs_wait_s"]) for i in fake.inits]
        assert waits == sorted(waits) and waits[0] < waits[-1]  # each try waits longer for the GCS
        assert fake.inits[0]["owner"] and fake.inits[0]["owner"] == started.token
        assert OWNER_ENV not in os.environ  # set only while Ray starts
        for proc in fake.half_started:  # what a failed try started was killed before the next one
            assert proc.wait(timeout=5) == -signal.SIGKILL
        assert not old.exists()  # a dead session of an earlier run is removed at the start
    finally:
        started.stop(fake)
        for proc in fake.half_started:
            proc.kill()
    assert started.watchdog is None or started.watchdog.poll() is not None


@pytest.mark.slow
def test_a_real_ray_start_that_times_out_is_retried_and_cleaned_up(monkeypatch, ray_tmp):
    """The first try's GCS wait is 0 s, so Ray itself gives up on it (as under load); the second try starts,
    and the failed try's session folder is gone."""
    import logging

    import ray

    monkeypatch.setattr(local_ray, "GCS_WAIT_S", (0, 120))
    monkeypatch.setattr(local_ray, "START_BACKOFF_S", 0.0)
    monkeypatch.delenv(local_ray.GCS_WAIT_ENV, raising=False)
    real_init, tries = ray.init, []

    def init(**kwargs):
        tries.append(os.environ.get(local_ray.GCS_WAIT_ENV))
        return real_init(**kwargs)

    monkeypatch.setattr(ray, "init", init)
    started = local_ray.start_local(ray, dict(num_cpus=1, object_store_memory=128 * 1024**2, include_dashboard=False,
                                              logging_level=logging.ERROR, log_to_driver=False))
    try:
        assert tries == ["0", "120"]
        assert ray.get(ray.remote(lambda: 7).remote()) == 7
        sessions = [p for p in (ray_tmp / "ray").glob("session_*") if not p.is_symlink()]
        assert sessions == [started.session_dir]
    finally:
        started.stop(ray)
    assert not started.session_dir.exists()


def test_a_ray_that_never_starts_ends_with_a_message_and_exit_4(tmp_path, monkeypatch, capsys, ray_tmp):
    import ray

    monkeypatch.setattr(local_ray, "START_BACKOFF_S", 0.0)
    fake = _FakeRay(failures=99)
    monkeypatch.setattr(ray, "init", fake.init)
    monkeypatch.setattr(ray, "shutdown", fake.shutdown)
    monkeypatch.setattr(ray, "is_initialized", fake.is_initialized)
    _make_inputs(tmp_path / "in", 1)
    try:
        code = cli.main(["run", str(tmp_path / "in"), "--backend", "phalp-pkl", "--no-progress",
                         "--out", str(tmp_path / "out")])
    finally:
        for proc in fake.half_started:
            proc.kill()
    err = capsys.readouterr().err
    assert code == 4 == RayStartFailed.exit_code and len(fake.inits) == local_ray.START_ATTEMPTS
    assert "Ray could not start on this machine" in err and "timed out during startup" in err
    assert "run the same command again" in err and "Traceback" not in err


def test_a_cluster_that_cannot_be_joined_says_so(monkeypatch):
    fake = _FakeRay(failures=0)

    def unreachable(**kwargs):
        raise ConnectionError("no GCS at 10.0.0.9:6379")

    monkeypatch.setattr(fake, "init", unreachable)
    with pytest.raises(RayStartFailed, match=r"could not join the Ray cluster at 10\.0\.0\.9:6379 .*no GCS"):
        _init_ray(fake, ExecOptions(ray_address="10.0.0.9:6379"))
    assert fake.shutdowns == 1


# --- item 5: two runs on one folder ---------------------------------------------------------------------------


def test_the_run_lock_dies_with_its_holder(tmp_path):
    layout = RunLayout.at(tmp_path / "out")
    code = ("import sys, time\nfrom catalog.layout import RunLayout\nfrom cluster.folder_lock import hold_run_folder\n"
            f"with hold_run_folder(RunLayout.at({str(layout.root)!r})):\n    print('held', flush=True)\n"
            "    time.sleep(600)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FolderBusy, match=f"another g1forge run is writing {layout.root} \\(pid {holder.pid}"):
            with hold_run_folder(layout):
                pass
    finally:
        holder.kill()
        holder.wait()
    with hold_run_folder(layout):  # SIGKILLed: no stale lock
        pass


@pytest.mark.slow
def test_a_second_run_on_a_busy_folder_stops_and_every_video_is_done_once(tmp_path, ray_tmp, reliability_figures):
    paths = _make_inputs(tmp_path / "in", 6)
    out = tmp_path / "out"
    args = ["run", str(tmp_path / "in"), "--backend", "phalp-pkl", "--workers", "1", "--no-progress",
            "--out", str(out)]
    first = subprocess.Popen([sys.executable, "-m", "cluster.cli", *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        lock = out / "state" / "run.lock"
        deadline = time.time() + 120
        while time.time() < deadline and first.poll() is None:
            try:
                if json.loads(lock.read_text() or "{}").get("pid") == first.pid:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        assert first.poll() is None, "the first run ended before the second could start"
        second = cli_process(*args)
        assert _done_count(out, _file_ids(paths)) < 6, "the first run should still be working"
        first_out, first_err = first.communicate(timeout=600)
    finally:
        kill_session(first.pid)
    assert second.returncode == 5, second.stderr
    assert f"another g1forge run is writing {out} (pid {first.pid}" in second.stderr
    assert "wait for it or use another --out" in second.stderr and "Traceback" not in second.stderr
    assert first.returncode == 0, first_err
    runs = [json.loads(p.read_text()) for p in (out / "state" / "runs").glob("*.json")]
    assert [r["processed"] for r in runs] == [6]  # one run did the work, the other did nothing
    rows = db.run_query(out, "SELECT video_id, attempts FROM videos").to_pylist()
    assert sorted(r["video_id"] for r in rows) == sorted(_file_ids(paths)) and {r["attempts"] for r in rows} == {1}
    reliability_figures["second_runs"] += 1


# --- item 6: a SIGKILLed driver takes its Ray with it ---------------------------------------------------------


def test_dead_sessions_of_g1forge_runs_are_removed_and_nothing_else(tmp_path):
    temp_dir = tmp_path / "ray"
    token = "0123456789abcdef"
    ours = _dead_session(temp_dir, "session_ours", token)
    users = _dead_session(temp_dir, "session_users", None)
    running = temp_dir / "session_running"
    running.mkdir()
    (running / MARKER_FILE).write_text(json.dumps({"token": "live", "driver_pid": os.getpid(),
                                                   "driver_start": local_ray._start_ticks(os.getpid())}))
    (temp_dir / "session_latest").symlink_to(ours)
    sleep = [sys.executable, "-c", "import time; time.sleep(600)"]
    worker = subprocess.Popen(sleep, env={**os.environ, OWNER_ENV: token})  # a worker that outlived its raylet
    agent = subprocess.Popen(sleep)  # an agent: renamed over its environment, known by the marker's list
    bystander = subprocess.Popen(sleep)
    marker = json.loads((ours / MARKER_FILE).read_text())
    marker["processes"] = [[agent.pid, local_ray._start_ticks(agent.pid)], [bystander.pid, 1]]  # 1: pid reused
    (ours / MARKER_FILE).write_text(json.dumps(marker))
    try:
        assert local_ray.clean_dead_sessions(temp_dir) == [ours]
        assert worker.wait(timeout=5) == -signal.SIGKILL and agent.wait(timeout=5) == -signal.SIGKILL
        assert bystander.poll() is None
    finally:
        for proc in (worker, agent, bystander):
            proc.kill()
            proc.wait()
    assert not ours.exists() and users.exists() and running.exists()
    assert not (temp_dir / "session_latest").is_symlink()


@pytest.mark.slow
def test_a_sigkilled_driver_leaves_no_ray_process_and_no_session_folder(tmp_path, ray_tmp, reliability_figures):
    paths = _make_inputs(tmp_path / "in", 24, frames=150)
    ids = _file_ids(paths)
    out = tmp_path / "out"
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp)}
    proc = subprocess.Popen([sys.executable, "-m", "cluster.cli", "run", str(tmp_path / "in"), "--backend",
                             "phalp-pkl", "--workers", "1", "--no-progress", "--out", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    tree: set[int] = set()
    try:
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None and _done_count(out, ids) < 2:
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before the kill"
        tree = descendants(proc.pid)
        sessions = [p for p in (ray_tmp / "ray").glob("session_*") if not p.is_symlink()]
        assert len(tree) >= 4 and len(sessions) == 1  # GCS, raylet, agents, workers, watchdog
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed_at = time.monotonic()
        while time.monotonic() - killed_at < 5 and any(is_running(p) for p in tree):
            time.sleep(0.05)
        alive = {p: Path(f"/proc/{p}/cmdline").read_bytes()[:80] for p in tree if is_running(p)}
        assert not alive, f"still running {time.monotonic() - killed_at:.1f} s after the driver's SIGKILL: {alive}"
        while time.monotonic() - killed_at < 10 and sessions[0].exists():
            time.sleep(0.05)
        assert not sessions[0].exists(), "the killed run's Ray session folder was left behind"
        reliability_figures["kills"] += 1
    finally:
        kill_session(proc.pid)
        for pid in tree:
            if is_running(pid):
                os.kill(pid, signal.SIGKILL)
