"""The run's four stages as long-lived workers: fetch, pose, finish (clips + G1) and the catalog writer.

Each class is plain Python (tested without Ray); :mod:`cluster.pipeline` makes them Ray actors with each stage's
own resources. What travels between stages is small: a :class:`pipeline.process.Fetched` (a row and a local
path), a :class:`pipeline.motion.PoseResult` (tracks, no pixels), a :class:`pipeline.process.VideoOutcome`
(rows and motion arrays). Decoded frames never leave the pose worker that decodes them.

Every stage method that the driver waits on returns a small summary dict first; large payloads come back as a
second return value that the driver passes on by reference without fetching it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from catalog.failed import is_row_only, publish_failed_row
from catalog.layout import RunLayout
from catalog.writer import publish_video
from cluster.config import RunConfig
from ingest.errors import G1ForgeError, InputNotFound, classify_exception
from ingest.items import VideoItem
from pipeline.g1_motion import save_g1_motion
from pipeline.motion_io import save_clip
from pipeline.process import (Fetched, RetargetStage, VideoOutcome, failed_outcome, failed_pose_outcome,
                              fetch_video, finish_video, pose_video)

#: Test-only fault hook: ``"<video_id>[,<video_id>...]@<folder>"`` makes the pose worker die (``os._exit``) in
#: the middle of those videos, once per video (a marker file in ``<folder>`` remembers it), to exercise
#: worker-loss recovery. Prefix with ``finish:`` to kill the finish worker instead.
FAULT_ENV = "G1FORGE_TEST_KILL_WORKER_ON"


def metric_names_of(outcome: VideoOutcome) -> list[str]:
    from catalog.schema import CLIP_BASE

    base = set(CLIP_BASE.names)
    return sorted({k for r in outcome.clip_rows for k in r if k not in base})


def publish_outcome(layout: RunLayout, outcome: VideoOutcome, config_hash: str) -> None:
    """Publish an outcome's rows and clip files under ``config_hash`` (the driver's, decided once per run).

    A failed video without tracks or clips is one file (:func:`catalog.failed.publish_failed_row`); any other
    video is a folder of fragments, motion files and a marker (:func:`catalog.writer.publish_video`). Raises
    :class:`ingest.errors.WriteError` when nothing could be written."""
    row = outcome.video_row
    if is_row_only(row["status"], outcome.track_rows, outcome.clip_rows,
                   len(outcome.clips) + len(outcome.g1_motions)):
        publish_failed_row(layout, row["video_id"], config_hash, row)
        return

    def write_motions(clips_dir: Path) -> None:
        for clip in outcome.clips:
            save_clip(clip, clips_dir / f"{clip.clip_id}.npz")
        for motion in outcome.g1_motions:
            save_g1_motion(motion, clips_dir / f"{motion.clip_id}.g1.npz")

    publish_video(layout, outcome.video_row["video_id"], config_hash, outcome.video_row, outcome.track_rows,
                  outcome.clip_rows, metric_names_of(outcome), write_motions)


def summarize(outcome: VideoOutcome, published: bool) -> dict:
    row = outcome.video_row
    return {
        "video_id": row["video_id"],
        "status": row["status"],
        "reason": row["reason"],
        "frames": int(row.get("frames_processed") or 0),
        "clips_ok": int(row.get("num_clips_ok") or 0),
        "pose_time_s": float(row.get("pose_time_s") or 0.0),
        "process_time_s": float(row.get("process_time_s") or 0.0),
        "published": published,
        "retryable": bool(outcome.error is not None and outcome.error.retryable),
    }


class _Timed:
    """Busy time over wall time of a worker, as the worker itself measures it (its utilisation)."""

    stage = ""

    def __init__(self) -> None:
        self.created = time.perf_counter()
        self.first_call: float | None = None
        self.busy_s = 0.0
        self.calls = 0

    def _start(self) -> float:
        t0 = time.perf_counter()
        if self.first_call is None:
            self.first_call = t0
        return t0

    def _stop(self, t0: float) -> None:
        self.busy_s += time.perf_counter() - t0
        self.calls += 1

    def stats(self) -> dict:
        """``busy_s``: time inside calls; ``wall_s``: since the first call (start-up and model loads excluded)."""
        now = time.perf_counter()
        wall = now - self.first_call if self.first_call is not None else 0.0
        return {"stage": self.stage, "pid": os.getpid(), "node": _node_id(), "gpu_ids": _gpu_ids(),
                "calls": self.calls, "busy_s": self.busy_s, "wall_s": wall,
                "utilisation": self.busy_s / wall if wall > 0 else 0.0, "alive_s": now - self.created}


class FetchWorker(_Timed):
    """Stage 1 (CPU, network): make each video local and probe it.

    config_hash: the run's configuration hash as the driver computed it, which every row this worker starts
    carries. The hash covers the environment and the G1 model file (:meth:`cluster.config.RunConfig.hashed_dict`),
    which may differ on another node: computed here, rows would carry another hash than the done markers and
    ``--retry-failed`` would find none of them. None (a single process, as in tests and benchmarks, where the
    driver is this process) computes it here.
    """

    stage = "fetch"

    def __init__(self, config: dict, run_root: str, needs_video: bool = True, config_hash: str | None = None):
        super().__init__()
        self.config = RunConfig.from_dict(config)
        self.config_hash = config_hash if config_hash is not None else self.config.config_hash()
        self.layout = RunLayout.at(run_root)
        self.needs_video = needs_video

    def fetch(self, item: VideoItem, attempts: int = 1) -> Fetched:
        t0 = self._start()
        try:
            return fetch_video(item, self.config, self.layout.download_dir, self.config_hash, self.config.backend,
                               self.needs_video, attempts)
        finally:
            self._stop(t0)


class PoseWorker(_Timed):
    """Stage 2 (GPU or CPU): one pose backend instance, loaded once, for the worker's whole life."""

    stage = "pose"

    def __init__(self, config: dict, run_root: str | None = None):
        super().__init__()
        self.config = RunConfig.from_dict(config)
        self.run_root = run_root
        self._backend = None
        self._load_error: G1ForgeError | None = None
        self.backend_loads = 0
        self.frames = 0

    def _get_backend(self):
        if self._backend is None and self._load_error is None:
            from pipeline.backends.base import create_backend

            try:
                self._backend = create_backend(self.config.backend, **self.config.backend_options)
                self.backend_loads += 1
            except G1ForgeError as exc:  # e.g. a missing dependency: every video fails with the fix
                self._load_error = exc
        if self._load_error is not None:
            raise self._load_error
        return self._backend

    def pose(self, fetched: Fetched, attempts: int = 1) -> tuple[dict, object]:
        """Returns ``(summary, payload)``: payload is ``(row, PoseResult)`` when ``summary["ok"]``, else the
        failed :class:`VideoOutcome` ready for the writer."""
        t0 = self._start()
        fetched.row["attempts"] = attempts
        try:
            _maybe_die(fetched.item.video_id, "pose")
            try:
                fetched = self._here(fetched)
                result = pose_video(fetched, self._get_backend())
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:
                return {"ok": False, "frames": 0}, failed_pose_outcome(fetched, exc)
            self.frames += int(result.num_frames)
            return {"ok": True, "frames": int(result.num_frames)}, (fetched.row, result)
        finally:
            self._stop(t0)

    def _here(self, fetched: Fetched) -> Fetched:
        """``fetched`` with a path readable on this node: a download made on another node (no shared cache
        folder) is made again here; a local input file every node cannot see is an error with the fix."""
        if fetched.path is None or os.path.exists(fetched.path):
            return fetched
        if fetched.item.kind == "file" or self.run_root is None:
            raise InputNotFound(f"{fetched.path} is not visible on the node of this pose worker ({_node_id()}); "
                                "put input videos on a filesystem every node mounts, or list them as URLs")
        again = fetch_video(fetched.item, self.config, RunLayout.at(self.run_root).download_dir,
                            fetched.row["config_hash"], self.config.backend, True, fetched.row.get("attempts", 1))
        if again.error is not None:
            raise again.error
        again.row.update({k: v for k, v in fetched.row.items() if k not in again.row or again.row[k] is None})
        return again

    def stats(self) -> dict:
        return {**super().stats(), "backend_loads": self.backend_loads, "frames": self.frames}

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()


