"""Fetch remote videos (YouTube links, http(s) URLs) into a local cache with yt-dlp.

Cache layout under ``cache_dir``::

    <video_id>.<ext>          complete, verified downloads (the only files ever returned)
    download-archive.txt      one line per completed download: "<video_id> <file name>"
    .partial/<video_id>/      yt-dlp's working files for one download (resumable ``.part`` files)

A file reaches ``<video_id>.<ext>`` only by an atomic rename after yt-dlp finished it and it passed the
checks (size cap, first bytes, :func:`ingest.probe.probe_video`), so a cached file is always complete and is
returned without any network call. The archive records what was downloaded; when it lists an id whose file
was deleted (e.g. to free disk after processing), the video is downloaded again. File names come from the
``video_id`` only, never from a title or URL.

Errors are :class:`ingest.errors.DownloadError` subclasses chosen by :func:`classify_download_error`.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from ingest.errors import (
    AgeRestricted,
    AudioOnly,
    BotCheck,
    ConfigError,
    DownloadError,
    DownloadTooLarge,
    GeoBlocked,
    InputNotFound,
    MissingDependencyError,
    NetworkError,
    NotAVideo,
    ProbeError,
    VideoPrivate,
    VideoUnavailable,
    WriteError,
)
from ingest.ids import ID_PATTERN
from ingest.items import VideoItem
from ingest.probe import probe_video, sniff_container

log = logging.getLogger(__name__)

ARCHIVE_NAME = "download-archive.txt"
PARTIAL_DIR_NAME = ".partial"
DEFAULT_MAX_BYTES = 4 * 1024**3
"""Default size cap of one download (4 GiB: ~2 h of 720p H.264)."""

# Extensions a finished download may carry; anything else is renamed after its sniffed container.
_VIDEO_FILE_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".flv", ".ts", ".3gp", ".mpg")
_EXTENSION_BY_CONTAINER = {"mp4": ".mp4", "matroska": ".mkv", "avi": ".avi", "flv": ".flv", "mpegts": ".ts",
                           "mpegps": ".mpg", "ogg": ".ogv", "asf": ".wmv"}

# --- error classification --------------------------------------------------------------------------------

# (pattern searched case-insensitively in the message, error class, what the user should do).
# Order matters: the first match wins (e.g. "Sign in to confirm your age" before the private-video rule,
# "try again later" before "Video unavailable").
_ERROR_TABLE: tuple[tuple[str, type[DownloadError], str], ...] = (
    (r"larger than max-filesize|size cap|too large", DownloadTooLarge,
     "raise the size cap or skip this video"),
    (r"confirm you'?re not a bot|not a robot|BotDetection|HTTP Error 429|Too Many Requests"
     r"|try again later|rate.?limit",
     BotCheck, "the site is rate-limiting this machine: pause this download lane and retry later "
               "(or pass cookies)"),
    (r"confirm your age|age.?restricted|age.?gate|inappropriate for some users|AgeRestricted",
     AgeRestricted, "age-restricted videos need a signed-in account: drop it from the list"),
    (r"private video|VideoPrivate|members.?only|Join this channel|requires payment|premium members",
     VideoPrivate, "the owner restricted access: drop it from the list"),
    (r"not available in your country|not made this video available in your (country|location)"
     r"|geo.?restrict|not available from your location|RegionBlocked|blocked it in your country",
     GeoBlocked, "blocked in this machine's region: drop it or download from another region"),
    (r"Video unavailable|VideoUnavailable|has been removed|no longer available|account .*terminated"
     r"|This video does not exist|video is not available|recording is not available|live event will begin"
     r"|Premieres in|LiveStreamError|HTTP Error 410",
     VideoUnavailable, "the video is gone or not yet public: drop it from the list"),
    (r"Unsupported URL|No video formats found|no suitable formats|Requested format is not available"
     r"|HTTP Error 404|not a video|audio only|only audio|RegexMatchError|is not a valid URL",
     NotAVideo, "the address has no downloadable video: check the URL"),
    (r"timed? ?out|Connection refused|Connection reset|Connection aborted|Failed to establish"
     r"|Name or service not known|Temporary failure in name resolution|Failed to resolve|getaddrinfo"
     r"|Network is unreachable|No route to host|Remote end closed|IncompleteRead|ContentTooShort"
     r"|did not match the expected|Unable to download webpage|TransportError|SSL|EOF occurred"
     r"|HTTP Error 5\d\d|HTTP Error 403|urlopen error",
     NetworkError, "a network problem: it will be retried later"),
)
_COMPILED_ERROR_TABLE = tuple((re.compile(p, re.IGNORECASE), cls, advice) for p, cls, advice in _ERROR_TABLE)


def _clean_message(message: str) -> str:
    text = message.replace("\u2019", "'").replace("\u2018", "'").strip()
    text = re.sub(r"^(ERROR:\s*)+", "", text)
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # colour codes
    return re.sub(r"\s+", " ", text)


def classify_download_error(message: str) -> DownloadError:
    """Map a downloader's error message (yt-dlp's ``DownloadError`` text, or ``"<ExceptionClass>: <text>"``
    from pytubefix) to a :class:`DownloadError` subclass whose message says what to do.

    Unrecognised messages give a plain :class:`DownloadError` (reason ``download``, not retried).
    HTTP 404 maps to :class:`NotAVideo` (the address answered, with no video: the errors contract lists it
    there); 410 Gone to :class:`VideoUnavailable`; 429 to :class:`BotCheck`; 403 and 5xx to
    :class:`NetworkError` (YouTube answers 403 to expired or throttled media URLs).
    """
    text = _clean_message(message)
    for pattern, error_class, advice in _COMPILED_ERROR_TABLE:
        if pattern.search(text):
            return error_class(f"{text} ({advice})")
    return DownloadError(f"{text} (unclassified download failure: see the message; report it if it repeats)")


# --- cache and archive ----------------------------------------------------------------------------------


def cached_file(cache_dir: Path, video_id: str) -> Path | None:
    """The complete cached download of ``video_id``, or None."""
    for extension in _VIDEO_FILE_EXTENSIONS + tuple(_EXTENSION_BY_CONTAINER.values()):
        candidate = cache_dir / f"{video_id}{extension}"
        if candidate.is_file() and candidate.stat().st_size > 0:
            return candidate
    return None


def archived_ids(cache_dir: Path) -> set[str]:
    """Ids listed in ``cache_dir/download-archive.txt`` (empty when there is no archive)."""
    try:
        text = (cache_dir / ARCHIVE_NAME).read_text(encoding="utf-8")
    except FileNotFoundError:
        return set()
    return {line.split()[0] for line in text.splitlines() if line.strip()}


def _append_archive(cache_dir: Path, video_id: str, file_name: str) -> None:
    if video_id in archived_ids(cache_dir):
        return
    # One short write in append mode: lines from concurrent workers do not interleave.
    with open(cache_dir / ARCHIVE_NAME, "a", encoding="utf-8") as handle:
        handle.write(f"{video_id} {file_name}\n")


# --- yt-dlp ---------------------------------------------------------------------------------------------


def format_selector(max_height: int) -> str:
    """yt-dlp format selector: single-file formats (no merge, so no ffmpeg), at most ``max_height`` rows.

    Prefers an H.264 MP4 video track (fastest to decode; audio is not needed for pose), then any MP4, then
    any container; formats of unknown height pass the cap (``<=?``, e.g. a plain URL). When every format is
    taller than the cap, the smallest one with video is taken.
    """
    h = int(max_height)
    return "/".join(
        (
            f"bv[height<=?{h}][ext=mp4][vcodec^=avc1]",
            f"bv[height<=?{h}][ext=mp4]",
            f"b[height<=?{h}][ext=mp4]",
            f"bv*[height<=?{h}]",
            "wv*",
        )
    )


def find_deno() -> str | None:
    """Path of the Deno binary shipped by the ``deno`` PyPI package (yt-dlp's JS runtime for YouTube)."""
    try:
        import deno
    except ImportError:
        return None
    try:
        return deno.find_deno_bin()
    except (FileNotFoundError, OSError):
        return None


class _SizeCapExceeded(Exception):
    def __init__(self, num_bytes: int, max_bytes: int):
        super().__init__(f"the download is larger than the size cap ({num_bytes} bytes > {max_bytes} bytes)")


class _YtdlpLogger:
    """Routes yt-dlp's output to :mod:`logging` (it would otherwise print to stdout) and keeps the last
    messages: yt-dlp reports some refusals (a file over ``max_filesize``) only as a message."""

    def __init__(self, keep: int = 50):
        self.messages: list[str] = []
        self._keep = keep

    def _record(self, message: str) -> None:
        self.messages = (self.messages + [message])[-self._keep :]

    def debug(self, message: str) -> None:
        self._record(message)
        log.debug("yt-dlp: %s", message)

    def info(self, message: str) -> None:
        self.debug(message)

    def warning(self, message: str) -> None:
        self._record(message)
        log.info("yt-dlp: %s", message)

    def error(self, message: str) -> None:
        self.warning(message)


class _DeadlineExceeded(Exception):
    def __init__(self, deadline_s: float):
        super().__init__(f"the download took longer than its deadline of {deadline_s:g} s (a stalled or "
                         "trickling server)")


def _size_hook(max_bytes: int, deadline: float | None = None, deadline_s: float = 0.0) -> Callable[[dict], None]:
    """yt-dlp progress hook: stop at the size cap, and when ``time.monotonic()`` passes ``deadline``."""

    def hook(progress: dict) -> None:
        if deadline is not None and time.monotonic() > deadline:
            raise _DeadlineExceeded(deadline_s)
        for key in ("total_bytes", "downloaded_bytes"):
            value = progress.get(key)
            if value and value > max_bytes:
                raise _SizeCapExceeded(int(value), max_bytes)

    return hook


def ytdlp_options(
    work_dir: Path,
    video_id: str,
    *,
    max_height: int,
    socket_timeout_s: float,
    retries: int,
    max_bytes: int,
    deadline: float | None = None,
    deadline_s: float = 0.0,
) -> dict:
    """The ``yt_dlp.YoutubeDL`` parameters of one download into ``work_dir``.

    deadline: ``time.monotonic()`` value after which the progress hook aborts the transfer (None: no
    deadline); ``deadline_s`` is its length, for the message.
    """
    options: dict = {
        "format": format_selector(max_height),
        "outtmpl": {"default": str(work_dir / f"{video_id}.%(ext)s")},
        "noplaylist": True,
        "playlist_items": "1",  # a page with several videos: the first only
        "socket_timeout": socket_timeout_s,
        "retries": retries,
        "fragment_retries": retries,
        "extractor_retries": retries,
        "continuedl": True,
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "progress_hooks": [_size_hook(max_bytes, deadline, deadline_s)],
        "max_filesize": max_bytes,
        "color": {"stdout": "no_color", "stderr": "no_color"},
    }
    deno_bin = find_deno()
    if deno_bin is not None:
        options["js_runtimes"] = {"deno": {"path": deno_bin}}
    return options


def _download_ytdlp(item: VideoItem, work_dir: Path, options: dict) -> Path:
    try:
        import yt_dlp
    except ImportError as exc:
        raise MissingDependencyError(f"downloading needs yt-dlp: pip install yt-dlp yt-dlp-ejs ({exc})") from None
    logger = _YtdlpLogger()
    try:
        with yt_dlp.YoutubeDL({**options, "logger": logger}) as downloader:
            downloader.extract_info(item.uri, download=True)
    except _SizeCapExceeded as exc:
        raise DownloadTooLarge(f"{item.uri}: {exc}; raise max_bytes or skip this video") from None
    except _DeadlineExceeded as exc:
        raise NetworkError(f"{item.uri}: {exc}; it will be retried later, or raise download.deadline_s") from None
    except yt_dlp.utils.DownloadError as exc:
        raise classify_download_error(str(exc)) from None
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS):
            raise WriteError(f"{item.uri}: cannot write the download into {work_dir} ({exc})") from None
        raise NetworkError(f"{item.uri}: {exc}") from None
    produced = _finished_file(work_dir, item.video_id)
    if produced is None:
        # yt-dlp skips a file over max_filesize (known from Content-Length) with a message, not an exception.
        refusals = [m for m in logger.messages if "max-filesize" in m or "Skipping" in m or "Aborting" in m]
        detail = _clean_message(refusals[-1]) if refusals else "no message"
        error = classify_download_error(detail)
        if type(error) is DownloadError:
            error = DownloadError(f"{item.uri}: yt-dlp finished without producing a file ({detail})")
        raise error
    return produced


