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

Each yt-dlp attempt runs in a child process (kept warm between attempts of one worker) that is killed when the
download's deadline passes, so no server can hold a worker past it, however slowly it sends.

Errors are :class:`ingest.errors.DownloadError` subclasses chosen by :func:`classify_download_error`.
"""

from __future__ import annotations

import atexit
import errno
import logging
import os
import pickle
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import ingest.errors as _errors
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
        self.deadline_s = deadline_s
        super().__init__(f"the download took longer than its deadline of {deadline_s:g} s (a stalled or "
                         "trickling server)")


class _ProgressGuard:
    """yt-dlp progress hook: stop at the size cap, and when ``time.monotonic()`` passes ``deadline``.

    A class rather than a closure so that the options holding it can be pickled into the download's child
    process; ``time.monotonic()`` is the system-wide monotonic clock, the same in parent and child. Progress
    reports come once per read block, so this is the early, clean stop; the hard stop is the parent killing
    the child at the deadline (:func:`_download_ytdlp`).
    """

    def __init__(self, max_bytes: int, deadline: float | None = None, deadline_s: float = 0.0):
        self.max_bytes = int(max_bytes)
        self.deadline = deadline
        self.deadline_s = float(deadline_s)

    def __call__(self, progress: dict) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise _DeadlineExceeded(self.deadline_s)
        for key in ("total_bytes", "downloaded_bytes"):
            value = progress.get(key)
            if value and value > self.max_bytes:
                raise _SizeCapExceeded(int(value), self.max_bytes)


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

    deadline: ``time.monotonic()`` value after which the transfer is stopped (None: no deadline): the progress
    hook aborts it at the next report, and :func:`_download_ytdlp` kills the attempt's process at the latest;
    ``deadline_s`` is its length, for the message. Every value is picklable (the options travel to a child
    process).
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
        "progress_hooks": [_ProgressGuard(max_bytes, deadline, deadline_s)],
        "max_filesize": max_bytes,
        "color": {"stdout": "no_color", "stderr": "no_color"},
    }
    deno_bin = find_deno()
    if deno_bin is not None:
        options["js_runtimes"] = {"deno": {"path": deno_bin}}
    return options


def _deadline_error(item: VideoItem, deadline_s: float) -> NetworkError:
    return NetworkError(f"{item.uri}: {_DeadlineExceeded(deadline_s)}; it will be retried later, or raise "
                        "download.deadline_s")


def _run_ytdlp(item: VideoItem, work_dir: Path, options: dict, logger: _YtdlpLogger) -> Path:
    """One yt-dlp download attempt in this process (the body of the child process of :func:`_download_ytdlp`)."""
    try:
        import yt_dlp
    except ImportError as exc:
        raise MissingDependencyError(f"downloading needs yt-dlp: pip install yt-dlp yt-dlp-ejs ({exc})") from None
    try:
        with yt_dlp.YoutubeDL({**options, "logger": logger}) as downloader:
            downloader.extract_info(item.uri, download=True)
    except _SizeCapExceeded as exc:
        raise DownloadTooLarge(f"{item.uri}: {exc}; raise max_bytes or skip this video") from None
    except _DeadlineExceeded as exc:
        raise _deadline_error(item, exc.deadline_s) from None
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


# --- attempts in a child process ------------------------------------------------------------------------

_CHILD_CODE = "import sys; sys.path.insert(0, sys.argv[1]); from ingest.download import _attempt_child_main; " \
              "_attempt_child_main()"
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])  # the folder holding ``ingest/``: the child imports it
KILL_GRACE_S = 2.0
"""Seconds a download process gets to exit after SIGTERM before SIGKILL."""
STARTUP_TIMEOUT_S = 120.0
"""Seconds a new download process may take to start (import yt-dlp) before it is given up as broken."""
_READY = ("ready",)  # the first message of every download process: it has started and imported yt-dlp
_HEADER = struct.Struct(">Q")  # length prefix of every pickled message between parent and child


def _deadline_of(options: dict) -> tuple[float | None, float]:
    """The ``(deadline, deadline_s)`` that :func:`ytdlp_options` put into the options' progress guard."""
    for hook in options.get("progress_hooks", ()):
        if isinstance(hook, _ProgressGuard):
            return hook.deadline, hook.deadline_s
    return None, 0.0


def _watch_parent(parent_pid: int, poll_s: float = 0.5) -> None:
    """Exit this (child) process as soon as its parent is gone: a worker killed mid-download must not leave an
    orphan transfer running for ever (the child has its own session, so the parent's signals miss it)."""
    while True:
        time.sleep(poll_s)
        if os.getppid() != parent_pid:
            os._exit(3)


