"""One exception hierarchy for the whole project.

Every failure that can end a video, track or clip is a :class:`G1ForgeError` subclass with a stable
``reason`` code (stored in the catalog's ``reason`` column as ``"<reason>: <message>"``) and a ``status``
(``"failed"`` for errors, ``"filtered"`` for inputs that were read correctly but hold nothing usable).
``retryable`` marks infrastructure failures (network, rate limits) that a later attempt may fix; data
errors are recorded once and never retried.

Messages say what to do, not only what went wrong.
"""

from __future__ import annotations


class G1ForgeError(Exception):
    """Base class. ``reason`` is a short snake_case code from a fixed set (see subclasses)."""

    reason: str = "error"
    status: str = "failed"
    retryable: bool = False

    def __init__(self, message: str = "", *, reason: str | None = None):
        super().__init__(message)
        if reason is not None:
            self.reason = reason

    def catalog_reason(self) -> str:
        """The text stored in a catalog ``reason`` column: ``"<code>: <message>"``."""
        msg = str(self).strip().replace("\n", " ")
        return f"{self.reason}: {msg}" if msg else self.reason


# --- configuration and inputs -----------------------------------------------------------------------


class ConfigError(G1ForgeError):
    """A bad option or configuration value; the message names the valid choices."""

    reason = "config"


class MissingDependencyError(G1ForgeError):
    """An optional package is not installed; the message names the extra (``pip install 'g1forge[gpu]'``)."""

    reason = "missing_dependency"


class InputListError(G1ForgeError):
    """A list file (``--list``) that cannot be read: wrong format, missing ``uri`` column, bad JSON line."""

    reason = "bad_list"


class InputNotFound(G1ForgeError):
    """A local path that does not exist or is not a supported video file."""

    reason = "not_found"


# --- download ---------------------------------------------------------------------------------------


class DownloadError(G1ForgeError):
    """A remote video could not be fetched. Subclasses classify why."""

    reason = "download"


class VideoUnavailable(DownloadError):
    reason = "unavailable"


class VideoPrivate(DownloadError):
    reason = "private"


class AgeRestricted(DownloadError):
    reason = "age_restricted"


class GeoBlocked(DownloadError):
    reason = "geo_blocked"


class BotCheck(DownloadError):
    """The site asked to confirm we are not a bot: pause the lane, retry later."""

    reason = "bot_check"
    retryable = True


class NetworkError(DownloadError):
    """Connection refused, timeout, DNS failure, HTTP 5xx: retryable."""

    reason = "network"
    retryable = True


class NotAVideo(DownloadError):
    """The URL answered, but with no video (an HTML page without media, an image, HTTP 404)."""

    reason = "not_a_video"


class DownloadTooLarge(DownloadError):
    reason = "too_large"


# --- probing and decoding ---------------------------------------------------------------------------


class ProbeError(G1ForgeError):
    """The file is not a readable video (truncated, not a container, zero bytes)."""

    reason = "unreadable"


class AudioOnly(ProbeError):
    reason = "audio_only"


class BadTiming(ProbeError):
    """The video's frame count, duration and frame rate do not add up (a broken time base, e.g. an MP4 track whose
    ``mdhd`` timescale is 0): its frame times cannot be trusted. The message gives the numbers and how to re-mux."""

    reason = "bad_timing"


class DecodeError(G1ForgeError):
    """Decoding failed part way through a video."""

    reason = "decode"


# --- pose and motion --------------------------------------------------------------------------------


class BackendError(G1ForgeError):
    """A pose backend failed on this video (the message carries the backend's own exception)."""

    reason = "backend"


class BadResultFile(G1ForgeError):
    """A results file (e.g. a PHALP pickle) that is corrupt or not in the expected format."""

    reason = "bad_result_file"


class Filtered(G1ForgeError):
    """Not an error: the input was read but holds nothing usable (no person, clip too short, ...)."""

    reason = "filtered"
    status = "filtered"


class NoPerson(Filtered):
    reason = "no_person"


class RangeOutsideVideo(Filtered):
    """The list's ``start_s`` lies at or after the end of the video: there is no frame to process."""

    reason = "range_outside"


class TooShort(Filtered):
    reason = "too_short"


class LowConfidence(Filtered):
    reason = "low_confidence"


# --- infrastructure ---------------------------------------------------------------------------------


class WriteError(G1ForgeError):
    """Writing outputs failed (disk full, permission): the video fails, the run goes on."""

    reason = "write"
    retryable = True


class NoGPU(G1ForgeError):
    """A GPU backend was asked for where no GPU is available."""

    reason = "no_gpu"


class WorkerLost(G1ForgeError):
    """The worker process running a video died (OOM, node lost)."""

    reason = "worker_lost"
    retryable = True


def classify_exception(exc: BaseException) -> G1ForgeError:
    """Wrap any exception as a :class:`G1ForgeError` so it can become a catalog row.

    Our own errors pass through; anything else becomes ``internal: <Type>: <message>``.
    """
    if isinstance(exc, G1ForgeError):
        return exc
    if isinstance(exc, MemoryError):
        return G1ForgeError(f"out of memory: {exc}", reason="out_of_memory")
    if isinstance(exc, OSError) and getattr(exc, "errno", None) == 28:  # ENOSPC
        return WriteError(f"disk full: {exc}")
    return G1ForgeError(f"{type(exc).__name__}: {exc}", reason="internal")


def require_module(name: str, purpose: str, install: str):
    """Import ``name`` where it is needed (heavy dependencies stay out of package import).

    Raises :class:`MissingDependencyError` saying what needs it (``purpose``) and how to install it (``install``,
    a pip command).
    """
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise MissingDependencyError(f"{purpose} needs {name}: {install} ({exc})") from None
