"""Streaming decoder: indices, times, seeking, rotation, downsizing, errors. Videos are made here with PyAV."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from ingest.decode import DecodedFrame, iter_frames, prefetch
from ingest.errors import DecodeError, ProbeError

av = pytest.importorskip("av")

W, H = 96, 64
BITS = 7  # frame index encoded as 7 vertical black/white stripes in the top half


def _pattern(i: int) -> np.ndarray:
    """RGB frame whose top half encodes ``i`` in binary stripes; a white marker square in the bottom-left."""
    img = np.zeros((H, W, 3), np.uint8)
    sw = W // BITS
    for b in range(BITS):
        if (i >> b) & 1:
            img[: H // 2, b * sw : (b + 1) * sw] = 255
    img[H - 16 :, :16] = 255
    return img


def _read_index(rgb: np.ndarray) -> int:
    sw = rgb.shape[1] // BITS
    top = rgb[: rgb.shape[0] // 2].mean(axis=(0, 2))
    return sum(1 << b for b in range(BITS) if top[b * sw + 2 : (b + 1) * sw - 2].mean() > 127)


def write_video(path, n: int = 40, *, fps: int = 10, codec: str = "libx264", pts=None, rotation=None, gop: int = 8,
                fmt: str | None = None):
    """Write ``n`` pattern frames. ``pts``: explicit timestamps in ms (variable frame rate). ``fmt``: container."""
    container = av.open(str(path), "w", format=fmt)
    if codec == "png":
        stream = container.add_stream("png", rate=fps)
        stream.pix_fmt = "rgb24"
    else:
        stream = container.add_stream(codec, rate=fps, options={"g": str(gop), "crf": "12", "bf": "2"})
        stream.pix_fmt = "yuv420p"
    stream.width, stream.height = W, H
    if rotation is not None:
        stream.set_display_rotation(rotation)
    if pts is not None:
        stream.time_base = Fraction(1, 1000)
        stream.codec_context.time_base = Fraction(1, 1000)
    for i in range(n):
        frame = av.VideoFrame.from_ndarray(_pattern(i), format="rgb24")
        if pts is not None:
            frame.pts = int(pts[i])
            frame.time_base = Fraction(1, 1000)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


@pytest.fixture(scope="module")
def h264_video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("dec") / "v.mp4", 40)


def test_full_decode_indices_times_and_order(h264_video):
    frames = list(iter_frames(h264_video))
    assert [f.frame_idx for f in frames] == list(range(40))
    np.testing.assert_allclose([f.time_s for f in frames], np.arange(40) / 10, atol=1e-9)
    assert [_read_index(f.rgb) for f in frames] == list(range(40))  # presentation order, B-frames reordered
    f0 = frames[0]
    assert isinstance(f0, DecodedFrame) and f0.rgb.dtype == np.uint8 and f0.rgb.shape == (H, W, 3)
    assert f0.source_hw == (H, W) and f0.scale_to_source == 1.0


@pytest.mark.parametrize("start_s,end_s", [(0.0, None), (1.05, 2.0), (1.1, 1.45), (2.3, None), (3.85, None)])
def test_time_range_matches_full_decode(h264_video, start_s, end_s):
    full = [(f.frame_idx, f.time_s) for f in iter_frames(h264_video)]
    frames = iter_frames(h264_video, start_s=start_s, end_s=end_s)
    got = [(f.frame_idx, f.time_s, _read_index(f.rgb)) for f in frames]
    want = [(i, t) for i, t in full if t >= start_s - 1e-9 and (end_s is None or t < end_s)]
    assert [(i, t) for i, t, _ in got] == want
    assert [k for *_, k in got] == [i for i, _ in want]  # the pixels are those of the indexed frame
    first = want[0][0]
    np.testing.assert_allclose(frames.leading_times_s, [t for _, t in full[:first]])


def test_time_range_on_raw_stream_without_timestamps(tmp_path):
    """A raw H.264 stream has no packet timestamps and cannot seek: decode from the start, still indexed."""
    path = write_video(tmp_path / "raw.h264", 30, fmt="h264")
    full = [(f.frame_idx, f.time_s) for f in iter_frames(path)]
    frames = iter_frames(path, start_s=0.5)
    got = [(f.frame_idx, f.time_s, _read_index(f.rgb)) for f in frames]
    assert [(i, t) for i, t, _ in got] == [(i, t) for i, t in full if t >= 0.5]
    assert [k for *_, k in got] == [i for i, *_ in got]
    assert len(frames.leading_times_s) == got[0][0] > 0


def test_start_after_end_yields_nothing(h264_video):
    assert list(iter_frames(h264_video, start_s=10.0)) == []
    assert list(iter_frames(h264_video, start_s=1.0, end_s=1.0)) == []


def test_variable_frame_rate_times(tmp_path):
    pts = np.cumsum([0, 33, 33, 50, 33, 67, 33, 33, 40, 33, 33, 33])
    path = write_video(tmp_path / "vfr.mkv", len(pts), codec="libx264", pts=pts)
    frames = list(iter_frames(path))
    np.testing.assert_allclose([f.time_s for f in frames], pts / 1000.0, atol=1e-6)
    sub = list(iter_frames(path, start_s=0.2))
    assert sub[0].frame_idx == int(np.argmax(pts / 1000.0 >= 0.2))
    assert [_read_index(f.rgb) for f in sub] == [f.frame_idx for f in sub]


@pytest.mark.parametrize("rotation_ccw,k", [(90, 1), (-90, 3), (180, 2)])
def test_display_rotation_applied(tmp_path, rotation_ccw, k):
    plain = next(iter(iter_frames(write_video(tmp_path / "p.mov", 3, codec="png"))))
    path = write_video(tmp_path / "r.mov", 3, codec="png", rotation=rotation_ccw)
    frames = iter_frames(path)
    first = next(frames)
    assert frames.rotation_ccw_deg == rotation_ccw % 360
    np.testing.assert_array_equal(first.rgb, np.rot90(plain.rgb, k))
    assert first.source_hw == first.rgb.shape[:2]
    if k % 2:
        assert first.rgb.shape[:2] == (W, H)


def test_max_side_downsizes_and_keeps_source_size(tmp_path):
    path = write_video(tmp_path / "big.mov", 2, codec="png")
    frames = list(iter_frames(path, max_side_px=48))
    assert frames[0].rgb.shape == (32, 48, 3)
    assert frames[0].source_hw == (H, W)
    assert frames[0].scale_to_source == pytest.approx(2.0)
    assert list(iter_frames(path, max_side_px=1000))[0].rgb.shape == (H, W, 3)  # never enlarged


def test_not_a_video_raises_probe_error(tmp_path):
    bad = tmp_path / "x.mp4"
    bad.write_text("<html>not a video</html>")
    with pytest.raises(ProbeError):
        iter_frames(bad)


def _corrupt_packet(path, index: int) -> None:
    container = av.open(str(path))
    spans = [(p.pos, p.size) for p in container.demux(container.streams.video[0]) if p.size]
    container.close()
    pos, size = spans[index]
    data = bytearray(path.read_bytes())
    data[pos + size // 4 : pos + size // 4 + size // 2] = b"\xff" * (size // 2)
    path.write_bytes(bytes(data))


def test_decode_error_mid_stream_names_frame(tmp_path):
    path = write_video(tmp_path / "c.mov", 10, codec="png")
    _corrupt_packet(path, 5)
    seen = []
    with pytest.raises(DecodeError, match="frame 5"):
        for f in iter_frames(path):
            seen.append(f.frame_idx)
    assert seen == [0, 1, 2, 3, 4]


def test_prefetch_same_frames_and_propagates_errors(h264_video, tmp_path):
    direct = [(f.frame_idx, f.time_s) for f in iter_frames(h264_video)]
    assert [(f.frame_idx, f.time_s) for f in prefetch(iter_frames(h264_video), depth=2)] == direct
    path = write_video(tmp_path / "c.mov", 10, codec="png")
    _corrupt_packet(path, 6)
    seen = []
    with pytest.raises(DecodeError):
        for f in prefetch(iter_frames(path)):
            seen.append(f.frame_idx)
    assert seen == list(range(6))


def test_prefetch_early_exit_stops_producer(h264_video):
    frames = iter_frames(h264_video)
    gen = prefetch(frames, depth=2)
    assert next(gen).frame_idx == 0
    gen.close()  # must not hang; the producer closes the file
    assert frames._done


@pytest.mark.videos
@pytest.mark.slow
def test_seek_on_real_vfr_video_matches_full_decode(tennis_video):
    full = [(f.frame_idx, f.time_s) for f in iter_frames(tennis_video, max_side_px=160)]
    assert len(full) == 312
    times = np.array([t for _, t in full])
    assert np.ptp(np.diff(times)) > 0.005  # variable frame rate really is variable
    for start_s in (1.0, times[100], 7.77):
        got = [(f.frame_idx, f.time_s) for f in iter_frames(tennis_video, start_s=start_s, end_s=start_s + 0.5,
                                                             max_side_px=160)]
        assert got == [(i, t) for i, t in full if start_s <= t < start_s + 0.5]
