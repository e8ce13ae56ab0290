"""Deterministic ids: YouTube links, canonical URLs, content-hashed files."""

from __future__ import annotations

import builtins
import random
import string
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

from ingest import ids
from ingest.errors import InputListError
from ingest.ids import (
    FILE_SAMPLE_BYTES,
    ID_PATTERN,
    bad_entry_id,
    canonical_url,
    classify_uri,
    file_id,
    kind_and_id,
    remote_video_id,
    url_id,
    video_id_for,
    youtube_video_id,
)

VIDEO = "dQw4w9WgXcQ"


@pytest.mark.parametrize(
    "link",
    [
        f"https://www.youtube.com/watch?v={VIDEO}",
        f"http://youtube.com/watch?v={VIDEO}",
        f"https://www.youtube.com/watch?v={VIDEO}&t=42s&list=PL123&index=3",
        f"https://www.youtube.com/watch?feature=share&v={VIDEO}",
        f"https://m.youtube.com/watch?v={VIDEO}",
        f"https://music.youtube.com/watch?v={VIDEO}&si=abc",
        f"https://youtu.be/{VIDEO}",
        f"https://youtu.be/{VIDEO}?si=xyz&t=10",
        f"https://www.youtube.com/shorts/{VIDEO}",
        f"https://youtube.com/shorts/{VIDEO}?feature=share",
        f"https://www.youtube.com/embed/{VIDEO}?start=5",
        f"https://www.youtube-nocookie.com/embed/{VIDEO}",
        f"https://www.youtube.com/live/{VIDEO}?si=1",
        f"https://www.youtube.com/v/{VIDEO}",
        f"https://WWW.YouTube.com/watch?v={VIDEO}#comments",
        f"  https://www.youtube.com/watch?v={VIDEO}  ",
    ],
)
def test_youtube_links_give_the_video_id(link):
    assert classify_uri(link) == "youtube"
    assert youtube_video_id(link) == VIDEO
    assert remote_video_id(link) == f"yt-{VIDEO}"


@pytest.mark.parametrize(
    "link",
    [
        "https://www.youtube.com/playlist?list=PL590L5WQmH8fJ54F369BLDSqIwcs-TCfs",
        "https://www.youtube.com/@SomeChannel",
        "https://www.youtube.com/channel/UC38IQsAvIsxxjztdMZQtwHA",
        "https://www.youtube.com/results?search_query=running",
        "https://www.youtube.com/watch?v=tooShort",
        "https://youtu.be/",
    ],
)
def test_youtube_links_without_a_video_raise_a_clear_error(link):
    assert classify_uri(link) == "youtube"
    assert youtube_video_id(link) is None
    with pytest.raises(InputListError, match="without a video id"):
        remote_video_id(link)


def test_classify_uri():
    assert classify_uri("/data/clip.mp4") == "file"
    assert classify_uri("clips/a.MOV") == "file"
    assert classify_uri("https://example.com/a.mp4") == "url"
    assert classify_uri("HTTP://Example.com/a.mp4") == "url"
    assert classify_uri("https://notyoutube.com/watch?v=" + VIDEO) == "url"
    assert classify_uri("https://youtu.be/" + VIDEO) == "youtube"


def test_canonical_url_merges_spellings_of_one_address():
    spellings = [
        "https://Example.COM/videos/Run.mp4?b=2&a=1",
        "HTTPS://example.com:443/videos/Run.mp4?a=1&b=2",
        "https://example.com/videos/Run.mp4?a=1&b=2#t=10",
    ]
    assert {canonical_url(s) for s in spellings} == {"https://example.com/videos/Run.mp4?a=1&b=2"}
    assert len({url_id(s) for s in spellings}) == 1
    # the path keeps its case, a non-default port and the scheme matter
    assert url_id("https://example.com/videos/run.mp4?a=1&b=2") != url_id(spellings[0])
    assert canonical_url("http://example.com:8080/x") == "http://example.com:8080/x"
    assert canonical_url("http://example.com:80") == "http://example.com/"
    assert url_id("http://example.com/x") != url_id("https://example.com/x")
    # repeated and blank parameters are kept
    assert canonical_url("http://h/p?b=&a=2&a=1") == "http://h/p?a=1&a=2&b="


def test_url_id_format():
    video_id = url_id("https://example.com/a.mp4")
    assert video_id.startswith("url-") and len(video_id) == 4 + 16
    assert ID_PATTERN.match(video_id)