def _attempt_result(payload: dict) -> tuple:
    """Run one attempt; ``("ok", path, messages)`` or ``("error", error class name, message, messages)``."""
    item: VideoItem = payload["item"]
    logger = _YtdlpLogger()
    try:
        produced = _run_ytdlp(item, Path(payload["work_dir"]), payload["options"], logger)
        return ("ok", str(produced), logger.messages)
    except _errors.G1ForgeError as exc:
        return ("error", type(exc).__name__, str(exc), logger.messages)
    except Exception as exc:  # a yt-dlp bug or an unexpected extractor failure: still one classified error
        error = classify_download_error(f"{type(exc).__name__}: {exc}")
        return ("error", type(error).__name__, str(error), logger.messages)


def _attempt_child_main() -> None:
    """Entry of a download process (``python -c _CHILD_CODE <package root> <parent pid>``): answer attempts one
    at a time, each a length-prefixed pickle on stdin, with a length-prefixed pickled result on the original
    stdout (anything printed goes to stderr instead); exit at the end of stdin."""
    parent_pid = int(sys.argv[2])
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    requests = sys.stdin.buffer
    try:  # pay the start-up (importing yt-dlp) before the parent starts any deadline clock
        import yt_dlp  # noqa: F401
    except ImportError:
        pass  # the attempt reports the missing dependency with its fix
    ready = pickle.dumps(_READY)
    answers.write(_HEADER.pack(len(ready)) + ready)
    answers.flush()
    while True:
        header = requests.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return
        payload = pickle.loads(requests.read(_HEADER.unpack(header)[0]))
        data = pickle.dumps(_attempt_result(payload))
        answers.write(_HEADER.pack(len(data)) + data)
        answers.flush()


def _stop_process_group(proc: subprocess.Popen) -> None:
    """SIGTERM the download process and everything it started (its session: yt-dlp's Deno helper), SIGKILL
    after :data:`KILL_GRACE_S`, and reap it."""
    for sig, wait_s in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
        if sig == signal.SIGTERM:
            try:  # stragglers of the group that outlived the leader
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        return


class _AttemptProcess:
    """A child process that runs download attempts one at a time (see :func:`_download_ytdlp`).

    It keeps yt-dlp imported and its extractor patterns compiled between attempts (about 0.5 s of CPU the first
    time, mostly matching a URL against ~1800 extractors), so after the first download of a worker an attempt
    costs what it cost in-process. Its stderr goes to an anonymous temporary file, read back if it crashes.
    """

    def __init__(self) -> None:
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD_CODE, _PACKAGE_ROOT, str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, timeout_s: float = STARTUP_TIMEOUT_S) -> bool:
        """Wait for the process's start-up message (once); False when it ended or did not start in time."""
        if getattr(self, "_ready", False):
            return True
        try:
            header = self._read_exactly(_HEADER.size, time.monotonic() + timeout_s)
            body = None if header is None else self._read_exactly(_HEADER.unpack(header)[0],
                                                                  time.monotonic() + timeout_s)
        except subprocess.TimeoutExpired:
            return False
        self._ready = body is not None and pickle.loads(body) == _READY
        return self._ready

    def run(self, payload: bytes, deadline: float | None) -> tuple | None:
        """Send one attempt and wait for its answer until ``deadline`` (``time.monotonic()``, None = no limit).

        Returns the answer, or None when the process ended without one; raises ``subprocess.TimeoutExpired``
        at the deadline (the process is then still running: :meth:`stop` it).
        """
        try:
            self.proc.stdin.write(_HEADER.pack(len(payload)) + payload)
            self.proc.stdin.flush()
        except OSError:  # it already ended
            return None
        if not self.wait_ready():
            return None
        header = self._read_exactly(_HEADER.size, deadline)
        if header is None:
            return None
        body = self._read_exactly(_HEADER.unpack(header)[0], deadline)
        if body is None:
            return None
        return pickle.loads(body)

    def _read_exactly(self, num_bytes: int, deadline: float | None) -> bytes | None:
        fd = self.proc.stdout.fileno()
        chunks, got = [], 0
        while got < num_bytes:
            wait_s = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([fd], [], [], wait_s)
            if not ready:
                raise subprocess.TimeoutExpired(self.proc.args, wait_s or 0.0)
            chunk = os.read(fd, num_bytes - got)
            if not chunk:
                return None
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def stop(self) -> None:
        """Kill it (and what it started) and release its pipes."""
        _stop_process_group(self.proc)
        self._release()

    def close(self) -> None:
        """Let an idle process end on its own (end of stdin); kill it if it does not within the grace."""
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=KILL_GRACE_S)
        except (OSError, subprocess.TimeoutExpired):
            _stop_process_group(self.proc)
        self._release()

    def _release(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout, self.stderr):
            try:
                stream.close()
            except OSError:
                pass

    def ended_message(self) -> str:
        """Exit status and the end of stderr of a process that ended without answering."""
        try:
            returncode = self.proc.wait(timeout=KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            _stop_process_group(self.proc)
            returncode = self.proc.returncode
        try:
            self.stderr.seek(0, os.SEEK_END)
            self.stderr.seek(max(0, self.stderr.tell() - 500))
            tail = _clean_message(self.stderr.read().decode("utf-8", "replace")) or "no output"
        except (OSError, ValueError):
            tail = "no output"
        self._release()
        return f"exit code {returncode} without a result ({tail})"


_idle_processes: list[_AttemptProcess] = []
_idle_lock = threading.Lock()
_idle_owner_pid = os.getpid()


def _take_process() -> _AttemptProcess:
    """An idle attempt process of this process, or a new one."""
    global _idle_owner_pid
    with _idle_lock:
        if _idle_owner_pid != os.getpid():  # a forked copy of this module: those children are not ours
            _idle_processes.clear()
            _idle_owner_pid = os.getpid()
        while _idle_processes:
            candidate = _idle_processes.pop()
            if candidate.alive():
                return candidate
            candidate.close()
    return _AttemptProcess()


def _give_back(process: _AttemptProcess) -> None:
    with _idle_lock:
        if _idle_owner_pid == os.getpid() and process.alive():
            _idle_processes.append(process)
            return
    process.close()


def close_download_processes() -> None:
    """End the idle download processes of this process (also done at exit)."""
    with _idle_lock:
        idle = list(_idle_processes)
        _idle_processes.clear()
    for process in idle:
        process.close()


atexit.register(close_download_processes)


def _clear_work_dir(work_dir: Path) -> None:
    """Remove what a killed attempt left (its partial file cannot be trusted to resume)."""
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True, exist_ok=True)


