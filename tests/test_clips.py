from __future__ import annotations

import dataclasses
import math
import re
import time

import numpy as np
import pytest
from motion_factory import look_at_camera, make_pose_result, make_track, standing_motion, walking_motion

from ingest.errors import ConfigError
from pipeline.clips import ClipConfig, Segment, build_clips, make_clip_id, segment_track
from pipeline.motion import SMPLParams
from pipeline.quality import METRIC_NAMES
from pipeline.trajectory import TRAJECTORY_METRIC_NAMES
from pipeline.skeleton import FOOT_JOINTS, joint_index
from pipeline.world import WorldConfig

FPS = 30.0
CAMERA = look_at_camera((3.0, 0.0, 1.0), distance_m=8.0, height_m=2.2, azimuth_deg=-80.0, roll_deg=4.0)


def _walker_track(num_frames: int, **kw):
    return make_track(walking_motion(num_frames, FPS), CAMERA, **kw)


def _covered(segments: list[Segment], n: int) -> np.ndarray:
    hits = np.zeros(n, dtype=int)
    for s in segments:
        hits[s.start : s.stop] += 1
    return hits


# --- clip ids ----------------------------------------------------------------------------------------


def test_clip_id_is_deterministic_and_file_name_safe():
    a = make_clip_id("yt_abc-123", 4, 30, 329)
    assert a == make_clip_id("yt_abc-123", 4, 30, 329) == "yt_abc-123-t4-f000030-000329"
    assert a != make_clip_id("yt_abc-123", 4, 330, 629) != make_clip_id("yt_abc-123", 5, 30, 329)
    odd = [make_clip_id(v, 1, 0, 10) for v in ("a/b c", "a_b_c", "a.b c", "ü", "")]
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", c) for c in odd)
    assert len(set(odd)) == len(odd)  # sanitising does not merge distinct ids
    assert re.fullmatch(r"[A-Za-z0-9_-]+", make_clip_id("v", -2, 0, 1))


# --- segmentation ------------------------------------------------------------------------------------


def test_a_clean_ten_second_track_is_one_clip():
    track = _walker_track(300)
    assert segment_track(track, np.zeros(300, bool), fps=FPS) == [Segment(0, 300)]
    assert segment_track(track, None) == [Segment(0, 300)]  # fps estimated from time_s


def test_long_tracks_are_cut_into_equal_windows():
    n = 750  # 25 s
    track = make_track(standing_motion(n, FPS), CAMERA)
    segs = segment_track(track, None, fps=FPS)
    lengths = [s.stop - s.start for s in segs]
    assert len(segs) == 3 and all(s.ok for s in segs)
    assert max(lengths) - min(lengths) <= 1 and max(lengths) <= 300
    assert (_covered(segs, n) == 1).all()
    # exactly 10 s stays whole; a little more splits in two halves
    assert len(segment_track(make_track(standing_motion(300, FPS), CAMERA), None, fps=FPS)) == 1
    two = segment_track(make_track(standing_motion(303, FPS), CAMERA), None, fps=FPS)
    assert [s.stop - s.start for s in two] == [152, 151]


def test_gaps_split_only_when_longer_than_max_gap():
    small = _walker_track(240, drop_frames=range(100, 106))  # 6 frames = 0.2 s: kept
    assert segment_track(small, None, fps=FPS) == [Segment(0, 234)]
    big = _walker_track(240, drop_frames=range(100, 107))  # 7 frames: split
    segs = segment_track(big, None, fps=FPS)
    assert [(s.start, s.stop) for s in segs] == [(0, 100), (100, 233)]
    assert all(s.ok for s in segs)
    strict = segment_track(small, None, ClipConfig(max_gap_s=0.0), fps=FPS)
    assert len(segs) == 2 and len(strict) == 2


def test_shot_changes_split_even_inside_a_small_gap():
    track = _walker_track(300, drop_frames=[149, 150, 151])
    shots = np.zeros(300, bool)
    shots[150] = True  # the cut falls on a missing frame
    segs = segment_track(track, shots, fps=FPS)
    assert [(s.start, s.stop) for s in segs] == [(0, 149), (149, 297)]
    assert track.frame_idx[149] == 152


def test_low_confidence_stretches_are_cut_out_and_short_dips_kept():
    track = _walker_track(300, low_conf_frames=range(100, 130), drop_frames=())
    segs = segment_track(track, None, fps=FPS)
    assert [(s.start, s.stop) for s in segs] == [(0, 100), (100, 130), (130, 300)]
    assert segs[1].reason.startswith("low_confidence: ") and segs[0].ok and segs[2].ok
    dip = _walker_track(300, low_conf_frames=range(100, 105))  # 5 frames < 0.2 s
    assert segment_track(dip, None, fps=FPS) == [Segment(0, 300)]
    lenient = segment_track(track, None, ClipConfig(min_joint_conf=0.05), fps=FPS)
    assert lenient == [Segment(0, 300)]


