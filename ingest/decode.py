"""Streaming video decoder: frames as RGB arrays in memory, upright, with their decode index and time.

:func:`iter_frames` opens a video with PyAV (imported lazily) and yields :class:`DecodedFrame` records one at a
time; nothing is written to disk. Conventions:

- ``frame_idx`` counts presentation-order frames from 0 over the whole video, so with ``start_s`` the first
  yielded index is > 0. With ``start_s`` the decoder seeks to the key frame before it; the index of the first
  frame is found by counting the demuxed packets (no decoding) whose time is before it. Streams without packet
  timestamps (raw H.264) are decoded from the start instead.
- ``time_s`` is ``(pts - stream.start_time) * time_base``: seconds since the first frame of the video stream
  (for the usual MP4 that starts at pts 0 this is ``pts * time_base``). Variable frame rate is preserved.
- The display rotation (from the stream's display matrix, or an old-style ``rotate`` tag) is applied, so
  ``rgb`` is what a player shows; ``source_hw`` is the upright size at full resolution.
- ``max_side_px`` downsizes frames (aspect kept) inside libswscale while converting to RGB; pixel coordinates in
  the small frame map back to the source by multiplying by ``source_hw[1] / rgb.shape[1]``.
- A stream whose average rate cannot be a frame rate (a broken time base, e.g. an MP4 ``mdhd`` timescale of 0)
  raises :class:`ingest.errors.BadTiming` on opening instead of yielding made-up times.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ingest.errors import AudioOnly, DecodeError, ProbeError, require_module
from ingest.probe import bad_timing, frame_rate_problem

#: Frames with a B-frame reordering depth beyond this many packets are not expected in real streams; the packet
#: count used to find the first index after a seek stops this many packets past the target time.
_REORDER_SLACK_PACKETS = 64


@dataclass
class DecodedFrame:
    """One decoded, upright video frame.

    frame_idx: 0-based presentation index over the whole video.
    time_s: presentation time in seconds since the first frame of the stream.
    rgb: (H, W, 3) uint8 image, display rotation applied, possibly downsized (``max_side_px``).
    source_hw: (H, W) upright size in pixels of the full-resolution frame that ``rgb`` shows.
    """

    frame_idx: int
    time_s: float
    rgb: np.ndarray
    source_hw: tuple[int, int] = (0, 0)

    @property
    def scale_to_source(self) -> float:
        """Multiply pixel coordinates in ``rgb`` by this to get pixels of the full-resolution frame."""
        return self.source_hw[1] / self.rgb.shape[1] if self.rgb.shape[1] else 1.0


def _import_av():
    return require_module("av", "decoding video", "pip install av")


def _rotation_ccw_deg(display_matrix_ccw: float | None, rotate_tag: str | None) -> int:
    """Counter-clockwise rotation (0, 90, 180, 270) that makes the stored frame upright.

    ``display_matrix_ccw`` is PyAV's ``VideoFrame.rotation`` (degrees counter-clockwise, in [-180, 180]);
    ``rotate_tag`` is the legacy ``rotate`` metadata, degrees clockwise.
    """
    if display_matrix_ccw:
        return int(round(display_matrix_ccw / 90.0)) % 4 * 90
    if rotate_tag:
        try:
            return int(round(-float(rotate_tag) / 90.0)) % 4 * 90
        except ValueError:
            return 0
    return 0


def _scaled_size(width: int, height: int, max_side_px: int | None) -> tuple[int, int]:
    """(width, height) scaled so the long side is at most ``max_side_px`` (never enlarged; at least 1 px)."""
    if not max_side_px or max(width, height) <= max_side_px:
        return width, height
    s = max_side_px / max(width, height)
    return max(1, int(round(width * s))), max(1, int(round(height * s)))


class VideoFrames:
    """Iterator over the :class:`DecodedFrame` of one video; see :func:`iter_frames`.

    Attributes available right after construction:
    average_fps: the stream's average frame rate (frames / second), 0.0 when unknown.
    num_frames_header: frame count from the container header (0 when unknown).
    rotation_ccw_deg: counter-clockwise display rotation applied to every frame (0, 90, 180, 270).
    source_hw: upright (H, W) of the full-resolution frames.
    leading_times_s: (K,) times of the frames skipped before ``start_s`` (known from packet timestamps), where
        K is the index of the first yielded frame; empty without ``start_s``.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        start_s: float | None = None,
        end_s: float | None = None,
        max_side_px: int | None = None,
        thread_count: int = 0,
        interpolation: str = "AREA",
    ):
        av = _import_av()
        self._av = av
        self.path = str(path)
        self._start_s = start_s if start_s and start_s > 0 else None
        self._end_s = end_s
        self._max_side_px = max_side_px
        self._interpolation = interpolation
        try:
            self._container = av.open(self.path)
        except (av.FFmpegError, OSError) as exc:
            raise ProbeError(
                f"cannot open {self.path} as a video ({exc}); check the file is a complete video "
                "(re-download it if it was truncated)"
            ) from exc
        try:
            if not self._container.streams.video:
                if self._container.streams.audio:
                    raise AudioOnly(f"{self.path} has an audio stream but no video stream; give a video file")
                raise ProbeError(f"{self.path} has no video stream; give a video file")
            stream = self._container.streams.video[0]
            stream.thread_type = "AUTO"  # frame + slice threads
            self._thread_count = int(thread_count) or _auto_threads(stream.codec_context.width,
                                                                    stream.codec_context.height)
            stream.thread_count = self._thread_count  # 0 = one per core
            self._stream = stream
            self._time_base = float(stream.time_base) if stream.time_base else 0.0
            self._start_pts = stream.start_time or 0
            self.average_fps = float(stream.average_rate) if stream.average_rate else 0.0
            self.num_frames_header = int(stream.frames or 0)
            self._check_frame_rate(stream)
            cc = stream.codec_context
            self._coded_wh = (int(cc.width), int(cc.height))
            self.rotation_ccw_deg = _rotation_ccw_deg(None, stream.metadata.get("rotate"))
            self.source_hw = self._upright_hw(*self._coded_wh)
            self.leading_times_s = np.zeros(0, dtype=np.float64)
            self._next_idx = 0
            self._count_skipped = False  # decoding from the start: frames before start_s still take an index
            if self._start_s is not None:
                self._seek_to_start()
            stream = self._stream
            self._frames = self._container.decode(stream)
            self._done = False
            self._error: DecodeError | None = None
            # Decode the first frame now: the display matrix arrives as frame side data, and the upright size
            # must be known before the first frame is consumed.
            self._pending = self._next_kept_frame()
        except BaseException:
            self._container.close()
            raise
        if self._pending is not None:
            self.rotation_ccw_deg = _rotation_ccw_deg(self._pending.rotation, stream.metadata.get("rotate"))
            self.source_hw = self._upright_hw(self._pending.width, self._pending.height)

    # -- setup --------------------------------------------------------------------------------------------

    def _check_frame_rate(self, stream) -> None:
        """Raise :class:`BadTiming` when the stream's average rate cannot be a frame rate (a broken time base:
        frame times and ``average_fps`` would be made up; :func:`ingest.probe.probe_video` checks the rest)."""
        problem = frame_rate_problem(self.average_fps)
        if problem is not None:
            duration_s = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else 0.0
            raise bad_timing(self.path, problem, num_frames=self.num_frames_header, duration_s=duration_s,
                             fps=self.average_fps, codec=str(stream.codec_context.name))

    def _upright_hw(self, width: int, height: int) -> tuple[int, int]:
        return (width, height) if self.rotation_ccw_deg in (90, 270) else (height, width)

    def _pts_to_s(self, pts: int) -> float:
        return (pts - self._start_pts) * self._time_base

    def _seek_to_start(self) -> None:
        """Count the frames before ``start_s`` from packet timestamps, then seek to the key frame before it."""
        av = self._av
        # Frames with pts >= target_pts are exactly those with time_s >= start_s.
        target_pts = self._start_pts + int(np.ceil(self._start_s / self._time_base - 1e-9)) if self._time_base else 0
        before: list[int] = []
        seen_after = 0
        try:
            for packet in self._container.demux(self._stream):
                if packet.pts is None:
                    if packet.size:  # a stream without timestamps: fall back to decoding from the start
                        before = []
                        target_pts = None
                        break
                    continue
                if packet.is_discard or packet.pts < self._start_pts:
                    continue
                if packet.pts < target_pts:
                    before.append(packet.pts)
                else:
                    seen_after += 1
                    if seen_after > _REORDER_SLACK_PACKETS:
                        break
        except av.FFmpegError as exc:
            raise DecodeError(f"reading {self.path} failed while seeking to {self._start_s} s: {exc}") from exc
        if target_pts is None:  # reopen (raw streams cannot seek) and decode from the first frame
            self._container.close()
            self._container = av.open(self.path)
            self._stream = self._container.streams.video[0]
            self._stream.thread_type = "AUTO"
            self._stream.thread_count = self._thread_count
            self._count_skipped = True
            return
        before.sort()
        self._next_idx = len(before)
        self.leading_times_s = np.array([self._pts_to_s(p) for p in before], dtype=np.float64)
        self._container.seek(max(target_pts, self._start_pts), stream=self._stream, backward=True)

    # -- iteration ----------------------------------------------------------------------------------------

    def __iter__(self) -> VideoFrames:
        return self

    def __enter__(self) -> VideoFrames:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._container.close()

    def __del__(self):  # pragma: no cover - safety net
        try:
            self.close()
        except Exception:
            pass

    def _frame_time_s(self, frame) -> float:
        if frame.pts is not None:
            return self._pts_to_s(frame.pts)
        return self._next_idx / self.average_fps if self.average_fps else float("nan")

    def _next_kept_frame(self):
        """The next decoded ``av.VideoFrame`` inside [start_s, end_s), or None at the end (file then closed)."""
        av = self._av
        while not self._done:
            try:
                frame = next(self._frames)
            except StopIteration:
                self.close()
                return None
            except av.FFmpegError as exc:
                idx = self._next_idx
                self.close()
                raise DecodeError(
                    f"decoding {self.path} failed at frame {idx}: {exc}; the file is damaged or truncated "
                    "(re-download or re-encode it)"
                ) from exc
            time_s = self._frame_time_s(frame)
            if self._start_s is not None and time_s < self._start_s - 1e-9:
                if self._count_skipped:
                    self.leading_times_s = np.append(self.leading_times_s, time_s)
                    self._next_idx += 1
                continue  # between the key frame we seeked to and the requested start
            if self._end_s is not None and time_s >= self._end_s:
                self.close()
                return None
            return frame
        return None

    def __next__(self) -> DecodedFrame:
        if self._error is not None:
            exc, self._error = self._error, None
            raise exc
        frame = self._pending
        if frame is None:
            raise StopIteration
        time_s = self._frame_time_s(frame)
        idx = self._next_idx
        self._next_idx += 1
        out = DecodedFrame(idx, float(time_s), self._to_rgb(frame), self.source_hw)
        try:
            self._pending = self._next_kept_frame()
        except DecodeError as exc:  # report it after the frames decoded before it
            self._pending, self._error = None, exc
        return out

    def _to_rgb(self, frame) -> np.ndarray:
        width, height = _scaled_size(frame.width, frame.height, self._max_side_px)
        if (width, height) != (frame.width, frame.height):
            rgb = frame.to_ndarray(format="rgb24", width=width, height=height, interpolation=self._interpolation)
        else:
            rgb = frame.to_ndarray(format="rgb24")
        k = self.rotation_ccw_deg // 90
        if k:
            rgb = np.rot90(rgb, k=k)
        # PyAV returns a strided view when rows are padded (e.g. 8 px wide): consumers need C order
        return np.ascontiguousarray(rgb)