def _error_from_child(name: str, message: str) -> _errors.G1ForgeError:
    cls = getattr(_errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, _errors.G1ForgeError)):
        cls = DownloadError
    return cls(message)


def _download_ytdlp(item: VideoItem, work_dir: Path, options: dict) -> Path:
    """One yt-dlp attempt, run in a child process that is killed when the options' deadline passes.

    The child (``python -c`` with an argument list, its own session, importing only this module and yt-dlp)
    gets ``(item, work_dir, options)`` pickled and answers with the file or the classified error; it stays
    alive for the next attempt of this process. At the deadline its whole process group gets SIGTERM, then
    SIGKILL after :data:`KILL_GRACE_S`, the work folder is emptied and :class:`NetworkError` (reason
    ``network``, the same as the progress hook's deadline stop) is raised. A trickling server therefore holds a
    worker for at most the deadline plus the grace, however rarely yt-dlp reports progress.
    """
    deadline, deadline_s = _deadline_of(options)
    if deadline is not None and time.monotonic() >= deadline:
        raise _deadline_error(item, deadline_s)
    payload = pickle.dumps({"item": item, "work_dir": str(work_dir), "options": options})
    process = _take_process()
    try:
        result = process.run(payload, deadline)
    except subprocess.TimeoutExpired:
        process.stop()
        _clear_work_dir(work_dir)
        log.info("%s: download process killed at the deadline of %g s", item.video_id, deadline_s)
        raise _deadline_error(item, deadline_s) from None
    except BaseException:  # interrupted (Ctrl-C in the parent): never leave the transfer running
        process.stop()
        raise
    if not isinstance(result, tuple) or not result:
        raise DownloadError(f"{item.uri}: the download process ended with {process.ended_message()}; report it "
                            "if it repeats")
    _give_back(process)
    for message in result[-1]:
        log.debug("yt-dlp: %s", message)
    if result[0] == "ok":
        return Path(result[1])
    raise _error_from_child(result[1], result[2])


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
        Each yt-dlp attempt runs in a child process killed at the deadline, so a server that keeps a
        connection alive by trickling bytes holds the download for at most the deadline plus
        :data:`KILL_GRACE_S` (:class:`NetworkError`, the partial file removed); no attempt, wait or fallback
        starts after it.
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
    warm = _take_process()  # the deadline is the server's: our download process's start-up does not count
    if warm.wait_ready():
        _give_back(warm)
    else:
        warm.close()
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

    past_deadline = deadline is not None and time.monotonic() >= deadline
    if error is not None and use_pytube_fallback and item.kind == "youtube" and not past_deadline \
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
