"""Reliability: a corpus of bad inputs, SIGKILLs at random points, injected write failures and boundaries.

Every test adds its figures to the session's reliability record (``reliability_figures`` in conftest), and
pytest prints them in one summary line: inputs tried, crashes, rows lost, kills survived.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest

from catalog import db, writer
from catalog.layout import RunLayout
from cluster.config import DownloadConfig, RunConfig
from cluster.run import ExecOptions, run
from ingest.errors import G1ForgeError, InputListError, NetworkError
from ingest.items import VideoItem
from phalp_factory import make_phalp_pickle, synthetic_track, synthetic_tracks
from run_helpers import catalog_snapshot, cli, kill_session
from video_factory import make_audio_only, make_video

REPO_ROOT = Path(__file__).resolve().parents[1]


# --- loopback servers that misbehave -----------------------------------------------------------------------


class MisbehavingServer:
    """One TCP port on 127.0.0.1 per behaviour: ``404``, ``trickle`` (headers, then one byte every 0.1 s for
    ever: 200 bytes/s by default) and ``silent`` (the connection is accepted by the kernel, nothing is ever answered)."""

    def __init__(self, behaviour: str, byte_interval_s: float = 0.005):
        self.behaviour = behaviour
        self.byte_interval_s = byte_interval_s
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stop_event = threading.Event()
        self.conns: list[socket.socket] = []
        if behaviour != "silent":
            threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/video.mp4"

    def _serve(self):
        self.sock.settimeout(0.2)
        while not self.stop_event.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.conns.append(conn)
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket):
        try:
            conn.recv(65536)
            if self.behaviour == "404":
                conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found")
                return
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nConnection: close\r\n\r\n")
            while not self.stop_event.is_set():
                conn.sendall(b"\x00")
                time.sleep(self.byte_interval_s)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.stop_event.set()
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


def _refused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/video.mp4"


@pytest.fixture
def servers():
    made = {b: MisbehavingServer(b) for b in ("404", "trickle", "silent")}
    yield made
    for s in made.values():
        s.close()


FAST_DOWNLOADS = DownloadConfig(socket_timeout_s=1.0, retries=0, deadline_s=5.0)


# --- the corpus -------------------------------------------------------------------------------------------


def _png_bytes(width: int = 8, height: int = 8) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + b"\x80" * (3 * width) for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _video_corpus(folder: Path) -> dict[str, tuple[str, str]]:
    """Write the bad (and odd) videos; returns file name -> (expected status, expected reason code or '')."""
    folder.mkdir(parents=True)
    expect: dict[str, tuple[str, str]] = {}
    (folder / "zero bytes.mp4").write_bytes(b"")
    expect["zero bytes.mp4"] = ("failed", "unreadable")
    good = make_video(folder / "box.mp4", width=96, height=64, fps=10, num_frames=12)
    expect["box.mp4"] = ("filtered", "no_person")  # a video without a person
    data = good.read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])
    expect["truncated.mp4"] = ("failed", "")  # unreadable or decode: any clear failure
    (folder / "image.mp4").write_bytes(_png_bytes())
    expect["image.mp4"] = ("filtered", "no_person")  # FFmpeg reads a PNG as a one-frame video
    (folder / "notes.MP4").write_text("this is text, not a video\n")
    expect["notes.MP4"] = ("failed", "unreadable")
    make_audio_only(folder / "sound.m4v")
    expect["sound.m4v"] = ("failed", "audio_only")
    make_video(folder / "one frame.mp4", width=64, height=48, num_frames=1)
    expect["one frame.mp4"] = ("filtered", "")
    # PyAV cannot write fps 0 into an MP4 (the rate comes from real timestamps): absurd rates instead.
    make_video(folder / "fps 1000.mp4", width=64, height=48, fps=1000, num_frames=10)
    expect["fps 1000.mp4"] = ("filtered", "")
    make_video(folder / "fps 0.5.mkv", width=64, height=48, fps=0.5, num_frames=3)
    expect["fps 0.5.mkv"] = ("filtered", "")
    make_video(folder / "phone rotated.mov", width=64, height=48, num_frames=10, rotation_deg=90)
    expect["phone rotated.mov"] = ("filtered", "no_person")
    make_video(folder / "vfr.mp4", width=64, height=48, num_frames=20, vfr=True)
    expect["vfr.mp4"] = ("filtered", "no_person")
    make_video(folder / "8k.mp4", width=7680, height=4320, num_frames=3)
    expect["8k.mp4"] = ("filtered", "no_person")
    (folder / "copy of box.mp4").write_bytes(data)  # a duplicate: same content, same id, one row
    return expect


@pytest.mark.slow
def test_bad_videos_and_urls_each_end_as_one_row(tmp_path, servers, reliability_figures):
    folder = tmp_path / "entrée vidéos ünï" / "with  spaces"
    expect = _video_corpus(folder)
    urls = {"404": servers["404"].url, "refused": _refused_url(), "silent": servers["silent"].url,
            "trickle": servers["trickle"].url}
    lst = tmp_path / "list.csv"
    lst.write_text("uri,start_s,tags\n" + "".join(f"{u},,{k}\n" for k, u in urls.items())
                   + f"{folder / 'box.mp4'},,dup\n"  # duplicate of a folder entry
                   + "x.mp4,not-a-number,\n" + "a,b,c,d,e\n")  # two malformed rows
    jl = tmp_path / "list.jsonl"
    jl.write_text('{"uri": "' + str(folder / "vfr.mp4") + '"}\n{not json\n{"no_uri": 1}\n')
    out = tmp_path / "out"
    config = RunConfig(download=FAST_DOWNLOADS)
    t0 = time.monotonic()
    report = run([str(folder)], [str(lst), str(jl)], out, config, ExecOptions(workers=2, progress=False))
    elapsed_s = time.monotonic() - t0

    rows = db.run_query(out, "SELECT video_id, uri, status, reason FROM videos").to_pylist()
    assert len(rows) == len({r["video_id"] for r in rows})
    by_uri = {r["uri"]: r for r in rows}
    for name, (status, code) in expect.items():
        row = by_uri[str(folder / name)]
        assert row["status"] == status, (name, row)
        if code:
            assert row["reason"].startswith(code + ":"), (name, row)
        if status != "ok":
            assert len(row["reason"].split(":", 1)[1].strip()) > 10, (name, row)  # says what happened
    assert str(folder / "copy of box.mp4") not in by_uri  # same id as box.mp4: dropped as a duplicate
    assert by_uri[urls["404"]]["reason"].startswith("not_a_video:")
    for key in ("refused", "silent", "trickle"):
        assert by_uri[urls[key]]["status"] == "failed" and by_uri[urls[key]]["reason"].startswith("network:"), key
    assert "deadline" in by_uri[urls["trickle"]]["reason"]
    list_errors = [r for r in rows if r["reason"] and r["reason"].startswith("bad_list:")]
    assert len(list_errors) == 4, rows  # bad start_s, too many fields, bad JSON, line without uri
    # every input is one row: folder files + list entries, less the duplicates
    assert report.inputs - report.duplicates == len(rows)
    assert not report.interrupted and report.unpublished == 0
    assert elapsed_s < 120  # no input hangs the run (the trickling server never stops on its own)
    reliability_figures["inputs"] += report.inputs
    reliability_figures["crashes"] += report.retries
    reliability_figures["rows_lost"] += report.inputs - report.duplicates - len(rows)


@pytest.mark.slow
def test_bad_pickles_each_end_as_one_row(tmp_path, reliability_figures):
    folder = tmp_path / "pickles"
    folder.mkdir()
    (folder / "corrupt.pkl").write_bytes(b"\x80\x04not really a pickle")
    (folder / "empty.pkl").write_bytes(b"")
    (folder / "foreign.pkl").write_bytes(pickle.dumps({"hello": [1, 2, 3]}))
    (folder / "list.pkl").write_bytes(pickle.dumps([1, 2, 3]))
    make_phalp_pickle(folder / "truncated.pkl", 1, num_frames=60, seed=3)
    data = (folder / "truncated.pkl").read_bytes()
    (folder / "truncated.pkl").write_bytes(data[: len(data) // 3])
    make_phalp_pickle(folder / "nobody.pkl", [], num_frames=60)
    make_phalp_pickle(folder / "crowd.pkl", 6, num_frames=120, seed=5)
    leaving = [synthetic_track(1, range(0, 120), seed=1),
               synthetic_track(2, range(0, 40), seed=2, start_xyz_m=(0.5, 0.0, 5.0), velocity_m_s=(2.5, 0, 0))]
    make_phalp_pickle(folder / "leaves the frame.pkl", leaving, num_frames=120, seed=6)
    report = run([str(folder)], [], tmp_path / "out", RunConfig(backend="phalp-pkl"),
                 ExecOptions(workers=2, progress=False))
    rows = {Path(r["uri"]).name: r for r in db.run_query(
        tmp_path / "out", "SELECT uri, status, reason, num_tracks, num_clips_ok FROM videos").to_pylist()}
    assert len(rows) == 8 == report.inputs - report.duplicates, (report.duplicates, sorted(rows))
    for name in ("corrupt.pkl", "empty.pkl", "foreign.pkl", "list.pkl", "truncated.pkl"):
        assert rows[name]["status"] == "failed" and rows[name]["reason"].startswith("bad_result_file:"), rows[name]
    assert rows["nobody.pkl"]["status"] == "filtered" and rows["nobody.pkl"]["reason"].startswith("no_person:")
    assert rows["crowd.pkl"]["status"] == "ok" and rows["crowd.pkl"]["num_tracks"] == 6
    assert rows["crowd.pkl"]["num_clips_ok"] >= 1  # each person is tracked; short ones may be filtered
    assert rows["leaves the frame.pkl"]["status"] == "ok" and rows["leaves the frame.pkl"]["num_tracks"] == 2
    tracks = db.run_query(tmp_path / "out", "SELECT num_frames FROM tracks WHERE video_id = "
                          "(SELECT video_id FROM videos WHERE uri LIKE '%leaves the frame.pkl') ORDER BY 1"
                          ).to_pylist()
    assert [t["num_frames"] for t in tracks] == [40, 120]
    reliability_figures["inputs"] += report.inputs
    reliability_figures["crashes"] += report.retries
    reliability_figures["rows_lost"] += report.inputs - report.duplicates - len(rows)


def test_malformed_list_files_stop_before_the_run_with_a_clear_message(tmp_path, reliability_figures):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ingest.sources import collect_items

    pq.write_table(pa.table({"url": ["a.mp4"]}), tmp_path / "no_uri.parquet")
    (tmp_path / "no_header.csv").write_text("")
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00bad")
    for name in ("no_uri.parquet", "no_header.csv", "binary.txt"):
        with pytest.raises(InputListError) as info:
            collect_items([], [tmp_path / name])
        assert str(tmp_path / name) in str(info.value) and info.value.status == "failed"
    reliability_figures["inputs"] += 3


# --- interruptions ----------------------------------------------------------------------------------------


def _assert_nothing_partial(out: Path) -> int:
    """Every published video folder is complete and DuckDB reads them all; returns how many there are."""
    layout = RunLayout.at(out)
    folders = [d for d in layout.data_dir.glob("[0-9a-f][0-9a-f]/*") if d.is_dir()]
    for d in folders:
        failed_only = list(d.glob("videos.failed.*.parquet"))
        if failed_only:  # a failed video is one file, its row and its marker
            assert [p.name for p in d.iterdir()] == [failed_only[0].name], d
            continue
        assert list(d.glob("_done.*")), d
        for table in ("videos", "tracks", "clips"):
            assert (d / f"{table}.parquet").is_file(), d
    if layout.info_path.exists() and folders:
        n = db.run_query(out, "SELECT count(*) AS n FROM videos").to_pylist()[0]["n"]
        assert n == len(folders)
    return len(folders)


def _snapshot_diff(got: dict, want: dict) -> str:
    """A short description of how two catalog snapshots differ (rows only in one of them)."""
    lines = []
    for table in ("videos", "tracks", "clips"):
        g, w = {repr(r) for r in got[table][1]}, {repr(r) for r in want[table][1]}
        lines += [f"{table} only in resumed: {row}" for row in sorted(g - w)[:3]]
        lines += [f"{table} only in reference: {row}" for row in sorted(w - g)[:3]]
    gm, wm = got["motion_files"], want["motion_files"]
    lines += [f"motion file differs: {k}" for k in sorted(set(gm) | set(wm)) if gm.get(k) != wm.get(k)][:5]
    return "\n".join(lines)


@pytest.mark.slow
def test_twenty_sigkills_at_random_points_lose_nothing(tmp_path, reliability_figures):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(30):
        make_phalp_pickle(folder / f"v {i:02d}.pkl", 1, num_frames=90, seed=i)
    (folder / "corrupt.pkl").write_bytes(b"garbage")
    args = ["run", str(folder), "--backend", "phalp-pkl", "--workers", "2", "--no-progress"]
    out = tmp_path / "out"
    rng = random.Random(7)
    kills, tries = 0, 0
    while kills < 20 and tries < 60:
        tries += 1
        proc = subprocess.Popen([sys.executable, "-m", "cluster.cli", *args, "--out", str(out)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            time.sleep(rng.uniform(0.3, 5.5))  # before, during and after Ray's start-up
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                kills += 1
            proc.wait()
        finally:
            kill_session(proc.pid)
        _assert_nothing_partial(out)
        if proc.returncode == 0:  # it finished before the kill: start again from scratch for more kills
            break
    assert kills >= 20, f"only {kills} kills landed in {tries} tries"
    resumed = cli(*args, "--out", str(out))
    assert resumed.returncode == 0, resumed.stderr
    reference = tmp_path / "ref"
    assert cli(*args, "--out", str(reference)).returncode == 0
    got, want = catalog_snapshot(out), catalog_snapshot(reference)
    assert got == want, _snapshot_diff(got, want)
    reliability_figures["kills"] += kills
    reliability_figures["inputs"] += 31
    reliability_figures["rows_lost"] += len(want["videos"][1]) - len(got["videos"][1])


def test_a_write_failure_fails_that_video_not_the_run(tmp_path, monkeypatch, reliability_figures):
    from cluster.stages import CatalogWriter, FetchWorker, FinishWorker, PoseWorker
    from ingest.ids import file_id

    folder = tmp_path / "in"
    folder.mkdir()
    paths = []
    for i in range(3):
        make_phalp_pickle(folder / f"v{i}.pkl", 1, num_frames=60, seed=i)
        paths.append(folder / f"v{i}.pkl")
    items = [VideoItem(video_id=file_id(p), uri=str(p), kind="file") for p in paths]
    once, always = items[0].video_id, items[1].video_id
    failures = []

    def disk_full(staging: Path):
        vid = staging.name.split(".")[0]
        if vid == always or (vid == once and not failures):
            failures.append(vid)
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer, "_before_publish_hook", disk_full)
    out = tmp_path / "out"
    from cluster.run import prepare_run_folder

    config = RunConfig(backend="phalp-pkl")
    prepare_run_folder(RunLayout.at(out), config)
    cfg = config.to_dict()
    fetcher = FetchWorker(cfg, str(out), needs_video=False, config_hash=config.config_hash())
    poser, finisher = PoseWorker(cfg), FinishWorker(cfg)
    writer_stage = CatalogWriter(str(out), config.config_hash())

    def through_the_stages(item):
        _, posed = poser.pose(fetcher.fetch(item))
        _, outcome = finisher.finish(posed)
        return writer_stage.publish(outcome)

    summaries = {it.video_id: through_the_stages(it) for it in items}
    # the first disk-full hit the full outputs; the small failed row then went through
    assert summaries[once]["status"] == "failed" and summaries[once]["published"]
    assert summaries[once]["reason"].startswith("write:") and "free disk space" in summaries[once]["reason"]
    # a disk that stays full: nothing is published, so the next run retries the video
    assert summaries[always]["published"] is False
    assert summaries[items[2].video_id]["status"] == "ok" and summaries[items[2].video_id]["published"]
    layout = RunLayout.at(out)
    assert not layout.video_dir(always).exists() and not any(layout.tmp_dir.iterdir())
    rows = db.run_query(out, "SELECT video_id, status FROM videos ORDER BY 1").to_pylist()
    assert {r["video_id"]: r["status"] for r in rows} == {once: "failed", items[2].video_id: "ok"}
    reliability_figures["inputs"] += 3


# --- boundaries -------------------------------------------------------------------------------------------


def _files_under(root: Path, skip: Path) -> set[str]:
    return {str(p) for p in root.rglob("*") if skip not in p.parents and p != skip}


@pytest.mark.slow
def test_nothing_is_written_outside_the_run_folder(tmp_path, servers, reliability_figures):
    folder = tmp_path / "in"
    folder.mkdir()
    make_phalp_pickle(folder / "evil\nname ..%2F.pkl", 1, num_frames=60, seed=1)
    make_phalp_pickle(folder / "-rf $(touch pwned) `x`;.pkl", 1, num_frames=60, seed=2)
    lst = tmp_path / "list.jsonl"
    entries = [{"uri": "../../etc/x.pkl", "tags": ["../../etc"], "license": "../../x"},
               {"uri": servers["404"].url.replace("video.mp4", "..%2F..%2Fetc%2Fpasswd.pkl?title=../../x")},
               {"uri": "/etc/passwd"}, {"uri": "~/.ssh/id_rsa.pkl"}]
    lst.write_text("".join(json.dumps(e) + "\n" for e in entries))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    out = tmp_path / "out"
    home = Path.home()
    before = _files_under(tmp_path, out)
    tmp_before = set(os.listdir("/tmp"))
    home_before = set(os.listdir(home)) if home.is_dir() else set()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        report = run([str(folder)], [str(lst)], out, RunConfig(backend="phalp-pkl", download=FAST_DOWNLOADS),
                     ExecOptions(workers=1, progress=False))
    finally:
        os.chdir(old)
    assert _files_under(tmp_path, out) == before
    assert not (cwd / "pwned").exists() and not any(cwd.iterdir())
    new_in_tmp = {n for n in set(os.listdir("/tmp")) - tmp_before if not n.startswith(("ray", "pytest", "tmp"))}
    assert new_in_tmp == set()
    if home.is_dir():
        assert {n for n in set(os.listdir(home)) - home_before if n not in (".cache", ".config")} == set()
    id_name = re.compile(r"^(file|url|yt|bad)-[0-9A-Za-z_-]+$")
    for d in RunLayout.at(out).data_dir.glob("*/*"):
        if d.parent.name != "_schema":
            assert id_name.match(d.name), d
    rows = db.run_query(out, "SELECT uri, status FROM videos").to_pylist()
    assert len(rows) == report.inputs - report.duplicates == 6
    reliability_figures["inputs"] += report.inputs


@pytest.fixture
def catalog_dir(tmp_path):
    layout = RunLayout.at(tmp_path / "run")
    layout.root.mkdir()
    layout.info_path.write_text(json.dumps({"format_version": 1}))
    writer.write_schema_fragments(layout, ["jitter_m_s3"])
    db.write_views(layout)
    writer.publish_video(layout, "file-aaaa", "abc", {"video_id": "file-aaaa", "uri": "/v.mp4", "status": "ok",
                                                      "reason": ""}, [], [], ["jitter_m_s3"])
    return layout


ESCAPES = {
    "copy out": "COPY (SELECT 1) TO '{outside}/x.csv'",
    "copy into data": "COPY (SELECT * FROM videos) TO '{data}/aa/file-aaaa/videos.parquet'",
    "export": "EXPORT DATABASE '{outside}/exp'",
    "attach": "ATTACH '{outside}/other.duckdb' AS o",
    "install": "INSTALL httpfs",
    "load": "LOAD httpfs",
    "create": "CREATE TABLE t AS SELECT 1",
    "drop": "DROP VIEW videos",
    "read outside": "SELECT * FROM read_csv('{outside}/secret.csv')",
    "read traversal": "SELECT * FROM read_text('data/../../secret.csv')",
    "unlock": "SET enable_external_access = true",
    "two statements": "SELECT 1; COPY (SELECT 1) TO '{outside}/y.csv'",
}


@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_query_cannot_write_or_escape_the_catalog(catalog_dir, tmp_path, name):
    (tmp_path / "secret.csv").write_text("a,b\n1,2\n")
    before = _files_under(tmp_path, tmp_path / "nothing")
    sql = ESCAPES[name].format(outside=tmp_path, data=catalog_dir.data_dir)
    with pytest.raises(G1ForgeError):
        db.run_query(catalog_dir.root, sql)
    assert _files_under(tmp_path, tmp_path / "nothing") == before
    assert db.run_query(catalog_dir.root, "SELECT video_id FROM videos").to_pylist() == [{"video_id": "file-aaaa"}]


def test_connect_is_sandboxed_for_python_users_too(catalog_dir, tmp_path):
    (tmp_path / "secret.csv").write_text("a,b\n1,2\n")
    con = db.connect(catalog_dir.root)
    try:
        assert con.execute("SELECT count(*) FROM videos").fetchone()[0] == 1
        assert con.execute("DESCRIBE clips").fetchall()
        for sql in (f"COPY (SELECT 1) TO '{tmp_path}/z.csv'", f"SELECT * FROM read_csv('{tmp_path}/secret.csv')",
                    "SET lock_configuration = false"):
            with pytest.raises(Exception):
                con.execute(sql)
    finally:
        con.close()
    assert not (tmp_path / "z.csv").exists()


@pytest.mark.slow
def test_cli_query_and_export_where_cannot_write(catalog_dir, tmp_path):
    target = tmp_path / "x.csv"
    q = cli("query", str(catalog_dir.root), f"COPY (SELECT 1) TO '{target}'")
    assert q.returncode == 2 and "read-only" in q.stderr and not target.exists()
    e = cli("export", str(catalog_dir.root), "--where", f"TRUE)) SELECT 1; COPY (SELECT 1) TO '{target}'; --",
            "--format", "unitree-csv", "--dest", str(tmp_path / "dest"))
    assert e.returncode != 0 and not target.exists()


def test_no_shell_strings_are_built():
    pattern = re.compile(r"shell\s*=\s*True|os\.system\(|os\.popen\(|subprocess\.getoutput|(?<![\w.])commands\.")
    offenders = []
    for package in ("ingest", "pipeline", "catalog", "cluster"):
        for path in (REPO_ROOT / package).rglob("*.py"):
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if pattern.search(line):
                    offenders.append(f"{path.relative_to(REPO_ROOT)}:{n}: {line.strip()}")
    assert offenders == []


def test_a_trickling_server_cannot_hold_a_download_past_its_deadline(tmp_path, servers):
    from ingest.download import download_video
    from ingest.ids import remote_video_id

    url = servers["trickle"].url  # 200 bytes/s for ever
    item = VideoItem(video_id=remote_video_id(url), uri=url, kind="url")
    t0 = time.monotonic()
    with pytest.raises(NetworkError, match="deadline"):
        download_video(item, tmp_path / "cache", socket_timeout_s=1.0, retries=2, retry_sleep_s=0.5,
                       deadline_s=2.0)
    assert time.monotonic() - t0 < 10.0


def test_a_silent_server_costs_at_most_the_deadline(tmp_path, servers):
    from ingest.download import download_video
    from ingest.ids import remote_video_id

    url = servers["silent"].url
    item = VideoItem(video_id=remote_video_id(url), uri=url, kind="url")
    t0 = time.monotonic()
    with pytest.raises(NetworkError):
        download_video(item, tmp_path / "cache", socket_timeout_s=0.5, retries=5, retry_sleep_s=1.0,
                       deadline_s=2.0)
    assert time.monotonic() - t0 < 8.0


def test_a_very_slow_trickle_is_stopped_at_the_deadline(tmp_path):
    # 10 bytes/s: yt-dlp's first progress report would come after ~100 s, so only the hard stop (the attempt's
    # process killed at the deadline) ends this in time.
    from ingest.download import KILL_GRACE_S, PARTIAL_DIR_NAME, cached_file, download_video
    from ingest.ids import remote_video_id

    server = MisbehavingServer("trickle", byte_interval_s=0.1)
    try:
        item = VideoItem(video_id=remote_video_id(server.url), uri=server.url, kind="url")
        t0 = time.monotonic()
        with pytest.raises(NetworkError, match="deadline") as info:
            download_video(item, tmp_path / "cache", socket_timeout_s=1.0, retries=2, retry_sleep_s=0.2,
                           deadline_s=2.0)
        elapsed_s = time.monotonic() - t0
    finally:
        server.close()
    assert 2.0 <= elapsed_s < 2.0 + KILL_GRACE_S + 1.5, elapsed_s
    assert info.value.catalog_reason().startswith("network:") and "deadline_s" in str(info.value)
    cache = tmp_path / "cache"
    assert cached_file(cache, item.video_id) is None
    assert not (cache / PARTIAL_DIR_NAME / item.video_id).exists()  # the partial file is gone
