"""The staged Ray pipeline: stage sizing, GPU pinning with logical GPUs, bounded in-flight work, faults and
``--retry-failed``, and a 1,000-video list through the fast ``phalp-pkl`` backend."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import pytest

from catalog.db import run_query
from cluster.config import RunConfig
from cluster.pipeline import PipelineOptions, stream
from cluster.run import ExecOptions, plan_stages, run
from cluster.stages import FAULT_ENV
from ingest.errors import BotCheck, NoGPU
from ingest.ids import file_id
from ingest.items import VideoItem
from phalp_factory import make_phalp_pickle
from pipeline.backends.base import backend_class

CONFIG = RunConfig(backend="phalp-pkl")


# --- sizing ---------------------------------------------------------------------------------------------------


def test_gpu_backend_gets_one_pose_worker_per_gpu_share_and_the_rest_of_the_cpus_finish():
    cls = backend_class("4dhumans")
    plan = plan_stages(cls, ExecOptions(), total_cpus=16, total_gpus=4, num_videos=1000)
    assert (plan.pose_workers, plan.pose_gpus) == (4, 1.0)
    assert plan.finish_workers == int(16 - 4 * plan.pose_cpus)
    packed = plan_stages(cls, ExecOptions(gpus_per_pose_worker=0.5), total_cpus=16, total_gpus=4, num_videos=1000)
    assert (packed.pose_workers, packed.pose_gpus) == (8, 0.5)
    # never more workers than videos
    assert plan_stages(cls, ExecOptions(), 16, 4, num_videos=2).pose_workers == 2
    with pytest.raises(NoGPU, match="--ray-address"):
        plan_stages(cls, ExecOptions(), total_cpus=16, total_gpus=0, num_videos=10)


def test_cpu_and_light_backends_share_the_cpus_differently():
    mp = plan_stages(backend_class("mediapipe"), ExecOptions(), total_cpus=8, total_gpus=0, num_videos=100)
    assert mp.pose_workers == 8 and mp.pose_gpus == 0 and mp.finish_cpus == 0  # finishing shares pose's cores
    light = plan_stages(backend_class("phalp-pkl"), ExecOptions(), total_cpus=8, total_gpus=0, num_videos=100,
                        any_remote=False)
    assert (light.pose_workers, light.pose_cpus, light.finish_workers, light.fetch_workers) == (1, 0.0, 8, 1)
    # logical CPUs reserved never exceed the cluster's, so every actor can be placed
    for p in (mp, light):
        assert p.pose_workers * p.pose_cpus + p.finish_workers * p.finish_cpus <= 8 + 1e-9
    for cpus, gpus in ((2, 2), (3, 1), (7, 3), (16, 4)):  # shares that do not divide evenly still fit exactly
        g = plan_stages(backend_class("4dhumans"), ExecOptions(), cpus, gpus, 100)
        assert g.pose_workers * g.pose_cpus + g.finish_workers * g.finish_cpus <= cpus


# --- the scheduler with a synchronous stand-in for Ray ----------------------------------------------------------


class _Ref:
    def __init__(self, value=None, error=None):
        self.value, self.error = value, error


class _FakeRay:
    """Runs each call when it is submitted; records how many calls were in flight at most."""

    def __init__(self):
        self.in_flight = 0
        self.max_in_flight = 0

    def wait(self, refs, num_returns=1, timeout=None):
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref):
        self.in_flight -= 1
        if ref.error is not None:
            raise ref.error
        return ref.value

    def call(self, fn, *args, num_returns=1):
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            value = fn(*args)
        except Exception as exc:  # stands in for RayActorError
            from ray.exceptions import RayActorError

            err = RayActorError()
            err.__cause__ = exc
            return _Ref(error=err) if num_returns == 1 else (_Ref(error=err), _Ref())
        if num_returns == 2:
            return _Ref(value[0]), _Ref(value[1])
        return _Ref(value)


class _Method:
    def __init__(self, fake, fn, num_returns=1):
        self.fake, self.fn, self.num_returns = fake, fn, num_returns

    def options(self, num_returns=1):
        return _Method(self.fake, self.fn, num_returns)

    def remote(self, *args):
        args = [a.value if isinstance(a, _Ref) else a for a in args]
        return self.fake.call(self.fn, *args, num_returns=self.num_returns)


class _Actor:
    def __init__(self, fake, **methods):
        methods.setdefault("__ray_ready__", lambda: True)  # Ray's readiness call on every actor
        for name, fn in methods.items():
            setattr(self, name, _Method(fake, fn))


def _fake_stages(fake, fetch_error=None, die_once_on=()):
    published, died = [], set()

    def fetch(item, attempts):
        from pipeline.process import Fetched

        err = fetch_error(item) if fetch_error else None
        row = {"video_id": item.video_id, "status": "failed" if err else "ok", "reason": "", "attempts": attempts}
        return Fetched(item=item, row=row, path=item.uri, error=err)

    def pose(fetched, attempts):
        if fetched.item.video_id in die_once_on and fetched.item.video_id not in died:
            died.add(fetched.item.video_id)
            raise RuntimeError("worker died")
        fetched.row["attempts"] = attempts
        return {"ok": True, "frames": 10}, fetched.row

    def finish(row):
        return {"ok": True}, row

    def publish(row):
        row = row.video_row if hasattr(row, "video_row") else row
        published.append(row)
        return {"status": row["status"], "reason": row["reason"], "frames": 10}

    def publish_failed(item, backend, err, attempts):
        return publish({"video_id": item.video_id, "status": "failed", "reason": err.catalog_reason(),
                        "attempts": attempts})

    actors = dict(
        fetchers=[_Actor(fake, fetch=fetch) for _ in range(2)],
        posers=[_Actor(fake, pose=pose) for _ in range(3)],
        finishers=[_Actor(fake, finish=finish) for _ in range(2)],
        writer=_Actor(fake, publish=publish, publish_failed=publish_failed),
    )
    return actors, published


def _items(n, kind="file"):
    return [VideoItem(video_id=f"v{i:06d}", uri=f"/x/{i}", kind=kind) for i in range(n)]


def test_in_flight_work_stays_bounded_whatever_the_list_length():
    for n in (50, 5000):
        fake = _FakeRay()
        actors, published = _fake_stages(fake)
        result = stream(fake, _items(n), **actors, backend="phalp-pkl", opts=PipelineOptions(per_actor=2))
        assert len(published) == n == len({r["video_id"] for r in published})
        assert result.stages["write"]["done"] == n and result.stages["pose"]["frames"] == 10 * n
        # every stage holds at most per_actor calls per actor, whatever n is
        assert fake.max_in_flight <= 2 * (2 + 3 + 2) + 8


def test_a_dead_worker_retries_the_video_with_the_attempt_counted_and_gives_up_after_max_attempts():
    fake = _FakeRay()
    actors, published = _fake_stages(fake, die_once_on={"v000003"})
    result = stream(fake, _items(10), **actors, backend="phalp-pkl", opts=PipelineOptions(max_attempts=3))
    rows = {r["video_id"]: r for r in published}
    assert result.retries == 1 and rows["v000003"]["attempts"] == 2 and rows["v000003"]["status"] == "ok"
    assert len(published) == 10

    fake = _FakeRay()
    actors, published = _fake_stages(fake, die_once_on={"v000003"})
    stream(fake, _items(10), **actors, backend="phalp-pkl", opts=PipelineOptions(max_attempts=1))
    rows = {r["video_id"]: r for r in published}
    assert rows["v000003"]["status"] == "failed" and rows["v000003"]["reason"].startswith("worker_lost")
    assert "--retry-failed" in rows["v000003"]["reason"] and len(published) == 10


def test_nothing_is_sent_to_an_actor_while_it_restarts(monkeypatch):
    """A call sent to an actor Ray is restarting fails at once and would cost its video a try: after a loss the
    stage waits until the actor answers its readiness call again."""
    import cluster.pipeline as pipeline_mod

    monkeypatch.setattr(pipeline_mod.time, "sleep", lambda s: None)
    fake = _FakeRay()
    actors, published = _fake_stages(fake)
    state = {"restarting": False, "pings": 0, "sent_while_restarting": 0, "died": False}

    def pose(fetched, attempts):
        if state["restarting"]:
            state["sent_while_restarting"] += 1
            raise RuntimeError("actor unavailable: restarting")
        if fetched.item.video_id == "v000003" and not state["died"]:
            state["died"] = state["restarting"] = True
            raise RuntimeError("worker died")
        fetched.row["attempts"] = attempts
        return {"ok": True, "frames": 10}, fetched.row

    def ready():
        state["pings"] += 1
        if state["pings"] < 4:  # answers on the fourth ping: restarted
            raise RuntimeError("actor unavailable: restarting")
        state["restarting"] = False
        return True

    actors["posers"] = [_Actor(fake, pose=pose, __ray_ready__=ready)]
    result = stream(fake, _items(8), **actors, backend="phalp-pkl",
                    opts=PipelineOptions(max_attempts=3, per_actor=1))  # one call at a time: no collateral loss
    rows = {r["video_id"]: r for r in published}
    assert state["died"] and state["pings"] == 4 and state["sent_while_restarting"] == 0
    assert len(published) == 8 and all(r["status"] == "ok" for r in rows.values())
    assert rows["v000003"]["attempts"] == 2 and result.retries == 1  # only the call the death took counts


def test_a_rate_limit_pauses_every_download_lane_and_requeues_the_video(monkeypatch):
    import cluster.pipeline as pipeline_mod

    clock = [0.0]
    monkeypatch.setattr(pipeline_mod.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(pipeline_mod.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + max(s, 0.01)))
    limited = {"v000001": 2}  # rate-limited twice, then fine
    fetch_times = {}

    def fetch_error(item):
        fetch_times.setdefault(item.video_id, []).append(clock[0])
        if limited.get(item.video_id, 0) > 0:
            limited[item.video_id] -= 1
            return BotCheck("HTTP Error 429: Too Many Requests")
        return None

    fake = _FakeRay()
    actors, published = _fake_stages(fake, fetch_error=fetch_error)
    opts = PipelineOptions(rate_limit_backoff_s=30.0, rate_limit_max_backoff_s=100.0)
    result = stream(fake, _items(6, kind="url"), **actors, backend="mediapipe", opts=opts)
    assert {r["status"] for r in published} == {"ok"} and len(published) == 6
    t = fetch_times["v000001"]
    assert len(t) == 3 and t[1] - t[0] >= 30.0 and t[2] - t[1] >= 30.0
    assert result.stages["fetch"]["retried"] == 2
    # after the first rate limit no lane started another download before the pause ended
    later = sorted(x for v, ts in fetch_times.items() for x in ts if x > t[0])
    assert later and min(later) >= t[0] + 30.0

    # with no download getting through in between, each new rate limit doubles the pause
    limited, fetch_times = {"v000000": 3}, {}
    fake = _FakeRay()
    actors, published = _fake_stages(fake, fetch_error=fetch_error)
    stream(fake, _items(1, kind="url"), **actors, backend="mediapipe", opts=opts)
    t = fetch_times["v000000"]
    assert [round(b - a) for a, b in zip(t, t[1:])] == [30, 60, 100] and published[0]["status"] == "ok"

    limited = {"v000002": 99}  # always limited: recorded as failed after rate_limit_attempts tries
    fake = _FakeRay()
    actors, published = _fake_stages(fake, fetch_error=fetch_error)
    stream(fake, _items(3, kind="url"), **actors, backend="mediapipe",
           opts=PipelineOptions(rate_limit_backoff_s=1.0, rate_limit_attempts=3))
    assert {r["video_id"]: r["status"] for r in published}["v000002"] == "failed"


# --- real Ray ---------------------------------------------------------------------------------------------------


def _pickles(folder: Path, n: int, frames: int = 90, tracks: int = 1) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"v{i:04d}.pkl"
        make_phalp_pickle(p, tracks, num_frames=frames, seed=i)
        out.append(p)
    return out


@pytest.fixture
def ray_with_two_gpus():
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=256 * 2**20)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_pose_workers_are_pinned_to_distinct_gpus_and_load_their_model_once(tmp_path, ray_with_two_gpus):
    _pickles(tmp_path / "in", 6)
    report = run([str(tmp_path / "in")], [], tmp_path / "out", CONFIG,
                 ExecOptions(gpus_per_pose_worker=1, progress=False))
    assert report.counts == {"ok": 6}
    pose = [w for w in report.workers if w["stage"] == "pose"]
    assert len(pose) == 2 and report.plan["pose_gpus"] == 1.0
    assert sorted(tuple(w["gpu_ids"]) for w in pose) == [("0",), ("1",)]
    assert all(w["backend_loads"] == 1 for w in pose) and sum(w["calls"] for w in pose) == 6
    assert report.pose_utilisation() is not None and "pose workers busy" in report.summary()

    packed = run([str(tmp_path / "in")], [], tmp_path / "out2", CONFIG,
                 ExecOptions(gpus_per_pose_worker=0.5, progress=False))
    pose = [w for w in packed.workers if w["stage"] == "pose"]
    assert len(pose) == 4 and sorted(w["gpu_ids"][0] for w in pose) == ["0", "0", "1", "1"]


@pytest.mark.slow
def test_a_finish_worker_killed_mid_video_is_retried_and_retry_failed_redoes_only_failed_rows(tmp_path,
                                                                                             monkeypatch):
    pkls = _pickles(tmp_path / "in", 4)
    (tmp_path / "in" / "corrupt.pkl").write_bytes(b"not a pickle")
    victim = file_id(pkls[2])
    monkeypatch.setenv(FAULT_ENV, f"finish:{victim}@{tmp_path / 'faults'}")
    out = tmp_path / "out"
    report = run([str(tmp_path / "in")], [], out, CONFIG, ExecOptions(progress=False, max_attempts=1))
    assert (tmp_path / "faults" / f"killed.{victim}").exists()
    assert report.counts == {"ok": 3, "failed": 2}
    rows = {r["video_id"]: r for r in run_query(out, "SELECT video_id, status, reason, attempts FROM videos")
            .to_pylist()}
    assert rows[victim]["reason"].startswith("worker_lost")

    again = run([str(tmp_path / "in")], [], out, CONFIG, ExecOptions(progress=False))
    assert again.processed == 0  # failed rows are done unless asked
    retried = run([str(tmp_path / "in")], [], out, CONFIG, ExecOptions(progress=False, retry_failed=True))
    assert retried.processed == 2 and retried.already_done == 3  # the victim and the corrupt file, nothing else
    rows = {r["video_id"]: r["status"] for r in run_query(out, "SELECT video_id, status FROM videos").to_pylist()}
    assert rows[victim] == "ok" and sorted(rows.values()) == ["failed", "ok", "ok", "ok", "ok"]


@pytest.mark.slow
def test_a_thousand_video_list_completes_with_correct_counts(tmp_path):
    folder = tmp_path / "in"
    ok = _pickles(folder, 3, frames=90)
    template = (folder / "short.pkl")
    make_phalp_pickle(template, 1, num_frames=20, seed=7)  # 0.7 s: too short for a clip
    blob = template.read_bytes()
    template.unlink()
    lines = [str(p) for p in ok]
    for i in range(990):
        p = folder / f"short{i:04d}.pkl"
        p.write_bytes(blob + bytes([i % 251]) * (1 + i // 251))  # distinct content, same pickle
        lines.append(str(p))
    for i in range(5):
        p = folder / f"broken{i}.pkl"
        p.write_bytes(b"garbage %d" % i)
        lines.append(str(p))
    lines += [str(folder / f"missing{i}.pkl") for i in range(2)]
    lst = tmp_path / "list.txt"
    lst.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    report = run([], [str(lst)], out, CONFIG, ExecOptions(progress=False))
    assert report.processed == 1000 and report.counts == {"ok": 3, "filtered": 990, "failed": 7}
    assert report.stages["write"]["done"] == 1000
    n = run_query(out, "SELECT status, count(*) AS n FROM videos GROUP BY 1 ORDER BY 1").to_pylist()
    assert n == [{"status": "failed", "n": 7}, {"status": "filtered", "n": 990}, {"status": "ok", "n": 3}]
    assert run([], [str(lst)], out, CONFIG, ExecOptions(progress=False)).processed == 0


def test_a_pose_worker_on_another_node_downloads_again_or_names_the_fix(tmp_path, monkeypatch):
    from cluster.stages import PoseWorker
    from pipeline.process import Fetched

    calls = []

    def fake_fetch(item, config, download_dir, config_hash, backend, needs_video, attempts):
        calls.append(download_dir)
        local = tmp_path / "here.mp4"
        local.write_bytes(b"x")
        return Fetched(item=item, row={"video_id": item.video_id, "config_hash": config_hash, "fps": 30.0},
                       path=str(local))

    import cluster.stages as stages_mod

    monkeypatch.setattr(stages_mod, "fetch_video", fake_fetch)
    worker = PoseWorker(CONFIG.to_dict(), str(tmp_path / "out"))
    url = VideoItem(video_id="url-abc", uri="https://example.org/a.mp4", kind="url")
    fetched = Fetched(item=url, row={"video_id": "url-abc", "config_hash": "h", "width_px": 640},
                      path="/elsewhere/node-a/url-abc.mp4")
    here = worker._here(fetched)
    assert here.path == str(tmp_path / "here.mp4") and here.row["width_px"] == 640 and len(calls) == 1
    assert worker._here(here) is here  # already local: nothing fetched
    missing = Fetched(item=VideoItem(video_id="file-1", uri="/only/on/a.mp4", kind="file"), row={},
                      path="/only/on/a.mp4")
    with pytest.raises(Exception, match="filesystem every node mounts"):
        worker._here(missing)


def test_compaction_cannot_start_while_a_run_holds_the_folder(tmp_path, monkeypatch):
    import cluster.run as run_mod
    from catalog.compact import compact
    from ingest.errors import ConfigError

    seen = []

    def body(inputs, list_files, layout, mirror, config, opts, items):
        with pytest.raises(ConfigError):
            compact(layout.root)
        seen.append(True)

    monkeypatch.setattr(run_mod, "_run_in_folder", body)
    run([], [], tmp_path / "out", CONFIG, ExecOptions(progress=False))
    assert seen == [True]
