"""Read what a video file holds (:class:`VideoProbe`) with PyAV, without decoding the whole video.

One demux pass reads the first ~136 video packets (their timestamps give the frame-rate regularity) and
decodes the first frame (it proves the codec is decodable and carries the display matrix). The frame count
comes from the container header. The rest of the stream is demuxed, packet by packet, without decoding, when
the header has no count (Matroska/WebM) or its count disagrees with its duration and frame rate; whenever the
whole stream was read (short videos too), the frame count is the number of frames decoding will show (packets an
edit list leaves out are not counted).

The timing must add up (:func:`check_timing`): a stream whose frame rate is implausible, whose frame count does not
fit its duration at its frame rate, or whose header lists many more frames than the stream holds (all seen when an
MP4 track's ``mdhd`` timescale is 0: FFmpeg then counts in whole seconds, so 60 frames at 30 fps become one frame
every 3000 s) fails with :class:`BadTiming` instead of becoming a clip with made-up times.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

from ingest.errors import AudioOnly, BadTiming, InputNotFound, MissingDependencyError, ProbeError
from ingest.items import VideoProbe

VFR_SAMPLE_FRAMES = 120
"""Frames whose timestamps decide :attr:`VideoProbe.is_vfr`."""
VFR_TOLERANCE = 0.01
"""Relative spread of frame durations above which a stream is variable frame rate."""
_MAX_REORDER_PACKETS = 16  # B-frame reordering depth bound: read this many extra packets before sorting

MIN_PLAUSIBLE_FPS = 0.1
"""Frame rates below this (a frame every 10 s) are a broken time base, or a time-lapse with no motion to track."""
MAX_PLAUSIBLE_FPS = 10_000.0
"""Frame rates above this are taken as a broken time base."""
TIMING_MISMATCH_FACTOR = 2.0
"""Frame count and ``duration_s * fps`` may differ by this factor (plus one frame) before the timing is wrong."""
RECOUNT_TOLERANCE = 0.02
"""Relative difference between the header's frame count and ``duration_s * fps`` (plus one frame) above which the
probe demuxes the whole stream to count the frames itself."""

_HEAD_BYTES = 512


def sniff_container(head: bytes) -> str | None:
    """Guess the file type from its first bytes (at least 12; 512 is plenty).

    Returns a container family (``"mp4"`` for ISO-BMFF/QuickTime, ``"matroska"``, ``"avi"``, ``"flv"``,
    ``"mpegts"``, ``"mpegps"``, ``"ogg"``, ``"asf"``), ``"html"`` or ``"text"`` for readable text, or None
    when unknown. An ``"mp4"`` answer does not promise a video track (``.m4a`` files share it).
    """
    if len(head) >= 8 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot"):
        return "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "avi"
    if head.startswith(b"FLV"):
        return "flv"
    if head.startswith(b"\x00\x00\x01\xba"):
        return "mpegps"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return "asf"
    if len(head) > 188 and head[0] == 0x47 and head[188] == 0x47:
        return "mpegts"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml", b"<!--")):
        return "html"
    if head and _looks_like_text(head):
        return "text"
    return None


def _looks_like_text(head: bytes) -> bool:
    try:
        decoded = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # a multi-byte character cut at the end is still text
            return False
        decoded = head[: exc.start].decode("utf-8")
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in decoded)
    return printable >= 0.95 * max(1, len(decoded))


def rotation_cw_deg(display_ccw_deg: float | None, rotate_tag: str | None = None) -> int:
    """Clockwise degrees (0, 90, 180, 270) to turn a decoded frame upright.

    display_ccw_deg: the display matrix angle as FFmpeg / PyAV report it (``VideoFrame.rotation``,
        counter-clockwise, -180..180); used when not None and not 0.
    rotate_tag: the legacy ``rotate`` stream tag (clockwise degrees, e.g. ``"90"`` on phone videos).
    The angle is snapped to the nearest multiple of 90.
    """
    if display_ccw_deg is not None and display_ccw_deg % 360:
        clockwise = -float(display_ccw_deg)
    elif rotate_tag is not None and rotate_tag.strip():
        try:
            clockwise = float(rotate_tag)
        except ValueError:
            return 0
    else:
        return 0
    return int(round(clockwise / 90.0)) % 4 * 90


def is_vfr_from_pts(pts_ticks: Sequence[int], *, tolerance: float = VFR_TOLERANCE) -> bool:
    """Whether presentation timestamps (ticks of one time base, any order) have unequal spacing.

    A stream is VFR when some frame duration differs from the median by more than ``tolerance`` (relative)
    plus one tick: the tick allows for timestamps rounded to a coarse time base (1/1000 s in Matroska writes
    30 fps as 33, 33, 34 ms). Fewer than 3 timestamps give False.
    """
    ordered = sorted(pts_ticks)
    deltas = [b - a for a, b in zip(ordered, ordered[1:])]
    if len(deltas) < 2:
        return False
    median = sorted(deltas)[len(deltas) // 2]
    if median <= 0:
        return True
    limit = tolerance * median + 1
    return any(abs(d - median) > limit for d in deltas)


def frame_rate_problem(fps: float) -> str | None:
    """Why ``fps`` (frames / second) cannot be a video's frame rate, or None when it can; 0 means unknown (allowed:
    frame times then come from timestamps alone)."""
    if not 0.0 <= fps < math.inf:  # NaN, infinities, negatives
        return f"a frame rate of {fps:.3g} fps is not a rate"
    if fps == 0.0:
        return None
    if fps < MIN_PLAUSIBLE_FPS:
        return (f"one frame every {1.0 / fps:.4g} s ({fps:.3g} fps) is below {MIN_PLAUSIBLE_FPS:g} fps: the track's "
                "time base is broken (or the video is a time-lapse, which holds no motion to track)")
    if fps > MAX_PLAUSIBLE_FPS:
        return f"{fps:.4g} fps is above {MAX_PLAUSIBLE_FPS:g} fps: the track's time base is broken"
    return None


def timing_problem(num_frames: int, duration_s: float, fps: float, *, fps_is_estimate: bool = False) -> str | None:
    """What does not add up between a stream's frame count N, duration (seconds) and frame rate (frames / second),
    or None when they agree.

    - the duration must be a finite number >= 0 and the frame rate pass :func:`frame_rate_problem`;
    - N frames at ``fps`` last N / fps seconds, so a known duration (> 0) holds ``duration_s * fps`` frames, which
      must be within a factor F = :data:`TIMING_MISMATCH_FACTOR` of N, give or take one frame (whether the last
      frame's own duration is counted varies): ``N / F - 1 <= duration_s * fps <= F * N + 1``.
      ``fps_is_estimate`` skips this comparison: FFmpeg guesses the rate of a container without a frame count
      (Matroska, WebM) from its first frames, which for a variable frame rate can be far from the average; the
      frames' own timestamps then give their times.
    """
    if not 0.0 <= duration_s < math.inf:
        return f"a duration of {duration_s:.2f} s is not a duration"
    rate = frame_rate_problem(fps)
    if rate is not None:
        return rate
    if fps_is_estimate or fps == 0.0 or duration_s == 0.0 or num_frames <= 0:
        return None
    held = duration_s * fps
    if held < num_frames / TIMING_MISMATCH_FACTOR - 1:
        return (f"{num_frames} frames at {fps:.3g} fps last {num_frames / fps:.4g} s, far more than the "
                f"{duration_s:.2f} s the track lasts")
    if held > TIMING_MISMATCH_FACTOR * num_frames + 1:
        return (f"{duration_s:.2f} s at {fps:.3g} fps hold {held:.0f} frames, far more than the track's "
                f"{num_frames} frames")
    return None


def check_timing(path: str | os.PathLike[str], *, num_frames: int, duration_s: float, fps: float,
                 fps_is_estimate: bool = False, header_frames: int = 0, codec: str = "") -> None:
    """Raise :class:`BadTiming` when :func:`timing_problem` finds that the numbers do not add up.

    header_frames: the frame count of the container's header when it differs from ``num_frames`` (the frames
    decoding shows); it is named in the message and, with ``duration_s``, suggests the frame rate to re-mux at.
    codec: the stream's codec name: H.264 and HEVC get a re-mux command.
    """
    problem = timing_problem(num_frames, duration_s, fps, fps_is_estimate=fps_is_estimate)
    if problem is not None:
        raise bad_timing(path, problem, num_frames=num_frames, duration_s=duration_s, fps=fps,
                         header_frames=header_frames, codec=codec)


def bad_timing(path: str | os.PathLike[str], problem: str, *, num_frames: int, duration_s: float, fps: float,
               header_frames: int = 0, codec: str = "") -> BadTiming:
    """The :class:`BadTiming` error for ``problem``: the numbers, what is wrong and how to repair the file."""
    frames = f"{num_frames} frame{'' if num_frames == 1 else 's'}"
    header = f"; its header lists {header_frames} frames" if header_frames and header_frames != num_frames else ""
    return BadTiming(
        f"{path}: the video track's timing does not add up ({frames} in {duration_s:.2f} s at {fps:.3g} fps{header}): "
        f"{problem}; {_repair_advice(max(header_frames, num_frames), duration_s, codec)}"
    )


def _repair_advice(num_frames: int, duration_s: float, codec: str) -> str:
    """How to give the file sound timestamps: re-mux its bitstream at the real frame rate (H.264/HEVC), which
    ``num_frames / duration_s`` suggests when that is a plausible rate, else re-encode it from its source."""
    rate = num_frames / duration_s if num_frames > 1 and 0 < duration_s < math.inf else 0.0
    if rate > 0 and frame_rate_problem(rate) is None:
        rate_text = f"{rate:.3f}".rstrip("0").rstrip(".")
        known = f" ({num_frames} frames in {duration_s:.2f} s make {rate_text} fps)"
    else:
        rate_text, known = "RATE", ""
    if codec in ("h264", "hevc"):
        return (f"re-mux it with timestamps at its real frame rate{known}: ffmpeg -ignore_editlist 1 -i IN "
                f"-map 0:v:0 -c copy -f {codec} video.{codec} && ffmpeg -r {rate_text} -i video.{codec} -c copy "
                "OUT.mp4 (or re-encode it from its source)")
    return f"re-encode it from its source, or re-mux it with ffmpeg at its real frame rate{known}"


def _open_error(path: Path, size_bytes: int, exc: Exception) -> ProbeError:
    """A ProbeError whose message says what the file looks like."""
    with open(path, "rb") as handle:
        head = handle.read(_HEAD_BYTES)
    kind = sniff_container(head)
    if kind in ("html", "text"):
        preview = re.sub(r"\s+", " ", head[:60].decode("utf-8", errors="replace")).strip()
        return ProbeError(
            f"{path} is a {kind} file, not a video (it starts with {preview!r}); a download probably saved an "
            "error page: check the URL and download it again"
        )
    if kind is not None:
        return ProbeError(
            f"{path} looks like {kind} ({size_bytes} bytes) but FFmpeg cannot read it ({exc}): the file is "
            "probably truncated (an unfinished download or copy); fetch it again"
        )
    return ProbeError(
        f"{path} is not a video container FFmpeg can read ({exc}): check that it is a video file and that "
        "it was copied completely"
    )


def _first_video_stream(container):
    """The first video stream that is not cover art, or None."""
    for stream in container.streams.video:
        if stream.disposition & stream.disposition.attached_pic:
            continue
        return stream
    return None


def probe_video(path: str | os.PathLike[str]) -> VideoProbe:
    """Probe a local video file.

    Raises :class:`InputNotFound` when the file is missing, :class:`AudioOnly` when it has audio but no video
    track, and :class:`ProbeError` when it is empty, truncated, not a media container (e.g. a text or HTML
    page renamed ``.mp4``) or its first frame cannot be decoded.
    """
    try:
        import av
    except ImportError as exc:
        raise MissingDependencyError(f"probing videos needs PyAV: pip install av ({exc})") from None

    path = Path(path)
    try:
        size_bytes = path.stat().st_size
    except FileNotFoundError:
        raise InputNotFound(f"{path} does not exist: check the path") from None
    if not path.is_file():
        raise InputNotFound(f"{path} is not a file")
    if size_bytes == 0:
        raise ProbeError(f"{path} is empty (0 bytes): the download or copy did not finish; fetch it again")

    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise _open_error(path, size_bytes, exc) from None

    with container:
        stream = _first_video_stream(container)
        if stream is None:
            if container.streams.audio:
                raise AudioOnly(f"{path} holds only audio: pose estimation needs a video track; drop this input")
            raise ProbeError(f"{path} has no video stream: check that it is a video file")
        try:
            return _probe_stream(av, container, stream, path, size_bytes)
        except av.error.FFmpegError as exc:
            raise ProbeError(
                f"{path}: reading the video stream failed ({exc}); the file is probably truncated or corrupt: "
                "fetch it again"
            ) from None


def _probe_stream(av, container, stream, path: Path, size_bytes: int) -> VideoProbe:
    codec_context = stream.codec_context
    width, height = int(codec_context.width or 0), int(codec_context.height or 0)
    if width <= 0 or height <= 0:
        raise ProbeError(f"{path}: the video stream has no frame size: the file is corrupt; fetch it again")

    header_frames = int(stream.frames or 0)
    _check_index_within_file(stream, path, size_bytes)

    packets = container.demux(stream)
    tally = _PacketTally()
    reached_end = True
    first_frame = None
    decode_error: Exception | None = None
    for packet in packets:
        if packet.size == 0:  # the flush packet at the end
            continue
        tally.add(packet)
        if first_frame is None:
            try:  # a stream cut before a key frame fails on its first packets: keep going
                frames = codec_context.decode(packet)
            except av.error.FFmpegError as exc:
                decode_error, frames = exc, []
            if frames:
                first_frame = frames[0]
        if (
            first_frame is not None
            and len(tally.sample_pts) >= VFR_SAMPLE_FRAMES + _MAX_REORDER_PACKETS
            and header_frames > 0
        ):
            reached_end = False
            break
    if first_frame is None:
        try:
            flushed = codec_context.decode(None)
        except av.error.FFmpegError as exc:
            decode_error, flushed = exc, []
        if flushed:
            first_frame = flushed[0]
    if first_frame is None:
        detail = f" ({decode_error})" if decode_error is not None else ""
        raise ProbeError(
            f"{path}: no video frame could be decoded{detail}: the file is corrupt or its codec is not "
            "supported by this FFmpeg build; fetch it again or re-encode it"
        )

    time_base = stream.time_base
    tick_s = float(time_base) if time_base else 0.0
    num_frames = header_frames if header_frames > 0 else tally.num_packets

    duration_s = _duration_s(container, stream)
    if header_frames <= 0 and tally.last_end_ticks is not None and tick_s > 0:
        # Counted to the end: compare where the packets stopped with the duration the header announced.
        data_end_s = (tally.last_end_ticks - (stream.start_time or 0)) * tick_s
        if duration_s <= 0:
            duration_s = data_end_s
        elif data_end_s < 0.75 * duration_s and duration_s - data_end_s > 0.5:
            raise ProbeError(
                f"{path}: the header announces {duration_s:.2f} s but video data stops at {data_end_s:.2f} s: "
                "the file is truncated; fetch it again"
            )

    header_duration_s = duration_s  # <= 0 when neither the header nor the packets tell
    fps, duration_s = _rate_and_duration(stream, num_frames, header_duration_s)
    if not reached_end and not _header_agrees(num_frames, duration_s, fps):
        for packet in packets:  # the rest of the stream, without decoding
            if packet.size:
                tally.add(packet)
        reached_end = True
    if reached_end:  # every packet seen: count what decoding will show
        num_frames = tally.num_shown or tally.num_packets
        fps, duration_s = _rate_and_duration(stream, num_frames, header_duration_s)

    codec = str(codec_context.name)
    check_timing(path, num_frames=num_frames, duration_s=duration_s, fps=fps, fps_is_estimate=header_frames <= 0,
                 header_frames=header_frames, codec=codec)
    if reached_end and header_frames > 0 and tally.num_packets < header_frames / TIMING_MISMATCH_FACTOR - 1:
        raise bad_timing(path, f"the stream holds only {tally.num_packets} of them (FFmpeg drops the others: the "
                         "track's time base or edit list is broken)", num_frames=num_frames, duration_s=duration_s,
                         fps=fps, header_frames=header_frames, codec=codec)

    ordered_pts = sorted(tally.sample_pts)[: VFR_SAMPLE_FRAMES]
    rotate_tag = stream.metadata.get("rotate")
    return VideoProbe(
        duration_s=float(duration_s),
        fps=float(fps),
        is_vfr=is_vfr_from_pts(ordered_pts),
        width=width,
        height=height,
        rotation_deg=rotation_cw_deg(getattr(first_frame, "rotation", None), rotate_tag),
        codec=codec,
        num_frames=int(num_frames),
        size_bytes=int(size_bytes),
        has_audio=bool(container.streams.audio),
    )


class _PacketTally:
    """What the demuxed packets of one stream showed so far.

    num_packets: packets with data; num_shown: those not flagged discard (an edit list can hide the packets before
    or after the part it plays: decoding drops them), i.e. the frames decoding shows; sample_pts: the first
    ``VFR_SAMPLE_FRAMES + _MAX_REORDER_PACKETS`` timestamps (ticks); last_end_ticks: where the latest packet ends.
    """

    __slots__ = ("num_packets", "num_shown", "sample_pts", "last_end_ticks")

    def __init__(self) -> None:
        self.num_packets = 0
        self.num_shown = 0
        self.sample_pts: list[int] = []
        self.last_end_ticks: int | None = None

    def add(self, packet) -> None:
        self.num_packets += 1
        if not packet.is_discard:
            self.num_shown += 1
        if packet.pts is not None:
            if len(self.sample_pts) < VFR_SAMPLE_FRAMES + _MAX_REORDER_PACKETS:
                self.sample_pts.append(packet.pts)
            end = packet.pts + (packet.duration or 0)
            self.last_end_ticks = end if self.last_end_ticks is None else max(self.last_end_ticks, end)


def _rate_and_duration(stream, num_frames: int, duration_s: float) -> tuple[float, float]:
    """(fps, duration_s): the stream's average rate, else ``num_frames / duration_s``, else FFmpeg's guess; a
    missing duration (<= 0) becomes ``num_frames / fps``."""
    fps = float(stream.average_rate) if stream.average_rate else 0.0
    if fps <= 0 and duration_s > 0:
        fps = num_frames / duration_s
    if fps <= 0 and stream.guessed_rate:
        fps = float(stream.guessed_rate)
    if duration_s <= 0 and fps > 0:
        duration_s = num_frames / fps
    return fps, duration_s


def _header_agrees(num_frames: int, duration_s: float, fps: float) -> bool:
    """Whether the header's frame count matches ``duration_s * fps`` within :data:`RECOUNT_TOLERANCE` (plus one
    frame); when it does not, the probe counts the frames itself."""
    if not (fps > 0 and 0 < duration_s < math.inf):
        return False
    return abs(duration_s * fps - num_frames) <= RECOUNT_TOLERANCE * num_frames + 1


def _duration_s(container, stream) -> float:
    """The video stream's duration in seconds, else the container's, else 0."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = stream.metadata.get("DURATION") or stream.metadata.get("duration")
    if tag:
        seconds = _parse_clock(tag)
        if seconds is not None:
            return seconds
    if container.duration:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return 0.0


def _parse_clock(text: str) -> float | None:
    """``"HH:MM:SS.fffffffff"`` (Matroska's per-track DURATION tag) in seconds."""
    match = re.fullmatch(r"\s*(\d+):(\d{1,2}):(\d{1,2}(?:\.\d+)?)\s*", text)
    if not match:
        return None
    hours, minutes, seconds = match.groups()
    value = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    return value if math.isfinite(value) else None


def _check_index_within_file(stream, path: Path, size_bytes: int) -> None:
    """Raise when the container's sample index points past the end of the file (an MP4 with its index at
    the front whose data was cut short)."""
    try:
        entries = stream.index_entries
        count = len(entries)
        if not count:
            return
        last = entries[count - 1]
        end = int(last.pos) + int(last.size)
    except (AttributeError, TypeError, ValueError):  # older PyAV without index_entries
        return
    if last.pos >= 0 and end > size_bytes:
        raise ProbeError(
            f"{path} is truncated: its index expects {end} bytes but the file has {size_bytes}; fetch it again"
        )
