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

A URI is split once per call: :func:`kind_and_id` gives the kind and the id of a URL together (collecting a list
of 100,000 URLs calls it once per line), and the other functions share the same private helpers. Plain http(s)
URLs (the usual ``https://cdn.example.com/v/1.mp4?sig=...``) are split by a regular expression
(:func:`_split_plain_http`) instead of ``urllib.parse.urlsplit``, which gives the same parts for them; anything
else still goes through ``urlsplit``.
"""

from __future__ import annotations

import hashlib
import os
import re
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

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
# A query that parse_qsl + urlencode give back unchanged but for the order: name=value pairs of unreserved
# characters (never quoted by urlencode, no "+" or "%" for parse_qsl to decode), joined by "&".
_PLAIN_QUERY = re.compile(r"[A-Za-z0-9_.~-]+=[A-Za-z0-9_.~-]*(?:&[A-Za-z0-9_.~-]+=[A-Za-z0-9_.~-]*)*")
# A plain http(s) URL (see _split_plain_http): the generic split of RFC 3986 appendix B,
# ^(([^:/?#]+):)?(//([^/?#]*))?([^?#]*)(\?([^#]*))?(#(.*))?, narrowed to an http/https scheme (any case), a host of
# letters, digits and "._~-" only (no user info "@", port ":", IPv6 "[", percent-escape or non-ASCII), and a path,
# query and fragment of printable ASCII other than space (\x21-\x7e: no whitespace or control characters, which
# urlsplit strips or removes). Groups: scheme, host, path ("" or starting with "/"), query, fragment.
_PLAIN_HTTP_URL = re.compile(
    r"([Hh][Tt][Tt][Pp][Ss]?)://([A-Za-z0-9._~-]+)(/[\x21-\x22\x24-\x3e\x40-\x7e]*)?"
    r"(?:\?([\x21-\x22\x24-\x7e]*))?(?:#([\x21-\x7e]*))?"
)


def _short_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:_HEX_CHARS]


def _split_plain_http(url: str) -> SplitResult | None:
    """``urlsplit(url)`` for a plain http(s) URL, without ``urlsplit``; None for any other text.

    Why: ``urlsplit`` was the largest single cost of collecting a list of 100,000 URLs (~3 us per URL with the
    host name: argument coercion, stripping, an LRU cache that large lists only miss, netloc scans); one regular
    expression match gives the same parts and host name in ~0.9 us (0.28 s less CPU per 100,000 URLs).

    When: only for text that :data:`_PLAIN_HTTP_URL` matches whole, where ``urlsplit`` has nothing special to do
    (no characters to strip or remove, no user info, port, IPv6 literal, percent sign or non-ASCII character in
    the host); the scheme is lower-cased as ``urlsplit`` does. Everything else (including every other scheme and
    every local path) returns None and is split by ``urlsplit``. tests/test_ids.py checks that the parts equal
    ``urlsplit``'s on a fuzzed corpus that includes those tricky characters.
    """
    match = _PLAIN_HTTP_URL.fullmatch(url)
    if match is None:
        return None
    scheme, host, path, query, fragment = match.groups("")
    return SplitResult(scheme.lower(), host, path, query, fragment)


def _split_http(uri: str) -> tuple[SplitResult, str] | None:
    """``(urlsplit parts, lower-case host name)`` of an http(s) URL with a host, or None for anything else (a
    local path, another scheme, a string ``urlsplit`` rejects).

    :func:`classify_uri`, :func:`youtube_video_id` and :func:`kind_and_id` start here and hand these parts on to
    the private helpers below instead of splitting the text again. Plain URLs take :func:`_split_plain_http`.
    """
    uri = uri.strip()
    parts = _split_plain_http(uri)
    if parts is not None:  # a plain http(s) URL: its host is the netloc, lower-cased
        return parts, parts.netloc.lower()
    try:
        parts = urlsplit(uri)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https"):
        return None
    host = parts.hostname
    if not host:
        return None
    return parts, host


def _remote_kind(host: str) -> str:
    """``"youtube"`` for a YouTube host name, ``"url"`` for any other."""
    return "youtube" if host in _YOUTUBE_HOSTS or host in _YOUTU_BE_HOSTS else "url"


def classify_uri(uri: str) -> str:
    """``"youtube"`` for YouTube links, ``"url"`` for other http(s) URLs, ``"file"`` for everything else
    (local paths; whether they exist, and other URL schemes, are checked by :mod:`ingest.sources`)."""
    split = _split_http(uri)
    return "file" if split is None else _remote_kind(split[1])


def is_http_url(uri: str) -> bool:
    """True for ``http://`` and ``https://`` URLs with a host."""
    return classify_uri(uri) != "file"


def is_youtube_url(uri: str) -> bool:
    """True when the URL's host is a YouTube host (whether or not it names one video)."""
    return classify_uri(uri) == "youtube"


def _youtube_video_id_of(parts: SplitResult, host: str) -> str | None:
    """The 11-character video id in the split parts of a YouTube link (see :func:`youtube_video_id`)."""
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


def youtube_video_id(uri: str) -> str | None:
    """The 11-character video id of a YouTube link, or None when the link names no single video.

    Understands ``watch?v=``, ``youtu.be/<id>``, ``/shorts/``, ``/embed/``, ``/live/``, ``/v/``, the ``m.``,
    ``music.`` and ``youtube-nocookie.com`` hosts, and extra query parameters (``&t=42s``, ``&list=...``).
    """
    split = _split_http(uri)
    if split is None or _remote_kind(split[1]) != "youtube":
        return None
    return _youtube_video_id_of(*split)


def _port_number(parts: SplitResult) -> int | None:
    """The explicit port of the split URL, or None when it has none or an invalid one (not a number, > 65535)."""
    if ":" not in parts.netloc:  # no port: skip parsing the host part again
        return None
    try:
        return parts.port
    except ValueError:
        return None


def _canonical_query(query: str) -> str:
    """The query string with its parameters sorted by (name, value), blank values and repeated names kept.

    In general that is ``urlencode(sorted(parse_qsl(query, keep_blank_values=True)))``, which also re-quotes
    each name and value. A query made only of ``name=value`` pairs of unreserved characters (letters, digits,
    ``_.-~``: the common ``?sig=123&t=4``) comes out of that round trip unchanged but for the order, so its
    ``[name, value]`` pairs are sorted directly, 3-6 times faster.
    """
    if not query:
        return ""
    if _PLAIN_QUERY.fullmatch(query):
        if "&" not in query:  # one parameter: nothing to sort
            return query
        pairs = sorted([pair.split("=") for pair in query.split("&")])
        return "&".join(["=".join(pair) for pair in pairs])
    return urlencode(sorted(parse_qsl(query, keep_blank_values=True)))


def _canonical_url_of(parts: SplitResult, host: str) -> str:
    """The canonical form (see :func:`canonical_url`) of a split URL whose lower-case host name is ``host``."""
    scheme = parts.scheme.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host
    port = _port_number(parts)
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        netloc = f"{host}:{port}"
    if "@" in parts.netloc:  # user info (parts.username is None without an "@")
        userinfo = parts.username + (f":{parts.password}" if parts.password is not None else "")
        netloc = f"{userinfo}@{netloc}"
    query = _canonical_query(parts.query)
    path = parts.path or "/"
    if scheme and netloc and path[0] == "/":  # what urlunsplit writes for these parts, minus its overhead
        return f"{scheme}://{netloc}{path}?{query}" if query else f"{scheme}://{netloc}{path}"
    return urlunsplit((scheme, netloc, path, query, ""))


def canonical_url(url: str) -> str:
    """The canonical form of an http(s) URL, so that spellings of one address share an id.

    Lower-cases the scheme and host, drops the default port (80 for http, 443 for https) and the fragment,
    sorts the query parameters (keeping blank values and repeated keys), and writes an empty path as ``/``.
    The path keeps its case (servers treat it as case-sensitive).
    """
    parts = urlsplit(url.strip())
    return _canonical_url_of(parts, parts.hostname or "")


def _url_id_of(parts: SplitResult, host: str) -> str:
    """:func:`url_id` of a split URL."""
    return "url-" + _short_hash(_canonical_url_of(parts, host).encode("utf-8"))


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


def kind_and_id(uri: str) -> tuple[str, str | None]:
    """``(kind, id)`` of a URI from one parse of its text: what :func:`classify_uri` and :func:`remote_video_id`
    give, without splitting the URL once for each (collecting a 100,000-line list calls this once per line).

    Returns ``("youtube", "yt-<id>")`` or ``("url", "url-<16 hex>")`` for a remote input, and ``("file", None)``
    for anything else: a local file's id is a content hash (:func:`file_id`), read only once the path is resolved
    and known to be a file. Raises :class:`InputListError` for a YouTube link that names no single video.
    """
    split = _split_http(uri)
    if split is None:
        return "file", None
    kind = _remote_kind(split[1])
    if kind == "youtube":
        video = _youtube_video_id_of(*split)
        if video is None:
            raise InputListError(
                f"{uri!r} is a YouTube link without a video id (a channel, playlist or search page?): "
                "list the individual video links (https://www.youtube.com/watch?v=<id>)"
            )
        return kind, "yt-" + video
    return kind, _url_id_of(*split)


def remote_video_id(uri: str) -> str:
    """The id of a YouTube link or http(s) URL.

    Raises :class:`InputListError` for a YouTube link that names no single video (a channel, playlist or
    search page): those must be expanded into video links first.
    """
    _, video_id = kind_and_id(uri)
    if video_id is None:
        raise InputListError(f"{uri!r} is not an http(s) URL")
    return video_id


def video_id_for(uri: str) -> str:
    """The id of any input: a local path (read for :func:`file_id`), a YouTube link or a URL."""
    _, video_id = kind_and_id(uri)
    return file_id(uri) if video_id is None else video_id
