"""probe_video on synthetic videos, broken files and the shared videos."""

from __future__ import annotations

import time

import pytest

from ingest.errors import AudioOnly, InputNotFound, ProbeError
from ingest.probe import is_vfr_from_pts, probe_video, rotation_cw_deg, sniff_container
from video_factory import make_audio_only, make_video


def test_probe_constant_rate_mp4(tmp_path):
    path = make_video(tmp_path / "clip.mp4", width=96, height=64, fps=25, num_frames=50)
    probe = probe_video(path)
    assert (probe.width, probe.height, probe.num_frames, probe.codec) == (96, 64, 50, "h264")
    assert probe.fps == pytest.approx(25.0)
    assert probe.duration_s == pytest.approx(2.0, abs=1e-3)
    assert probe.is_vfr is False
    assert probe.rotation_deg == 0
    assert probe.has_audio is False
    assert probe.size_bytes == path.stat().st_size


def test_probe_ntsc_rate(tmp_path):
    probe = probe_video(make_video(tmp_path / "ntsc.mp4", fps=30000 / 1001, num_frames=30))
    assert probe.fps == pytest.approx(29.97, abs=1e-2)
    assert probe.is_vfr is False


@pytest.mark.parametrize("suffix, codec", [(".mp4", "libx264"), (".mkv", "libx264"), (".webm", "libvpx-vp9")])
def test_probe_detects_variable_frame_rate(tmp_path, suffix, codec):
    vfr = probe_video(make_video(tmp_path / f"vfr{suffix}", codec=codec, num_frames=30, vfr=True))
    cfr = probe_video(make_video(tmp_path / f"cfr{suffix}", codec=codec, num_frames=30))
    assert vfr.is_vfr is True
    assert cfr.is_vfr is False  # Matroska's 1 ms ticks (33, 33, 34 ms) are not VFR
    assert vfr.num_frames == cfr.num_frames == 30
    assert vfr.fps == pytest.approx(30.0, rel=0.02)


def test_probe_counts_frames_when_the_header_has_none(tmp_path):
    # Matroska/WebM headers carry no frame count: the probe demuxes the stream to count packets.
    probe = probe_video(make_video(tmp_path / "clip.webm", codec="libvpx-vp9", num_frames=37, fps=24))
    assert probe.num_frames == 37
    assert probe.codec == "vp9"
    assert probe.duration_s == pytest.approx(37 / 24, abs=0.01)


def test_probe_avi_and_mov(tmp_path):
    avi = probe_video(make_video(tmp_path / "clip.avi", codec="mpeg4", num_frames=20))
    assert (avi.codec, avi.num_frames, avi.is_vfr) == ("mpeg4", 20, False)
    assert avi.fps == pytest.approx(30.0)
    mov = probe_video(make_video(tmp_path / "clip.mov", num_frames=20, with_audio=True))
    assert mov.has_audio is True and mov.num_frames == 20


@pytest.mark.parametrize("rotation_deg", [90, 180, 270])
def test_probe_reads_the_display_rotation(tmp_path, rotation_deg):
    path = make_video(tmp_path / f"rot{rotation_deg}.mp4", width=64, height=48, num_frames=5,
                      rotation_deg=rotation_deg)
    probe = probe_video(path)
    assert probe.rotation_deg == rotation_deg
    assert (probe.width, probe.height) == (64, 48)  # coded size, before rotation


def test_rotation_conventions():
    # FFmpeg's display-matrix angle is counter-clockwise; phone "rotate" tags are clockwise.
    assert rotation_cw_deg(-90.0) == 90
    assert rotation_cw_deg(90.0) == 270
    assert rotation_cw_deg(-180.0) == rotation_cw_deg(180.0) == 180
    assert rotation_cw_deg(-89.6) == 90  # snapped
    assert rotation_cw_deg(0.0) == rotation_cw_deg(None) == 0
    assert rotation_cw_deg(None, "90") == 90
    assert rotation_cw_deg(0.0, "270") == 270
    assert rotation_cw_deg(None, "-90") == 270
    assert rotation_cw_deg(None, "garbage") == 0


