"""download_video against a loopback HTTP server, the cache and archive, and error classification."""

from __future__ import annotations

import http.server
import socket
import sys
import threading
import types
from pathlib import Path

import pytest
from video_factory import make_audio_only, make_video

import ingest.download as download
from ingest.download import (
    ARCHIVE_NAME,
    archived_ids,
    classify_download_error,
    download_video,
    format_selector,
    ytdlp_options,
)
from ingest.errors import (
    AgeRestricted,
    BotCheck,
    DownloadError,
    DownloadTooLarge,
    GeoBlocked,
    InputNotFound,
    NetworkError,
    NotAVideo,
    VideoPrivate,
    VideoUnavailable,
)
from ingest.ids import remote_video_id
from ingest.items import VideoItem

# --- error classification ------------------------------------------------------------------------------

YT_ERRORS = [
    ("ERROR: [youtube] dQw4w9WgXcQ: Video unavailable", VideoUnavailable),
    ("ERROR: [youtube] abcdefghijk: Video unavailable. This video has been removed by the uploader",
     VideoUnavailable),
    ("ERROR: [youtube] abcdefghijk: Video unavailable. This video is no longer available because the YouTube "
     "account associated with this video has been terminated.", VideoUnavailable),
    ("ERROR: [youtube] abcdefghijk: This live event will begin in 3 hours.", VideoUnavailable),
    ("ERROR: [generic] gone: Unable to download webpage: HTTP Error 410: Gone", VideoUnavailable),
    ("ERROR: [youtube] abcdefghijk: Private video. Sign in if you've been granted access to this video. "
     "Use --cookies-from-browser or --cookies for the authentication.", VideoPrivate),
    ("ERROR: [youtube] abcdefghijk: Join this channel to get access to members-only content like this video, "
     "and other exclusive perks.", VideoPrivate),
    ("ERROR: [youtube] abcdefghijk: Sign in to confirm your age. This video may be inappropriate for some "
     "users. Use --cookies-from-browser or --cookies for the authentication.", AgeRestricted),
    ("ERROR: [youtube] abcdefghijk: The uploader has not made this video available in your country",
     GeoBlocked),
    ("ERROR: [vimeo] 12345: This video is not available from your location due to geo restriction",
     GeoBlocked),
    ("ERROR: [youtube] abcdefghijk: Sign in to confirm you\u2019re not a bot. Use --cookies-from-browser or "
     "--cookies for the authentication. See  https://github.com/yt-dlp/yt-dlp/wiki/FAQ", BotCheck),
    ("ERROR: [youtube] abcdefghijk: Video unavailable. This content isn\u2019t available, try again later.",
     BotCheck),
    ("ERROR: unable to download video data: HTTP Error 429: Too Many Requests", BotCheck),
    ("ERROR: Unsupported URL: https://example.com/about.html", NotAVideo),
    ("ERROR: [generic] nope: Unable to download webpage: HTTP Error 404: Not Found (caused by "
     "<HTTPError 404: Not Found>)", NotAVideo),
    ("ERROR: [youtube] abcdefghijk: Requested format is not available. Use --list-formats for a list of "
     "available formats", NotAVideo),
    ("ERROR: [youtube] abcdefghijk: No video formats found!", NotAVideo),
    ("ERROR: [generic] x: Unable to download webpage: <urlopen error [Errno -3] Temporary failure in name "
     "resolution> (caused by TransportError('...'))", NetworkError),
    ("ERROR: [youtube] abcdefghijk: Unable to download API page: HTTPSConnectionPool(host='www.youtube.com', "
     "port=443): Read timed out. (read timeout=30.0)", NetworkError),
    ("ERROR: [generic] x: Unable to download webpage: HTTPConnection(host='127.0.0.1', port=9): Failed to "
     "establish a new connection: [Errno 111] Connection refused", NetworkError),
    ("ERROR: unable to download video data: HTTP Error 503: Service Unavailable", NetworkError),
    ("ERROR: unable to download video data: HTTP Error 403: Forbidden", NetworkError),
    ("ERROR: The downloaded file is too short (expected 1000 bytes, got 10)", DownloadError),
    ("[download] File is larger than max-filesize (69238 bytes > 10000 bytes). Aborting.", DownloadTooLarge),
    ("VideoPrivate: abcdefghijk is a private video", VideoPrivate),  # pytubefix exception text
    ("AgeRestrictedError: abcdefghijk is age restricted, and can't be accessed without logging in.",
     AgeRestricted),
    ("BotDetection: abcdefghijk This request was detected as a bot.", BotCheck),
    ("VideoRegionBlocked: abcdefghijk is not available in your region", GeoBlocked),
    ("ERROR: something nobody has seen before", DownloadError),
]


