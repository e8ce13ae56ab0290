"""PHALP results importer against synthetic pickles with known ground truth (tests/phalp_factory.py)."""

from __future__ import annotations

import pickle
import time

import numpy as np
import pytest

from ingest.errors import BadResultFile, ConfigError, NoPerson
from ingest.items import VideoItem
from pipeline.backends.base import backend_class, create_backend
from pipeline.backends.phalp_pkl import PhalpPklBackend, phalp_2d_to_px
from pipeline.skeleton import BODY_JOINTS, joint_index
from phalp_factory import build_phalp_results, make_phalp_pickle, synthetic_track, synthetic_tracks

F32 = dict(rtol=1e-5, atol=2e-5)  # float32 storage


def _run(path, **item_kw):
    return PhalpPklBackend().process(VideoItem("v", str(path), "file", **item_kw), None)


def _assert_matches(result, fake):
    assert result.num_frames == fake.num_frames
    assert result.image_size_hw == fake.size_hw
    assert result.focal_px == pytest.approx(fake.focal_px)
    assert sorted(t.track_id for t in result.tracks) == sorted(fake.expected)
    for tr in result.tracks:
        exp = fake.expected[tr.track_id]
        np.testing.assert_array_equal(tr.frame_idx, exp.frame_idx)
        assert tr.joint_names == BODY_JOINTS
        np.testing.assert_allclose(tr.joints_cam_m, exp.joints_cam_m, **F32)
        np.testing.assert_allclose(tr.keypoints_px, exp.keypoints_px, atol=2e-3)  # float32 normalised coords
        np.testing.assert_allclose(tr.bbox_xywh_px, exp.bbox_xywh_px, **F32)
        np.testing.assert_allclose(tr.det_conf, exp.det_conf, **F32)
        np.testing.assert_allclose(tr.time_s, result.frame_time_s[exp.frame_idx])
        assert np.all(tr.joint_conf == 1.0)
        s = tr.smpl
        np.testing.assert_allclose(s.global_orient_rotmat, exp.global_orient_rotmat, **F32)
        np.testing.assert_allclose(s.body_pose_rotmat, exp.body_pose_rotmat, **F32)
        np.testing.assert_allclose(s.betas, exp.betas, **F32)
        np.testing.assert_allclose(s.transl_cam_m, exp.transl_cam_m, **F32)
        assert s.global_orient_rotmat.shape == (tr.num_frames, 3, 3)
        assert s.body_pose_rotmat.shape == (tr.num_frames, 23, 3, 3)


def test_registered_without_video():
    cls = backend_class("phalp-pkl")
    assert cls is PhalpPklBackend and cls.needs_video is False and cls.input_extensions == (".pkl",)
    with pytest.raises(ConfigError):
        create_backend("phalp-pkl", fps=0)
    with pytest.raises(ConfigError):
        create_backend("phalp-pkl", bogus=1)


@pytest.mark.parametrize("writer", ["pickle", "joblib"])
def test_two_people_with_ghosts_backfill_and_shots_match_ground_truth(tmp_path, writer):
    tracks = synthetic_tracks(2, 100, seed=3)
    fake = make_phalp_pickle(tmp_path / "v.pkl", tracks, size_hw=(720, 1280), shots=[0, 60], writer=writer)
    assert fake.num_ghosts > 0
    r = _run(fake.path)
    _assert_matches(r, fake)
    assert r.fps == 30.0 and r.backend == "phalp-pkl" and r.background_motion is None
    np.testing.assert_allclose(r.frame_time_s, np.arange(100) / 30.0)
    assert np.flatnonzero(r.shot_boundary).tolist() == [60]  # frame 0 is never a boundary
    # ground truth of the generator is what the importer reproduces (pelvis/neck are real midpoints there)
    for t in tracks:
        np.testing.assert_allclose(fake.expected[t.track_id].joints_cam_m, t.joints_cam_m)


def test_portrait_video_and_no_backfill(tmp_path):
    tracks = [synthetic_track(7, np.r_[0:30, 45:80], seed=2, start_xyz_m=(0.0, 0.2, 3.0))]
    fake = make_phalp_pickle(tmp_path / "p.pkl", tracks, size_hw=(1920, 1080), backfill=False, num_frames=90)
    r = _run(fake.path)
    _assert_matches(r, fake)
    assert r.num_frames == 90 and fake.num_ghosts == 15 + 10  # a 15-frame gap and 10 frames after the end


def test_ghosts_are_not_observations(tmp_path):
    """A track seen in frames 0-10 of 40 is listed (as a ghost, stale copy) in every later frame."""
    results, fake = build_phalp_results([synthetic_track(1, np.arange(0, 11), seed=0)], num_frames=40)
    assert fake.num_ghosts == 29
    assert [rec["time"] for rec in results.values() if 1 in rec["tid"]] == list(range(40))
    path = tmp_path / "g.pkl"
    path.write_bytes(pickle.dumps(results))
    assert _run(path).tracks[0].frame_idx.tolist() == list(range(11))
    # without 'tracked_time', 'tracked_ids' tells real from ghost
    for rec in results.values():
        del rec["tracked_time"]
    path.write_bytes(pickle.dumps(results))
    assert _run(path).tracks[0].frame_idx.tolist() == list(range(11))
    for rec in results.values():
        del rec["tracked_ids"]
    path.write_bytes(pickle.dumps(results))
    with pytest.raises(BadResultFile, match="ghost"):
        _run(path)


def test_frames_sorted_by_time_not_insertion(tmp_path):
    tracks = synthetic_tracks(1, 30, seed=4)
    results, fake = build_phalp_results(tracks)
    shuffled = dict(reversed(list(results.items())))
    path = tmp_path / "s.pkl"
    path.write_bytes(pickle.dumps(shuffled))
    _assert_matches(_run(path), fake)


