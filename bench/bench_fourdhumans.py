"""Throughput of the ``4dhumans`` backend on one GPU: frames/s end to end and GPU utilisation.

Run on a CUDA machine with the stack set up (``g1forge setup gpu``, ``g1forge doctor 4dhumans``)::

    python bench/bench_fourdhumans.py VIDEO [VIDEO ...] [--repeat 2] [--gpu 0] [--predictor hmr2] [--out FILE.json]

One backend instance (one tracker construction) processes every video ``--repeat`` times; the first pass
includes CUDA warm-up and is reported separately. GPU utilisation is sampled every 0.5 s with
``nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits`` for the pinned GPU.

Reference point: the seed's ``track.py`` with rendering is reported at ~1.8 frames/s on an RTX 4090 (1300 frames
in 12 min). Expected here (not measured yet, no GPU was available when this was written): the removed work is
the JPEG dump and reread, the rendering (two pyrender passes per frame at 1440 px), the second detector's memory
and per-video model reloads; the remaining cost is one ViTDet-H detection per frame plus one HMR2 batch per frame
and PHALP's per-pair association, so a figure of several frames/s per GPU is the target. Record the measured
figure in README "GPU backend (4D-Humans)".
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

SEED_FPS_WITH_RENDERING = 1.8


class GpuSampler:
    """Samples ``nvidia-smi`` utilisation (%) and memory (MiB) of one GPU in a background thread."""

    def __init__(self, gpu: int, period_s: float = 0.5):
        self.gpu, self.period_s = gpu, period_s
        self.util: list[float] = []
        self.mem_mib: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        argv = ["nvidia-smi", f"--id={self.gpu}", "--query-gpu=utilization.gpu,memory.used",
                "--format=csv,noheader,nounits"]
        while not self._stop.is_set():
            try:
                out = subprocess.run(argv, capture_output=True, text=True, timeout=5, check=True).stdout
                u, m = (float(x) for x in out.strip().splitlines()[0].split(","))
                self.util.append(u)
                self.mem_mib.append(m)
            except (subprocess.SubprocessError, ValueError, IndexError):
                pass
            self._stop.wait(self.period_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)

    def summary(self) -> dict:
        if not self.util:
            return {"gpu_util_mean_pct": None, "gpu_util_samples": 0}
        return {"gpu_util_mean_pct": sum(self.util) / len(self.util), "gpu_util_samples": len(self.util),
                "gpu_mem_max_mib": max(self.mem_mib)}


def require_gpu() -> None:
    """Exit with a clear message unless an NVIDIA GPU and CUDA torch are here."""
    if shutil.which("nvidia-smi") is None:
        sys.exit("bench_fourdhumans: no NVIDIA GPU here (nvidia-smi not found); run it on a CUDA machine set up "
                 "with `g1forge setup gpu`")
    try:
        import torch
    except ImportError:
        sys.exit("bench_fourdhumans: torch is not installed; run `g1forge setup gpu`")
    if not torch.cuda.is_available():
        sys.exit("bench_fourdhumans: torch.cuda.is_available() is False; install a CUDA build of torch")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("videos", nargs="+")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--gpu", type=int, default=0)
    p.add_argument("--predictor", default="hmr2", choices=["hmr2", "texture"])
    p.add_argument("--out", help="write the figures as JSON here")
    args = p.parse_args(argv)
    os.environ["CUDA_VISIBLE_DEVICES"] = str(args.gpu)  # before torch is imported
    require_gpu()

    from ingest.items import VideoItem
    from pipeline.backends.base import create_backend

    t0 = time.perf_counter()
    backend = create_backend("4dhumans", predictor=args.predictor)
    _ = backend.tracker
    load_s = time.perf_counter() - t0
    passes = []
    with GpuSampler(args.gpu) as sampler:
        for r in range(args.repeat):
            frames, t1 = 0, time.perf_counter()
            for i, v in enumerate(args.videos):
                result = backend.process(VideoItem(f"bench{i}", str(Path(v).resolve()), "file"), str(v))
                frames += result.num_frames
            wall = time.perf_counter() - t1
            passes.append({"pass": r, "frames": frames, "wall_s": wall, "frames_per_s": frames / wall})
    steady = passes[1:] or passes
    fps = sum(x["frames"] for x in steady) / sum(x["wall_s"] for x in steady)
    report = {"gpu": args.gpu, "predictor": args.predictor, "model_load_s": load_s, "passes": passes,
              "frames_per_s_per_gpu": fps, "seed_track_py_frames_per_s": SEED_FPS_WITH_RENDERING,
              "speedup_vs_seed": fps / SEED_FPS_WITH_RENDERING, "tracker_constructions": backend.tracker_constructions,
              **sampler.summary()}
    print(json.dumps(report, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
