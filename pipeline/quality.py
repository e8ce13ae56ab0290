"""Human-side quality metrics of a world-aligned clip (before retargeting).

Definitions follow ``shared/reference/quality.md``; every metric is a float whose name carries its unit, and
every clip gets the same keys (:data:`METRIC_NAMES`) with NaN where a metric cannot be computed (too few frames,
no contact, no boxes), so the catalog has a fixed schema and users draw their own lines in SQL.

The functions are pure: arrays in, ``dict[str, float]`` out. Motion metrics are computed on the joints as given
(no smoothing), so ``jitter_m_s3`` measures the estimator's jitter.
"""

from __future__ import annotations

import math

import numpy as np

from pipeline.skeleton import BODY_JOINTS, BONES, FOOT_JOINTS

#: Metric names in a stable order (the catalog's metric columns).
METRIC_NAMES: tuple[str, ...] = (
    "num_frames",
    "duration_s",
    "jitter_m_s3",
    "root_jerk_m_s3",
    "accel_mean_m_s2",
    "foot_contact_score",
    "foot_sliding_mm_per_frame",
    "penetration_max_m",
    "floating_frac",
    "pelvis_height_min_m",
    "pelvis_height_max_m",
    "bone_length_std_m",
    "bone_length_cv",
    "tracked_frac",
    "longest_gap_s",
    "conf_mean",
    "det_conf_mean",
    "person_height_px_median",
    "truncated_frac",
    "static_camera_score",
    "background_motion_median",
    "people_in_frame_max",
    "world_up_method_id",
    "world_up_body_angle_deg",
    "ground_rmse_m",
    "camera_height_m",
)


def clip_metrics(
    joints_world_m: np.ndarray,
    joint_conf: np.ndarray,
    fps: float,
    foot_contact: np.ndarray,
    *,
    observed: np.ndarray | None = None,
    det_conf: np.ndarray | None = None,
    bbox_xywh_px: np.ndarray | None = None,
    keypoints_px: np.ndarray | None = None,
    image_size_hw: tuple[int, int] | None = None,
    static_camera_score: float = math.nan,
    background_motion_median: float = math.nan,
    people_in_frame_max: float = math.nan,
    world_up_method_id: float = math.nan,
    world_up_body_angle_deg: float = math.nan,
    ground_rmse_m: float = math.nan,
    camera_height_m: float = math.nan,
    joint_names: tuple[str, ...] = BODY_JOINTS,
    floating_height_m: float = 0.05,
    min_keypoint_conf: float = 0.3,
) -> dict[str, float]:
    """All human-side metrics of one clip, keyed by :data:`METRIC_NAMES`.

    joints_world_m: (T, J, 3) world joints (metres, z up, ground at z = 0) on a regular grid at ``fps``.
    joint_conf: (T, J) confidence (0 on filled frames). foot_contact: (T, 4) bool flags of ``FOOT_JOINTS``.
    observed: (T,) bool, frames with a real observation (default: all).
    det_conf: (K,) detector confidence, bbox_xywh_px: (K, 4), keypoints_px: (K, J, 2) of the K observed frames.
    image_size_hw: (H, W) pixels, for ``truncated_frac``.

    Passed through unchanged (measured elsewhere, NaN when unknown):
    static_camera_score and background_motion_median (:func:`pipeline.world.static_camera_score`,
    :func:`pipeline.world.median_background_motion`; 0-1 intensity change per frame); people_in_frame_max
    (most tracks observed in one frame of the clip); from :class:`pipeline.world.WorldAlignment`:
    world_up_method_id (index into :data:`pipeline.world.UP_METHODS`: 0 camera, 1 body, 2 line, 3 plane),
    world_up_body_angle_deg (chosen up vs the pelvis -> neck prior), ground_rmse_m (contact candidates' RMS
    height), camera_height_m.
    """
    x = np.asarray(joints_world_m, dtype=np.float64)
    t = x.shape[0]
    obs = np.ones(t, dtype=bool) if observed is None else np.asarray(observed, dtype=bool)
    out = {
        "num_frames": float(t),
        "duration_s": float(t / fps) if fps > 0 else math.nan,
        "static_camera_score": float(static_camera_score),
        "background_motion_median": float(background_motion_median),
        "people_in_frame_max": float(people_in_frame_max),
        "world_up_method_id": float(world_up_method_id),
        "world_up_body_angle_deg": float(world_up_body_angle_deg),
        "ground_rmse_m": float(ground_rmse_m),
        "camera_height_m": float(camera_height_m),
    }
    out.update(motion_metrics(x, fps, foot_contact, joint_names=joint_names, floating_height_m=floating_height_m))
    out.update(bone_length_metrics(x[obs], joint_names=joint_names))
    out.update(
        tracking_metrics(
            joint_conf,
            obs,
            fps,
            det_conf=det_conf,
            bbox_xywh_px=bbox_xywh_px,
            keypoints_px=keypoints_px,
            image_size_hw=image_size_hw,
            min_keypoint_conf=min_keypoint_conf,
        )
    )
    return {name: out[name] for name in METRIC_NAMES}


