"""Benchmark: peak memory of decoding and processing an 8K video against a 720p video of the same frame count.

g1forge never holds a video in memory: :func:`ingest.decode.iter_frames` streams frames one at a time and the
MediaPipe backend asks it for frames downsized to ``max_side_px`` (640) inside libswscale, so a 7680x4320
video costs the decoder's own frame buffers (about one full-size frame per decoding thread, plus reference
frames), not ``frames x 94.9 MiB`` of RGB.

Each measurement runs in a fresh child process. The child imports what it needs, warms up (the MediaPipe graph
is loaded on a tiny video first), then resets the kernel's peak-RSS mark (``/proc/self/clear_refs``, Linux) and
does the work; it reports ``growth_mb`` = peak RSS during the work - RSS before it. Without ``/proc`` the
process-lifetime peak (``resource.getrusage``) is used instead, which also counts the imports. Modes:

- ``decode-full``: every frame at full resolution, each dropped before the next (streaming, no downsizing);
- ``decode-640``: every frame downsized to a 640 px long side (what the MediaPipe backend reads);
- ``mediapipe``: :func:`pipeline.process.process_video` with the MediaPipe backend (probe, pose, clips);
- ``hold-full``: the control, an implementation that keeps every full-resolution frame (what streaming avoids).

Measured on this project's 2-core dev box (Linux, PyAV 18, libx264 ultrafast clips of a moving box, 24 frames,
default decoder threads = cores + 1 = 3; growth in MiB, peak RSS of the whole process in parentheses):

====================  ===============  ===============
mode                  1280x720         7680x4320
====================  ===============  ===============
decode-full           42 (78)          541 (577)
decode-640            37 (73)          355 (391)
mediapipe             32 (288)         420 (674)
hold-full (control)   98 (133)         2629 (2665)
====================  ===============  ===============

Growth does not depend on the video's length (8K, decode-640: 353 MiB after 9 frames, 354 after 24) but on the
decoder's frame threads, each holding a full-size frame: decode-640 of the 8K clip grows by 167, 261, 450, 828
and 1445 MiB with 1, 2, 4, 8 and 16 threads (about 75 + 92 per thread). The backends' ``thread_count=0``
means one thread per core (FFmpeg caps it at 16), so on a many-core machine an 8K video costs up to ~1.5 GiB
per worker: bounded, but a reason to set ``thread_count`` when many workers share a machine. Holding the frames
instead would grow by 94.9 MiB per 8K frame. ``tests/test_memory.py`` asserts the bound.

Usage: ``python bench/bench_memory.py [--frames 24] [--modes decode-full,decode-640,mediapipe,hold-full]
[--threads 0] [--thread-sweep 1,2,4,8,16]``; results go to ``bench/results/memory.json`` (about 1 min here).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
MODES = ("decode-full", "decode-640", "mediapipe", "hold-full")
SIZES = {"720p": (1280, 720), "8k": (7680, 4320)}


# --- child side: one measurement --------------------------------------------------------------------------


def _status_kib(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``), or None without ``/proc``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Reset the peak-RSS mark (``VmHWM``) to the current RSS; False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _maxrss_kib() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, KiB on Linux


def _prepare(mode: str, thread_count: int = 0, end_s: float | None = None):
    """Imports and warm-up of ``mode``; returns the function doing the measured work on a video path.

    thread_count: decoder threads (0 = one per core, the default of the backends); end_s: decode only the
    frames before this time (None = all).
    """
    from ingest.decode import iter_frames

    if mode in ("decode-full", "decode-640"):
        max_side_px = 640 if mode == "decode-640" else None

        def work(path: str) -> int:
            n = 0
            with iter_frames(path, max_side_px=max_side_px, thread_count=thread_count, end_s=end_s) as frames:
                for frame in frames:
                    n += frame.rgb.shape[0] > 0
            return n

        return work
    if mode == "hold-full":

        def work(path: str) -> int:
            with iter_frames(path, thread_count=thread_count, end_s=end_s) as frames:
                held = [frame.rgb for frame in frames]
            return len(held)

        return work
    if mode == "mediapipe":
        from cluster.config import RunConfig
        from ingest.ids import file_id
        from ingest.items import VideoItem
        from pipeline.backends.mediapipe_backend import MediaPipeBackend
        from pipeline.process import process_video

        sys.path.insert(0, str(REPO_ROOT / "tests"))
        from video_factory import make_video

        backend = MediaPipeBackend(thread_count=thread_count)
        config = RunConfig(backend="mediapipe")

        def work(path: str) -> int:
            item = VideoItem(video_id=file_id(Path(path)), uri=path, kind="file", end_s=end_s)
            outcome = process_video(item, backend, config, Path(tempfile.gettempdir()), "bench")
            return int(outcome.video_row.get("frames_processed") or 0)

        with tempfile.TemporaryDirectory() as tmp:  # load the pose graph before measuring
            work(str(make_video(Path(tmp) / "warm.mp4", width=64, height=48, num_frames=3)))
        return work
    raise SystemExit(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")


def child_main(mode: str, path: str, thread_count: int = 0, end_s: float | None = None) -> dict:
    """Measure ``mode`` on ``path`` in this process; returns the figures (MiB, seconds)."""
    work = _prepare(mode, thread_count, end_s)
    exact = _reset_peak() and _status_kib("VmHWM") is not None
    before_kib = _status_kib("VmRSS") if exact else _maxrss_kib()
    t0 = time.perf_counter()
    frames = work(path)
    seconds = time.perf_counter() - t0
    peak_kib = _status_kib("VmHWM") if exact else _maxrss_kib()
    return {"mode": mode, "frames": frames, "seconds": round(seconds, 3), "rss_before_mb": round(before_kib / 1024, 1),
            "peak_rss_mb": round(peak_kib / 1024, 1), "growth_mb": round((peak_kib - before_kib) / 1024, 1),
            "thread_count": thread_count, "peak_reset": exact}


def measure(mode: str, path: str | Path, *, thread_count: int = 0, end_s: float | None = None,
            timeout_s: float = 600) -> dict:
    """Run :func:`child_main` in a fresh Python process; returns its figures."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", mode, str(path), "--threads",
               str(thread_count)]
    if end_s is not None:
        command += ["--end-s", repr(float(end_s))]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, cwd=str(REPO_ROOT))
    if done.returncode != 0:
        raise RuntimeError(f"measuring {mode} on {path} failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- driver -------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=24, help="frames of each test clip")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated modes: " + ", ".join(MODES))
    parser.add_argument("--threads", type=int, default=0, help="decoder threads (0 = one per core)")
    parser.add_argument("--thread-sweep", default="1,2,4,8,16",
                        help="decoder thread counts for decode-640 on the 8K clip ('' = none)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "memory.json")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "VIDEO"), help=argparse.SUPPRESS)
    parser.add_argument("--end-s", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child_main(*args.child, thread_count=args.threads, end_s=args.end_s)))
        return 0

    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from video_factory import make_video

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for size, (width, height) in SIZES.items():
            path = make_video(Path(tmp) / f"{size}.mp4", width=width, height=height, num_frames=args.frames)
            for mode in modes:
                figures = {"size": size, "width": width, "height": height,
                           **measure(mode, path, thread_count=args.threads)}
                results.append(figures)
                print(f"{size:>5} {mode:<12} growth {figures['growth_mb']:8.1f} MiB  peak {figures['peak_rss_mb']:8.1f}"
                      f" MiB  {figures['frames']} frames in {figures['seconds']:.2f} s", flush=True)
        sweep = [int(t) for t in args.thread_sweep.split(",") if t.strip()]
        for threads in sweep:
            figures = {"size": "8k", "width": SIZES["8k"][0], "height": SIZES["8k"][1],
                       **measure("decode-640", Path(tmp) / "8k.mp4", thread_count=threads)}
            results.append(figures)
            print(f"   8k decode-640 with {threads:2d} decoder threads: growth {figures['growth_mb']:8.1f} MiB",
                  flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"frames": args.frames, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