@pytest.mark.parametrize("message, expected", YT_ERRORS)
def test_classify_download_error(message, expected):
    error = classify_download_error(message)
    assert type(error) is expected
    text = str(error)
    assert not text.startswith("ERROR:")
    assert "(" in text and text.endswith(")")  # carries advice
    assert error.catalog_reason().startswith(error.reason + ": ")


def test_retryable_classes():
    assert classify_download_error("Connection refused").retryable
    assert classify_download_error("confirm you're not a bot").retryable
    assert not classify_download_error("Private video").retryable
    assert not classify_download_error("Video unavailable").retryable


# --- loopback server ------------------------------------------------------------------------------------


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]  # set per server

    def log_message(self, *args):
        pass

    def do_GET(self):
        type(self).requests.append(self.path)
        if self.path == "/stream.mp4":  # no Content-Length: the body ends when the connection closes
            data = (Path(self.directory) / "big.mp4").read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.end_headers()
            try:
                for start in range(0, len(data), 4096):
                    self.wfile.write(data[start : start + 4096])
            except (BrokenPipeError, ConnectionResetError):
                pass
            return
        super().do_GET()

    def do_HEAD(self):
        type(self).requests.append("HEAD " + self.path)
        super().do_HEAD()


class LoopbackServer:
    def __init__(self, directory: Path):
        handler = type("Handler", (_Handler,), {"requests": []})
        self.handler = handler
        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), lambda *a: handler(*a, directory=str(directory))
        )
        self.httpd.handle_error = lambda *a: None  # clients that hang up are expected
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.running = True

    @property
    def requests(self) -> list[str]:
        return self.handler.requests

    def stop(self):
        if self.running:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.running = False


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "site"
    root.mkdir()
    make_video(root / "clip.mp4", width=64, height=48, num_frames=20)
    make_video(root / "big.mp4", width=160, height=120, num_frames=60, pattern="noise")
    make_audio_only(root / "tone.m4a")
    (root / "page.html").write_text("<!DOCTYPE html><html><body><p>No video here.</p></body></html>")
    (root / "notes.txt").write_text("plain text, not a video\n" * 10)
    server = LoopbackServer(root)
    yield server, root
    server.stop()


def _refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed on exit: nothing listens there


def _item(url: str) -> VideoItem:
    from ingest.ids import classify_uri

    return VideoItem(video_id=remote_video_id(url), uri=url, kind=classify_uri(url))


# --- downloads ------------------------------------------------------------------------------------------


def test_download_is_byte_identical_cached_and_archived(site, tmp_path, monkeypatch):
    server, root = site
    cache = tmp_path / "cache"
    item = _item(f"{server.base}/clip.mp4")
    path = download_video(item, cache)
    assert path == cache / f"{item.video_id}.mp4"
    assert path.read_bytes() == (root / "clip.mp4").read_bytes()
    assert archived_ids(cache) == {item.video_id}
    assert not any((cache / download.PARTIAL_DIR_NAME).iterdir())

    # second call: served from the cache with the server stopped and yt-dlp unusable
    server.stop()

    def no_network(*args, **kwargs):
        raise AssertionError("a cached download must not reach the network")

    monkeypatch.setattr(download, "_download_ytdlp", no_network)
    assert download_video(item, cache) == path
    assert (cache / ARCHIVE_NAME).read_text().splitlines() == [f"{item.video_id} {item.video_id}.mp4"]