#: Above this many pixels per frame the decoder's threads are capped (each frame thread holds a full frame: an
#: 8K frame is ~100 MB, so 16 threads would take ~1.5 GB per worker; bench/bench_memory.py measures it).
LARGE_FRAME_PX = 3840 * 2160
LARGE_FRAME_THREADS = 2


def _auto_threads(width: int | None, height: int | None) -> int:
    """Decoder threads when the caller leaves it to us: one per core (0), but few for frames above 4K."""
    if width and height and width * height > LARGE_FRAME_PX:
        return LARGE_FRAME_THREADS
    return 0


def iter_frames(
    path: str | Path,
    *,
    start_s: float | None = None,
    end_s: float | None = None,
    max_side_px: int | None = None,
    thread_count: int = 0,
) -> VideoFrames:
    """Decode ``path`` frame by frame: an iterator of :class:`DecodedFrame`.

    start_s, end_s: keep frames with ``start_s <= time_s < end_s`` (seconds since the first frame; None = open).
    max_side_px: downsize so the long side is at most this many pixels (None = full resolution).
    thread_count: decoder threads (0 = one per core); frame and slice threading are both enabled.

    The returned :class:`VideoFrames` also exposes the stream's ``average_fps``, ``source_hw`` and
    ``rotation_ccw_deg``; use it as a context manager (or exhaust it) to close the file promptly.

    Raises :class:`ProbeError` if the file cannot be opened as a video, :class:`AudioOnly` if it has no video
    stream, :class:`BadTiming` if its average rate cannot be a frame rate (a broken time base, see
    :func:`ingest.probe.frame_rate_problem`), :class:`DecodeError` (message names the frame index reached) if
    decoding fails part way.
    """
    return VideoFrames(path, start_s=start_s, end_s=end_s, max_side_px=max_side_px, thread_count=thread_count)