class FinishWorker(_Timed):
    """Stage 3 (CPU): clips, world alignment, human metrics, G1 retargeting and robot metrics."""

    stage = "finish"

    def __init__(self, config: dict):
        super().__init__()
        self.config = RunConfig.from_dict(config)
        self._retarget: RetargetStage | None = None
        try:  # load the G1 model now, not in the first video (the pose stage would wait for it)
            self._retarget = RetargetStage(self.config.retarget, self.config.g1_mjcf)
        except G1ForgeError:
            pass  # reported with the fix on every video by finish()

    def finish(self, payload: tuple) -> tuple[dict, VideoOutcome]:
        """``payload``: ``(row, PoseResult)`` from :meth:`PoseWorker.pose`. Returns ``(summary, outcome)``."""
        t0 = self._start()
        try:
            row, result = payload
            _maybe_die(row["video_id"], "finish")
            try:
                if self._retarget is None:
                    self._retarget = RetargetStage(self.config.retarget, self.config.g1_mjcf)
            except G1ForgeError as exc:
                outcome = VideoOutcome(video_row=row, error=exc)
                row.update(status=exc.status, reason=exc.catalog_reason())
            else:
                outcome = finish_video(row, result, self.config, self._retarget)
            return {"ok": outcome.status == "ok", "status": outcome.status}, outcome
        finally:
            self._stop(t0)