def test_archive_entry_without_file_downloads_again(site, tmp_path):
    server, root = site
    cache = tmp_path / "cache"
    item = _item(f"{server.base}/clip.mp4")
    path = download_video(item, cache)
    path.unlink()
    assert item.video_id in archived_ids(cache)
    again = download_video(item, cache)
    assert again.read_bytes() == (root / "clip.mp4").read_bytes()
    assert (cache / ARCHIVE_NAME).read_text().splitlines() == [f"{item.video_id} {item.video_id}.mp4"]


def test_file_names_come_from_the_id_only(site, tmp_path):
    server, _ = site
    item = _item(f"{server.base}/clip.mp4?title=../../evil%20name&x=1")
    path = download_video(item, tmp_path / "cache")
    assert path.parent == tmp_path / "cache"
    assert path.name == f"{item.video_id}.mp4"


def test_404_is_not_a_video(site, tmp_path):
    # Choice: an address that answers 404 holds no video -> not_a_video (ingest.errors.NotAVideo doc).
    server, _ = site
    with pytest.raises(NotAVideo, match="404"):
        download_video(_item(f"{server.base}/missing.mp4"), tmp_path / "cache")


def test_html_page_text_and_audio_are_not_videos(site, tmp_path):
    server, _ = site
    cache = tmp_path / "cache"
    for name in ("page.html", "notes.txt", "tone.m4a"):
        with pytest.raises(NotAVideo):
            download_video(_item(f"{server.base}/{name}"), cache, retries=0)
    assert sorted(p.name for p in cache.iterdir()) == [download.PARTIAL_DIR_NAME]
    assert not any((cache / download.PARTIAL_DIR_NAME).iterdir())


def test_refused_connection_is_a_network_error_retried_a_bounded_number_of_times(tmp_path, monkeypatch):
    calls = []
    real = download._download_ytdlp

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(download, "_download_ytdlp", counting)
    item = _item(f"http://127.0.0.1:{_refused_port()}/clip.mp4")
    with pytest.raises(NetworkError) as info:
        download_video(item, tmp_path / "cache", retries=2, retry_sleep_s=0.0, socket_timeout_s=5)
    assert info.value.retryable
    assert len(calls) == 3  # the first attempt + 2 retries
    assert download.cached_file(tmp_path / "cache", item.video_id) is None


def test_size_cap_with_content_length(site, tmp_path):
    server, _ = site
    cache = tmp_path / "cache"
    item = _item(f"{server.base}/big.mp4")
    with pytest.raises(DownloadTooLarge):
        download_video(item, cache, max_bytes=10_000)
    assert download.cached_file(cache, item.video_id) is None
    assert download_video(item, cache).stat().st_size > 10_000  # without the cap it downloads


def test_size_cap_while_streaming_without_content_length(site, tmp_path):
    server, root = site
    cache = tmp_path / "cache"
    item = _item(f"{server.base}/stream.mp4")
    with pytest.raises(DownloadTooLarge):
        download_video(item, cache, max_bytes=10_000)
    assert download.cached_file(cache, item.video_id) is None
    assert not (cache / download.PARTIAL_DIR_NAME / item.video_id).exists()
    path = download_video(item, cache)
    assert path.read_bytes() == (root / "big.mp4").read_bytes()