def _download_pytube(item: VideoItem, work_dir: Path, *, max_height: int, socket_timeout_s: float,
                     retries: int, max_bytes: int) -> Path:
    """Last-resort YouTube download with pytubefix: the tallest video stream of at most ``max_height``
    rows (MP4 preferred)."""
    try:
        from pytubefix import YouTube
    except ImportError as exc:
        raise MissingDependencyError(
            f"the pytube fallback needs pytubefix: pip install 'g1forge[pytube]' ({exc})"
        ) from None
    try:
        streams = [s for s in YouTube(item.uri).streams if s.includes_video_track and s.height]
        fitting = [s for s in streams if s.height <= max_height] or sorted(streams, key=lambda s: s.height)[:1]
        if not fitting:
            raise NotAVideo(f"{item.uri}: pytubefix found no video stream")
        stream = max(fitting, key=lambda s: (s.height, s.subtype == "mp4", (s.video_codec or "").startswith("avc1")))
        if stream.filesize and stream.filesize > max_bytes:
            raise DownloadTooLarge(f"{item.uri}: {stream.filesize} bytes > size cap {max_bytes} bytes")
        path = stream.download(
            output_path=str(work_dir),
            filename=f"{item.video_id}.{stream.subtype}",
            skip_existing=False,
            timeout=socket_timeout_s,
            max_retries=retries,
        )
    except DownloadError:
        raise
    except Exception as exc:  # pytubefix raises its own classes, urllib errors, KeyError on layout changes
        raise classify_download_error(f"{type(exc).__name__}: {exc}") from None
    if not path or not Path(path).is_file():
        raise DownloadError(f"{item.uri}: pytubefix returned no file")
    return Path(path)


