"""The identity-jump guard (pipeline/identity.py): a track that swaps people is split, real motion is not."""

from __future__ import annotations

import numpy as np
import pytest

from ingest.errors import ConfigError
from motion_factory import look_at_camera, make_track, walking_motion
from pipeline.identity import IdentityGuardConfig, jump_steps, split_identity_jumps
from pipeline.motion import HumanTrack


def _swap(a: HumanTrack, b: HumanTrack, at: int, track_id: int = 1) -> HumanTrack:
    """Frames ``[0, at)`` of ``a`` then ``[at, T)`` of ``b``: what a tracker that hops to another person gives."""
    def mix(x, y):
        return np.concatenate([x[:at], y[at:]])

    return HumanTrack(track_id=track_id, frame_idx=a.frame_idx, time_s=a.time_s, joint_names=a.joint_names,
                      joints_cam_m=mix(a.joints_cam_m, b.joints_cam_m), joint_conf=mix(a.joint_conf, b.joint_conf),
                      det_conf=mix(a.det_conf, b.det_conf), keypoints_px=mix(a.keypoints_px, b.keypoints_px),
                      bbox_xywh_px=mix(a.bbox_xywh_px, b.bbox_xywh_px))


def _walker(start_xy_m=(0.0, 0.0), speed_m_s=1.2, fps=30.0, n=150, **kw) -> HumanTrack:
    """A walker (or, at speed, a runner: shorter stride period) seen 8 m from the side."""
    stride_period_s = min(1.0, 1.2 / speed_m_s)
    motion = walking_motion(num_frames=n, fps=fps, speed_m_s=speed_m_s, stride_period_s=stride_period_s,
                            start_xy_m=start_xy_m)
    return make_track(motion, look_at_camera(distance_m=8.0), fps=fps, **kw)


@pytest.mark.parametrize("fps", [12.0, 30.0, 60.0])
def test_real_motion_is_never_split(fps):
    """Walking, running (6 m/s, 0.2 s strides) and noisy landmarks at 12-60 fps: no jump."""
    for track in (_walker(fps=fps), _walker(speed_m_s=6.0, fps=fps),
                  _walker(fps=fps, noise_m=0.02, depth_noise_m=0.05, seed=3)):
        assert not jump_steps(track).any()
        tracks, source = split_identity_jumps([track])
        assert tracks == [track] and source == {track.track_id: track.track_id}


def test_a_swap_to_another_person_is_split_and_the_pieces_get_new_ids():
    left = _walker(start_xy_m=(-2.0, 0.0))
    right = _walker(start_xy_m=(1.5, 0.0))  # 3.5 m to the side: ~2 body heights in one frame
    other = _walker(start_xy_m=(0.0, 3.0), track_id=4)
    swapped = _swap(left, right, at=60, track_id=1)
    jumps = jump_steps(swapped)
    assert np.flatnonzero(jumps).tolist() == [60]
    back = _swap(swapped, left, at=110, track_id=1)  # and back to the first person
    tracks, source = split_identity_jumps([back, other])
    assert [(t.track_id, t.num_frames) for t in tracks] == [(1, 60), (5, 50), (6, 40), (4, 150)]
    assert source == {1: 1, 5: 1, 6: 1, 4: 4}
    np.testing.assert_array_equal(tracks[1].joints_cam_m, right.joints_cam_m[60:110])
    np.testing.assert_array_equal(tracks[2].frame_idx, left.frame_idx[110:])
    assert tracks[3] is other


def test_image_plane_jump_of_a_small_person_far_away():
    """The same 3D swap seen from far: a step that is small in pixels is still many body heights."""
    near = _walker(start_xy_m=(0.0, 0.0))
    far = _walker(start_xy_m=(0.8, 0.0))  # 0.45 heights aside: with the floor, an image-plane jump only when fast
    assert not jump_steps(_swap(near, far, at=75)).any()  # within one step's allowance (0.35 + 8/30 heights)
    far2 = _walker(start_xy_m=(1.6, 0.0))
    assert jump_steps(_swap(near, far2, at=75)).tolist().count(True) == 1


def test_depth_only_jump_is_caught_in_3d():
    """Two people on one line of sight (same pixels, different depth): only the 3D root shows the swap. Depth
    errors grow with distance, so 20 % of the depth is allowed per step: a person 6 m behind is a jump, a depth
    that wobbles by 1.5 m at 9 m is not."""
    a = _walker()
    b = _walker()
    b.joints_cam_m[:] = a.joints_cam_m * 1.0
    b.joints_cam_m[..., 2] += 6.0  # 6 m further away, same image position (keypoints unchanged)
    assert np.flatnonzero(jump_steps(_swap(a, b, at=40))).tolist() == [40]
    wobble = _walker()
    wobble.joints_cam_m[40:, :, 2] += 1.5
    assert not jump_steps(_swap(a, wobble, at=40)).any()


def test_box_only_tracks_and_configuration():
    a, b = _walker(), _walker(start_xy_m=(3.0, 0.0))
    swapped = _swap(a, b, at=30)
    swapped.keypoints_px = None
    assert np.flatnonzero(jump_steps(swapped)).tolist() == [30]
    assert not jump_steps(swapped, IdentityGuardConfig(enabled=False)).any()
    with pytest.raises(ConfigError, match="max_speed_heights_s"):
        IdentityGuardConfig(max_speed_heights_s=0)


def test_tracks_are_split_at_shot_changes():
    track = _walker()  # frames 0..149
    shots = np.zeros(200, dtype=bool)
    shots[[50, 120, 180]] = True  # 180: after the track's last frame
    tracks, source = split_identity_jumps([track], shot_boundary=shots)
    assert [(t.track_id, int(t.frame_idx[0]), int(t.frame_idx[-1])) for t in tracks] == [(1, 0, 49), (2, 50, 119),
                                                                                          (3, 120, 149)]
    assert source == {1: 1, 2: 1, 3: 1}
    gappy = _slice_frames(track, np.r_[0:40, 60:150])  # the boundary at 50 falls inside a gap: still split
    assert [int(t.frame_idx[0]) for t in split_identity_jumps([gappy], shot_boundary=shots)[0]] == [0, 60, 120]


def _slice_frames(track: HumanTrack, rows: np.ndarray) -> HumanTrack:
    return HumanTrack(track_id=track.track_id, frame_idx=track.frame_idx[rows], time_s=track.time_s[rows],
                      joint_names=track.joint_names, joints_cam_m=track.joints_cam_m[rows],
                      joint_conf=track.joint_conf[rows], det_conf=track.det_conf[rows],
                      keypoints_px=track.keypoints_px[rows], bbox_xywh_px=track.bbox_xywh_px[rows])
