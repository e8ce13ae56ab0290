"""The identity-jump guard: a track never carries two people.

Every backend's tracker can hand a track from one person to another (an occlusion, a crossing, a tracker that
re-associates to the wrong box, a cut the shot detector missed). A real body cannot jump: between two
consecutive observed frames ``i-1`` and ``i`` (``dt_s`` apart) of a track, the guard splits the track at ``i``
when its root (the pelvis) moved further than a person can.

Distances are measured in **body heights**, so the bound holds for a child far away and an adult close up:

- image plane: ``d_img = |p_i - p_{i-1}| / min(h_{i-1}, h_i)``, with ``p`` the pelvis keypoint in pixels and
  ``h`` the person's height in pixels (the keypoints' vertical extent, the box height where keypoints are
  missing); the smaller of the two heights, so a swap between a small and a large person reads large;
- camera frame (3D): ``d_3d = (|r_i - r_{i-1}| - depth_frac * z) / H``, with ``r`` the pelvis in metres, ``z``
  its depth (the mean of the two frames) and ``H`` the track's median head-to-ankle height in metres. Monocular
  depth comes from the person's apparent size, so its error grows with the distance: a partly hidden child 9 m
  away whose keypoints shrink by 16 % reads 1.3 m further in one frame. ``depth_frac`` of the depth is
  therefore allowed on top (and a floor of its own).

A step is a jump when ``d > max_speed_heights_s * dt_s + floor``: the speed bound (default 8 body heights per
second, above a sprinter's ~5.7 (10 m/s at 1.75 m) plus a fast camera pan) plus a floor per step that absorbs
landmark noise at high frame rates (0.35 heights in the image, 0.6 in 3D). Each piece after a split becomes a
track of its own with a fresh ``track_id`` (above every id of the video); ``source_track_ids`` maps every
output id back to the backend's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from pipeline.motion import HumanTrack


@dataclass(frozen=True)
class IdentityGuardConfig:
    """Bounds of the identity-jump guard (see the module docstring).

    max_speed_heights_s: fastest plausible root motion, body heights per second (image plane and 3D).
    image_floor_heights: per-step allowance in the image plane, body heights.
    camera_floor_heights: per-step allowance of the 3D root in the camera frame, body heights.
    depth_frac: per-step allowance of the 3D root, as a fraction of its depth (monocular depth error).
    enabled: False turns the guard off.
    """

    max_speed_heights_s: float = 8.0
    image_floor_heights: float = 0.35
    camera_floor_heights: float = 0.6
    depth_frac: float = 0.2
    enabled: bool = True

    def __post_init__(self) -> None:
        from ingest.errors import ConfigError

        for name in ("max_speed_heights_s", "image_floor_heights", "camera_floor_heights", "depth_frac"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"identity guard: {name} must be > 0 (got {getattr(self, name)!r})")


def jump_steps(track: HumanTrack, config: IdentityGuardConfig | None = None) -> np.ndarray:
    """(T,) bool: True at observed frame ``i`` when the step from ``i-1`` to ``i`` is an identity jump
    (index 0 is always False)."""
    cfg = config or IdentityGuardConfig()
    n = track.num_frames
    jumps = np.zeros(n, dtype=bool)
    if n < 2 or not cfg.enabled:
        return jumps
    dt_s = np.diff(np.asarray(track.time_s, dtype=np.float64))
    dt_s = np.where(dt_s > 0, dt_s, np.nan)
    names = tuple(track.joint_names)
    pelvis = names.index("pelvis") if "pelvis" in names else None
    with np.errstate(invalid="ignore", divide="ignore"):
        image = _image_steps_heights(track, pelvis)
        if image is not None:
            jumps[1:] |= image > cfg.max_speed_heights_s * dt_s + cfg.image_floor_heights
        camera = _camera_steps_heights(track, pelvis, names, cfg.depth_frac)
        if camera is not None:
            jumps[1:] |= camera > cfg.max_speed_heights_s * dt_s + cfg.camera_floor_heights
    return jumps


def _image_steps_heights(track: HumanTrack, pelvis: int | None) -> np.ndarray | None:
    """(T-1,) pelvis displacement between consecutive observed frames in body heights (NaN where unknown)."""
    kp = track.keypoints_px
    box = track.bbox_xywh_px
    if kp is not None and pelvis is not None:
        root = kp[:, pelvis, :].astype(np.float64)
        height = np.nanmax(kp[..., 1], axis=1) - np.nanmin(kp[..., 1], axis=1)
        if box is not None:
            height = np.where(np.isfinite(height) & (height > 0), height, box[:, 3])
    elif box is not None:
        root = box[:, :2].astype(np.float64) + box[:, 2:] / 2
        height = box[:, 3].astype(np.float64)
    else:
        return None
    height = np.where(height > 0, height, np.nan)
    step = np.linalg.norm(np.diff(root, axis=0), axis=1)
    return step / np.fmin(height[:-1], height[1:])


def _camera_steps_heights(track: HumanTrack, pelvis: int | None, names: tuple[str, ...], depth_frac: float
                          ) -> np.ndarray | None:
    """(T-1,) 3D pelvis displacement in the camera frame beyond ``depth_frac`` of its depth, in body heights
    (the track's median height)."""
    if pelvis is None or not all(n in names for n in ("head", "left_ankle", "right_ankle")):
        return None
    joints = track.joints_cam_m.astype(np.float64)
    head = joints[:, names.index("head")]
    ankles = (joints[:, names.index("left_ankle")] + joints[:, names.index("right_ankle")]) / 2
    height_m = np.nanmedian(np.linalg.norm(head - ankles, axis=1))
    if not np.isfinite(height_m) or height_m <= 0:
        return None
    root = joints[:, pelvis]
    depth = np.abs(0.5 * (root[1:, 2] + root[:-1, 2]))
    step = np.linalg.norm(np.diff(root, axis=0), axis=1) - depth_frac * depth
    return np.maximum(step, 0.0) / height_m


def shot_steps(track: HumanTrack, shot_boundary: np.ndarray | None) -> np.ndarray:
    """(T,) bool: True at observed frame ``i`` when a shot starts after frame ``i-1`` and at or before frame ``i``
    (``shot_boundary``: (N,) bool over the video's frames, or None)."""
    out = np.zeros(track.num_frames, dtype=bool)
    if shot_boundary is None or track.num_frames < 2 or not len(shot_boundary):
        return out
    cuts = np.concatenate([[0], np.cumsum(np.asarray(shot_boundary, dtype=np.int64))])
    fi = np.asarray(track.frame_idx, dtype=np.int64)
    lo = np.clip(fi[:-1] + 1, 0, len(cuts) - 1)
    hi = np.clip(fi[1:] + 1, 0, len(cuts) - 1)
    out[1:] = cuts[hi] - cuts[lo] > 0
    return out


def split_identity_jumps(tracks: list[HumanTrack], config: IdentityGuardConfig | None = None,
                         shot_boundary: np.ndarray | None = None) -> tuple[list[HumanTrack], dict[int, int]]:
    """Split every track at its identity jumps (:func:`jump_steps`) and at shot changes (:func:`shot_steps`:
    a cut, fade or dissolve may show another person in the same place, and the same person is another motion).

    Returns ``(tracks, source_track_ids)``: the pieces in the input order (a track without jumps is returned as
    it is, same object, same id; the first piece of a split track keeps the id, later pieces get ids above every
    input id, in order), and output id -> input id for every output track.
    """
    next_id = max((t.track_id for t in tracks), default=-1) + 1
    out: list[HumanTrack] = []
    source: dict[int, int] = {}
    for track in tracks:
        cuts = np.flatnonzero(jump_steps(track, config) | shot_steps(track, shot_boundary))
        if not len(cuts):
            out.append(track)
            source[track.track_id] = track.track_id
            continue
        for k, (a, b) in enumerate(zip(np.r_[0, cuts], np.r_[cuts, track.num_frames])):
            track_id = track.track_id if k == 0 else next_id
            if k:
                next_id += 1
            out.append(_slice(track, int(a), int(b), track_id))
            source[track_id] = track.track_id
    return out, source


def _slice(track: HumanTrack, a: int, b: int, track_id: int) -> HumanTrack:
    """Observed frames ``[a, b)`` of ``track`` as a track with id ``track_id``."""
    def cut(x):
        return None if x is None else x[a:b]

    smpl = None
    if track.smpl is not None:
        s = track.smpl
        smpl = replace(s, global_orient_rotmat=s.global_orient_rotmat[a:b], body_pose_rotmat=s.body_pose_rotmat[a:b],
                       betas=s.betas[a:b], transl_cam_m=s.transl_cam_m[a:b])
    return HumanTrack(track_id=track_id, frame_idx=track.frame_idx[a:b], time_s=track.time_s[a:b],
                      joint_names=track.joint_names, joints_cam_m=track.joints_cam_m[a:b],
                      joint_conf=track.joint_conf[a:b], det_conf=track.det_conf[a:b],
                      keypoints_px=cut(track.keypoints_px), bbox_xywh_px=cut(track.bbox_xywh_px), smpl=smpl)
