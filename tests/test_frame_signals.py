"""Per-frame signals on synthetic frames: static, panning, hard cut, masked moving person."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.frame_signals import FrameSignalAccumulator, gray_thumbnail

H, W = 180, 320


def _texture(seed: int, h: int = H, w: int = 3 * W) -> np.ndarray:
    """A smooth random RGB texture (blurred noise), wider than a frame so it can pan."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, (h // 8 + 1, w // 8 + 1, 3))
    tex = np.repeat(np.repeat(small, 8, axis=0), 8, axis=1)[:h, :w]
    return tex.astype(np.uint8)


def _smooth_texture(seed: int, h: int = H, w: int = 3 * W) -> np.ndarray:
    """A random RGB picture with large smooth blobs (noise on a 40 px grid, interpolated): like real footage,
    its coarse block means are structured, unlike those of :func:`_texture`."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, (h // 40 + 2, w // 40 + 2, 3)).astype(np.float32)
    big = cv2.resize(small, (w + 80, h + 80), interpolation=cv2.INTER_CUBIC)[40 : 40 + h, 40 : 40 + w]
    return np.clip(big, 0, 255).astype(np.uint8)


def _noisy(frame: np.ndarray, rng, sigma: float = 2.0) -> np.ndarray:
    """Add compression-like noise."""
    return np.clip(frame + rng.normal(0, sigma, frame.shape), 0, 255).astype(np.uint8)


def _run(frames, boxes=None) -> tuple[np.ndarray, np.ndarray]:
    acc = FrameSignalAccumulator()
    for i, f in enumerate(frames):
        acc.update(f, None if boxes is None else boxes[i])
    return acc.result()


def test_thumbnail_size_and_scale():
    thumb, s = gray_thumbnail(np.full((1088, 1920, 3), 255, np.uint8), 64)
    assert 64 <= thumb.shape[1] < 128 and thumb.dtype == np.float32
    assert thumb.shape[0] == pytest.approx(1088 / s, abs=1)
    assert s * thumb.shape[1] <= 1920 and np.allclose(thumb, 1.0, atol=1e-5)
    tiny, s1 = gray_thumbnail(np.zeros((20, 30, 3), np.uint8), 64)
    assert tiny.shape == (20, 30) and s1 == 1.0


def test_static_scene_has_near_zero_motion_and_no_boundary():
    rng = np.random.default_rng(0)
    base = _texture(1)[:, :W]
    shot, motion = _run([_noisy(base, rng) for _ in range(40)])
    assert shot.shape == (40,) and motion.shape == (40,) and motion.dtype == np.float32
    assert motion[0] == 0.0
    assert np.all(motion < 0.004)
    assert not shot.any()


def test_panning_texture_is_clearly_moving_but_one_shot():
    rng = np.random.default_rng(0)
    tex = _texture(2)
    frames = [_noisy(tex[:, 6 * i : 6 * i + W], rng) for i in range(40)]
    shot, motion = _run(frames)
    assert np.median(motion[1:]) > 0.02  # ~5x the static level
    assert not shot.any()


def test_hard_cut_gives_one_boundary_at_the_cut():
    rng = np.random.default_rng(0)
    a, b = _texture(3)[:, :W], (255 - _texture(4)[:, :W] // 2)
    frames = [_noisy(a, rng) for _ in range(25)] + [_noisy(b, rng) for _ in range(25)]
    shot, _ = _run(frames)
    assert np.flatnonzero(shot).tolist() == [25]


def test_cut_between_two_moving_shots():
    rng = np.random.default_rng(1)
    tex_a, tex_b = _texture(5), _texture(6)
    frames = [_noisy(tex_a[:, 4 * i : 4 * i + W], rng) for i in range(30)]
    frames += [_noisy(tex_b[:, 4 * i : 4 * i + W] // 3, rng) for i in range(30)]  # a darker scene
    shot, _ = _run(frames)
    assert np.flatnonzero(shot).tolist() == [30]


def test_frame_zero_never_boundary_even_if_first_frames_differ():
    rng = np.random.default_rng(0)
    frames = [np.zeros((H, W, 3), np.uint8), _noisy(_texture(7)[:, :W], rng)]
    shot, _ = _run(frames)
    assert not shot[0]


def test_moving_person_masked_out_gives_near_zero_motion():
    rng = np.random.default_rng(0)
    bg = _texture(8)[:, :W]
    frames, boxes = [], []
    for i in range(30):
        f = bg.copy()
        x = 20 + 8 * i
        f[50:150, x : x + 30] = (255 * (i % 2), 30, 200)  # a flickering "person" walking right
        frames.append(_noisy(f, rng))
        boxes.append(np.array([[x + 3, 55, 25, 90]], float))  # keypoint box slightly inside the silhouette
    _, unmasked = _run(frames)
    _, masked = _run(frames, boxes)
    assert np.median(unmasked[1:]) > 0.01
    assert np.all(masked < 0.004)


def test_box_covering_everything_gives_nan_and_empty_boxes_are_fine():
    rng = np.random.default_rng(0)
    frames = [_noisy(_texture(9)[:, :W], rng) for _ in range(3)]
    _, motion = _run(frames, [np.array([[0, 0, W, H]], float)] * 3)
    assert motion[0] == 0.0 and np.isnan(motion[1:]).all()
    _, motion = _run(frames, [np.zeros((0, 4))] * 3)
    assert np.isfinite(motion).all()


@pytest.mark.videos
@pytest.mark.slow
def test_real_videos_one_shot_each_and_a_cut_where_they_are_joined(runner_video, tennis_video):
    from ingest.decode import iter_frames

    runner = [f.rgb for f in iter_frames(runner_video, max_side_px=320, end_s=3.0)]
    tennis = [f.rgb for f in iter_frames(tennis_video, max_side_px=320, end_s=3.0)]
    for frames in (runner, tennis):
        shot, motion = _run(frames)
        assert not shot.any()
        assert np.nanmedian(motion[1:]) < 0.01  # both cameras are (nearly) static
    h = min(runner[0].shape[0], tennis[0].shape[0])  # same frame size: only the content changes at the cut
    shot, _ = _run([f[:h] for f in runner + tennis])
    assert np.flatnonzero(shot).tolist() == [len(runner)]


def test_fade_through_black_gives_one_boundary_in_the_black():
    rng = np.random.default_rng(2)
    a, b = _texture(10)[:, :W], _texture(11)[:, :W]
    frames = [_noisy(a, rng) for _ in range(20)]
    frames += [_noisy((a * (1 - (j + 1) / 9)).astype(np.uint8), rng, 0.5) for j in range(8)]  # fade out
    frames += [np.zeros_like(a) for _ in range(3)]  # black: frames 28, 29, 30
    frames += [_noisy((b * ((j + 1) / 9)).astype(np.uint8), rng, 0.5) for j in range(8)]  # fade in
    frames += [_noisy(b, rng) for _ in range(20)]
    shot, _ = _run(frames)
    assert np.flatnonzero(shot).tolist() == [29]


def test_flicker_and_a_black_frame_inside_one_shot_are_no_boundary():
    rng = np.random.default_rng(3)
    tex = _smooth_texture(12)  # a static shot whose lighting flickers by +-30 % (clipped) from frame to frame
    frames = [_noisy(np.clip(tex[:, :W] * (1 + 0.3 * np.sin(i)), 0, 255).astype(np.uint8), rng) for i in range(40)]
    frames[20] = np.zeros_like(frames[20])  # a dropped frame / blackout: same picture before and after
    shot, _ = _run(frames)
    assert not shot.any()


def test_synthetic_dissolve_gives_one_boundary_inside_it():
    rng = np.random.default_rng(4)
    tex_a, tex_b = _smooth_texture(13), _smooth_texture(14)
    a = [tex_a[:, 3 * i : 3 * i + W] for i in range(80)]  # a panning shot
    b = [tex_b[:, :W] for _ in range(80)]  # a static shot
    for length in (8, 15, 30):
        frames = [_noisy(f, rng) for f in a[:30]]
        frames += [_noisy(((1 - w) * a[30 + j] + w * b[j]).astype(np.uint8), rng)
                   for j, w in enumerate(np.arange(1, length + 1) / (length + 1))]
        frames += [_noisy(f, rng) for f in b[length:50]]
        shot, _ = _run(frames)
        found = np.flatnonzero(shot).tolist()
        assert len(found) == 1 and 30 <= found[0] < 30 + length, (length, found)


@pytest.mark.parametrize("seed", [15, 16])
def test_fast_pan_over_fine_texture_is_no_dissolve(seed):
    """Over a fine texture a pan of a few pixels per frame blends neighbouring block means, much as a dissolve
    blends two pictures; the finer grey thumbnail tells them apart."""
    rng = np.random.default_rng(seed)
    tex = _texture(seed)
    for speed in (1, 2, 4):
        shot, _ = _run([_noisy(tex[:, speed * i : speed * i + W], rng) for i in range(80 if speed < 4 else 150)])
        assert not shot.any(), (speed, np.flatnonzero(shot).tolist())


# --- transitions made from real footage (tests/shot_factory.py) ----------------------------------------------


@pytest.fixture(scope="module")
def real_shots():
    """First frames of four real videos at 640x360 (decoded once for the module)."""
    import shot_factory as sf

    if not sf.VIDEOS_DIR.is_dir():
        pytest.skip(f"{sf.VIDEOS_DIR} is absent: clone the project with ../shared beside it to run this test")
    names = {"runner": "phalp_runner.mp4", "tennis": "gvhmr_tennis.mp4", "hike": "moving_cam_hike.mp4",
             "cafe": "moving_cam_cafe.mp4"}
    return {k: sf.load_frames(sf.VIDEOS_DIR / v, num=60) for k, v in names.items()}


@pytest.mark.videos
@pytest.mark.parametrize("pair", [("runner", "tennis"), ("hike", "cafe"), ("tennis", "hike")])
@pytest.mark.parametrize("kind", ["cut", "fade", "dissolve8", "dissolve15", "dissolve30"])
def test_transition_between_real_videos_found_once_where_expected(real_shots, pair, kind):
    """Cut (+-2 frames), fade through black (middle of the black +-2), dissolves (inside the dissolve) between
    two real shots, both playing on; no other boundary."""
    import shot_factory as sf

    a, b = (real_shots[p] for p in pair)
    frames, (lo, hi) = sf.transitions(a, b, 30)[kind]
    shot, _ = _run(frames)
    found = np.flatnonzero(shot).tolist()
    assert len(found) == 1 and lo <= found[0] <= hi, (found, (lo, hi))


@pytest.mark.videos
@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["moving_cam_hike.mp4", "moving_cam_cafe.mp4", "dance.mp4", "multi_four_children.mp4"]
)
def test_real_continuous_shot_has_no_boundary(name):
    """A following camera, a hand-held camera, a dancer close to the camera, low-bitrate MPEG-4: one shot each."""
    import shot_factory as sf

    if not (sf.VIDEOS_DIR / name).exists():
        pytest.skip(f"{sf.VIDEOS_DIR / name} is absent: clone the project with ../shared beside it")
    frames = sf.load_frames(sf.VIDEOS_DIR / name, num=160, fit=False)
    shot, _ = _run(frames)
    assert not shot.any(), np.flatnonzero(shot).tolist()