def motion_metrics(
    joints_world_m: np.ndarray,
    fps: float,
    foot_contact: np.ndarray,
    *,
    joint_names: tuple[str, ...] = BODY_JOINTS,
    floating_height_m: float = 0.05,
) -> dict[str, float]:
    """Smoothness, ground and pelvis metrics of (T, J, 3) world joints at ``fps``.

    jitter_m_s3: mean over joints and frames of |x[t+3] - 3 x[t+2] + 3 x[t+1] - x[t]| * fps^3 (GVHMR/WHAM).
    root_jerk_m_s3: the same for the pelvis alone (PHUMA keeps < 50 m/s^3).
    accel_mean_m_s2: mean over joints and frames of |x[t+2] - 2 x[t+1] + x[t]| * fps^2.
    foot_contact_score: fraction of frames with some foot point in contact.
    foot_sliding_mm_per_frame: mean horizontal displacement (mm) of a foot point between consecutive frames
        in which it is in contact in both (NaN with no such pair).
    penetration_max_m: deepest foot point below the ground (>= 0).
    floating_frac: fraction of frames whose lowest foot point is higher than ``floating_height_m``.
    pelvis_height_min_m / pelvis_height_max_m: range of the pelvis height (PHUMA: [0.6, 1.5] m).
    """
    x = np.asarray(joints_world_m, dtype=np.float64)
    names = {n: i for i, n in enumerate(joint_names)}
    pelvis = x[:, names["pelvis"]]
    feet = x[:, [names[n] for n in FOOT_JOINTS]]
    contact = np.asarray(foot_contact, dtype=bool)
    t = x.shape[0]

    def mean_norm(d: np.ndarray) -> float:
        return float(np.linalg.norm(d, axis=-1).mean()) if d.size else math.nan

    out = {
        "jitter_m_s3": mean_norm(_third_difference(x)) * fps**3,
        "root_jerk_m_s3": mean_norm(_third_difference(pelvis)) * fps**3,
        "accel_mean_m_s2": mean_norm(x[2:] - 2 * x[1:-1] + x[:-2]) * fps**2,
    }
    if t == 0:
        nan = math.nan
        out.update(
            foot_contact_score=nan,
            foot_sliding_mm_per_frame=nan,
            penetration_max_m=nan,
            floating_frac=nan,
            pelvis_height_min_m=nan,
            pelvis_height_max_m=nan,
        )
        return out
    both = contact[1:] & contact[:-1]
    slide_m = np.linalg.norm(feet[1:, :, :2] - feet[:-1, :, :2], axis=-1)
    lowest = feet[..., 2].min(axis=1)
    out.update(
        foot_contact_score=float(contact.any(axis=1).mean()),
        foot_sliding_mm_per_frame=float(slide_m[both].mean() * 1000.0) if both.any() else math.nan,
        penetration_max_m=float(max(0.0, -lowest.min())),
        floating_frac=float((lowest > floating_height_m).mean()),
        pelvis_height_min_m=float(pelvis[:, 2].min()),
        pelvis_height_max_m=float(pelvis[:, 2].max()),
    )
    return out