class CatalogWriter(_Timed):
    """Stage 4: the run's one catalog writer. Publishes each video atomically (marker last)."""

    stage = "write"

    def __init__(self, run_root: str, config_hash: str, mirror_uri: str | None = None):
        super().__init__()
        self.layout = RunLayout.at(run_root)
        self.config_hash = config_hash
        self.mirror = None
        if mirror_uri:
            from catalog.mirror import Mirror

            self.mirror = Mirror(mirror_uri)

    def _push(self, outcome: VideoOutcome) -> bool:
        """Copy the published video to the run's object store, if it has one; False when that failed (the
        remote then has no marker for it and the next run redoes it)."""
        if self.mirror is None:
            return True
        try:
            self.mirror.push_video(self.layout, outcome.video_row["video_id"])
            return True
        except G1ForgeError:
            return False

    def publish(self, outcome: VideoOutcome) -> dict:
        """Publish ``outcome``; returns :func:`summarize`'s dict. A write failure leaves a failed
        row when even that can be written, else nothing (``published: False``; the next run retries it)."""
        t0 = self._start()
        try:
            try:
                publish_outcome(self.layout, outcome, self.config_hash)
                return summarize(outcome, self._push(outcome))
            except Exception as exc:
                err = classify_exception(exc)
                row = outcome.video_row
                fallback = VideoOutcome(video_row={**row, "status": "failed", "reason": err.catalog_reason()},
                                        error=err)
                try:
                    publish_outcome(self.layout, fallback, self.config_hash)
                    return summarize(fallback, self._push(fallback))
                except Exception:
                    return summarize(fallback, False)
        finally:
            self._stop(t0)

    def publish_failed(self, item: VideoItem, backend: str, error: BaseException, attempts: int) -> dict:
        """Publish a one-row failed outcome for ``item`` (e.g. its workers died ``attempts`` times)."""
        return self.publish(failed_outcome(item, self.config_hash, backend, error, attempts))


def _gpu_ids() -> list:
    try:
        import ray

        return [str(g) for g in ray.get_gpu_ids()] if ray.is_initialized() else []
    except Exception:
        return []


def _node_id() -> str:
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    except Exception:
        return ""


def _maybe_die(video_id: str, stage: str) -> None:
    target = os.environ.get(FAULT_ENV)
    if not target:
        return
    wanted_stage = "pose"
    if ":" in target.split("@", 1)[0]:
        wanted_stage, target = target.split(":", 1)
    if wanted_stage != stage:
        return
    ids, _, marker_dir = target.partition("@")
    if video_id in ids.split(",") and marker_dir:
        marker = Path(marker_dir) / f"killed.{video_id}"
        if not marker.exists():
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text("1")
            os._exit(17)
