"""The configuration hash is decided once, on the driver, and every stage uses that decision: a worker on a node
whose environment hashes differently (another ``G1FORGE_SMPL_DIR`` here) still stamps the driver's hash into
the rows, so rows, done markers and ``--retry-failed`` agree.

:class:`InProcessRay` stands in for Ray in a whole ``g1forge run``: each actor is built and called in this
process, inside the environment of the node it is placed on."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from catalog.db import run_query
from catalog.layout import RunLayout
from cluster.config import RunConfig
from cluster.run import ExecOptions, prepare_run_folder, run
from cluster.stages import FetchWorker
from ingest.ids import file_id
from ingest.items import VideoItem
from phalp_factory import make_phalp_pickle
from pipeline.smpl_joints import ENV_SMPL_DIR

CONFIG = RunConfig(backend="phalp-pkl")
#: What a worker node's environment says that the driver's does not (a result-changing variable of phalp-pkl).
OTHER_NODE_ENV = {ENV_SMPL_DIR: "/opt/another-node/smpl"}


@contextlib.contextmanager
def node_environment(env: dict[str, str]):
    """``os.environ`` as a node with ``env`` has it, for the duration of the block."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class _Ref:
    def __init__(self, value):
        self.value = value


class _Method:
    def __init__(self, actor: "_Actor", name: str, num_returns: int = 1):
        self.actor, self.name, self.num_returns = actor, name, num_returns

    def options(self, num_returns: int = 1, **_ignored) -> "_Method":
        return _Method(self.actor, self.name, num_returns)

    def remote(self, *args):
        args = [a.value if isinstance(a, _Ref) else a for a in args]
        with node_environment(self.actor.env):
            value = getattr(self.actor.instance, self.name)(*args)
        return tuple(_Ref(v) for v in value) if self.num_returns > 1 else _Ref(value)


class _Actor:
    def __init__(self, cls, env: dict, args: tuple):
        self.env = env
        with node_environment(env):
            self.instance = cls(*args)

    def __getattr__(self, name: str) -> _Method:
        return _Method(self, name)


class _ActorClass:
    def __init__(self, fake: "InProcessRay", cls):
        self.fake, self.cls = fake, cls

    def options(self, **_ignored) -> "_ActorClass":
        return self

    def remote(self, *args) -> _Actor:
        actor = _Actor(self.cls, self.fake.node_env.get(self.cls.__name__, {}), args)
        self.fake.actors.append(actor)
        return actor


class InProcessRay:
    """The part of Ray that :func:`cluster.run._execute` and :func:`cluster.pipeline.stream` use, run
    synchronously in this process. node_env: per stage class name, the environment of the node its actors are
    placed on (unlisted classes run in the driver's environment)."""

    NODE_ID = "0" * 56

    def __init__(self, node_env: dict[str, dict] | None = None, cpus: float = 2.0):
        self.node_env = node_env or {}
        self.cpus = cpus
        self.actors: list[_Actor] = []

    def is_initialized(self) -> bool:
        return True  # joined, as with --ray-address: _execute neither starts nor stops it

    def cluster_resources(self) -> dict:
        return {"CPU": self.cpus}

    def remote(self, **_resources):
        return lambda cls: _ActorClass(self, cls)

    def get_runtime_context(self):
        node_id = self.NODE_ID

        class _Context:
            def get_node_id(self) -> str:
                return node_id

        return _Context()

    def wait(self, refs: list, num_returns: int = 1, timeout: float | None = None):
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref: _Ref, timeout: float | None = None):
        return ref.value

    def kill(self, actor) -> None:
        pass

    def shutdown(self) -> None:
        pass


def use_in_process_ray(monkeypatch, fake: InProcessRay) -> InProcessRay:
    """Make ``g1forge run`` execute on ``fake`` instead of Ray."""
    import cluster.run

    monkeypatch.setattr(cluster.run, "_import_ray", lambda: fake)
    return fake


def _pickles(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"v{i}.pkl" for i in range(n)]
    for i, p in enumerate(paths):
        make_phalp_pickle(p, 1, num_frames=60, seed=i)
    return paths


def test_a_fetch_worker_on_another_node_stamps_the_drivers_hash(tmp_path):
    driver_hash = CONFIG.config_hash()
    out = tmp_path / "out"
    prepare_run_folder(RunLayout.at(out), CONFIG)
    (good,) = _pickles(tmp_path / "in", 1)
    items = [VideoItem(video_id=file_id(good), uri=str(good), kind="file"),
             VideoItem(video_id="file-0123456789abcdef", uri=str(tmp_path / "gone.pkl"), kind="file")]
    with node_environment(OTHER_NODE_ENV):
        assert CONFIG.config_hash() != driver_hash  # this node would hash differently
        worker = FetchWorker(CONFIG.to_dict(), str(out), False, driver_hash)
        fetched = [worker.fetch(it) for it in items]
    assert fetched[0].error is None and fetched[1].error is not None
    assert [f.row["config_hash"] for f in fetched] == [driver_hash, driver_hash]


def test_a_run_whose_fetch_workers_hash_differently_keeps_the_drivers_hash_and_retry_failed_works(tmp_path,
                                                                                                  monkeypatch):
    driver_hash = CONFIG.config_hash()
    good = _pickles(tmp_path / "in", 2)
    (tmp_path / "in" / "corrupt.pkl").write_bytes(b"not a pickle")
    lst = tmp_path / "videos.txt"
    lst.write_text("".join(f"{p}\n" for p in [*good, tmp_path / "in" / "corrupt.pkl", tmp_path / "gone.pkl"]))
    out = tmp_path / "out"
    fake = use_in_process_ray(monkeypatch, InProcessRay(node_env={"FetchWorker": OTHER_NODE_ENV}))

    report = run([], [str(lst)], out, CONFIG, ExecOptions(progress=False))

    assert report.counts == {"ok": 2, "failed": 2} and report.config_hash == driver_hash
    assert any(isinstance(a.instance, FetchWorker) for a in fake.actors)
    rows = run_query(out, "SELECT video_id, status, config_hash FROM videos ORDER BY video_id").to_pylist()
    assert len(rows) == 4 and {r["config_hash"] for r in rows} == {driver_hash}
    layout = RunLayout.at(out)
    assert all(layout.is_done(r["video_id"], driver_hash) for r in rows)
    # --retry-failed finds the failed rows by the driver's hash and redoes those two only
    retried = run([], [str(lst)], out, CONFIG, ExecOptions(progress=False, retry_failed=True))
    assert retried.processed == 2 and retried.already_done == 2 and retried.counts == {"failed": 2}
    again = run_query(out, "SELECT status, config_hash, attempts FROM videos WHERE status = 'failed'").to_pylist()
    assert len(again) == 2 and {r["config_hash"] for r in again} == {driver_hash}
