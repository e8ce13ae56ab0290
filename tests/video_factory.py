"""Synthesise small test videos with PyAV (shared by every engineer's tests).

Everything here is deterministic: the same arguments give the same frames (and, for a given PyAV/FFmpeg
build, the same bytes), so ids derived from content are stable within a test run.

Public API::

    make_video(path, *, width=64, height=48, fps=30.0, num_frames=30, codec="libx264", rotation_deg=0,
               vfr=False, with_audio=False, pattern="moving_box", faststart=False) -> Path
    make_audio_only(path, *, duration_s=1.0, sample_rate_hz=48000) -> Path
    frame_rgb(index, *, width, height, pattern="moving_box") -> np.ndarray   # (height, width, 3) uint8
    vfr_frame_durations_s(num_frames, fps) -> list[float]                   # what ``vfr=True`` writes

The container comes from the file extension (``.mp4``, ``.mov``, ``.mkv``, ``.webm``, ``.avi``, ``.m4a``).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

PATTERNS = ("moving_box", "solid", "noise")

# Time base of the video streams we write: 1/90000 s represents 24, 25, 30, 60 fps exactly. MPEG-4 part 2
# encoders only accept a time base denominator below 2**16: they get 1/(4 * fps) (enough for the VFR pattern).
# AVI counts frame slots of one time-base tick each, so it gets 1/fps (and cannot hold VFR).
_TIME_BASE = Fraction(1, 90000)
_SHORT_TIME_BASE_CODECS = ("mpeg4", "msmpeg4", "msmpeg4v2", "h263", "h263p")


def _time_base(path: Path, codec: str, rate: Fraction) -> Fraction:
    if path.suffix.lower() == ".avi":
        return 1 / rate
    if codec in _SHORT_TIME_BASE_CODECS:
        return 1 / (4 * rate)
    return _TIME_BASE


def frame_rgb(index: int, *, width: int, height: int, pattern: str = "moving_box") -> np.ndarray:
    """The RGB image of frame ``index``: (height, width, 3) uint8.

    ``moving_box``: a white square (a quarter of the height) moving left to right over a dark grey background,
    one pixel-step per frame (wrapping), plus a coloured stripe whose hue encodes ``index % 8``.
    ``solid``: mid grey. ``noise``: uniform noise seeded by ``index``.
    """
    if pattern == "solid":
        return np.full((height, width, 3), 128, dtype=np.uint8)
    if pattern == "noise":
        rng = np.random.default_rng(index)
        return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    if pattern != "moving_box":
        raise ValueError(f"unknown pattern {pattern!r}; choose one of {PATTERNS}")
    image = np.full((height, width, 3), 32, dtype=np.uint8)
    side = max(2, height // 4)
    step = max(1, width // 32)
    x0 = (index * step) % max(1, width - side)
    y0 = (height - side) // 2
    image[y0 : y0 + side, x0 : x0 + side] = 255
    stripe = max(1, height // 16)
    colour = np.array([(index >> 0) & 1, (index >> 1) & 1, (index >> 2) & 1], dtype=np.uint8) * 255
    image[:stripe] = colour
    return image


def vfr_frame_durations_s(num_frames: int, fps: float) -> list[float]:
    """Frame durations written by ``make_video(vfr=True)``: alternating 0.75 / 1.25 / 1.0 of the nominal
    period (mean rate stays ``fps``), so frame durations vary by 25 %."""
    period_s = 1.0 / fps
    factors = (0.75, 1.25, 1.0)
    return [period_s * factors[i % 3] for i in range(num_frames)]


def make_video(
    path: str | Path,
    *,
    width: int = 64,
    height: int = 48,
    fps: float = 30.0,
    num_frames: int = 30,
    codec: str = "libx264",
    rotation_deg: int = 0,
    vfr: bool = False,
    with_audio: bool = False,
    pattern: str = "moving_box",
    faststart: bool = False,
) -> Path:
    """Write a small video and return its path.

    width, height: frame size in pixels (even numbers: 4:2:0 chroma needs them).
    fps: nominal frame rate; the stream's time base is 1/90000 s (1/(4 fps) for MPEG-4 part 2 codecs, 1/fps in
        AVI).
    codec: an FFmpeg encoder name available in PyAV (``libx264``, ``mpeg4``, ``libvpx-vp9`` for ``.webm``...).
    rotation_deg: display rotation written as a display matrix, clockwise degrees to turn the decoded frame
        upright (the convention of the legacy ``rotate`` tag); 0, 90, 180 or 270.
    vfr: write variable frame durations (see :func:`vfr_frame_durations_s`) instead of a constant period
        (not in ``.avi``).
    with_audio: add a 440 Hz AAC (Opus for ``.webm``) track as long as the video.
    pattern: see :func:`frame_rgb`.
    faststart: MP4/MOV only: put the index (``moov``) before the data, as web-ready files do.
    """
    import av

    path = Path(path)
    if width % 2 or height % 2:
        raise ValueError(f"width and height must be even for yuv420p, got {width}x{height}")
    if rotation_deg % 90:
        raise ValueError(f"rotation_deg must be a multiple of 90, got {rotation_deg}")
    if num_frames < 1:
        raise ValueError("num_frames must be >= 1")

    if vfr:
        durations_s = vfr_frame_durations_s(num_frames, fps)
    else:
        durations_s = [1.0 / fps] * num_frames
    rate = Fraction(fps).limit_denominator(1001)
    if vfr and path.suffix.lower() == ".avi":
        raise ValueError("AVI stores one frame per time-base tick and cannot hold variable frame durations")
    time_base = _time_base(path, codec, rate)
    pts_ticks = np.round(np.concatenate([[0.0], np.cumsum(durations_s)])[:num_frames] / float(time_base))

    options = {"movflags": "faststart"} if faststart else {}
    container = av.open(str(path), mode="w", options=options)
    try:
        stream = container.add_stream(codec, rate=rate)
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        if codec in ("libx264", "libx265"):
            stream.options = {"preset": "ultrafast", "tune": "zerolatency", "crf": "28"}
        if rotation_deg % 360:
            # PyAV takes the counter-clockwise angle of the display matrix.
            stream.set_display_rotation(-(rotation_deg % 360))

        audio = None
        if with_audio:
            audio_codec = "libopus" if path.suffix.lower() == ".webm" else "aac"
            audio = container.add_stream(audio_codec, rate=48000)
            audio.layout = "mono"

        for index in range(num_frames):
            frame = av.VideoFrame.from_ndarray(frame_rgb(index, width=width, height=height, pattern=pattern))
            frame.pts = int(pts_ticks[index])
            frame.time_base = time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)

        if audio is not None:
            _write_tone(container, audio, duration_s=float(sum(durations_s)))
    finally:
        container.close()
    return path


def _write_tone(container, audio_stream, *, duration_s: float, frequency_hz: float = 440.0) -> None:
    """Encode a mono sine tone of ``duration_s`` seconds into ``audio_stream``."""
    import av

    sample_rate_hz = audio_stream.rate
    frame_size = audio_stream.codec_context.frame_size or 1024
    total = max(frame_size, int(round(duration_s * sample_rate_hz)))
    t = np.arange(total) / sample_rate_hz
    samples = (0.2 * np.sin(2 * np.pi * frequency_hz * t)).astype(np.float32)
    for start in range(0, total, frame_size):
        chunk = samples[start : start + frame_size]
        if chunk.size < frame_size:
            chunk = np.pad(chunk, (0, frame_size - chunk.size))
        frame = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
        frame.sample_rate = sample_rate_hz
        frame.pts = start
        frame.time_base = Fraction(1, sample_rate_hz)
        for packet in audio_stream.encode(frame):
            container.mux(packet)
    for packet in audio_stream.encode():
        container.mux(packet)


def make_audio_only(path: str | Path, *, duration_s: float = 1.0, sample_rate_hz: int = 48000) -> Path:
    """Write an audio-only file (AAC in the container named by the extension, e.g. ``.m4a`` or ``.mp4``)."""
    import av

    path = Path(path)
    container = av.open(str(path), mode="w")
    try:
        audio = container.add_stream("aac", rate=sample_rate_hz)
        audio.layout = "mono"
        _write_tone(container, audio, duration_s=duration_s)
    finally:
        container.close()
    return path


# --- real frames, for composed test and benchmark videos ----------------------------------------------------


def decode_rgb(path: str | Path, num: int | None = None, start: int = 0,
               max_side_px: int | None = None) -> list[np.ndarray]:
    """Decoded RGB frames ``start .. start+num-1`` of ``path`` (``num`` None: to the end), long side at most
    ``max_side_px``."""
    from ingest.decode import iter_frames

    out: list[np.ndarray] = []
    with iter_frames(path, max_side_px=max_side_px) as frames:
        for i, fr in enumerate(frames):
            if i < start:
                continue
            out.append(fr.rgb)
            if num is not None and len(out) >= num:
                break
    return out


def fit_to_height(rgb: np.ndarray, w: int, h: int) -> np.ndarray:
    """``rgb`` scaled to height ``h`` and centred in a ``w`` x ``h`` canvas: the sides filled by edge replication,
    or cropped around the centre if wider."""
    import cv2

    sw = int(round(rgb.shape[1] * h / rgb.shape[0]))
    img = cv2.resize(rgb, (sw, h), interpolation=cv2.INTER_AREA)
    if sw >= w:
        x0 = (sw - w) // 2
        return np.ascontiguousarray(img[:, x0:x0 + w])
    left = (w - sw) // 2
    return cv2.copyMakeBorder(img, 0, 0, left, w - sw - left, cv2.BORDER_REPLICATE)


def write_rgb_mp4(path: str | Path, frames: list[np.ndarray], fps: int = 30) -> Path:
    """Write RGB frames (even width and height) as a near-lossless H.264 MP4 (crf 18) with PyAV."""
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "18"}
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return Path(path)
