"""An 8K video streams through g1forge in bounded memory.

A 7680x4320 RGB frame is 94.9 MiB, so an implementation holding a video's frames grows by that much per frame.
The decoder itself keeps about one full-size frame per decoding thread plus its reference frames, whatever the
video's length (``bench/bench_memory.py`` measures both sizes and thread counts). Each measurement runs in a
fresh process (see :func:`bench_memory.measure`): peak RSS during the work minus RSS before it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from video_factory import make_video

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "bench"))
from bench_memory import measure  # noqa: E402

WIDTH, HEIGHT, FPS, NUM_FRAMES = 7680, 4320, 30.0, 16
FRAME_MIB = WIDTH * HEIGHT * 3 / 2**20  # one RGB frame: 94.9 MiB
THREADS = 2  # decoder threads, pinned: the decoder's memory grows with them, not with the video's length
BOUND_MIB = 6 * FRAME_MIB  # ~570 MiB: the frames the decoder may hold (threads + references), with margin


@pytest.fixture(scope="module")
def video_8k(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("8k") / "8k.mp4", width=WIDTH, height=HEIGHT, fps=FPS,
                      num_frames=NUM_FRAMES)


@pytest.mark.slow
def test_streaming_decode_of_8k_stays_bounded_and_does_not_grow_with_length(video_8k):
    # the MediaPipe backend's read path: full decode, downsized to 640 px by libswscale
    whole = measure("decode-640", video_8k, thread_count=THREADS)
    first = measure("decode-640", video_8k, thread_count=THREADS, end_s=8 / FPS - 1e-3)
    assert (whole["frames"], first["frames"]) == (NUM_FRAMES, 8)
    assert whole["growth_mb"] < BOUND_MIB, whole  # holding the frames: NUM_FRAMES x 94.9 = 1518 MiB
    # 8 more frames cost less than one frame more (holding them would cost 8 x 94.9 MiB)
    assert whole["growth_mb"] - first["growth_mb"] < FRAME_MIB, (whole, first)
    # full resolution, streamed: still bounded
    full = measure("decode-full", video_8k, thread_count=THREADS)
    assert full["frames"] == NUM_FRAMES and full["growth_mb"] < BOUND_MIB, full


@pytest.mark.slow
def test_processing_8k_with_mediapipe_stays_bounded(video_8k):
    figures = measure("mediapipe", video_8k, thread_count=THREADS)
    assert figures["frames"] == NUM_FRAMES, figures
    assert figures["growth_mb"] < BOUND_MIB, figures


@pytest.mark.slow
def test_the_measurement_sees_an_implementation_that_holds_frames(video_8k):
    # the control: keeping only 10 of the frames already exceeds the bound, so the bound can fail
    held = measure("hold-full", video_8k, thread_count=THREADS, end_s=10 / FPS - 1e-3)
    assert held["frames"] == 10
    assert held["growth_mb"] > BOUND_MIB, held
    assert held["growth_mb"] > 10 * FRAME_MIB * 0.95, held