def test_short_pieces_are_kept_as_filtered_rows():
    track = _walker_track(300, drop_frames=range(40, 60))  # 40 frames, a gap, 240 frames
    segs = segment_track(track, None, fps=FPS)
    assert [(s.start, s.stop) for s in segs] == [(0, 40), (40, 280)]
    assert segs[0].reason.startswith("too_short: 1.33 s") and segs[1].ok


def test_every_observed_frame_lands_in_exactly_one_segment():
    rng = np.random.default_rng(7)
    n = 1200
    drops = rng.choice(n, size=60, replace=False)
    low = np.concatenate([np.arange(200, 215), np.arange(700, 703)])
    track = make_track(standing_motion(n, FPS), CAMERA, drop_frames=drops, low_conf_frames=low)
    shots = np.zeros(n, bool)
    shots[[333, 901]] = True
    segs = segment_track(track, shots, fps=FPS)
    assert (_covered(segs, track.num_frames) == 1).all()
    assert [s.start for s in segs] == sorted(s.start for s in segs)
    for s in segs:
        span_s = (track.frame_idx[s.stop - 1] - track.frame_idx[s.start] + 1) / FPS
        if s.ok:
            assert 2.0 <= span_s <= 10.0
        fi = track.frame_idx[s.start : s.stop]
        assert not shots[fi[0] + 1 : fi[-1] + 1].any()  # no clip crosses a shot change


def test_clip_config_round_trips_through_a_dict():
    config = ClipConfig(min_clip_s=1.0, world=WorldConfig(ground_band_m=0.04))
    assert ClipConfig(**dataclasses.asdict(config)) == config
    with pytest.raises(ConfigError, match="world"):
        ClipConfig(world={"no_such_setting": 1})


def test_clip_config_reports_every_problem():
    with pytest.raises(ConfigError) as err:
        ClipConfig(min_clip_s=3.0, max_clip_s=4.0, min_joint_conf=1.5)
    assert "max_clip_s" in str(err.value) and "min_joint_conf" in str(err.value)


# --- build_clips -------------------------------------------------------------------------------------


def test_build_clips_aligns_fills_gaps_and_measures():
    motion = walking_motion(300, FPS, lean_deg=5.0)
    track = make_track(motion, CAMERA, track_id=3, drop_frames=range(120, 124))
    result = make_pose_result([track], 300, FPS)
    (clip,) = build_clips(result, "vid")
    assert clip.clip_id == "vid-t3-f000000-000299" and clip.status == "ok" and clip.reason == ""
    assert np.array_equal(clip.frame_idx, np.arange(300))
    np.testing.assert_allclose(clip.time_s, np.arange(300) / FPS)
    assert clip.joints_world_m.shape == (300, 20, 3) and clip.joints_world_m.dtype == np.float32
    assert clip.foot_contact.shape == (300, 4) and clip.foot_contact.dtype == bool
    # filled frames: confidence 0, joints on the straight line between their neighbours
    assert (clip.joint_conf[120:124] == 0).all() and (clip.joint_conf[:120] > 0).all()
    expected = clip.joints_world_m[119] + (clip.joints_world_m[124] - clip.joints_world_m[119]) * (2 / 5)
    # filled linearly in the camera frame; the world's per-frame ground lift (smooth) only moves z, by < 1 mm here
    np.testing.assert_allclose(clip.joints_world_m[121, :, :2], expected[:, :2], atol=1e-5)
    np.testing.assert_allclose(clip.joints_world_m[121, :, 2], expected[:, 2], atol=1e-3)
    # world frame: planted feet on the ground, the motion itself intact
    feet = joint_index(*FOOT_JOINTS)
    real = clip.joint_conf[:, 0] > 0
    planted = clip.joints_world_m[real][:, feet][motion.foot_contact[real]]
    assert np.abs(planted[:, 2]).max() < 0.01
    np.testing.assert_allclose(clip.joints_world_m[0, joint_index("pelvis")[0], :2], [0, 0], atol=1e-5)
    m = clip.metrics
    assert tuple(m) == METRIC_NAMES + TRAJECTORY_METRIC_NAMES and all(isinstance(v, float) for v in m.values())
    assert m["tracked_frac"] == pytest.approx(296 / 300)
    assert m["longest_gap_s"] == pytest.approx(4 / FPS)
    assert m["duration_s"] == pytest.approx(10.0) and m["num_frames"] == 300
    assert m["foot_contact_score"] == 1.0 and m["floating_frac"] == 0.0
    assert m["penetration_max_m"] < 0.01 and m["bone_length_std_m"] < 1e-5
    assert m["world_up_method_id"] == 2.0  # "line"
    assert m["camera_height_m"] == pytest.approx(2.2, abs=0.02)
    assert m["background_motion_median"] == pytest.approx(0.0015) and m["static_camera_score"] > 0.85
    assert m["people_in_frame_max"] == 1.0
    assert 0.8 < m["pelvis_height_min_m"] < m["pelvis_height_max_m"] < 0.95


