"""Deterministic ids for inputs: the unit of resume and the name of every output folder.

==========  ====================================  ===================================================
kind        id                                    derived from
==========  ====================================  ===================================================
youtube     ``yt-<11-char video id>``             the ``v`` parameter / path segment of the link
url         ``url-<16 hex>``                      sha256 of the canonical URL (:func:`canonical_url`)
file        ``file-<16 hex>``                     the file's size and content samples (:func:`file_id`)
bad entry   ``bad-<16 hex>``                      sha256 of the entry text (:func:`bad_entry_id`)
==========  ====================================  ===================================================

Ids only contain ``[A-Za-z0-9_-]``: they are used as path components.
"""

from __future__ import annotations

import hashlib
import os
import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ingest.errors import InputListError

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")
"""Every id matches this."""

KINDS = ("file", "youtube", "url")

# Content sampling for local files: size + first, middle and last chunk.
FILE_SAMPLE_BYTES = 1 << 20
_HEX_CHARS = 16

_YOUTUBE_ID = re.compile(r"^[A-Za-z0-9_-]{11}$")
_YOUTUBE_HOSTS = frozenset(
    {
        "youtube.com",
        "www.youtube.com",
        "m.youtube.com",
        "music.youtube.com",
        "gaming.youtube.com",
        "youtube-nocookie.com",
        "www.youtube-nocookie.com",
    }
)
_YOUTU_BE_HOSTS = frozenset({"youtu.be", "www.youtu.be"})
# Path prefixes that are followed by the video id: /shorts/<id>, /embed/<id>, ...
_YOUTUBE_ID_PATH_PREFIXES = ("shorts", "embed", "live", "v", "e")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _short_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:_HEX_CHARS]


def _host(uri: str) -> str | None:
    """Lower-case host name of an http(s) URL, or None for anything else."""
    try:
        parts = urlsplit(uri.strip())
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https"):
        return None
    return parts.hostname


def classify_uri(uri: str) -> str:
    """``"youtube"`` for YouTube links, ``"url"`` for other http(s) URLs, ``"file"`` for everything else
    (local paths; whether they exist, and other URL schemes, are checked by :mod:`ingest.sources`)."""
    host = _host(uri)
    if not host:
        return "file"
    if host in _YOUTUBE_HOSTS or host in _YOUTU_BE_HOSTS:
        return "youtube"
    return "url"


def is_http_url(uri: str) -> bool:
    """True for ``http://`` and ``https://`` URLs with a host."""
    return classify_uri(uri) != "file"


def is_youtube_url(uri: str) -> bool:
    """True when the URL's host is a YouTube host (whether or not it names one video)."""
    return classify_uri(uri) == "youtube"


def youtube_video_id(uri: str) -> str | None:
    """The 11-character video id of a YouTube link, or None when the link names no single video.

    Understands ``watch?v=``, ``youtu.be/<id>``, ``/shorts/``, ``/embed/``, ``/live/``, ``/v/``, the ``m.``,
    ``music.`` and ``youtube-nocookie.com`` hosts, and extra query parameters (``&t=42s``, ``&list=...``).
    """
    if not is_youtube_url(uri):
        return None
    parts = urlsplit(uri.strip())
    host = parts.hostname or ""
    segments = [s for s in parts.path.split("/") if s]
    candidate: str | None = None
    if host in _YOUTU_BE_HOSTS:
        candidate = segments[0] if segments else None
    elif segments and segments[0] == "watch":
        candidate = dict(parse_qsl(parts.query)).get("v")
    elif len(segments) >= 2 and segments[0] in _YOUTUBE_ID_PATH_PREFIXES:
        candidate = segments[1]
    elif not segments:  # youtube.com/?v=<id>
        candidate = dict(parse_qsl(parts.query)).get("v")
    if candidate and _YOUTUBE_ID.match(candidate):
        return candidate
    return None


def canonical_url(url: str) -> str:
    """The canonical form of an http(s) URL, so that spellings of one address share an id.

    Lower-cases the scheme and host, drops the default port (80 for http, 443 for https) and the fragment,
    sorts the query parameters (keeping blank values and repeated keys), and writes an empty path as ``/``.
    The path keeps its case (servers treat it as case-sensitive).
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        netloc = f"{host}:{port}"
    if parts.username is not None:
        userinfo = parts.username + (f":{parts.password}" if parts.password is not None else "")
        netloc = f"{userinfo}@{netloc}"
    query = urlencode(sorted(parse_qsl(parts.query, keep_blank_values=True)))
    path = parts.path or "/"
    return urlunsplit((scheme, netloc, path, query, ""))


def url_id(url: str) -> str:
    """``url-<16 hex>``: the first 16 hex digits of sha256 of :func:`canonical_url`."""
    return "url-" + _short_hash(canonical_url(url).encode("utf-8"))


def file_id(path: str | os.PathLike[str]) -> str:
    """``file-<16 hex>`` from the file's content, so the same file listed from another path or machine gets
    the same id.

    Multi-GB files are not read whole: the hash covers the size in bytes plus the first, middle and last
    1 MiB (:data:`FILE_SAMPLE_BYTES`); files of 3 MiB or less are hashed whole. Two files that differ only
    outside those samples (same size) would share an id, which does not happen for real encoded videos.
    Raises ``OSError`` if the file cannot be read.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        size_bytes = os.fstat(handle.fileno()).st_size
        digest.update(b"g1forge-file-v1:%d:" % size_bytes)
        if size_bytes <= 3 * FILE_SAMPLE_BYTES:
            digest.update(handle.read())
        else:
            for offset in (0, (size_bytes - FILE_SAMPLE_BYTES) // 2, size_bytes - FILE_SAMPLE_BYTES):
                handle.seek(offset)
                digest.update(handle.read(FILE_SAMPLE_BYTES))
    return "file-" + digest.hexdigest()[:_HEX_CHARS]


def bad_entry_id(entry_text: str) -> str:
    """``bad-<16 hex>`` for an entry that could not be understood, from its text (stable across runs)."""
    return "bad-" + _short_hash(entry_text.strip().encode("utf-8", errors="surrogatepass"))


def remote_video_id(uri: str) -> str:
    """The id of a YouTube link or http(s) URL.

    Raises :class:`InputListError` for a YouTube link that names no single video (a channel, playlist or
    search page): those must be expanded into video links first.
    """
    kind = classify_uri(uri)
    if kind == "youtube":
        video = youtube_video_id(uri)
        if video is None:
            raise InputListError(
                f"{uri!r} is a YouTube link without a video id (a channel, playlist or search page?): "
                "list the individual video links (https://www.youtube.com/watch?v=<id>)"
            )
        return "yt-" + video
    if kind == "url":
        return url_id(uri)
    raise InputListError(f"{uri!r} is not an http(s) URL")


def video_id_for(uri: str) -> str:
    """The id of any input: a local path (read for :func:`file_id`), a YouTube link or a URL."""
    if classify_uri(uri) == "file":
        return file_id(uri)
    return remote_video_id(uri)