def test_file_id_depends_on_content_not_on_path(tmp_path):
    a = tmp_path / "a.mp4"
    a.write_bytes(b"some video bytes" * 100)
    (tmp_path / "sub").mkdir()
    b = tmp_path / "sub" / "renamed.mov"
    b.write_bytes(a.read_bytes())
    c = tmp_path / "c.mp4"
    c.write_bytes(b"some video bytes" * 99 + b"other video byte")
    assert file_id(a) == file_id(b)
    assert file_id(a) != file_id(c)
    assert file_id(a).startswith("file-") and ID_PATTERN.match(file_id(a))
    assert video_id_for(str(a)) == file_id(a)


def _big_file(path, size_bytes: int, seed: int = 0) -> bytearray:
    data = bytearray(random.Random(seed).randbytes(size_bytes))
    path.write_bytes(data)
    return data


def test_file_id_of_large_files_samples_start_middle_end(tmp_path, monkeypatch):
    size = 8 * FILE_SAMPLE_BYTES + 123
    path = tmp_path / "big.mp4"
    data = _big_file(path, size)
    reference = file_id(path)

    for offset in (10, size // 2, size - 10):  # inside the first, middle and last samples
        changed = bytearray(data)
        changed[offset] ^= 0xFF
        path.write_bytes(changed)
        assert file_id(path) != reference, offset

    # outside the samples (documented limitation): same size, same id
    changed = bytearray(data)
    changed[2 * FILE_SAMPLE_BYTES] ^= 0xFF
    path.write_bytes(changed)
    assert file_id(path) == reference

    # a different size changes the id even with identical samples
    path.write_bytes(data + b"\0")
    assert file_id(path) != reference

    # it reads at most 3 samples, never the whole file
    path.write_bytes(data)
    read_sizes: list[int] = []
    real_open = builtins.open

    class CountingFile:
        def __init__(self, handle):
            self._handle = handle

        def read(self, n=-1):
            chunk = self._handle.read(n)
            read_sizes.append(len(chunk))
            return chunk

        def __getattr__(self, name):
            return getattr(self._handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._handle.close()

    monkeypatch.setattr("ingest.ids.open", lambda *a, **k: CountingFile(real_open(*a, **k)), raising=False)
    assert file_id(path) == reference
    assert sum(read_sizes) == 3 * FILE_SAMPLE_BYTES


def test_file_id_missing_file_raises_oserror(tmp_path):
    with pytest.raises(OSError):
        file_id(tmp_path / "nope.mp4")


def test_bad_entry_id_is_deterministic_and_safe():
    assert bad_entry_id("garbage line, 1, 2") == bad_entry_id("  garbage line, 1, 2 ")
    assert bad_entry_id("a") != bad_entry_id("b")
    assert ID_PATTERN.match(bad_entry_id("../../etc/passwd \u00e9\U0001f600"))


def test_every_remote_id_is_a_safe_path_component():
    rng = random.Random(7)
    alphabet = string.ascii_letters + string.digits + "/?&=#%.:~ -_\u00e9"
    for _ in range(300):
        tail = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        for uri in (f"https://example.com/{tail}", f"https://www.youtube.com/watch?v={tail}"):
            try:
                video_id = remote_video_id(uri)
            except InputListError:
                continue
            assert ID_PATTERN.match(video_id), (uri, video_id)
            assert video_id == remote_video_id(uri)


def test_kind_and_id_agrees_with_classify_uri_and_remote_video_id():
    uris = [
        f"https://www.youtube.com/watch?v={VIDEO}&t=4",
        f"https://youtu.be/{VIDEO}",
        "HTTPS://Example.com:443/a.mp4?b=2&a=1#x",
        "http://user:pw@[::1]:8080/v?x=%20",
        "https://example.com:99999/v",
        "/data/clip.mp4",
        "clips/a.MOV",
        "ftp://example.com/a.mp4",
        "http:///no-host",
        "http://[::1/broken",
    ]
    for uri in uris:
        kind = classify_uri(uri)
        expected = ("file", None) if kind == "file" else (kind, remote_video_id(uri))
        assert kind_and_id(uri) == expected, uri
    with pytest.raises(InputListError, match="without a video id"):
        kind_and_id("https://www.youtube.com/@SomeChannel")


def test_canonical_query_is_the_parsed_sorted_requoted_query():
    """Plain ``name=value`` queries are sorted without the parse + re-quote round trip: same result."""
    rng = random.Random(11)
    alphabet = "ab_.~-=&%+;Z9/\u00e9"
    for _ in range(3000):
        query = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14)))
        expected = urlencode(sorted(parse_qsl(query, keep_blank_values=True)))
        assert canonical_url(f"https://h/p?{query}") == "https://h/p" + (f"?{expected}" if expected else ""), query
    assert canonical_url("https://h/p?t=4&sig=1&a-b=2&a=3") == "https://h/p?a=3&a-b=2&sig=1&t=4"


