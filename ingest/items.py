"""Records of the ingest layer: what the user asked for (:class:`VideoItem`) and what a file holds
(:class:`VideoProbe`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class VideoItem:
    """One input video, as listed by the user.

    video_id: deterministic id (see :mod:`ingest.ids`); output paths are derived from it alone.
    uri: what the user gave: an absolute local path, or an http(s)/YouTube URL.
    kind: ``"file"``, ``"youtube"`` or ``"url"``.
    start_s, end_s: optional time range to process, seconds from the start of the video (None = whole video).
    tags: free-form tags that travel into the catalog.
    license: licence text that travels into the catalog.
    list_error: set when the entry could not be understood (the item still becomes a failed catalog row).
    """

    video_id: str
    uri: str
    kind: str
    start_s: float | None = None
    end_s: float | None = None
    tags: tuple[str, ...] = ()
    license: str | None = None
    list_error: str | None = None
    extra: tuple[tuple[str, str], ...] = field(default=())


@dataclass(frozen=True)
class VideoProbe:
    """What PyAV reads from a video file's container and first video stream.

    duration_s: container (or stream) duration in seconds.
    fps: average frame rate (frames / second) of the video stream.
    is_vfr: True when frame durations vary by more than 1 % (variable frame rate).
    width, height: coded frame size in pixels, before rotation.
    rotation_deg: display rotation from the stream's side data / metadata, one of 0, 90, 180, 270.
    codec: codec name (e.g. ``"h264"``).
    num_frames: frames in the stream (from the header, or counted when the header has none).
    size_bytes: file size.
    has_audio: whether the file has an audio stream.
    """

    duration_s: float
    fps: float
    is_vfr: bool
    width: int
    height: int
    rotation_deg: int
    codec: str
    num_frames: int
    size_bytes: int
    has_audio: bool