def _finished_file(work_dir: Path, video_id: str) -> Path | None:
    """The file yt-dlp finished in ``work_dir`` (not a ``.part``/``.ytdl``/``.tmp`` working file)."""
    for candidate in sorted(work_dir.glob(f"{video_id}.*")):
        if candidate.suffix in (".part", ".ytdl", ".tmp", ".temp") or ".part-Frag" in candidate.name:
            continue
        if candidate.is_file() and candidate.stat().st_size > 0:
            return candidate
    return None


# --- verification and promotion --------------------------------------------------------------------------


def verify_video_file(path: Path, *, uri: str, max_bytes: int) -> str:
    """Check a finished download; return the extension it should be cached under.

    Raises :class:`DownloadTooLarge` over the cap and :class:`NotAVideo` when the bytes are not a video
    (an HTML page, text, an image, audio only, an unreadable container).
    """
    size_bytes = path.stat().st_size
    if size_bytes > max_bytes:
        raise DownloadTooLarge(f"{uri}: {size_bytes} bytes > size cap {max_bytes} bytes; raise max_bytes or skip it")
    with open(path, "rb") as handle:
        head = handle.read(512)
    container = sniff_container(head)
    if container in ("html", "text"):
        raise NotAVideo(f"{uri} answered with a {container} page, not a video: check the URL")
    try:
        probe_video(path)
    except AudioOnly:
        raise NotAVideo(f"{uri} holds only audio, no video track: drop it from the list") from None
    except ProbeError as exc:
        raise NotAVideo(f"{uri}: the downloaded file is not a readable video ({exc})") from None
    extension = path.suffix.lower()
    if extension not in _VIDEO_FILE_EXTENSIONS:
        extension = _EXTENSION_BY_CONTAINER.get(container or "", ".mp4")
    return extension


