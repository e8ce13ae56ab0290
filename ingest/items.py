"""Records of the ingest layer: what the user asked for (:class:`VideoItem`) and what a file holds
(:class:`VideoProbe`)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields


@dataclass(frozen=True, slots=True)
class VideoItem:
    """One input video, as listed by the user.

    video_id: deterministic id (see :mod:`ingest.ids`); output paths are derived from it alone.
    uri: what the user gave: an absolute local path, or an http(s)/YouTube URL.
    kind: ``"file"``, ``"youtube"`` or ``"url"``.
    start_s, end_s: optional time range to process, seconds from the start of the video (None = whole video).
    tags: free-form tags that travel into the catalog.
    license: licence text that travels into the catalog.
    list_error: set when the entry could not be understood (the item still becomes a failed catalog row).
    extra: ``(column, text)`` of a list file's other columns, sorted by column.

    Frozen (hashable, safe to share between threads and stages) and slotted: no per-instance ``__dict__`` (~50
    bytes less per item, and one object less per item for the cyclic garbage collector to track; a run can hold
    100,000s of items). Pickling (multiprocessing, Ray) works: dataclasses gives frozen slotted classes
    ``__getstate__``/``__setstate__``. :func:`new_video_item` builds one faster when every field is at hand.
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


# Slot setters of VideoItem's fields, in field order, for new_video_item.
(_set_video_id, _set_uri, _set_kind, _set_start_s, _set_end_s, _set_tags, _set_license, _set_list_error,
 _set_extra) = (VideoItem.__dict__[item_field.name].__set__ for item_field in fields(VideoItem))
_new_object = object.__new__


def new_video_item(
    video_id: str,
    uri: str,
    kind: str,
    start_s: float | None,
    end_s: float | None,
    tags: tuple[str, ...],
    license: str | None,
    list_error: str | None,
    extra: tuple[tuple[str, str], ...],
) -> VideoItem:
    """The same item as ``VideoItem(video_id, uri, kind, start_s, end_s, tags, license, list_error, extra)``,
    built about twice as fast; every field must be given, in order.

    Why: the ``__init__`` that dataclasses writes for a frozen class sets each field through
    ``object.__setattr__`` (a global and an attribute lookup and a call per field), ~1 us per item; setting the
    slots directly through their descriptors, as that ``__init__`` does in effect, takes half of that.
    :mod:`ingest.sources` builds one item per line of lists of up to ~100,000 lines (re-read on every resume);
    everything else uses ``VideoItem(...)``. tests/test_sources.py checks that both give equal items and that the
    setters above follow the fields.
    """
    item = _new_object(VideoItem)
    _set_video_id(item, video_id)
    _set_uri(item, uri)
    _set_kind(item, kind)
    _set_start_s(item, start_s)
    _set_end_s(item, end_s)
    _set_tags(item, tags)
    _set_license(item, license)
    _set_list_error(item, list_error)
    _set_extra(item, extra)
    return item


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
