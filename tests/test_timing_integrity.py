"""Timing that does not add up (frame count, duration, frame rate) never becomes an ``ok`` row.

The broken input of the hardening issue is made here: a small valid MP4 whose video track's ``mdhd`` timescale is
then patched to 0. FFmpeg reads such a track with a time base of 1 s, so 60 frames at 30 fps become one frame
every 3000 s; with the edit list the muxer writes, only the first frame is demuxed at all. Probing and decoding
must fail it with ``bad_timing`` (and a run must record that as a failed row), while files whose numbers add up,
or can be made to add up by counting what the decoder will show, keep working.
"""

from __future__ import annotations

import struct
import textwrap
from fractions import Fraction
from pathlib import Path

import pytest

from conftest import SHARED_VIDEOS
from ingest.decode import iter_frames
from ingest.errors import ProbeError
from ingest.probe import probe_video
from video_factory import frame_rgb, make_video

av = pytest.importorskip("av")

NUM_FRAMES = 60
FPS = 30

# --- ISO-BMFF (MP4) boxes -----------------------------------------------------------------------------------


def _boxes(data: bytes, start: int, end: int):
    """(type, payload_start, box_end) of each box laid end to end in ``data[start:end]``.

    A box is ``size:u32 type:4cc payload``; size 1 means a 64-bit size follows the type, size 0 means "to the end".
    """
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            size, header = struct.unpack_from(">Q", data, pos + 8)[0], 16
        elif size == 0:
            size = end - pos
        assert size >= header and pos + size <= end, f"malformed box {kind!r} at {pos}"
        yield kind, pos + header, pos + size
        pos += size