def _fuzzed_uris(rng: random.Random, count: int) -> list[str]:
    """Random URIs: half plain http(s) URLs (letters, digits, ``/?#&=._-~`` only), half drawn from every class of
    text that urlsplit treats specially (stripped and removed characters, user info, ports, IPv6 literals, percent
    signs, non-ASCII, backslashes, spaces, other schemes, local paths)."""
    plain_schemes = ["http", "https", "HTTPS", "hTtP"]
    schemes = plain_schemes + ["ftp", "file", "httpx", "", "h", "1http"]
    separators = ["://", ":/", ":", "//", ":///", ""]
    plain_host = string.ascii_letters + string.digits + "._~-"
    tricky_hosts = ["", "[::1]", "[::1", "::1]", "[fe80::1%25eTh0]", "h%41sT", "\u00e9xample.com", "ex\u2100mple",
                    "user@h", "u:p@h", "@h", "h:80", "h:443", "h:", "h:99999", "h:8a", "h\\x", "h x", "h\tx", "h!x"]
    plain_tail = string.ascii_letters + string.digits + "/?#&=._-~"
    tricky_tail = plain_tail + "////?#&=%:;@[]!$'()*+,\\ \t\r\n\x00\x7f\u00e9\u2100\""
    uris = []
    for _ in range(count):
        plain = rng.random() < 0.5
        host = "".join(rng.choice(plain_host) for _ in range(rng.randint(1, 12)))
        if not plain and rng.random() < 0.5:
            host = rng.choice(tricky_hosts)
        tail = "".join(rng.choice(plain_tail if plain else tricky_tail) for _ in range(rng.randint(0, 24)))
        start = rng.choice(plain_schemes) + "://" if plain else rng.choice(schemes) + rng.choice(separators)
        uri = start + host + rng.choice(["", "/", "?", "#", "/v/"]) + tail
        if not plain and rng.random() < 0.2:
            uri = rng.choice([" ", "\t", "\n", "\x00", "\u3000"]) + uri + rng.choice(["", " ", "\r\n"])
        uris.append(uri)
    return uris


def _urlsplit_canonical_url(url: str) -> str:
    """canonical_url written with urlsplit / parse_qsl / urlencode / urlunsplit only (as before the fast paths):
    the oracle for the fast paths in ingest.ids."""
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host
    if port is not None and port != {"http": 80, "https": 443}.get(parts.scheme.lower()):
        netloc = f"{host}:{port}"
    if parts.username is not None:
        netloc = f"{parts.username}{f':{parts.password}' if parts.password is not None else ''}@{netloc}"
    query = urlencode(sorted(parse_qsl(parts.query, keep_blank_values=True)))
    return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", query, ""))


def test_plain_url_fast_path_matches_urlsplit_on_fuzzed_uris(monkeypatch):
    """The regular-expression split of plain http(s) URLs gives exactly urlsplit's parts and host name, and ids,
    kinds and canonical URLs are the same with the fast path switched off (urlsplit for every URI)."""
    rng = random.Random(3986)
    uris = _fuzzed_uris(rng, 4000)
    uris += [
        "https://cdn.example.com/videos/000001.mp4?sig=42",
        "HTTPS://CDN.Example.COM/A/B.mp4?b=2&a=1#Frag?x",
        "http://h#frag?not-a-query",
        "http://h?q#f#g",
        "http://h/p?",
        "http://h/p#",
        "https://h:443/p",
        "https://user@h/p",
        "https://[::1]/p",
        "https://h/a b",
        "https://h/a\tb",
        "https://h\\evil.com/p",
        "https://www.youtube.com/watch?v=dQw4w9WgXcQ&t=4",
        "https://youtu.be/dQw4w9WgXcQ",
    ]
    num_fast = 0
    for uri in uris:
        fast = ids._split_plain_http(uri.strip())
        if fast is not None:
            num_fast += 1
            assert fast == urlsplit(uri.strip()), uri
            assert fast.netloc.lower() == urlsplit(uri.strip()).hostname, uri

    def results(uri: str):
        try:
            kind_id = kind_and_id(uri)
        except InputListError as error:
            kind_id = str(error)
        try:
            canonical = canonical_url(uri)
        except ValueError as error:
            canonical = f"ValueError {error}"
        return kind_id, classify_uri(uri), youtube_video_id(uri), canonical

    with_fast_path = [results(uri) for uri in uris]
    monkeypatch.setattr(ids, "_split_plain_http", lambda url: None)
    assert [results(uri) for uri in uris] == with_fast_path
    for uri, (_, kind, _, canonical) in zip(uris, with_fast_path):
        if kind != "file":
            assert canonical == _urlsplit_canonical_url(uri), uri
    assert num_fast > 1500 and len(uris) - num_fast > 1500, num_fast  # both paths well exercised