class _End:
    """Queue sentinel carrying the producer's exception, if any."""

    def __init__(self, exc: BaseException | None = None):
        self.exc = exc


def prefetch(frames: Iterator[DecodedFrame], depth: int = 4) -> Iterator[DecodedFrame]:
    """Decode ahead in a background thread: yields the items of ``frames`` in order, up to ``depth`` ahead.

    PyAV releases the GIL while decoding and converting, so decoding overlaps with the consumer's work (pose
    inference): on the shared runner video this took MediaPipe's end-to-end rate from ~0.77 to ~0.95 of its
    inference-only rate on 2 cores. Exceptions of the producer (e.g. :class:`DecodeError`) are re-raised in the
    consumer at the position they happened. Closing the generator (or leaving the loop early) stops the
    producer, which closes ``frames`` itself (a PyAV container must not be closed from another thread while
    it decodes).
    """
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(x) -> bool:
        while not stop.is_set():
            try:
                q.put(x, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        exc = None
        try:
            for x in frames:
                if not put(x):
                    break
        except BaseException as e:  # handed to the consumer
            exc = e
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    pass
            put(_End(exc))

    worker = threading.Thread(target=produce, name="g1forge-decode", daemon=True)
    worker.start()
    try:
        while True:
            x = q.get()
            if isinstance(x, _End):
                if x.exc is not None:
                    raise x.exc
                return
            yield x
    finally:
        stop.set()
        worker.join(timeout=30)
