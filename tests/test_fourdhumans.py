"""Contract tests of the ``4dhumans`` backend against a stand-in ``track.py`` (tests/fourdhumans_standin.py).

What is checked: the environment set before the import, the config values, one tracker construction for many
videos, the second detector and visualiser skipped, frames streamed (BGR, tuple keys, no JPEG), a frame-loop
exception turned into the row's reason, fps and frame times from the stream, and converted tracks equal to the
ground truth of the synthetic results dict. The last test runs the real stack on a GPU machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from ingest.decode import iter_frames
from ingest.errors import BackendError, ConfigError, InputNotFound
from ingest.items import VideoItem
from pipeline.backends.base import available_backends, create_backend
from pipeline.backends.fourdhumans import (
    CACHE_FILES,
    ENV_CHECKOUT,
    FourDHumansBackend,
    MissingWeightsError,
    StreamingFrameSource,
    missing_cache_files,
)
from pipeline.skeleton import BODY_JOINTS
from tests.fourdhumans_standin import write_standin_checkout
from tests.phalp_factory import build_phalp_results, synthetic_tracks
from tests.video_factory import make_video

pytest.importorskip("omegaconf", reason="the 4dhumans adapter builds its config with omegaconf: pip install omegaconf")

F32 = {"rtol": 1e-5, "atol": 1e-5}
ENV_KEYS = ("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "PYTHONBREAKPOINT", "PYOPENGL_PLATFORM", "HOME", "FVCORE_CACHE",
            "TORCH_HOME", "CUDA_VISIBLE_DEVICES")


@pytest.fixture
def clean_env(monkeypatch):
    """Restore every variable the adapter sets (it writes os.environ on purpose)."""
    for k in ENV_KEYS:
        if k in os.environ:
            monkeypatch.setenv(k, os.environ[k])
        else:
            monkeypatch.delenv(k, raising=False)
    monkeypatch.delenv(ENV_CHECKOUT, raising=False)
    monkeypatch.delenv("G1FORGE_4DHUMANS_HOME", raising=False)
    yield


def full_cache(home: Path) -> Path:
    for f in CACHE_FILES:
        p = home / f.rel_path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    return home


def setup_backend(tmp_path: Path, **options) -> tuple[FourDHumansBackend, object]:
    checkout = write_standin_checkout(tmp_path / "4D-Humans")
    home = full_cache(tmp_path / "home")
    backend = create_backend("4dhumans", checkout_dir=str(checkout), cache_home=str(home),
                             work_dir=str(tmp_path), **options)
    return backend, backend.tracker  # constructing the tracker imports the stand-in


def standin(backend):
    return sys.modules[type(backend.tracker).__mro__[1].__module__]


def test_registered_and_importing_loads_no_heavy_package():
    assert "4dhumans" in available_backends()
    cls = FourDHumansBackend
    assert cls.cpus_per_worker == 1 and cls.needs_video and cls.gpus_per_worker == 1
    code = ("import sys, pipeline.backends.fourdhumans, pipeline.backends.base as b; b.available_backends(); "
            "bad = [m for m in ('torch', 'omegaconf', 'hmr2', 'phalp', 'detectron2', 'av') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_checkout_must_be_given_and_hold_track_py(tmp_path, clean_env, monkeypatch):
    with pytest.raises(ConfigError, match=ENV_CHECKOUT):
        create_backend("4dhumans")
    with pytest.raises(InputNotFound, match="track.py"):
        create_backend("4dhumans", checkout_dir=str(tmp_path))
    monkeypatch.setenv(ENV_CHECKOUT, str(write_standin_checkout(tmp_path / "co")))
    assert create_backend("4dhumans").checkout == (tmp_path / "co").resolve()
    with pytest.raises(ConfigError, match="predictor"):
        create_backend("4dhumans", predictor="hmr3")
    with pytest.raises(ConfigError, match="unknown 4dhumans option"):
        create_backend("4dhumans", render=True)


def test_environment_config_and_one_construction_for_many_videos(tmp_path, clean_env):
    filters_before = list(warnings.filters)
    backend, tracker = setup_backend(tmp_path, gpu=1)
    mod = standin(backend)
    assert list(warnings.filters) == filters_before  # track.py's filterwarnings('ignore') was undone
    home = (tmp_path / "home").resolve()
    assert mod.ENV_AT_IMPORT == {
        "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "PYTHONBREAKPOINT": "0", "PYOPENGL_PLATFORM": "egl",
        "HOME": str(home), "FVCORE_CACHE": str(home / ".torch" / "iopath_cache"),
        "TORCH_HOME": str(home / ".cache" / "torch"), "CUDA_VISIBLE_DEVICES": "1",
    }
    cfg = tracker.cfg
    assert cfg.video.end_frame == -1 and cfg.render.enable is False and cfg.detect_shots is True
    assert cfg.phalp.detector == "vitdet" and cfg.overwrite is True and cfg.expand_bbox_shape == [192, 256]
    # models: HMR2Predictor (default), no second detector, no visualiser, no download at construction
    assert mod.EVENTS["hmr"] == ["HMR2Predictor"]
    assert mod.EVENTS["rpn"] == 0 and tracker.detector_x is None
    assert mod.EVENTS["visualizer"] == 0 and tracker.visualizer is None
    assert mod.EVENTS["download"] == 0

    videos = [make_video(tmp_path / f"v{i}.mp4", width=64, height=48, fps=25.0, num_frames=12 + i) for i in range(3)]
    tracks = synthetic_tracks(1, 12, seed=1)
    mod.SCRIPT["results"], _ = build_phalp_results(tracks, size_hw=(48, 64), num_frames=12)
    for i, v in enumerate(videos):
        result = backend.process(VideoItem(f"vid{i}", str(v), "file"), str(v))
        assert result.num_frames == 12 + i and result.backend == "4dhumans"
    assert mod.EVENTS["construct"] == 1 and backend.tracker_constructions == 1
    assert mod.EVENTS["track"] == 3 and mod.EVENTS["deepsort"] == 3
    seen = mod.CFG_AT_TRACK
    assert [c["source"] for c in seen] == [str(v) for v in videos]
    assert len({c["output_dir"] for c in seen}) == 3
    assert all(c["end_frame"] == -1 and c["render"] is False and c["detect_shots"] for c in seen)
    assert not any(Path(c["output_dir"]).exists() for c in seen)  # per-video folders removed
    assert not list(tmp_path.rglob("*.jpg"))  # no JPEG round trip
    # frames: (video_path, frame_idx) keys in order, BGR arrays equal to the decoder's RGB reversed
    first = [f for f in mod.FRAMES if f[0][0] == str(videos[0])]
    assert [f[0][1] for f in first] == list(range(12))
    with iter_frames(videos[0]) as frames:
        rgb = [fr.rgb for fr in frames]
    assert all(shape == (48, 64, 3) for _, shape, _ in first)
    assert [px for _, _, px in first] == [im[0, 0, ::-1].tolist() for im in rgb]
    backend.close()


def test_converted_tracks_equal_ground_truth_with_fps_and_shots(tmp_path, clean_env):
    backend, _ = setup_backend(tmp_path)
    mod = standin(backend)
    video = make_video(tmp_path / "two.mp4", width=64, height=48, fps=24.0, num_frames=70)
    tracks = synthetic_tracks(2, 70, seed=5)
    mod.SCRIPT["results"], fake = build_phalp_results(tracks, size_hw=(48, 64), num_frames=70)
    mod.SCRIPT["shots_global"] = [40]
    result = backend.process(VideoItem("two", str(video), "file"), str(video))
    assert result.fps == pytest.approx(24.0, rel=1e-6)
    np.testing.assert_allclose(result.frame_time_s, np.arange(70) / 24.0, atol=1e-6)
    assert result.image_size_hw == (48, 64) and result.focal_px == pytest.approx(5000 * 64 / 256)
    assert np.flatnonzero(result.shot_boundary).tolist() == [40]
    assert sorted(t.track_id for t in result.tracks) == sorted(fake.expected)
    for tr in result.tracks:
        exp = fake.expected[tr.track_id]
        np.testing.assert_array_equal(tr.frame_idx, exp.frame_idx)
        assert tr.joint_names == BODY_JOINTS
        np.testing.assert_allclose(tr.joints_cam_m, exp.joints_cam_m, **F32)
        np.testing.assert_allclose(tr.keypoints_px, exp.keypoints_px, atol=2e-3)
        np.testing.assert_allclose(tr.det_conf, exp.det_conf, **F32)
        np.testing.assert_allclose(tr.smpl.body_pose_rotmat, exp.body_pose_rotmat, **F32)
        np.testing.assert_allclose(tr.smpl.transl_cam_m, exp.transl_cam_m, **F32)
        np.testing.assert_allclose(tr.time_s, exp.frame_idx / 24.0, atol=1e-6)


def test_window_offsets_frames_and_shots(tmp_path, clean_env):
    backend, _ = setup_backend(tmp_path)
    mod = standin(backend)
    video = make_video(tmp_path / "w.mp4", width=64, height=48, fps=30.0, num_frames=60)
    tracks = synthetic_tracks(1, 30, seed=2)  # window-relative: PHALP's time restarts at 0
    mod.SCRIPT["results"], fake = build_phalp_results(tracks, size_hw=(48, 64), num_frames=30)
    mod.SCRIPT["shots_global"] = [5, 25, 55]  # frame numbers over the whole video; only 25 is inside
    result = backend.process(VideoItem("w", str(video), "file", start_s=0.5, end_s=1.5), str(video))
    assert [f[0][1] for f in mod.FRAMES] == list(range(15, 45))
    assert result.num_frames == 45 and np.flatnonzero(result.shot_boundary).tolist() == [25]
    tr = result.tracks[0]
    np.testing.assert_array_equal(tr.frame_idx, fake.expected[tr.track_id].frame_idx + 15)
    np.testing.assert_allclose(tr.joints_cam_m, fake.expected[tr.track_id].joints_cam_m, **F32)


def test_frame_loop_exception_becomes_the_reason_and_the_tracker_is_reused(tmp_path, clean_env, capsys):
    backend, _ = setup_backend(tmp_path)
    mod = standin(backend)
    video = make_video(tmp_path / "f.mp4", width=64, height=48, fps=30.0, num_frames=10)
    mod.SCRIPT["results"], _ = build_phalp_results(synthetic_tracks(1, 10, seed=0), size_hw=(48, 64), num_frames=10)
    mod.SCRIPT["fail_at"] = 3
    with pytest.raises(BackendError) as info:
        backend.process(VideoItem("f", str(video), "file"), str(video))
    reason = info.value.catalog_reason()
    assert reason.startswith("backend: ") and "RuntimeError" in reason and "illegal memory access" in reason
    assert "illegal memory access" in capsys.readouterr().out  # PHALP printed and swallowed it
    mod.SCRIPT["fail_at"] = None
    assert backend.process(VideoItem("f", str(video), "file"), str(video)).tracks
    assert mod.EVENTS["construct"] == 1


def test_missing_weights_named_or_downloaded_on_request(tmp_path, clean_env):
    checkout = write_standin_checkout(tmp_path / "4D-Humans")
    home = tmp_path / "emptyhome"
    home.mkdir()
    backend = create_backend("4dhumans", checkout_dir=str(checkout), cache_home=str(home), work_dir=str(tmp_path))
    with pytest.raises(MissingWeightsError, match="g1forge setup gpu") as info:
        _ = backend.tracker
    assert info.value.reason == "missing_weights" and str(home) in str(info.value)
    runtime = [f for f in CACHE_FILES if f.needed_for in ("all", "hmr2")]
    assert len(missing_cache_files(home)) == len(runtime)  # not the archive, not the texture-only maps
    assert len(missing_cache_files(home, "texture")) == len(runtime) + 2
    assert not any(p.name == "hmr2_data.tar.gz" for p in missing_cache_files(home, "texture"))
    b2 = create_backend("4dhumans", checkout_dir=str(checkout), cache_home=str(home), work_dir=str(tmp_path),
                        download_missing=True)
    assert standin(b2).EVENTS["download"] == 1


def test_texture_predictor_and_config_overrides(tmp_path, clean_env):
    backend, tracker = setup_backend(tmp_path, predictor="texture", config=["phalp.low_th_c=0.7"],
                                     detect_shots=False)
    assert standin(backend).EVENTS["hmr"][-1] == "HMR2023TextureSampler"
    assert tracker.cfg.phalp.low_th_c == pytest.approx(0.7) and tracker.cfg.detect_shots is False
    with pytest.raises(ConfigError, match="config override"):
        setup_backend(tmp_path / "b", config=["phalp.no_such_key=1"])


def test_streaming_source_reports_truncation(tmp_path):
    video = make_video(tmp_path / "s.mp4", width=32, height=32, fps=30.0, num_frames=5)
    src = StreamingFrameSource(video, video_name="s")
    data = src.get_frames_from_source()
    assert data["video_name"] == "s" and data["additional_data"] == {} and len(data["list_of_frames"]) == 5
    assert src.read_frame((str(video), 2)).shape == (32, 32, 3)
    from ingest.errors import DecodeError

    with pytest.raises(DecodeError, match="ended before frame 9"):
        src.read_frame((str(video), 9))
    src.close_video()


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.videos
def test_real_backend_tracks_the_runner(runner_video, tmp_path):
    """The real 4D-Humans stack on a CUDA GPU (skipped elsewhere by the conftest hook, with the reason)."""
    backend = create_backend("4dhumans", work_dir=str(tmp_path))
    result = backend.process(VideoItem("runner", str(runner_video), "file"), str(runner_video))
    assert result.num_frames == 180 and result.fps == pytest.approx(30.0, rel=1e-3)
    longest = max(result.tracks, key=lambda t: t.num_frames)
    assert longest.num_frames > 150
    z = longest.joints_cam_m[:, BODY_JOINTS.index("pelvis"), 2]
    assert np.all(z > 1.0)  # in front of the camera
    backend.close()


def test_detection_stride_max_people_and_stage_times(tmp_path, clean_env):
    """det_stride=3: the detector runs on frames 0, 3, 6, 9 and at a shot start; its boxes are carried in between."""
    backend, tracker = setup_backend(tmp_path, det_stride=3, max_people=1)
    mod = standin(backend)
    video = make_video(tmp_path / "v.mp4", width=64, height=48, fps=25.0, num_frames=12)
    tracks = synthetic_tracks(1, 12, seed=1)
    mod.SCRIPT["results"], _ = build_phalp_results(tracks, size_hw=(48, 64), num_frames=12)
    backend.process(VideoItem("v", str(video), "file"), str(video))
    st = backend.stage_times.as_dict()
    assert st["detector_runs"] == 4 and st["detections_carried"] == 8 and st["frames"] == 12
    assert set(st["seconds"]) == {"decode", "detection", "hmr2", "tracking", "conversion"}
    assert all(v >= 0 for v in st["seconds"].values()) and st["seconds"]["conversion"] > 0
    # max_people keeps the best-scored detections PHALP would keep (>= small_w x small_h), then the others
    boxes = np.array([[0, 0, 10, 10], [0, 0, 60, 120], [0, 0, 80, 150]], dtype=float)
    keep = tracker._keep_people(boxes, np.array([0.99, 0.90, 0.95]), 2)
    assert keep.tolist() == [2, 1]
    for bad in ({"det_stride": 0}, {"precision": "fp8"}, {"device": "tpu"}, {"det_size": 16}, {"max_people": 0}):
        with pytest.raises(ConfigError):
            create_backend("4dhumans", checkout_dir=str(tmp_path / "4D-Humans"), **bad)
    backend.close()
