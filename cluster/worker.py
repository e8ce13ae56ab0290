"""The long-lived worker: builds its pose backend once, then processes and publishes one video per call.

The class is plain Python (tested without Ray); :func:`cluster.run.run` wraps it as a Ray actor. Nothing large
travels back to the driver: a worker writes its video's outputs itself and returns a small summary dict.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from catalog.layout import RunLayout
from catalog.writer import publish_video
from cluster.config import RunConfig
from ingest.errors import G1ForgeError, classify_exception
from ingest.items import VideoItem
from pipeline.backends.base import PoseBackend, create_backend
from pipeline.g1_motion import save_g1_motion
from pipeline.motion_io import save_clip
from pipeline.process import RetargetStage, VideoOutcome, failed_outcome, process_video

#: Test-only fault hook: when the environment names a video id here, the worker process dies on it (os._exit),
#: once per marker file, to exercise worker-loss recovery.
FAULT_ENV = "G1FORGE_TEST_KILL_WORKER_ON"


def metric_names_of(outcome: VideoOutcome) -> list[str]:
    from catalog.schema import CLIP_BASE

    base = set(CLIP_BASE.names)
    return sorted({k for r in outcome.clip_rows for k in r if k not in base})


def publish_outcome(layout: RunLayout, outcome: VideoOutcome, config_hash: str) -> None:
    """Publish an outcome's rows and clip files; a write failure is retried once as a failed row."""

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


class VideoWorker:
    """Processes videos of one run with one backend instance for its whole life."""

    def __init__(self, config: dict, run_root: str):
        self.config = RunConfig.from_dict(config)
        self.config_hash = self.config.config_hash()
        self.layout = RunLayout.at(run_root)
        self._backend: PoseBackend | None = None
        self._retarget: RetargetStage | None = None
        self.backend_loads = 0
        self.busy_s = 0.0
        self.started = time.perf_counter()

    @property
    def backend(self) -> PoseBackend:
        if self._backend is None:
            self._backend = create_backend(self.config.backend, **self.config.backend_options)
            self.backend_loads += 1
        return self._backend

    @property
    def retarget(self) -> RetargetStage:
        if self._retarget is None:
            self._retarget = RetargetStage(self.config.retarget, self.config.g1_mjcf)
        return self._retarget

    def process(self, item: VideoItem, attempts: int = 1) -> dict:
        """Process and publish ``item``; returns :func:`summarize`'s dict. Never raises for bad input."""
        t0 = time.perf_counter()
        _maybe_die(item.video_id)
        try:
            backend, retarget = self.backend, self.retarget
        except G1ForgeError as exc:  # e.g. a missing dependency: every video fails with the fix in its reason
            outcome = failed_outcome(item, self.config_hash, self.config.backend, exc, attempts)
        else:
            outcome = process_video(item, backend, self.config, self.layout.download_dir, self.config_hash,
                                    attempts, retarget)
        published = self._publish(outcome, item, attempts)
        self.busy_s += time.perf_counter() - t0
        return summarize(outcome, published)

    def _publish(self, outcome: VideoOutcome, item: VideoItem, attempts: int) -> bool:
        try:
            publish_outcome(self.layout, outcome, self.config_hash)
            return True
        except Exception as exc:  # the outputs could not be written: try to leave a failed row instead
            err = classify_exception(exc)
            outcome.video_row.update(status="failed", reason=err.catalog_reason())
            outcome.error = err
            fallback = failed_outcome(item, self.config_hash, self.config.backend, err, attempts)
            try:
                publish_outcome(self.layout, fallback, self.config_hash)
            except Exception:
                return False  # not marked done: the next run retries this video
            return True

    def stats(self) -> dict:
        wall = time.perf_counter() - self.started
        return {"pid": os.getpid(), "backend_loads": self.backend_loads, "busy_s": self.busy_s, "wall_s": wall}

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()


def _maybe_die(video_id: str) -> None:
    target = os.environ.get(FAULT_ENV)
    if not target:
        return
    ids, _, marker_dir = target.partition("@")
    if video_id in ids.split(",") and marker_dir:
        marker = Path(marker_dir) / f"killed.{video_id}"
        if not marker.exists():
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text("1")
            os._exit(17)