def test_filtered_clips_are_rows_with_reasons():
    track = _walker_track(300, drop_frames=range(40, 60), low_conf_frames=range(200, 220))
    clips = build_clips(make_pose_result([track], 300, FPS, background_motion=None), "v")
    assert [c.status for c in clips] == ["filtered", "ok", "filtered", "ok"]
    assert clips[0].reason.startswith("too_short: ") and clips[2].reason.startswith("low_confidence: ")
    assert [(c.frame_idx[0], c.frame_idx[-1]) for c in clips] == [(0, 39), (60, 199), (200, 219), (220, 299)]
    assert all(math.isnan(c.metrics["static_camera_score"]) for c in clips)
    assert all(math.isnan(c.metrics["background_motion_median"]) for c in clips)


def test_tracks_in_id_order_and_people_counted():
    a = make_track(walking_motion(150, FPS), CAMERA, track_id=9)
    b = make_track(standing_motion(100, FPS, start_xy_m=(2.0, 3.0)), CAMERA, track_id=2, first_frame=30)
    clips = build_clips(make_pose_result([a, b], 150, FPS), "v")
    assert [c.track_id for c in clips] == [2, 9]
    assert [c.metrics["people_in_frame_max"] for c in clips] == [2.0, 2.0]
    assert clips[0].frame_idx[0] == 30


def test_build_clips_is_deterministic():
    track = make_track(walking_motion(400, FPS, turn_rate_rad_m=0.3), CAMERA, noise_m=0.01, seed=5,
                       drop_frames=[50, 51, 300])
    result = make_pose_result([track], 400, FPS)
    first, second = build_clips(result, "v"), build_clips(result, "v")
    assert len(first) == len(second) == 2  # 13.3 s: two windows
    for x, y in zip(first, second):
        assert x.clip_id == y.clip_id
        assert np.array_equal(x.joints_world_m, y.joints_world_m)
        assert np.array_equal(x.T_world_from_camera, y.T_world_from_camera)
        assert np.array_equal(x.foot_contact, y.foot_contact)
        assert x.metrics.keys() == y.metrics.keys()
        assert all(x.metrics[k] == y.metrics[k] or (math.isnan(x.metrics[k]) and math.isnan(y.metrics[k]))
                   for k in x.metrics)


def test_smpl_follows_the_frame_grid_and_non_finite_frames_become_gaps():
    track = _walker_track(90, drop_frames=[40, 41])
    k = track.num_frames
    rng = np.random.default_rng(0)
    track.smpl = SMPLParams(
        global_orient_rotmat=np.tile(np.eye(3, dtype=np.float32), (k, 1, 1)),
        body_pose_rotmat=np.tile(np.eye(3, dtype=np.float32), (k, 23, 1, 1)),
        betas=rng.normal(size=(k, 10)).astype(np.float32),
        transl_cam_m=np.column_stack([np.arange(k), np.zeros(k), np.full(k, 5.0)]).astype(np.float32),
    )
    track.joints_cam_m[10, 3, 0] = np.nan
    (clip,) = build_clips(make_pose_result([track], 90, FPS), "v")
    assert clip.smpl.body_pose_rotmat.shape == (90, 23, 3, 3) and clip.smpl.betas.shape == (90, 10)
    # observed rows 39 and 40 are frames 39 and 42: frames 40 and 41 interpolate the translation
    np.testing.assert_allclose(clip.smpl.transl_cam_m[39:43, 0], [39.0, 39 + 1 / 3, 39 + 2 / 3, 40.0], atol=1e-5)
    np.testing.assert_array_equal(clip.smpl.betas[40], track.smpl.betas[39])
    assert np.isfinite(clip.joints_world_m).all()
    assert (clip.joint_conf[10] == 0).all() and clip.metrics["tracked_frac"] == pytest.approx(87 / 90)


def test_build_clips_is_fast():
    result = make_pose_result([_walker_track(300, noise_m=0.01)], 300, FPS)
    build_clips(result, "v")
    start = time.process_time()  # CPU time: other jobs on a shared machine do not inflate it
    for _ in range(5):
        build_clips(result, "v")
    per_call_s = (time.process_time() - start) / 5
    assert per_call_s < 0.1  # a few ms of CPU


def test_empty_result_gives_no_clips():
    assert build_clips(make_pose_result([], 10, FPS), "v") == []


def test_clip_times_come_from_the_video_frame_times():
    track = _walker_track(120, drop_frames=[60])
    result = make_pose_result([track], 120, FPS)
    result.frame_time_s = np.cumsum(np.where(np.arange(120) % 3 == 0, 0.04, 0.03)) - 0.04  # variable frame rate
    (clip,) = build_clips(result, "v")
    np.testing.assert_array_equal(clip.time_s, result.frame_time_s)
    assert clip.fps == FPS and clip.duration_s == pytest.approx(4.0)