def test_vfr_rule():
    assert is_vfr_from_pts([0, 512, 1024, 1536, 2048]) is False
    assert is_vfr_from_pts([0, 33, 67, 100, 133, 167]) is False  # 1 ms rounding of 30 fps
    assert is_vfr_from_pts([0, 3000, 7407, 10407, 13407]) is True  # one long frame (tennis-like)
    assert is_vfr_from_pts([0, 1000, 2000, 3015, 4015]) is True  # 1.5 % longer
    assert is_vfr_from_pts([0, 1000, 2000, 3005, 4005]) is False  # 0.5 %: within tolerance
    assert is_vfr_from_pts([2048, 0, 1024, 512, 1536]) is False  # order does not matter (B-frames)
    assert is_vfr_from_pts([0, 512]) is False


def test_audio_only_file_raises_audio_only(tmp_path):
    for name in ("tone.m4a", "tone.mp4"):
        with pytest.raises(AudioOnly, match="only audio") as info:
            probe_video(make_audio_only(tmp_path / name))
        assert info.value.reason == "audio_only"


def test_video_with_audio(tmp_path):
    assert probe_video(make_video(tmp_path / "av.mp4", with_audio=True)).has_audio is True


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(ProbeError, match="empty") as info:
        probe_video(path)
    assert info.value.reason == "unreadable"


def test_missing_file(tmp_path):
    with pytest.raises(InputNotFound):
        probe_video(tmp_path / "nope.mp4")


def test_truncated_mp4_index_at_the_end(tmp_path):
    data = make_video(tmp_path / "full.mp4", num_frames=30, pattern="noise").read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) // 2])  # the index (moov) is lost
    with pytest.raises(ProbeError, match="truncated"):
        probe_video(path)


def test_truncated_mp4_index_at_the_front(tmp_path):
    data = make_video(tmp_path / "full.mp4", num_frames=30, pattern="noise", faststart=True).read_bytes()
    assert data[:64].find(b"moov") > 0
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) // 2])  # the index survives, the data does not
    with pytest.raises(ProbeError, match="truncated"):
        probe_video(path)


def test_truncated_matroska(tmp_path):
    data = make_video(tmp_path / "full.mkv", num_frames=60, pattern="noise", width=160, height=120).read_bytes()
    path = tmp_path / "cut.mkv"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ProbeError, match="truncated"):
        probe_video(path)


def test_text_and_html_renamed_mp4(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("these are my notes, not a video\n" * 20)
    with pytest.raises(ProbeError, match="is a text file, not a video"):
        probe_video(text)
    html = tmp_path / "page.mp4"
    html.write_text("<!DOCTYPE html><html><body>Sign in</body></html>")
    with pytest.raises(ProbeError, match="html file"):
        probe_video(html)
    binary = tmp_path / "random.mp4"
    binary.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(ProbeError, match="not a video container"):
        probe_video(binary)


def test_sniff_container(tmp_path):
    mp4 = make_video(tmp_path / "a.mp4", num_frames=2).read_bytes()[:512]
    mkv = make_video(tmp_path / "a.mkv", num_frames=2).read_bytes()[:512]
    avi = make_video(tmp_path / "a.avi", codec="mpeg4", num_frames=2).read_bytes()[:512]
    assert (sniff_container(mp4), sniff_container(mkv), sniff_container(avi)) == ("mp4", "matroska", "avi")
    assert sniff_container(b"  <!doctype HTML><html>") == "html"
    assert sniff_container("plain text caf\u00e9".encode()) == "text"
    assert sniff_container(b"\x00\x01\x02\x03\xff\xfe" * 10) is None


def test_probe_is_fast_on_a_long_video(tmp_path):
    # 600 frames: the probe reads packets, decodes one frame.
    path = make_video(tmp_path / "long.mkv", width=64, height=48, num_frames=600, pattern="solid")
    started = time.process_time()  # CPU time: other jobs on a shared machine do not inflate it
    probe = probe_video(path)
    assert probe.num_frames == 600
    assert time.process_time() - started < 1.0


@pytest.mark.videos
def test_shared_runner_video(runner_video):
    probe = probe_video(runner_video)
    assert (probe.width, probe.height, probe.num_frames) == (1920, 1088, 180)
    assert probe.fps == pytest.approx(30.0)
    assert probe.is_vfr is False
    assert probe.duration_s == pytest.approx(6.0, abs=0.05)
    assert probe.rotation_deg == 0


@pytest.mark.videos
def test_shared_tennis_video(tennis_video):
    probe = probe_video(tennis_video)
    assert (probe.width, probe.height, probe.num_frames) == (812, 720, 312)
    assert probe.is_vfr is True
    assert probe.fps == pytest.approx(29.8, abs=0.1)