def _child(data: bytes, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    """(payload_start, box_end) of the first child box of type ``kind``, or None."""
    return next(((s, e) for k, s, e in _boxes(data, start, end) if k == kind), None)


def _video_trak(data: bytes) -> tuple[int, int]:
    """(payload_start, box_end) of the ``moov/trak`` whose ``mdia/hdlr`` handler type is ``vide``."""
    moov = _child(data, 0, len(data), b"moov")
    assert moov is not None, "no moov box"
    for kind, start, end in _boxes(data, *moov):
        if kind != b"trak":
            continue
        mdia = _child(data, start, end, b"mdia")
        hdlr = mdia and _child(data, *mdia, b"hdlr")
        # hdlr payload: version+flags (4), pre_defined (4), handler_type (4)
        if hdlr and data[hdlr[0] + 8 : hdlr[0] + 12] == b"vide":
            return start, end
    raise AssertionError("no video track")


def set_video_timescale(path: Path, timescale: int) -> int:
    """Overwrite the ``mdhd`` timescale of the video track of the MP4 at ``path``; returns the old value.

    mdhd payload (ISO/IEC 14496-12 8.4.2): version (1) + flags (3), then for version 0 creation_time (4),
    modification_time (4), timescale (4), duration (4); version 1 has 8-byte times and duration.
    """
    data = bytearray(path.read_bytes())
    mdia = _child(data, *_video_trak(data), b"mdia")
    mdhd = _child(data, *mdia, b"mdhd")
    version = data[mdhd[0]]
    offset = mdhd[0] + 4 + (16 if version == 1 else 8)
    (old,) = struct.unpack_from(">I", data, offset)
    struct.pack_into(">I", data, offset, timescale)
    path.write_bytes(bytes(data))
    return old


def halve_edit_list(path: Path) -> None:
    """Make the video track's single edit play only the first half of the media (a legitimate trimmed file).

    elst payload: version (1) + flags (3), entry_count (4), then per entry (version 0) segment_duration (4, in
    the movie timescale), media_time (4), media_rate (4).
    """
    data = bytearray(path.read_bytes())
    edts = _child(data, *_video_trak(data), b"edts")
    assert edts is not None, "the muxer wrote no edit list"
    elst = _child(data, *edts, b"elst")
    assert data[elst[0]] == 0 and struct.unpack_from(">I", data, elst[0] + 4)[0] == 1
    (segment,) = struct.unpack_from(">I", data, elst[0] + 8)
    struct.pack_into(">I", data, elst[0] + 8, segment // 2)
    path.write_bytes(bytes(data))


def write_mp4(path: Path, *, num_frames: int = NUM_FRAMES, fps: int = FPS, edit_list: bool = True) -> Path:
    """A small H.264 MP4 of ``num_frames`` frames at ``fps`` (time base 1/90000 s), with or without an edit list."""
    time_base = Fraction(1, 90000)
    with av.open(str(path), "w", options={} if edit_list else {"use_editlist": "0"}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.time_base = stream.codec_context.time_base = time_base
        stream.options = {"preset": "ultrafast", "crf": "28"}
        for index in range(num_frames):
            frame = av.VideoFrame.from_ndarray(frame_rgb(index, width=64, height=48))
            frame.pts, frame.time_base = int(index / fps / time_base), time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def zero_timescale_mp4(path: Path, *, edit_list: bool = True, num_frames: int = NUM_FRAMES) -> Path:
    """The issue's broken file: a valid MP4 whose video ``mdhd`` timescale is then set to 0."""
    write_mp4(path, edit_list=edit_list, num_frames=num_frames)
    data = path.read_bytes()
    assert (_child(data, *_video_trak(data), b"edts") is not None) == edit_list
    assert set_video_timescale(path, 0) == 90000
    return path


# --- probing and decoding -----------------------------------------------------------------------------------


@pytest.mark.parametrize("edit_list, num_frames", [(True, NUM_FRAMES), (False, NUM_FRAMES), (True, 300)],
                         ids=["edit_list", "no_edit_list", "long"])  # long: more frames than the probe samples
def test_probe_fails_a_zero_timescale_with_bad_timing(tmp_path, edit_list, num_frames):
    path = zero_timescale_mp4(tmp_path / "zero timescale.mp4", edit_list=edit_list, num_frames=num_frames)
    with pytest.raises(ProbeError) as info:
        probe_video(path)
    err = info.value
    assert err.reason == "bad_timing" and err.status == "failed"
    text = err.catalog_reason()
    assert text.startswith("bad_timing: ") and str(path) in text
    assert "ffmpeg" in text  # says how to repair it
    assert f"{num_frames} frames" in text  # says what does not add up


@pytest.mark.parametrize("edit_list", [True, False], ids=["edit_list", "no_edit_list"])
def test_decode_refuses_a_zero_timescale_instead_of_yielding_bogus_times(tmp_path, edit_list):
    path = zero_timescale_mp4(tmp_path / "zero timescale.mp4", edit_list=edit_list)
    with pytest.raises(ProbeError) as info:
        list(iter_frames(path))
    assert info.value.reason == "bad_timing"


def test_the_repair_the_message_gives_works(tmp_path):
    """The numbers in the message are those of the file; re-muxing with the rate it suggests gives a good file.

    The repair is what ``ffmpeg -ignore_editlist 1 -i IN -c:v copy -f h264 v.h264`` then ``ffmpeg -r R -i v.h264
    -c copy OUT.mp4`` do, done with PyAV: every packet, edit list ignored, restamped at R frames per second.
    """
    import re

    path = zero_timescale_mp4(tmp_path / "broken.mp4")
    with pytest.raises(ProbeError) as info:
        probe_video(path)
    suggested = re.search(r"-r (\d+(?:\.\d+)?)", str(info.value))
    assert suggested is not None, str(info.value)
    rate = Fraction(suggested.group(1))
    assert rate == FPS  # the movie header's duration (2 s) over the header's 60 frames

    fixed = tmp_path / "fixed.mp4"
    with av.open(str(path), options={"ignore_editlist": "1"}) as src, av.open(str(fixed), "w") as dst:
        in_stream = src.streams.video[0]
        out_stream = dst.add_stream_from_template(in_stream)
        packets = [p for p in src.demux(in_stream) if p.size]
        assert [p.pts for p in packets] == sorted(p.pts for p in packets)  # no B-frames (x264 "ultrafast")
        for index, packet in enumerate(packets):
            packet.stream = out_stream
            packet.time_base = 1 / rate  # before the times: setting a packet's time base rescales its times
            packet.pts = packet.dts = index
            packet.duration = 1
            dst.mux(packet)
    probe = probe_video(fixed)
    assert probe.num_frames == NUM_FRAMES and probe.fps == pytest.approx(FPS)
    assert probe.duration_s == pytest.approx(NUM_FRAMES / FPS, abs=0.05)
    assert len(list(iter_frames(fixed))) == NUM_FRAMES


def test_a_pickle_beside_a_broken_video_does_not_take_its_rate(tmp_path):
    from pipeline.backends.phalp_pkl import probe_fps_beside

    (tmp_path / "good.pkl").write_bytes(b"")
    write_mp4(tmp_path / "good.mp4")
    assert probe_fps_beside(tmp_path / "good.pkl") == pytest.approx(FPS, rel=1e-3)
    (tmp_path / "broken.pkl").write_bytes(b"")
    zero_timescale_mp4(tmp_path / "broken.mp4")
    assert probe_fps_beside(tmp_path / "broken.pkl") is None  # the backend's own fps option or default applies


@pytest.mark.parametrize("num_frames", [NUM_FRAMES, 300])  # 300: more frames than the probe samples
def test_a_trimming_edit_list_probes_as_the_frames_decoding_shows(tmp_path, num_frames):
    """A valid file whose edit list plays half its media: the header lists N frames, decoding shows N / 2."""
    path = write_mp4(tmp_path / "trimmed.mp4", num_frames=num_frames)
    halve_edit_list(path)
    probe = probe_video(path)
    times_s = [frame.time_s for frame in iter_frames(path, max_side_px=16)]
    assert probe.num_frames == len(times_s) == num_frames // 2
    assert probe.fps == pytest.approx(FPS, rel=1e-3)
    assert probe.duration_s == pytest.approx(len(times_s) / FPS, abs=1e-3)
    assert times_s[-1] < probe.duration_s


@pytest.mark.parametrize(
    "num_frames, duration_s, fps",
    [
        (60, 2.0, 30.0),
        (312, 10.4447, 29.827),  # the shared tennis video: variable frame rate
        (1, 1 / 30, 30.0),  # one frame lasting one period
        (2, 1 / 30, 30.0),  # the last frame's duration not counted
        (3, 6.0, 0.5),  # slow but consistent
        (10, 0.01, 1000.0),
        (60, 2.0, 0.0),  # no rate known: nothing to compare (decoding times come from timestamps)
    ],
)
def test_timing_that_adds_up_passes(num_frames, duration_s, fps):
    from ingest.probe import check_timing

    check_timing("v.mp4", num_frames=num_frames, duration_s=duration_s, fps=fps)


@pytest.mark.parametrize(
    "num_frames, duration_s, fps, words",
    [
        (60, 2.0, 1 / 3000, "60 frames"),  # the header: 60 frames cannot fit 2 s at one per 3000 s
        (1, 2.0, 1 / 3000, "3000"),  # what its demuxer shows: one frame that lasts longer than the video
        (60, 180000.0, 1 / 3000, "0.000333"),  # without an edit list it adds up, at an impossible rate
        (60, 20.0, 30.0, "20.00 s"),  # duration far from frames / fps
        (600, 2.0, 30.0, "600 frames"),
        (60, float("nan"), 30.0, "nan"),
        (60, 2.0, float("inf"), "inf"),
    ],
)
def test_timing_that_does_not_add_up_fails_with_the_numbers(num_frames, duration_s, fps, words):
    from ingest.errors import BadTiming
    from ingest.probe import check_timing

    with pytest.raises(BadTiming) as info:
        check_timing("v.mp4", num_frames=num_frames, duration_s=duration_s, fps=fps)
    assert "v.mp4" in str(info.value) and words in str(info.value)


@pytest.mark.parametrize("name", ["dance.mp4", "gvhmr_tennis.mp4", "moving_cam_cafe.mp4", "moving_cam_hike.mp4",
                                  "multi_four_children.mp4", "phalp_runner.mp4"])
def test_real_videos_still_probe_and_add_up(name):
    path = SHARED_VIDEOS / name
    if not path.exists():
        pytest.skip(f"{path} is absent: clone the project with ../shared beside it to run this test")
    probe = probe_video(path)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        packets = sum(1 for p in container.demux(stream) if p.size and not p.is_discard)
        header_frames = stream.frames
    assert probe.num_frames == packets == header_frames
    assert abs(probe.duration_s * probe.fps - probe.num_frames) <= 1.0


def test_factory_videos_of_every_container_still_probe(tmp_path):
    """Matroska, WebM, AVI, MOV, VFR, one frame, 0.5 and 1000 fps: every odd but valid file still probes."""
    cases = [("a.mkv", {}), ("a.webm", {"codec": "libvpx-vp9"}), ("a.avi", {"codec": "mpeg4"}),
             ("a.mov", {"with_audio": True}), ("vfr.mp4", {"vfr": True}), ("vfr.mkv", {"vfr": True}),
             ("one.mp4", {"num_frames": 1}), ("slow.mkv", {"fps": 0.5, "num_frames": 3}),
             ("fast.mp4", {"fps": 1000, "num_frames": 10})]
    for name, options in cases:
        path = make_video(tmp_path / name, **options)
        probe = probe_video(path)
        decoded = sum(1 for _ in iter_frames(path))
        assert probe.num_frames == decoded, name


# --- end to end ---------------------------------------------------------------------------------------------

#: A pose backend for this test, loaded by the run's workers through the plugin hook: it decodes every frame and
#: reports one synthetic walker seen in each, at the frame rate the decoder gives (as the real backends do).
STANDIN = textwrap.dedent('''
    from ingest.decode import iter_frames
    from motion_factory import look_at_camera, make_pose_result, make_track, walking_motion
    from pipeline.backends.base import PoseBackend, register_backend


    @register_backend("test-timing-walker")
    class WalkerInEveryFrame(PoseBackend):
        version = "test-timing-walker-1"

        def process(self, item, video_path):
            with iter_frames(video_path, max_side_px=32) as frames:
                fps = frames.average_fps
                num_frames = sum(1 for _ in frames)
            track = make_track(walking_motion(num_frames=num_frames, fps=fps), look_at_camera(), fps=fps)
            return make_pose_result([track], num_frames=num_frames, fps=fps)
''')


@pytest.mark.slow
def test_a_run_records_the_zero_timescale_video_as_failed_not_as_an_ok_clip(tmp_path, monkeypatch,
                                                                           reliability_figures):
    from catalog import db
    from cluster.config import RunConfig
    from cluster.run import ExecOptions, run
    from pipeline.backends import base

    plugin_dir = tmp_path / "plugin"
    plugin_dir.mkdir()
    (plugin_dir / "g1forge_test_timing_walker.py").write_text(STANDIN)
    tests_dir = Path(__file__).resolve().parent
    monkeypatch.syspath_prepend(str(plugin_dir))
    monkeypatch.setenv("PYTHONPATH", f"{plugin_dir}:{tests_dir}")  # the Ray workers import the backend too
    monkeypatch.setenv(base.BACKEND_MODULES_ENV, "g1forge_test_timing_walker")
    saved = dict(base._REGISTRY)

    folder = tmp_path / "in"
    folder.mkdir()
    zero_timescale_mp4(folder / "zero timescale.mp4")
    write_mp4(folder / "good.mp4", num_frames=4 * FPS)
    out = tmp_path / "out"
    try:
        report = run([str(folder)], [], out, RunConfig(backend="test-timing-walker"),
                     ExecOptions(workers=1, progress=False))
    finally:
        base._REGISTRY.clear()
        base._REGISTRY.update(saved)
    assert report.inputs == 2

    videos = {Path(r["uri"]).name: r for r in db.run_query(
        out, "SELECT video_id, uri, status, reason, duration_s FROM videos").to_pylist()}
    bad, good = videos["zero timescale.mp4"], videos["good.mp4"]
    assert bad["status"] == "failed", bad
    assert bad["reason"].startswith("bad_timing: ") and "ffmpeg" in bad["reason"], bad
    assert good["status"] == "ok", good  # the stand-in backend works: the failure is the bad file's own
    # what the export selected: ok clips of at least 3 s come from the good video only
    selected = db.run_query(out, "SELECT video_id, duration_s, num_frames FROM clips "
                                 "WHERE status = 'ok' AND duration_s >= 3").to_pylist()
    assert selected and {c["video_id"] for c in selected} == {good["video_id"]}, selected
    for clip in selected:
        assert clip["duration_s"] == pytest.approx(clip["num_frames"] / FPS)
    reliability_figures["inputs"] += report.inputs
    reliability_figures["rows_lost"] += report.inputs - len(videos)