def _discard_work_dir(work_dir: Path, *, keep_partial: bool) -> None:
    """After a failure: keep resumable ``.part`` files for a retryable error, otherwise remove everything."""
    if keep_partial and any(work_dir.glob("*.part")):
        return
    shutil.rmtree(work_dir, ignore_errors=True)


def _promote(temp_path: Path, cache_dir: Path, video_id: str, extension: str) -> Path:
    final = cache_dir / f"{video_id}{extension}"
    os.replace(temp_path, final)
    _append_archive(cache_dir, video_id, final.name)
    return final


_NOT_WORTH_A_FALLBACK = (VideoPrivate, AgeRestricted, GeoBlocked, VideoUnavailable, DownloadTooLarge)


def download_video(
    item: VideoItem,
    cache_dir: str | os.PathLike[str],
    *,
    max_height: int = 720,
    socket_timeout_s: float = 30.0,
    retries: int = 3,
    retry_sleep_s: float = 2.0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    use_pytube_fallback: bool = False,
    deadline_s: float | None = None,
) -> Path:
    """Download ``item`` (kind ``youtube`` or ``url``) into ``cache_dir`` and return the cached file.

    max_height: cap on frame rows (see :func:`format_selector`).
    socket_timeout_s: per-request socket timeout, seconds.
    retries: yt-dlp's per-request and per-fragment retries, and also how many more whole attempts follow a
        retryable :class:`NetworkError` (waiting ``retry_sleep_s * 2**k`` seconds before attempt ``k+1``).
        Bot checks are not retried here: the caller should pause the lane.
    max_bytes: size cap of the downloaded file (:class:`DownloadTooLarge` above it).
    deadline_s: overall wall-clock limit of the download, seconds, retries and waits included (None: none).
        A server that keeps a connection alive by trickling bytes is stopped at the next progress report
        after the deadline (:class:`NetworkError`); no attempt or wait starts after it.
    use_pytube_fallback: for YouTube only, try pytubefix when yt-dlp fails for a reason other than the video
        itself (private, age-restricted, geo-blocked, unavailable, too large).

    A ``file`` item is returned as it is (after checking it exists). A cached download returns at once,
    without any network call.
    """
    if item.kind == "file":
        path = Path(item.uri)
        if not path.is_file():
            raise InputNotFound(f"{path} does not exist: check the path")
        return path
    if item.kind not in ("youtube", "url"):
        raise ConfigError(f"cannot download an item of kind {item.kind!r}: expected 'youtube' or 'url'")
    if not ID_PATTERN.match(item.video_id):
        raise ConfigError(f"video_id {item.video_id!r} is not a safe file name: build items with ingest.sources")

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    hit = cached_file(cache_dir, item.video_id)
    if hit is not None:
        return hit
    if item.video_id in archived_ids(cache_dir):
        log.info("%s is in the download archive but its file is gone: downloading it again", item.video_id)

    work_dir = cache_dir / PARTIAL_DIR_NAME / item.video_id
    work_dir.mkdir(parents=True, exist_ok=True)
    deadline = None if deadline_s is None else time.monotonic() + float(deadline_s)
    options = ytdlp_options(
        work_dir, item.video_id, max_height=max_height, socket_timeout_s=socket_timeout_s, retries=retries,
        max_bytes=max_bytes, deadline=deadline, deadline_s=float(deadline_s or 0.0),
    )

    error: DownloadError | None = None
    produced: Path | None = None
    for attempt in range(retries + 1):
        try:
            produced = _download_ytdlp(item, work_dir, options)
            error = None
            break
        except DownloadError as exc:
            error = exc
            if not isinstance(exc, NetworkError) or attempt == retries:
                break
            delay_s = retry_sleep_s * 2**attempt
            if deadline is not None and time.monotonic() + delay_s >= deadline:
                error = NetworkError(f"{exc} (gave up: the download deadline of {deadline_s:g} s is reached)")
                break
            log.info("%s: %s; attempt %d of %d in %.1f s", item.video_id, exc.reason, attempt + 2, retries + 1,
                     delay_s)
            time.sleep(delay_s)

    if error is not None and use_pytube_fallback and item.kind == "youtube" \
            and not isinstance(error, _NOT_WORTH_A_FALLBACK):
        log.info("%s: yt-dlp failed (%s); trying pytubefix", item.video_id, error.catalog_reason())
        try:
            produced = _download_pytube(item, work_dir, max_height=max_height, socket_timeout_s=socket_timeout_s,
                                        retries=retries, max_bytes=max_bytes)
            error = None
        except DownloadError as exc:
            error = exc
    if error is not None:
        _discard_work_dir(work_dir, keep_partial=error.retryable)
        raise error
    assert produced is not None

    try:
        extension = verify_video_file(produced, uri=item.uri, max_bytes=max_bytes)
    except DownloadError:
        _discard_work_dir(work_dir, keep_partial=False)  # never reuse bytes that failed the checks
        raise
    final = _promote(produced, cache_dir, item.video_id, extension)
    shutil.rmtree(work_dir, ignore_errors=True)
    return final