def test_fps_from_video_beside_the_pickle(tmp_path):
    av = pytest.importorskip("av")
    fake = make_phalp_pickle(tmp_path / "clip.pkl", 1, num_frames=30)
    container = av.open(str(tmp_path / "clip.mp4"), "w")
    stream = container.add_stream("libx264", rate=25)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    for _ in range(5):
        for p in stream.encode(av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")):
            container.mux(p)
    for p in stream.encode():
        container.mux(p)
    container.close()
    r = _run(fake.path)
    assert r.fps == pytest.approx(25.0)
    np.testing.assert_allclose(r.tracks[0].time_s, r.tracks[0].frame_idx / 25.0)
    r2 = PhalpPklBackend(fps=50.0, probe_video=False).process(VideoItem("v", str(fake.path), "file"), None)
    assert r2.fps == 50.0


def test_time_range_filters_observations(tmp_path):
    fake = make_phalp_pickle(tmp_path / "v.pkl", 2, num_frames=100)
    r = _run(fake.path, start_s=1.0, end_s=2.0)
    for tr in r.tracks:
        assert tr.frame_idx.min() >= 30 and tr.frame_idx.max() < 60
    assert r.num_frames == 100


def test_2d_normalisation_round_trip():
    h, w = 720, 1280
    px = np.array([[10.0, 20.0], [1279.0, 719.0], [640.0, 360.0]])
    n = max(h, w)
    norm = (px + [(n - w) // 2, (n - h) // 2]) / n
    full = np.zeros((45, 2))
    full[:3] = norm
    np.testing.assert_allclose(phalp_2d_to_px(full.reshape(90), h, w)[:3], px)


# --- bad files -------------------------------------------------------------------------------------------


def test_not_a_pickle(tmp_path):
    p = tmp_path / "x.pkl"
    p.write_text("this is not a pickle")
    with pytest.raises(BadResultFile):
        _run(p)


def test_truncated_pickle(tmp_path):
    for writer in ("pickle", "joblib"):
        fake = make_phalp_pickle(tmp_path / f"t_{writer}.pkl", 1, num_frames=20, writer=writer)
        data = fake.path.read_bytes()
        fake.path.write_bytes(data[: len(data) // 2])
        with pytest.raises(BadResultFile):
            _run(fake.path)


@pytest.mark.parametrize(
    "obj",
    [
        [1, 2, 3],
        {"frame": [1, 2]},
        {"f0": {"time": 0}},
        {"f0": {"time": "zero", "tid": []}},
    ],
)
def test_foreign_objects(tmp_path, obj):
    p = tmp_path / "o.pkl"
    p.write_bytes(pickle.dumps(obj))
    with pytest.raises(BadResultFile):
        _run(p)


def test_wrong_shapes_and_lengths(tmp_path):
    results, _ = build_phalp_results(synthetic_tracks(1, 10))
    rec = results[list(results)[3]]
    rec["3d_joints"] = [np.zeros((24, 3))]  # SMPL 24 joints, not PHALP's 45
    p = tmp_path / "w.pkl"
    p.write_bytes(pickle.dumps(results))
    with pytest.raises(BadResultFile, match="3d_joints"):
        _run(p)
    results, _ = build_phalp_results(synthetic_tracks(1, 10))
    rec = results[list(results)[3]]
    rec["camera"] = []  # list not aligned with tid
    p.write_bytes(pickle.dumps(results))
    with pytest.raises(BadResultFile, match="camera"):
        _run(p)


def test_class_that_is_not_installed(tmp_path):
    # a pickle referring to a module that does not exist here (e.g. written with another package)
    payload = b"\x80\x04\x95\x1f\x00\x00\x00\x00\x00\x00\x00\x8c\x0bno_such_mod\x94\x8c\x03Cls\x94\x93\x94)\x81\x94."
    p = tmp_path / "c.pkl"
    p.write_bytes(payload)
    with pytest.raises(BadResultFile, match="ModuleNotFoundError|No module"):
        _run(p)


def test_no_real_observation_is_no_person(tmp_path):
    results, _ = build_phalp_results([synthetic_track(1, np.arange(5), seed=0)], num_frames=20)
    for rec in results.values():
        rec["tracked_time"] = [1] * len(rec["tid"])
    p = tmp_path / "n.pkl"
    p.write_bytes(pickle.dumps(results))
    with pytest.raises(NoPerson):
        _run(p)
    empty = tmp_path / "e.pkl"
    empty.write_bytes(pickle.dumps(build_phalp_results([], num_frames=10)[0]))
    with pytest.raises(NoPerson):
        _run(empty)


def test_factory_is_fast(tmp_path):
    tracks = synthetic_tracks(2, 100, seed=0)
    make_phalp_pickle(tmp_path / "warm.pkl", tracks)
    t0 = time.process_time()  # CPU time: other jobs on a shared machine do not inflate it
    for i in range(5):
        make_phalp_pickle(tmp_path / f"f{i}.pkl", tracks)
    per_file_s = (time.process_time() - t0) / 5
    assert per_file_s < 0.25  # ~20 ms of CPU


def test_pelvis_is_mid_hips_not_mpii_row(tmp_path):
    fake = make_phalp_pickle(tmp_path / "m.pkl", 1, num_frames=10)
    tr = _run(fake.path).tracks[0]
    pelvis, lh, rh = joint_index("pelvis", "left_hip", "right_hip")
    np.testing.assert_allclose(tr.joints_cam_m[:, pelvis], (tr.joints_cam_m[:, lh] + tr.joints_cam_m[:, rh]) / 2,
                               atol=1e-6)
