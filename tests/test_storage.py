"""catalog.storage: run folders on file:// URIs, SubTreeFileSystem and an object-store stand-in (no network).

The stand-in (``_ObjectStore``) is a ``pyarrow.fs.PyFileSystem`` over a local folder that behaves like S3/GCS
where it matters: no rename (``move`` raises), parents appear implicitly, and every upload is logged when it
completes, so the test sees the order in which objects became visible; it can also fail chosen uploads.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from catalog import storage
from catalog.layout import RunLayout, shard_of
from catalog.storage import (
    MARKER_PREFIX, StorageError, exists, get_tree, list_markers, open_output, put_file, put_tree, video_dir,
)
from ingest.errors import ConfigError, WriteError


class _ClosingFile(io.FileIO):
    def __init__(self, path, on_close):
        super().__init__(path, "w")
        self._on_close = on_close

    def close(self):
        if not self.closed:
            super().close()
            self._on_close()


class _ObjectStore(pafs.FileSystemHandler):
    """Object-store semantics over ``root``: PUT visible on close, no move, implicit parents, injected failures."""

    def __init__(self, root: Path, fail=lambda path: False):
        self.root = Path(root)
        self.local = pafs.SubTreeFileSystem(str(root), pafs.LocalFileSystem())
        self.fail = fail
        self.visible: list[str] = []  # object paths in the order their upload completed
        self.deleted: list[str] = []
        self._lock = threading.Lock()

    def get_type_name(self):
        return "objstore"

    def normalize_path(self, path):
        return path

    def get_file_info(self, paths):
        return self.local.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.local.get_file_info(selector)

    def create_dir(self, path, recursive):
        raise AssertionError(f"object stores have no directories (create_dir {path})")

    def delete_dir(self, path):
        self.local.delete_dir(path)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        self.local.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self):
        self.local.delete_dir_contents("", accept_root_dir=True)

    def delete_file(self, path):
        self.local.delete_file(path)
        with self._lock:
            self.deleted.append(path)

    def move(self, src, dest):
        raise AssertionError(f"object stores cannot rename ({src} -> {dest})")

    def copy_file(self, src, dest):
        self.local.copy_file(src, dest)

    def open_input_stream(self, path):
        return self.local.open_input_stream(path)

    def open_input_file(self, path):
        return self.local.open_input_file(path)

    def open_output_stream(self, path, metadata):
        if self.fail(path):
            raise OSError(f"injected network failure uploading {path}")
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)

        def done():
            with self._lock:
                self.visible.append(path)

        return pa.PythonFile(_ClosingFile(target, done), mode="w")

    def open_append_stream(self, path, metadata):
        raise AssertionError("no appends")


def _video_folder(root: Path, video_id: str, chash: str, clips=("c0", "c1"), payload: bytes = b"x") -> Path:
    """A video folder as the writer publishes it: three fragments, clip files, the marker."""
    d = root / video_id
    (d / "clips").mkdir(parents=True, exist_ok=True)
    for table in ("videos", "tracks", "clips"):
        pq.write_table(pa.table({"video_id": [video_id], "payload": [payload.decode()]}), d / f"{table}.parquet")
    for c in clips:
        (d / "clips" / f"{c}.npz").write_bytes(payload * 1000)
        (d / "clips" / f"{c}.g1.npz").write_bytes(payload * 500)
    (d / f"{MARKER_PREFIX}{chash}").write_text("{}")
    return d


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# -- locations ---------------------------------------------------------------------------------------------


def test_open_output_local_paths_and_file_uris(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fs, base = open_output("runs/a")
    assert isinstance(fs, pafs.LocalFileSystem) and base == (tmp_path / "runs" / "a").as_posix()
    spaced = tmp_path / "with space"
    root = open_output(spaced.as_uri())  # file:///.../with%20space
    assert root.base == spaced.as_posix() and root.is_local
    assert root.join("data", "ab") == f"{spaced.as_posix()}/data/ab"
    assert not storage.is_remote(spaced.as_uri()) and not storage.is_remote("runs/a")
    assert storage.is_remote("s3://bucket/run") and storage.is_remote("gs://bucket/run")


def test_open_output_rejects_unknown_schemes_with_the_fix():
    with pytest.raises(ConfigError, match="s3://bucket/prefix"):
        open_output("nosuchfs://bucket/run")


def test_join_and_video_dir_follow_the_run_layout(tmp_path):
    assert storage.join("", "data", "ab") == "data/ab"
    assert storage.join("bucket/run/", "/data/", "ab") == "bucket/run/data/ab"
    assert storage.join("/", "data") == "/data"
    layout = RunLayout.at(tmp_path)
    vid = "yt-abc123"
    assert video_dir(layout.root.as_posix(), vid) == layout.video_dir(vid).as_posix()
    assert layout.done_marker(vid, "h1").name == storage.marker_name("h1")


# -- upload ------------------------------------------------------------------------------------------------


def test_put_tree_to_a_file_uri_mirrors_the_folder(tmp_path):
    local = _video_folder(tmp_path / "stage", "vid-1", "h1")
    fs, base = open_output((tmp_path / "remote").as_uri())
    stats = put_tree(fs, local, storage.join(base, "data/aa/vid-1"))
    remote = tmp_path / "remote" / "data" / "aa" / "vid-1"
    assert _files(remote) == _files(local)  # no temporary files left, contents identical
    assert stats.files == len(_files(local)) and stats.bytes == sum(len(b) for b in _files(local).values())
    assert exists(fs, storage.join(base, "data/aa/vid-1", f"{MARKER_PREFIX}h1"))
    assert not exists(fs, storage.join(base, "data/aa/vid-2"))


def test_put_tree_replaces_an_older_folder_and_its_marker(tmp_path):
    remote_fs = pafs.SubTreeFileSystem(str(tmp_path / "remote"), pafs.LocalFileSystem())
    old = _video_folder(tmp_path / "old", "v", "oldhash", clips=("c0", "c1", "c2"), payload=b"o")
    put_tree(remote_fs, old, "data/ab/v")
    new = _video_folder(tmp_path / "new", "v", "newhash", clips=("c0",), payload=b"n")
    stats = put_tree(remote_fs, new, "data/ab/v")
    assert _files(tmp_path / "remote" / "data" / "ab" / "v") == _files(new)
    assert stats.deleted == 5  # old marker, c1/c2 human and G1 files


def test_put_tree_on_an_object_store_uploads_the_marker_after_everything_else(tmp_path):
    handler = _ObjectStore(tmp_path / "bucket")
    fs = pafs.PyFileSystem(handler)
    local = _video_folder(tmp_path / "stage", "vid", "h1", clips=[f"c{i}" for i in range(6)])
    put_tree(fs, local, "run/data/ab/vid", threads=4)
    assert _files(tmp_path / "bucket" / "run" / "data" / "ab" / "vid") == _files(local)
    assert handler.visible[-1] == f"run/data/ab/vid/{MARKER_PREFIX}h1"
    assert len(handler.visible) == len(_files(local))  # one PUT each: no temporary objects, no renames


def test_an_interrupted_upload_leaves_no_marker_and_the_retry_completes(tmp_path):
    broken = {"on": True}
    handler = _ObjectStore(tmp_path / "bucket", fail=lambda p: broken["on"] and p.endswith("clips/c3.npz"))
    fs = pafs.PyFileSystem(handler)
    vid = "yt-vid"
    where = video_dir("", vid)
    put_tree(fs, _video_folder(tmp_path / "old", vid, "h1", payload=b"o"), where)
    assert list_markers(fs, "", "h1") == {vid}

    new = _video_folder(tmp_path / "new", vid, "h1", clips=[f"c{i}" for i in range(6)], payload=b"n")
    with pytest.raises(WriteError, match="c3.npz"):
        put_tree(fs, new, where, threads=3)
    # the old marker went first, the new one never came: the video is not done, whatever else was uploaded
    assert list_markers(fs, "", "h1") == set()
    assert not exists(fs, storage.join(where, f"{MARKER_PREFIX}h1"))
    assert any(p.endswith("clips/c5.npz") for p in handler.visible)  # the other uploads still ran
    broken["on"] = False
    put_tree(fs, new, where)
    assert list_markers(fs, "", "h1") == {vid}
    assert _files(tmp_path / "bucket" / where) == _files(new)


def test_put_file_reports_unwritable_destinations(tmp_path):
    src = tmp_path / "f.bin"
    src.write_bytes(b"abc")
    blocker = tmp_path / "remote"
    blocker.write_text("a file where a folder should be")
    fs = pafs.LocalFileSystem()
    with pytest.raises(WriteError, match="check write access"):
        put_file(fs, src, f"{blocker.as_posix()}/sub/f.bin")
    assert put_file(fs, src, (tmp_path / "ok" / "f.bin").as_posix()) == 3
    assert sorted(p.name for p in (tmp_path / "ok").iterdir()) == ["f.bin"]


# -- resume ------------------------------------------------------------------------------------------------


def _remote_run(tmp_path: Path) -> Path:
    """A remote run folder: videos done under h1 or h2, one unfinished, one in the wrong shard, the schema."""
    root = tmp_path / "remote_run"
    for vid, chash in (("yt-a", "h1"), ("yt-b", "h1"), ("file-c", "h2"), ("url-d", "h1")):
        _video_folder(root / "data" / shard_of(vid), vid, chash)
    unfinished = _video_folder(root / "data" / shard_of("yt-e"), "yt-e", "h1")
    (unfinished / f"{MARKER_PREFIX}h1").unlink()
    wrong = "yt-f"
    bad_shard = "00" if shard_of(wrong) != "00" else "01"
    _video_folder(root / "data" / bad_shard, wrong, "h1")
    (root / "data" / "_schema" / "_schema").mkdir(parents=True)
    pq.write_table(pa.table({"video_id": pa.array([], pa.string())}), root / "data/_schema/_schema/videos.parquet")
    return root


def test_list_markers_finds_exactly_the_finished_videos_of_a_configuration(tmp_path):
    root = _remote_run(tmp_path)
    fs, base = open_output(root.as_uri())
    assert list_markers(fs, base, "h1") == {"yt-a", "yt-b", "url-d"}
    assert list_markers(fs, base, "h2") == {"file-c"}
    assert list_markers(fs, base, "h3") == set()
    sub = pafs.SubTreeFileSystem(str(root), pafs.LocalFileSystem())
    assert list_markers(sub, "", "h1", threads=1) == {"yt-a", "yt-b", "url-d"}
    assert list_markers(pafs.PyFileSystem(_ObjectStore(root)), "", "h2") == {"file-c"}
    assert list_markers(fs, storage.join(base, "nothing-here"), "h1") == set()


def test_list_markers_agrees_with_the_writer(tmp_path):
    from catalog.writer import publish_video

    layout = RunLayout.at(tmp_path / "run")
    for vid in ("yt-x", "yt-y"):
        publish_video(layout, vid, "cfg", {"video_id": vid, "status": "ok"}, [], [], [])
    fs, base = open_output(layout.root)
    assert list_markers(fs, base, "cfg") == {"yt-x", "yt-y"}
    # mirrored to an object store folder by folder, the same set comes back from there
    handler = _ObjectStore(tmp_path / "bucket")
    remote = pafs.PyFileSystem(handler)
    for vid in ("yt-x", "yt-y"):
        put_tree(remote, layout.video_dir(vid), video_dir("run", vid))
    assert list_markers(remote, "run", "cfg") == {"yt-x", "yt-y"}


# -- download ----------------------------------------------------------------------------------------------


def test_get_tree_pulls_fragments_incrementally(tmp_path):
    root = _remote_run(tmp_path)
    (root / "data" / shard_of("yt-a") / "yt-a" / ".clips.parquet.0123.tmp").write_bytes(b"half an upload")
    fs = pafs.PyFileSystem(_ObjectStore(root))
    cache = tmp_path / "cache"
    first = get_tree(fs, "data", cache / "data")
    pulled = _files(cache)
    remote_parquet = {k: v for k, v in _files(root).items() if k.endswith(".parquet") and "/." not in k}
    assert pulled == remote_parquet and first.files == len(remote_parquet)
    table = pq.read_table(cache / "data" / shard_of("yt-a") / "yt-a" / "videos.parquet")
    assert table.column("video_id").to_pylist() == ["yt-a"]

    again = get_tree(fs, "data", cache / "data")
    assert (again.files, again.skipped) == (0, len(remote_parquet))

    changed = root / "data" / shard_of("yt-b") / "yt-b" / "clips.parquet"
    pq.write_table(pa.table({"video_id": ["yt-b", "yt-b"], "payload": ["p", "q"]}), changed)
    third = get_tree(fs, "data", cache / "data")
    assert third.files == 1
    assert pq.read_table(cache / "data" / shard_of("yt-b") / "yt-b" / "clips.parquet").num_rows == 2

    everything = get_tree(fs, "data", tmp_path / "all", suffixes=None)
    assert everything.files == len([k for k in _files(root) if "/." not in k])


def test_get_tree_reports_unreadable_sources(tmp_path):
    class Broken(_ObjectStore):
        def get_file_info_selector(self, selector):
            raise OSError("connection reset")

    fs = pafs.PyFileSystem(Broken(tmp_path))
    with pytest.raises(StorageError, match="check the network"):
        get_tree(fs, "data", tmp_path / "cache")
    with pytest.raises(StorageError):
        list_markers(fs, "", "h1")
