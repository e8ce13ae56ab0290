"""Streaming the run's videos through the four stages on Ray, with bounded work in flight at every stage.

::

    items ─► fetch (CPU actors) ─► pose (actor pool, GPUs or CPUs) ─► finish (CPU actors) ─► writer (one actor)

Ray places the actors by their resources (``num_gpus`` fractional packs several pose actors on one GPU; Ray sets
each actor's ``CUDA_VISIBLE_DEVICES``), restarts an actor that dies (``max_restarts=-1``) and moves results
between stages by reference. The driver only decides what to submit next: each stage has at most
``per_actor`` calls queued on each of its actors, and a stage submits only while the buffer in front of the
next stage has room, so driver and object-store memory stay flat whatever the list length.

Faults: a worker that dies in a video (``RayActorError``) gets that video again, up to ``max_attempts`` tries in
all, counted in the row's ``attempts``; after that the video is recorded as ``failed`` with reason
``worker_lost``. While Ray restarts a dead actor nothing is sent to it (a call would fail at once and cost its
video a try, so under load one death could use up two tries): the stage waits until the actor answers Ray's
readiness call (``__ray_ready__``), for at most ``max_down_s``. Data errors come back as rows and are never
retried. A rate limit (``bot_check``) on a remote
download pauses every download lane together (exponential back-off) and puts the video back in the queue.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from ingest.errors import BotCheck, WorkerLost
from ingest.items import VideoItem

STAGES = ("fetch", "pose", "finish", "write")


@dataclass
class StageCounts:
    """What the progress display and the run report show per stage."""

    queued: int = 0
    running: int = 0
    done: int = 0
    failed: int = 0
    retried: int = 0
    frames: int = 0

    def as_dict(self) -> dict:
        return {"queued": self.queued, "running": self.running, "done": self.done, "failed": self.failed,
                "retried": self.retried, "frames": self.frames}


@dataclass
class PipelineOptions:
    """Sizes of the stages and their bounds (none of this changes results).

    per_actor: calls queued on each actor (2: the next video is ready when the current one ends).
    max_attempts: tries per video when workers die under it. rate_limit_backoff_s: first pause of all download
    lanes after a rate limit (doubles at each new one, up to ``rate_limit_max_backoff_s``); a video is
    re-queued at most ``rate_limit_attempts`` times for rate limits.
    """

    per_actor: int = 2
    max_attempts: int = 3
    rate_limit_backoff_s: float = 30.0
    rate_limit_max_backoff_s: float = 900.0
    rate_limit_attempts: int = 5


class _Pool:
    """One stage's actors and how many calls each has in flight."""

    def __init__(self, name: str, actors: list, per_actor: int):
        self.name = name
        self.actors = actors
        self.load = [0] * len(actors)
        self.cap = max(1, per_actor)
        #: actors seen dying, not yet answering again (Ray restarts them): nothing is submitted to them
        self.down: set[int] = set()

    @property
    def in_flight(self) -> int:
        return sum(self.load)

    def _up(self) -> list[int]:
        return [i for i in range(len(self.actors)) if i not in self.down]

    def has_room(self) -> bool:
        return any(self.load[i] < self.cap for i in self._up())

    def take(self) -> int:
        i = min(self._up(), key=lambda j: self.load[j])
        self.load[i] += 1
        return i

    def release(self, i: int) -> None:
        self.load[i] -= 1


@dataclass
class _Ctx:
    """What the driver remembers about one submitted call."""

    stage: str
    worker: int
    item: VideoItem
    attempts: int
    fetched: object = None  # the Fetched a pose call got (to re-submit it)
    payload_ref: object = None  # the pose result a finish call got, or the outcome a write call got


@dataclass
class StreamResult:
    published: int = 0
    retries: int = 0
    stages: dict = field(default_factory=dict)


