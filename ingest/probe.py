"""Read what a video file holds (:class:`VideoProbe`) with PyAV, without decoding the whole video.

One demux pass reads the first ~120 video packets (their timestamps give the frame-rate regularity) and
decodes the first frame (it proves the codec is decodable and carries the display matrix). The frame count
comes from the container header; only when the header has none (Matroska/WebM) is the rest of the stream
demuxed, packet by packet, without decoding.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

from ingest.errors import AudioOnly, InputNotFound, MissingDependencyError, ProbeError
from ingest.items import VideoProbe

VFR_SAMPLE_FRAMES = 120
"""Frames whose timestamps decide :attr:`VideoProbe.is_vfr`."""
VFR_TOLERANCE = 0.01
"""Relative spread of frame durations above which a stream is variable frame rate."""
_MAX_REORDER_PACKETS = 16  # B-frame reordering depth bound: read this many extra packets before sorting

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

    sample_pts: list[int] = []
    num_packets = 0
    last_end_ticks: int | None = None
    first_frame = None
    decode_error: Exception | None = None
    for packet in container.demux(stream):
        if packet.size == 0:  # the flush packet at the end
            continue
        num_packets += 1
        if packet.pts is not None:
            if len(sample_pts) < VFR_SAMPLE_FRAMES + _MAX_REORDER_PACKETS:
                sample_pts.append(packet.pts)
            end = packet.pts + (packet.duration or 0)
            last_end_ticks = end if last_end_ticks is None else max(last_end_ticks, end)
        if first_frame is None:
            try:  # a stream cut before a key frame fails on its first packets: keep going
                frames = codec_context.decode(packet)
            except av.error.FFmpegError as exc:
                decode_error, frames = exc, []
            if frames:
                first_frame = frames[0]
        if (
            first_frame is not None
            and len(sample_pts) >= VFR_SAMPLE_FRAMES + _MAX_REORDER_PACKETS
            and header_frames > 0
        ):
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
    num_frames = header_frames if header_frames > 0 else num_packets

    duration_s = _duration_s(container, stream)
    if header_frames <= 0 and last_end_ticks is not None and tick_s > 0:
        # Counted to the end: compare where the packets stopped with the duration the header announced.
        data_end_s = (last_end_ticks - (stream.start_time or 0)) * tick_s
        if duration_s <= 0:
            duration_s = data_end_s
        elif data_end_s < 0.75 * duration_s and duration_s - data_end_s > 0.5:
            raise ProbeError(
                f"{path}: the header announces {duration_s:.2f} s but video data stops at {data_end_s:.2f} s: "
                "the file is truncated; fetch it again"
            )

    fps = float(stream.average_rate) if stream.average_rate else 0.0
    if fps <= 0 and duration_s > 0:
        fps = num_frames / duration_s
    if fps <= 0 and stream.guessed_rate:
        fps = float(stream.guessed_rate)
    if duration_s <= 0 and fps > 0:
        duration_s = num_frames / fps

    ordered_pts = sorted(sample_pts)[: VFR_SAMPLE_FRAMES]
    rotate_tag = stream.metadata.get("rotate")
    return VideoProbe(
        duration_s=float(duration_s),
        fps=float(fps),
        is_vfr=is_vfr_from_pts(ordered_pts),
        width=width,
        height=height,
        rotation_deg=rotation_cw_deg(getattr(first_frame, "rotation", None), rotate_tag),
        codec=str(codec_context.name),
        num_frames=int(num_frames),
        size_bytes=int(size_bytes),
        has_audio=bool(container.streams.audio),
    )


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
