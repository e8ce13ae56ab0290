"""A stand-in for a slow GPU pose backend, for the cluster benchmark's GPU-idle measurement (CPU only).

``bench-slow-pose`` reads a PHALP results pickle exactly as ``phalp-pkl`` does (so every video gets a small,
valid :class:`pipeline.motion.PoseResult`) after sleeping ``sleep_s`` seconds (default 0.2), standing in for
model inference that keeps a GPU busy. It asks for one GPU per worker (``gpus_per_worker = 1``), so a run sizes
and pins its pose workers as it would for a real GPU backend; on a machine without GPUs, start Ray with logical
ones first (``ray.init(num_gpus=2)``): nothing here touches a device.

It is not a built-in backend: a run finds it through the plugin hook of :mod:`pipeline.backends.base`::

    PYTHONPATH=bench G1FORGE_BACKEND_MODULES=slow_pose_backend g1forge run in/ --out out \\
        --backend bench-slow-pose --backend-option sleep_s=0.2

Ray workers of a local cluster inherit those two variables from the driver, so the pose workers load it too.
With ``$G1FORGE_BENCH_POSE_TRACE`` set to a folder, each worker appends one line per video to
``<folder>/pose-<pid>.txt``: ``<start> <end> <video_id>`` (``time.perf_counter()`` seconds, a clock shared by
the processes of one machine), to see where a worker waited between videos.
"""

from __future__ import annotations

import os
import time

from ingest.errors import ConfigError
from ingest.items import VideoItem
from pipeline.backends.base import register_backend
from pipeline.backends.phalp_pkl import PhalpPklBackend
from pipeline.motion import PoseResult

NAME = "bench-slow-pose"
DEFAULT_SLEEP_S = 0.2
TRACE_ENV = "G1FORGE_BENCH_POSE_TRACE"


@register_backend(NAME)
class SlowPoseBackend(PhalpPklBackend):
    """``phalp-pkl`` after a fixed sleep of ``sleep_s`` seconds per video; one (logical) GPU per worker.

    Options: ``sleep_s`` (seconds per video, >= 0) plus every ``phalp-pkl`` option.
    """

    version = "bench-slow-pose-1"
    light_pose = False
    gpus_per_worker = 1.0
    cpus_per_worker = 1

    def __init__(self, **options):
        sleep_s = float(options.pop("sleep_s", DEFAULT_SLEEP_S))
        if not sleep_s >= 0:
            raise ConfigError(f"sleep_s must be >= 0 seconds, got {sleep_s}")
        self.sleep_s = sleep_s
        super().__init__(**options)

    def process(self, item: VideoItem, video_path: str | None) -> PoseResult:
        t0 = time.perf_counter()
        time.sleep(self.sleep_s)
        try:
            return super().process(item, video_path)
        finally:
            trace = os.environ.get(TRACE_ENV)
            if trace:
                with open(os.path.join(trace, f"pose-{os.getpid()}.txt"), "a") as fh:
                    fh.write(f"{t0:.6f} {time.perf_counter():.6f} {item.video_id}\n")