def bone_length_metrics(joints_m: np.ndarray, *, joint_names: tuple[str, ...] = BODY_JOINTS) -> dict[str, float]:
    """Bone-length stability over (K, J, 3) joints (any frame; use observed frames only).

    bone_length_std_m: mean over :data:`BONES` of the standard deviation of the bone's length (m).
    bone_length_cv: mean over bones of std / mean length (dimensionless). NaN with fewer than 2 frames.
    """
    x = np.asarray(joints_m, dtype=np.float64)
    if x.shape[0] < 2:
        return {"bone_length_std_m": math.nan, "bone_length_cv": math.nan}
    names = {n: i for i, n in enumerate(joint_names)}
    pairs = [(names[a], names[b]) for a, b in BONES if a in names and b in names]
    parents = [p for p, _ in pairs]
    children = [c for _, c in pairs]
    lengths = np.linalg.norm(x[:, children] - x[:, parents], axis=-1)  # (K, B)
    std = lengths.std(axis=0)
    mean = lengths.mean(axis=0)
    cv = np.where(mean > 1e-9, std / np.maximum(mean, 1e-9), np.nan)
    cv_mean = float(np.nanmean(cv)) if np.isfinite(cv).any() else math.nan
    return {"bone_length_std_m": float(std.mean()), "bone_length_cv": cv_mean}


def tracking_metrics(
    joint_conf: np.ndarray,
    observed: np.ndarray,
    fps: float,
    *,
    det_conf: np.ndarray | None = None,
    bbox_xywh_px: np.ndarray | None = None,
    keypoints_px: np.ndarray | None = None,
    image_size_hw: tuple[int, int] | None = None,
    min_keypoint_conf: float = 0.3,
) -> dict[str, float]:
    """Tracking evidence (4D-Humans/PHALP) over a clip of T frames, K of them observed.

    tracked_frac: K / T. longest_gap_s: longest run of unobserved frames / fps.
    conf_mean: mean joint confidence over observed frames. det_conf_mean: mean detector confidence.
    person_height_px_median: median box height (pixels), or the keypoint extent (max y - min y of confident
        keypoints) without boxes (PHALP drops people under 100 px).
    truncated_frac: fraction of observed frames with a confident keypoint outside the image.
    """
    conf = np.asarray(joint_conf, dtype=np.float64)
    obs = np.asarray(observed, dtype=bool)
    t = len(obs)
    k = int(obs.sum())
    nan = math.nan
    out = {
        "tracked_frac": float(k / t) if t else nan,
        "longest_gap_s": float(_longest_run(~obs) / fps) if fps > 0 else nan,
        "conf_mean": float(conf[obs].mean()) if k else nan,
        "det_conf_mean": float(np.mean(det_conf)) if det_conf is not None and len(det_conf) else nan,
        "person_height_px_median": nan,
        "truncated_frac": nan,
    }
    kp_conf = conf[obs]
    if bbox_xywh_px is not None and len(bbox_xywh_px):
        out["person_height_px_median"] = float(np.median(np.asarray(bbox_xywh_px, dtype=np.float64)[:, 3]))
    if keypoints_px is not None and len(keypoints_px) and len(keypoints_px) == len(kp_conf):
        kp = np.asarray(keypoints_px, dtype=np.float64)
        good = (kp_conf >= min_keypoint_conf) & np.isfinite(kp).all(axis=-1)
        if math.isnan(out["person_height_px_median"]) and good.any(axis=1).any():
            y = kp[..., 1]
            extent = np.where(good, y, -np.inf).max(axis=1) - np.where(good, y, np.inf).min(axis=1)
            out["person_height_px_median"] = float(np.median(extent[good.any(axis=1)]))
        if image_size_hw is not None:
            h, w = image_size_hw
            outside = (kp[..., 0] < 0) | (kp[..., 0] >= w) | (kp[..., 1] < 0) | (kp[..., 1] >= h)
            out["truncated_frac"] = float((outside & good).any(axis=1).mean())
    return out


def _third_difference(x: np.ndarray) -> np.ndarray:
    """x[t+3] - 3 x[t+2] + 3 x[t+1] - x[t] along axis 0 (empty when T < 4)."""
    return x[3:] - 3 * x[2:-1] + 3 * x[1:-2] - x[:-3]


def _longest_run(mask: np.ndarray) -> int:
    """Length of the longest run of True in a 1-D bool array."""
    if not mask.any():
        return 0
    padded = np.concatenate([[0], mask.astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return int((edges[1::2] - edges[::2]).max())
