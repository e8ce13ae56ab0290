"""Throughput of the ``4dhumans`` backend (the real upstream code): frames/s end to end and per stage.

Run in the stack's interpreter (``g1forge setup gpu --venv DIR``), with real weights or the generated stand-ins
(``python tests/make_4dhumans_standins.py HOME``; throughput does not depend on weight values)::

    G1FORGE_4DHUMANS_DIR=.../4D-Humans G1FORGE_4DHUMANS_HOME=HOME \\
    python bench/bench_fourdhumans.py VIDEO [VIDEO ...] --device cpu --frames 24 \\
        --config det_stride=1 --config det_stride=4 [--det-size 512] [--precision bf16] [--max-people 3] \\
        [--repeat 2] [--out FILE.json]

One backend instance (one tracker construction: all models load once) processes the videos for each
``--config`` (``det_stride`` and ``max_people`` change between passes without reloading; ``--det-size`` and
``--precision`` apply to the whole run). ``--frames N`` limits each video to its first N frames (a window, as
catalog rows with ``end_s`` are). The first pass of the first config includes warm-up and is reported apart.

Per pass: frames/s of video, and seconds per stage (decode wait, detection, HMR2 + PHALP embeddings, tracking,
conversion; see :class:`pipeline.backends.fourdhumans.StageTimes`), detector runs vs carried detections, crops
through HMR2, tracks found. On a CUDA device, GPU utilisation is sampled with ``nvidia-smi`` every 0.5 s.

Measured figures and the GPU design: docs/gpu.md.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SEED_FPS_WITH_RENDERING = 1.8  # track.py with rendering on an RTX 4090 (1300 frames in 12 min)


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
            except (subprocess.SubprocessError, ValueError, IndexError, OSError):
                pass
            self._stop.wait(self.period_s)

    def __enter__(self):
        if shutil.which("nvidia-smi"):
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def summary(self) -> dict:
        if not self.util:
            return {"gpu_util_mean_pct": None, "gpu_util_samples": 0}
        return {"gpu_util_mean_pct": sum(self.util) / len(self.util), "gpu_util_samples": len(self.util),
                "gpu_mem_max_mib": max(self.mem_mib)}


def require_device(device: str) -> None:
    """Exit with a clear message when ``device`` is CUDA and no CUDA GPU / torch is here."""
    try:
        import torch
    except ImportError:
        sys.exit("bench_fourdhumans: torch is not installed here; run it in the stack's interpreter "
                 "(g1forge setup gpu --venv DIR)")
    if device != "cpu" and not torch.cuda.is_available():
        sys.exit("bench_fourdhumans: no CUDA GPU visible to torch; use --device cpu, or run on a CUDA machine")


def parse_config(text: str) -> dict:
    out = {}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        if key not in ("det_stride", "max_people"):
            raise SystemExit(f"--config takes det_stride=K and max_people=N, got {key!r}")
        out[key] = None if value.lower() == "none" else int(value)
    return out


def stage_delta(before: dict, after: dict) -> dict:
    d = {k: round(after["seconds"][k] - before["seconds"].get(k, 0.0), 3) for k in after["seconds"]}
    counts = {k: after[k] - before[k] for k in ("frames", "detector_runs", "detections_carried", "crops")}
    return {"stage_s": d, **counts}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("videos", nargs="+")
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    p.add_argument("--gpu", type=int, default=0)
    p.add_argument("--frames", type=int, help="first N frames of each video only")
    p.add_argument("--config", action="append", default=[], help="det_stride=K[,max_people=N]; repeatable")
    p.add_argument("--det-size", type=int, help="detector input side in pixels (default 1024)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--max-people", type=int, help="default max_people of every config")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--predictor", default="hmr2", choices=["hmr2", "texture"])
    p.add_argument("--out", help="write the figures as JSON here")
    args = p.parse_args(argv)
    if args.device != "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = str(args.gpu)  # before torch is imported
    require_device(args.device)

    import numpy as np

    from ingest.items import VideoItem
    from pipeline.backends.base import create_backend
    from pipeline.backends.fourdhumans import presentation_times_s

    configs = [parse_config(c) for c in args.config] or [{"det_stride": 1}]
    options = {"device": args.device, "predictor": args.predictor, "precision": args.precision,
               "max_people": args.max_people}
    if args.det_size:
        options["det_size"] = args.det_size
    items = []
    for i, v in enumerate(args.videos):
        end_s = None
        if args.frames:
            times = presentation_times_s(v)
            end_s = float(times[args.frames]) if len(times) > args.frames else None
        items.append((VideoItem(f"bench{i}", str(Path(v).resolve()), "file", end_s=end_s), str(v)))

    t0 = time.perf_counter()
    backend = create_backend("4dhumans", **options)
    _ = backend.tracker
    load_s = time.perf_counter() - t0
    passes = []
    with GpuSampler(args.gpu) as sampler:
        for cfg in configs:
            backend.options.det_stride = cfg.get("det_stride", 1)
            backend.options.max_people = cfg.get("max_people", args.max_people)
            for r in range(args.repeat):
                before = backend.stage_times.as_dict()
                frames, tracks, lengths, t1 = 0, 0, [], time.perf_counter()
                for item, path in items:
                    result = backend.process(item, path)
                    frames += result.num_frames
                    tracks += len(result.tracks)
                    lengths += [t.num_frames for t in result.tracks]
                wall = time.perf_counter() - t1
                entry = {"config": cfg, "pass": r, "frames": frames, "wall_s": round(wall, 3),
                         "frames_per_s": round(frames / wall, 4), "tracks": tracks,
                         "track_frames_mean": float(np.mean(lengths)) if lengths else 0.0,
                         **stage_delta(before, backend.stage_times.as_dict())}
                entry["stage_frames_per_s"] = {k: (round(entry["frames"] / v, 3) if v > 0 else None)
                                               for k, v in entry["stage_s"].items()}
                passes.append(entry)
                print(json.dumps(entry), flush=True)
    report = {"device": args.device, "options": options, "model_load_s": round(load_s, 1), "passes": passes,
              "seed_track_py_frames_per_s": SEED_FPS_WITH_RENDERING,
              "tracker_constructions": backend.tracker_constructions, **sampler.summary()}
    print(json.dumps(report, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