def test_incomplete_temp_file_never_becomes_the_cached_file(site, tmp_path, monkeypatch):
    server, root = site
    cache = tmp_path / "cache"
    item = _item(f"{server.base}/clip.mp4")
    real = download._download_ytdlp

    def crash_after_download(item_, work_dir, options):
        produced = real(item_, work_dir, options)
        data = produced.read_bytes()
        produced.write_bytes(data[: len(data) // 2])  # as if the transfer had stopped half-way
        return produced

    monkeypatch.setattr(download, "_download_ytdlp", crash_after_download)
    with pytest.raises(NotAVideo):
        download_video(item, cache)
    assert download.cached_file(cache, item.video_id) is None
    assert item.video_id not in archived_ids(cache)


def test_file_items_are_returned_as_they_are(tmp_path):
    clip = make_video(tmp_path / "a.mp4", num_frames=2)
    item = VideoItem(video_id="file-0123456789abcdef", uri=str(clip), kind="file")
    assert download_video(item, tmp_path / "cache") == clip
    with pytest.raises(InputNotFound):
        download_video(VideoItem("file-x", str(tmp_path / "gone.mp4"), "file"), tmp_path / "cache")


def test_ytdlp_options(tmp_path):
    options = ytdlp_options(tmp_path, "yt-abcdefghijk", max_height=720, socket_timeout_s=12, retries=2,
                            max_bytes=1000)
    assert options["outtmpl"] == {"default": str(tmp_path / "yt-abcdefghijk.%(ext)s")}
    assert options["socket_timeout"] == 12
    assert options["retries"] == options["fragment_retries"] == 2
    assert options["max_filesize"] == 1000
    assert options["noplaylist"] is True
    assert "height<=?720" in options["format"] and "+" not in options["format"]  # no merges: no ffmpeg
    deno_bin = download.find_deno()
    if deno_bin is None:
        assert "js_runtimes" not in options
    else:
        assert options["js_runtimes"] == {"deno": {"path": deno_bin}}
        assert Path(deno_bin).is_file()


def test_format_selector_caps_height():
    selector = format_selector(480)
    assert selector.split("/")[0] == "bv[height<=?480][ext=mp4][vcodec^=avc1]"
    assert "720" not in selector


# --- pytube fallback ------------------------------------------------------------------------------------


def _fake_pytubefix(monkeypatch, source: Path, calls: list):
    class Stream:
        includes_video_track = True
        height = 360
        subtype = "mp4"
        video_codec = "avc1.4d401e"
        filesize = source.stat().st_size

        def download(self, output_path, filename, skip_existing, timeout, max_retries):
            calls.append((filename, timeout, max_retries))
            target = Path(output_path) / filename
            target.write_bytes(source.read_bytes())
            return str(target)

    class Tall(Stream):
        height = 1080

    class YouTube:
        def __init__(self, url):
            self.streams = [Tall(), Stream()]

    module = types.ModuleType("pytubefix")
    module.YouTube = YouTube
    monkeypatch.setitem(sys.modules, "pytubefix", module)


def test_pytube_fallback_only_for_youtube_and_only_when_asked(tmp_path, monkeypatch):
    source = make_video(tmp_path / "src.mp4", num_frames=5)
    calls: list = []
    _fake_pytubefix(monkeypatch, source, calls)

    def offline(*args, **kwargs):
        raise NetworkError("Connection refused (a network problem)")

    monkeypatch.setattr(download, "_download_ytdlp", offline)
    youtube = _item("https://www.youtube.com/watch?v=abcdefghijk")
    cache = tmp_path / "cache"

    with pytest.raises(NetworkError):
        download_video(youtube, cache, retries=0)
    assert calls == []

    path = download_video(youtube, cache, retries=0, use_pytube_fallback=True, socket_timeout_s=7)
    assert path == cache / "yt-abcdefghijk.mp4"
    assert path.read_bytes() == source.read_bytes()
    assert calls == [("yt-abcdefghijk.mp4", 7, 0)]  # the <=720p stream, named from the id

    with pytest.raises(NetworkError):
        download_video(_item("https://example.com/v.mp4"), cache, retries=0, use_pytube_fallback=True)
    assert len(calls) == 1


def test_pytube_fallback_is_not_used_for_errors_of_the_video_itself(tmp_path, monkeypatch):
    calls: list = []
    _fake_pytubefix(monkeypatch, make_video(tmp_path / "src.mp4", num_frames=5), calls)

    def private(*args, **kwargs):
        raise VideoPrivate("Private video (the owner restricted access)")

    monkeypatch.setattr(download, "_download_ytdlp", private)
    with pytest.raises(VideoPrivate):
        download_video(_item("https://youtu.be/abcdefghijk"), tmp_path / "cache", use_pytube_fallback=True)
    assert calls == []


# --- the attempt's child process ------------------------------------------------------------------------


def test_ytdlp_options_travel_to_a_child_process(tmp_path):
    import pickle
    import time

    later = time.monotonic() + 1000.0
    options = ytdlp_options(tmp_path, "url-0123", max_height=720, socket_timeout_s=5, retries=1, max_bytes=99,
                            deadline=later, deadline_s=7.0)
    again = pickle.loads(pickle.dumps(options))
    (guard,) = again["progress_hooks"]
    assert (guard.max_bytes, guard.deadline, guard.deadline_s) == (99, later, 7.0)
    guard({"downloaded_bytes": 99})
    with pytest.raises(download._SizeCapExceeded):
        guard({"downloaded_bytes": 100})
    guard.deadline = time.monotonic() - 1.0
    with pytest.raises(download._DeadlineExceeded, match="deadline of 7 s"):
        guard({"downloaded_bytes": 1})


def test_a_crashed_download_process_is_a_clear_error(site, tmp_path, monkeypatch):
    server, _ = site
    monkeypatch.setattr(download, "_idle_processes", [])  # no warm process from earlier tests
    monkeypatch.setattr(download, "_CHILD_CODE", "import sys; sys.stderr.write('boom'); sys.exit(5)")
    with pytest.raises(DownloadError, match="exit code 5 without a result.*boom") as info:
        download_video(_item(f"{server.base}/clip.mp4"), tmp_path / "cache", retries=0)
    assert type(info.value) is DownloadError and not info.value.retryable
    assert download._idle_processes == []  # a crashed process is not reused


def test_attempts_reuse_one_warm_process(site, tmp_path, monkeypatch):
    server, root = site
    monkeypatch.setattr(download, "_idle_processes", [])
    started = []
    real_init = download._AttemptProcess.__init__

    def counting_init(self):
        real_init(self)
        started.append(self.proc.pid)

    monkeypatch.setattr(download._AttemptProcess, "__init__", counting_init)
    cache = tmp_path / "cache"
    for name in ("clip.mp4", "big.mp4"):
        assert download_video(_item(f"{server.base}/{name}"), cache).read_bytes() == (root / name).read_bytes()
    with pytest.raises(NotAVideo):
        download_video(_item(f"{server.base}/missing.mp4"), cache)
    assert len(started) == 1 and len(download._idle_processes) == 1
    download.close_download_processes()
    assert download._idle_processes == []


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc to find the child process")
def test_the_download_process_exits_when_its_worker_is_killed(tmp_path):
    # A worker SIGKILLed mid-download (a killed run) must not leave its transfer running: the child has its own
    # session, so only its parent watch ends it.
    import os
    import signal
    import subprocess
    import time

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)  # accepts connections, never answers
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/v.mp4"
    script = ("import sys; from ingest.download import download_video; from ingest.items import VideoItem; "
              "download_video(VideoItem('url-0000aaaa', sys.argv[1], 'url'), sys.argv[2], socket_timeout_s=60, "
              "retries=0)")
    worker = subprocess.Popen([sys.executable, "-c", script, url, str(tmp_path / "cache")])
    try:
        deadline = time.monotonic() + 20
        children: list[int] = []
        while not children and time.monotonic() < deadline:
            time.sleep(0.1)
            children = _children_of(worker.pid)
        assert children, "the worker started no download process"
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        t0 = time.monotonic()
        while any(_alive(c) for c in children) and time.monotonic() - t0 < 5:
            time.sleep(0.1)
        assert not any(_alive(c) for c in children), "the download process outlived its worker"
    finally:
        if worker.poll() is None:
            worker.kill()
        silent.close()
