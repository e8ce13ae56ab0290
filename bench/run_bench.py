"""End-to-end benchmark: ``g1forge run`` against raw MediaPipe on the same frames, interleaved in one run.

Both sides run as a user would run them, each in a fresh subprocess, and are timed from the command's start to
its exit (imports, model loads, Ray start-up and shut-down included):

- **raw**: a loop a user would write (:func:`raw_pass`): PyAV decodes every frame, downsizes it so the long side
  is ``--max-side`` pixels (the pipeline's default ``max_side_px``, so both sides see the same resolution) and
  hands it to ``mediapipe.solutions.pose.Pose(model_complexity=1).process``; one ``Pose`` per video.
- **pipeline**: ``g1forge run FILES --out TMP`` (decode, pose of every person, tracks, clips, world, metrics,
  retargeting, catalog), frames counted from the catalog (``frames_processed``), which must equal raw's.

The batch is ``--batch`` inputs: the shared videos cycled, each input a stream copy (same packets, a different
``comment`` tag, so a distinct file with a distinct id, as a list of many videos holds). The machine is shared
and noisy, so the two sides alternate ``--repeats`` times (raw then pipeline, then pipeline then raw, ...), and
each is reported by its min and median. Wall time gives frames/s; CPU time is summed over every process of the
command's tree (the command and all its descendants: Ray's GCS, raylet, workers, dashboard agents), read from
``/proc`` every ``POLL_S`` (a process's last ``POLL_S`` of CPU before it exits can be missed).

``ratio_same_resolution`` = median pipeline frames/s / median raw frames/s (wall, same frames, same resolution;
target >= 0.9 on a 20-video batch); ``cpu_ratio`` = median pipeline CPU per frame / median raw CPU per frame
(target <= 1.15). Printed and written to ``bench/results/run_bench.json`` (``--batch 2`` writes
``run_bench_2.json``).

Usage: ``python bench/run_bench.py [--batch 20] [--repeats 2] [--max-side 640] [--videos DIR]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VIDEOS = ROOT.parent / "shared" / "videos"
POLL_S = 0.2
_CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- CPU of a process tree ----------------------------------------------------------------------------------


def _proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds user + system) of every process readable in /proc."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                raw = f.read().decode("ascii", "replace")
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2:].split()  # after "pid (comm) "
        out[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / _CLK_TCK)
    return out


class TreeCpu:
    """Polls the CPU seconds of ``root_pid`` and all its descendants until :meth:`stop`; :attr:`cpu_s` sums the
    last reading of every process seen."""

    def __init__(self, root_pid: int):
        self.root_pid = root_pid
        self.seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(POLL_S)

    def sample(self) -> None:
        table = _proc_table()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        stack = [self.root_pid]
        while stack:
            pid = stack.pop()
            if pid in table:
                self.seen[pid] = max(self.seen.get(pid, 0.0), table[pid][1])
            stack += children.get(pid, [])

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.cpu_s

    @property
    def cpu_s(self) -> float:
        return sum(self.seen.values())


def timed(cmd: list[str], **kw) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run ``cmd``; (its result, wall seconds, CPU seconds of its whole process tree)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    cpu = TreeCpu(proc.pid)
    out, err = proc.communicate()
    wall_s = time.perf_counter() - t0
    cpu.sample()
    cpu_s = cpu.stop()
    if cpu_s == 0.0:  # nothing was sampled (a very short command): fall back to the waited-for children
        import resource

        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_s = ru.ru_utime + ru.ru_stime
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), wall_s, cpu_s


# --- the two sides ------------------------------------------------------------------------------------------


def raw_pass(videos: list[str], max_side_px: int) -> int:
    """Decode, downsize and run MediaPipe Pose on every frame of ``videos``; returns the number of frames."""
    import av
    import mediapipe as mp

    frames = 0
    for path in videos:
        with av.open(path) as container, mp.solutions.pose.Pose(static_image_mode=False,
                                                                model_complexity=1) as pose:
            for frame in container.decode(video=0):
                scale = min(1.0, max_side_px / max(frame.width, frame.height))
                if scale < 1.0:
                    frame = frame.reformat(width=round(frame.width * scale) // 2 * 2,
                                           height=round(frame.height * scale) // 2 * 2)
                pose.process(frame.to_ndarray(format="rgb24"))
                frames += 1
    return frames


def run_raw(videos: list[Path], max_side_px: int) -> dict:
    proc, wall_s, cpu_s = timed([sys.executable, __file__, "--raw-pass", str(max_side_px), *map(str, videos)],
                                cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"raw MediaPipe pass failed:\n{proc.stderr[-3000:]}")
    frames = int(proc.stdout.strip().splitlines()[-1])
    return {"frames": frames, "wall_s": wall_s, "cpu_s": cpu_s}


def run_pipeline(videos: list[Path], out: Path) -> dict:
    proc, wall_s, cpu_s = timed([sys.executable, "-m", "cluster.cli", "run", *map(str, videos), "--out", str(out),
                                 "--no-progress"], cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"g1forge run failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}")
    sys.path.insert(0, str(ROOT))
    from catalog.db import run_query

    rows = run_query(out, "SELECT status, frames_processed FROM videos").to_pylist()
    return {"frames": sum(r["frames_processed"] or 0 for r in rows), "wall_s": wall_s, "cpu_s": cpu_s,
            "statuses": sorted(r["status"] for r in rows)}


def stream_copies(videos: list[Path], count: int, folder: Path) -> list[Path]:
    """``count`` inputs cycling over ``videos``, each a stream copy with its own ``comment`` tag."""
    import av

    out = []
    for k in range(count):
        path = videos[k % len(videos)]
        dst = folder / f"{k:03d}-{path.stem}{path.suffix}"
        with av.open(str(path)) as src, av.open(str(dst), "w") as dst_c:
            dst_c.metadata["comment"] = f"g1forge benchmark input {k}"
            vin = src.streams.video[0]
            vout = dst_c.add_stream_from_template(vin)
            for packet in src.demux(vin):
                if packet.dts is None:
                    continue
                packet.stream = vout
                dst_c.mux(packet)
        out.append(dst)
    return out


def _stats(passes: list[dict], frames: int) -> dict:
    fps = [frames / p["wall_s"] for p in passes]
    cpu_ms = [1000.0 * p["cpu_s"] / frames for p in passes]
    return {"frames_per_s": {"min": min(fps), "median": statistics.median(fps), "all": fps},
            "wall_s": {"min": min(p["wall_s"] for p in passes),
                       "median": statistics.median(p["wall_s"] for p in passes)},
            "cpu_ms_per_frame": {"min": min(cpu_ms), "median": statistics.median(cpu_ms), "all": cpu_ms}}


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--raw-pass":
        print(raw_pass(sys.argv[3:], int(sys.argv[2])))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", type=Path, default=DEFAULT_VIDEOS)
    ap.add_argument("--batch", type=int, default=20, help="inputs in the batch (the shared videos cycled)")
    ap.add_argument("--repeats", type=int, default=2, help="passes of each side, alternating (default 2)")
    ap.add_argument("--max-side", type=int, default=640, help="long side in pixels both sides see (default 640, "
                                                               "the pipeline's max_side_px)")
    args = ap.parse_args()
    videos = sorted(args.videos.glob("*.mp4"))
    if not videos:
        raise SystemExit(f"no .mp4 in {args.videos}: clone the project with ../shared beside it or pass --videos")

    raw, pipe = [], []
    with tempfile.TemporaryDirectory() as tmp:
        inputs = stream_copies(videos, args.batch, Path(tmp))
        for r in range(args.repeats):
            order = ("raw", "pipeline") if r % 2 == 0 else ("pipeline", "raw")
            for side in order:
                if side == "raw":
                    raw.append(run_raw(inputs, args.max_side))
                else:
                    pipe.append(run_pipeline(inputs, Path(tmp) / f"run{r}"))
                last = (raw if side == "raw" else pipe)[-1]
                print(f"  pass {r + 1} {side:8s}: {last['frames']} frames, {last['wall_s']:.1f} s wall, "
                      f"{last['cpu_s']:.1f} s CPU", flush=True)
    frames = raw[0]["frames"]
    if any(p["frames"] != frames for p in raw + pipe):
        raise SystemExit(f"frame counts differ: raw {[p['frames'] for p in raw]}, pipeline "
                         f"{[p['frames'] for p in pipe]}")
    rs, ps = _stats(raw, frames), _stats(pipe, frames)
    result = {
        "batch": args.batch,
        "videos": [p.name for p in videos],
        "frames": frames,
        "max_side_px": args.max_side,
        "repeats": args.repeats,
        "cpu_count": os.cpu_count(),
        "load_avg_1min_at_end": os.getloadavg()[0],
        "raw_mediapipe": rs,
        "pipeline": ps,
        "pipeline_statuses": pipe[-1]["statuses"],
        "ratio_same_resolution": ps["frames_per_s"]["median"] / rs["frames_per_s"]["median"],
        "ratio_per_pair": [p_ / r_ for p_, r_ in zip(ps["frames_per_s"]["all"], rs["frames_per_s"]["all"])],
        "cpu_ratio": ps["cpu_ms_per_frame"]["median"] / rs["cpu_ms_per_frame"]["median"],
        "target_ratio_same_resolution": 0.9,
        "target_cpu_ratio": 1.15,
    }
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    name = "run_bench.json" if args.batch != 2 else "run_bench_2.json"
    (out / name).write_text(json.dumps(result, indent=2))
    print(f"{args.batch} inputs, {frames} frames at <= {args.max_side} px, {args.repeats} interleaved passes each "
          f"(load {result['load_avg_1min_at_end']:.1f} on {os.cpu_count()} cores at the end)")
    for label, s in (("raw MediaPipe", rs), ("g1forge run", ps)):
        print(f"  {label:14s} {s['frames_per_s']['median']:6.1f} frames/s median ({s['frames_per_s']['min']:.1f} "
              f"min), {s['cpu_ms_per_frame']['median']:6.1f} ms CPU per frame median")
    print(f"  ratio_same_resolution {result['ratio_same_resolution']:.2f} (per pair "
          f"{', '.join(f'{x:.2f}' for x in result['ratio_per_pair'])}; target >= 0.9), "
          f"cpu_ratio {result['cpu_ratio']:.2f} (target <= 1.15) -> bench/results/{name}")


if __name__ == "__main__":
    main()