def stream(ray, items: list[VideoItem], fetchers: list, posers: list, finishers: list, writer, *,
           backend: str, opts: PipelineOptions, on_done=None, on_tick=None) -> StreamResult:
    """Push ``items`` through the stages until every one is published; returns the counts.

    fetchers/posers/finishers: Ray actor handles of :class:`cluster.stages.FetchWorker`, ``PoseWorker``,
    ``FinishWorker``; writer: one ``CatalogWriter`` handle. on_done(summary): called per published video;
    on_tick(counts): called about twice a second with ``{stage: StageCounts}``.
    """
    from ray.exceptions import RayActorError, WorkerCrashedError

    lost = (RayActorError, WorkerCrashedError)
    pools = {"fetch": _Pool("fetch", fetchers, opts.per_actor), "pose": _Pool("pose", posers, opts.per_actor),
             "finish": _Pool("finish", finishers, opts.per_actor), "write": _Pool("write", [writer], 8)}
    counts = {s: StageCounts() for s in STAGES}
    result = StreamResult()
    local_q: deque = deque((it, 1) for it in items if it.kind == "file" or it.list_error)
    remote_q: deque = deque((it, 1) for it in items if not (it.kind == "file" or it.list_error))
    to_pose: deque = deque()  # (item, fetched, attempts)
    to_finish: deque = deque()  # (item, payload_ref, attempts)
    to_write: deque = deque()  # (item, outcome_ref_or_outcome, attempts)
    pending: dict = {}
    # each buffer holds at most about two rounds of the next stage's actors
    cap = {s: 2 * max(1, len(pools[s].actors)) * pools[s].cap for s in ("pose", "finish", "write")}
    lanes_open_at = 0.0
    backoff_s = opts.rate_limit_backoff_s
    rate_limited: dict[str, int] = {}
    last_tick = 0.0
    remaining = len(items)

    def submit(stage: str, item: VideoItem, attempts: int, arg, **extra) -> None:
        pool = pools[stage]
        w = pool.take()
        actor = pool.actors[w]
        if stage == "fetch":
            ref = actor.fetch.remote(item, attempts)
        elif stage == "pose":
            ref, payload = actor.pose.options(num_returns=2).remote(arg, attempts)
            extra["payload_ref"] = payload
        elif stage == "finish":
            ref, payload = actor.finish.options(num_returns=2).remote(arg)
            extra["payload_ref"] = payload
        else:
            ref = actor.publish.remote(arg)
            extra["payload_ref"] = arg
        pending[ref] = _Ctx(stage, w, item, attempts, **extra)

    pings: dict = {}  # ref of a readiness call -> (stage, worker) of an actor seen dying
    repings: list = []  # (time, stage, worker): ping again then (the actor was still restarting)
    down_since: dict = {}  # (stage, worker) -> when it was seen dying
    #: an actor that has not answered this long after dying gets calls again (they fail and count as tries,
    #: so videos end as worker_lost rows instead of waiting for ever)
    max_down_s = 120.0

    def mark_down(stage: str, w: int) -> None:
        """A call on ``stage``'s actor ``w`` was lost: submit nothing to it until it answers again, so no video
        is sent to an actor while Ray restarts it (such a call would fail at once and cost that video a try)."""
        pool = pools[stage]
        if w not in pool.down:
            pool.down.add(w)
            down_since[(stage, w)] = time.monotonic()
            pings[pool.actors[w].__ray_ready__.remote()] = (stage, w)

    def fail_lost(item: VideoItem, attempts: int, exc: BaseException) -> None:
        err = WorkerLost(f"the worker died {attempts} times on this video ({type(exc).__name__}); it is "
                         f"recorded as failed: run again with --retry-failed to try it once more")
        w = pools["write"].take()
        ref = pools["write"].actors[w].publish_failed.remote(item, backend, err, attempts)
        pending[ref] = _Ctx("write", w, item, attempts, payload_ref=None)

    while remaining:
        now = time.monotonic()
        # fill the stages from the last to the first, so finished work leaves before new work enters
        while to_write and pools["write"].has_room():
            item, obj, attempts = to_write.popleft()
            submit("write", item, attempts, obj)
        while to_finish and pools["finish"].has_room() and len(to_write) + pools["finish"].in_flight < cap["write"]:
            item, payload, attempts = to_finish.popleft()
            submit("finish", item, attempts, payload)
        while to_pose and pools["pose"].has_room() and len(to_finish) + pools["pose"].in_flight < cap["finish"]:
            item, fetched, attempts = to_pose.popleft()
            submit("pose", item, attempts, fetched, fetched=fetched)
        while pools["fetch"].has_room() and len(to_pose) + pools["fetch"].in_flight < cap["pose"]:
            if local_q:
                item, attempts = local_q.popleft()
            elif remote_q and now >= lanes_open_at:
                item, attempts = remote_q.popleft()
            else:
                break
            submit("fetch", item, attempts, None)

        for entry in [e for e in repings if e[0] <= now]:
            repings.remove(entry)
            pings[pools[entry[1]].actors[entry[2]].__ray_ready__.remote()] = entry[1:]
        waiting = list(pending) + list(pings)
        ready, _ = ray.wait(waiting, num_returns=1, timeout=0.5) if waiting else ([], [])
        for ref in [r for r in ready if r in pings]:
            stage, w = pings.pop(ref)
            try:
                ray.get(ref)
                pools[stage].down.discard(w)
            except lost:
                if time.monotonic() - down_since[(stage, w)] > max_down_s:
                    pools[stage].down.discard(w)
                else:
                    repings.append((time.monotonic() + 0.25, stage, w))
        ready = [r for r in ready if r in pending]
        if not pending and not pings:
            time.sleep(min(0.5, max(0.0, lanes_open_at - time.monotonic())))
        for ref in ready:
            ctx = pending.pop(ref)
            pools[ctx.stage].release(ctx.worker)
            c = counts[ctx.stage]
            try:
                value = ray.get(ref)
            except lost as exc:
                mark_down(ctx.stage, ctx.worker)
                c.retried += 1
                if ctx.attempts >= opts.max_attempts:
                    c.failed += 1
                    fail_lost(ctx.item, ctx.attempts, exc)
                    continue
                result.retries += 1
                nxt = ctx.attempts + 1
                if ctx.stage == "fetch":
                    (local_q if ctx.item.kind == "file" else remote_q).appendleft((ctx.item, nxt))
                elif ctx.stage == "pose":
                    to_pose.appendleft((ctx.item, ctx.fetched, nxt))
                elif ctx.stage == "finish":
                    to_finish.appendleft((ctx.item, ctx.payload_ref, nxt))
                else:
                    to_write.appendleft((ctx.item, ctx.payload_ref, nxt))
                continue
            c.done += 1
            if ctx.stage == "fetch":
                fetched = value
                if fetched.error is None:
                    if ctx.item.kind != "file":
                        backoff_s = opts.rate_limit_backoff_s  # downloads go through again: reset the back-off
                    to_pose.append((ctx.item, fetched, ctx.attempts))
                    continue
                c.failed += 1
                if isinstance(fetched.error, BotCheck):
                    n = rate_limited.get(ctx.item.video_id, 0) + 1
                    rate_limited[ctx.item.video_id] = n
                    if n < opts.rate_limit_attempts:
                        lanes_open_at = max(lanes_open_at, time.monotonic() + backoff_s)
                        backoff_s = min(2 * backoff_s, opts.rate_limit_max_backoff_s)
                        remote_q.append((ctx.item, ctx.attempts))
                        c.retried += 1
                        continue
                from pipeline.process import fetched_outcome

                to_write.append((ctx.item, fetched_outcome(fetched), ctx.attempts))
            elif ctx.stage == "pose":
                c.frames += int(value.get("frames", 0))
                if value["ok"]:
                    to_finish.append((ctx.item, ctx.payload_ref, ctx.attempts))
                else:
                    c.failed += 1
                    to_write.append((ctx.item, ctx.payload_ref, ctx.attempts))
            elif ctx.stage == "finish":
                if not value["ok"]:
                    c.failed += 1
                to_write.append((ctx.item, ctx.payload_ref, ctx.attempts))
            else:
                if value["status"] == "failed":
                    c.failed += 1
                c.frames += int(value.get("frames", 0))
                remaining -= 1
                result.published += 1  # summaries go to on_done, not into a list: memory stays flat
                if on_done is not None:
                    on_done(value)
        t = time.monotonic()
        if on_tick is not None and t - last_tick >= 0.5:
            last_tick = t
            _refresh(counts, pools, local_q, remote_q, to_pose, to_finish, to_write)
            on_tick(counts)
    _refresh(counts, pools, local_q, remote_q, to_pose, to_finish, to_write)
    result.stages = {s: counts[s].as_dict() for s in STAGES}
    return result


def _refresh(counts, pools, local_q, remote_q, to_pose, to_finish, to_write) -> None:
    counts["fetch"].queued = len(local_q) + len(remote_q)
    counts["pose"].queued = len(to_pose)
    counts["finish"].queued = len(to_finish)
    counts["write"].queued = len(to_write)
    for s in STAGES:
        counts[s].running = pools[s].in_flight
