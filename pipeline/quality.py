"""Human-side quality metrics of a world-aligned clip (before retargeting).

Definitions follow ``shared/reference/quality.md``; every metric is a float whose name carries its unit, and
every clip gets the same keys (:data:`METRIC_NAMES`) with NaN where a metric cannot be computed (too few frames,
no contact, no boxes), so the catalog has a fixed schema and users draw their own lines in SQL.

The functions are pure: arrays in, ``dict[str, float]`` out.

Smoothness metrics (``jitter_m_s3``, ``root_jerk_m_s3``, ``accel_mean_m_s2``) are measured on a fixed bandwidth
so that they do not depend on the source frame rate (:func:`band_limited_derivative`): a raw third difference
times fps^3 reads the same motion ~fps^3 times higher at high frame rates wherever it holds noise or kinks
(i.i.d. per-frame noise of sigma m per axis read 7.1 sigma fps^3 m/s^3), so 12 fps and 60 fps clips could not share
one threshold.
"""

from __future__ import annotations

import math

import numpy as np

from pipeline.skeleton import BODY_JOINTS, BONES, FOOT_JOINTS

#: Common time grid (frames per second) on which the smoothness metrics are evaluated (sources above it keep
#: their own rate). At 120 fps a finite difference of a 4 Hz signal is within 0.6 % of the true derivative.
SMOOTHNESS_GRID_FPS = 120.0
#: Low-pass cutoff (Hz) of the whole-body smoothness metrics (``jitter_m_s3``, ``accel_mean_m_s2``; also the
#: robot's ``jerk_mean_rad_s3``). See :func:`band_limited_derivative` for why 4 Hz.
JITTER_CUTOFF_HZ = 4.0
#: Low-pass cutoff (Hz) of ``root_jerk_m_s3``: PHUMA's root-translation filter (quality.md).
ROOT_JERK_CUTOFF_HZ = 3.0
#: Order of the Butterworth low-pass (run forward and backward: |H|^2 = 1 / (1 + (f / fc)^8)).
SMOOTHNESS_FILTER_ORDER = 4
#: Length (s) of the odd (point-reflected) extension at each end of a clip before filtering.
SMOOTHNESS_PAD_S = 1.0
#: Samples this close (s) to either end of a clip (at most 1/8 of its duration) are left out of the averages.
SMOOTHNESS_TRIM_S = 0.25

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

    Smoothness, on a fixed bandwidth (:func:`band_limited_derivative`; the same motion reads the same at any
    frame rate from 12 fps up; NaN with fewer than 4 frames, 3 for the acceleration):

    jitter_m_s3: mean over joints and grid samples of |d^3/dt^3 LP_4Hz(x)|, the jerk (m/s^3) of the joints
        low-passed at :data:`JITTER_CUTOFF_HZ` = 4 Hz (GVHMR/WHAM's third-difference jitter, band-limited).
    root_jerk_m_s3: |d^3/dt^3 LP_3Hz(pelvis)| averaged the same way, the pelvis low-passed at
        :data:`ROOT_JERK_CUTOFF_HZ` = 3 Hz: PHUMA's root jerk on its 3 Hz-filtered root (PHUMA keeps < 50 m/s^3).
    accel_mean_m_s2: mean over joints and grid samples of |d^2/dt^2 LP_4Hz(x)| (m/s^2).

    Per-frame (depend on the frame rate by definition or through noise, see below):

    foot_contact_score: fraction of frames with some foot point in contact.
    foot_sliding_mm_per_frame: mean horizontal displacement (mm) of a foot point between consecutive frames
        in which it is in contact in both (NaN with no such pair). Per frame, so a foot skating at v m/s reads
        1000 v / fps: compare clips of different frame rates as ``foot_sliding_mm_per_frame * fps / 1000`` (m/s).
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
        "jitter_m_s3": mean_norm(band_limited_derivative(x, fps, JITTER_CUTOFF_HZ, 3)),
        "root_jerk_m_s3": mean_norm(band_limited_derivative(pelvis, fps, ROOT_JERK_CUTOFF_HZ, 3)),
        "accel_mean_m_s2": mean_norm(band_limited_derivative(x, fps, JITTER_CUTOFF_HZ, 2)),
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


def band_limited_derivative(x: np.ndarray, fps: float, cutoff_hz: float, order: int = 3) -> np.ndarray:
    """The ``order``-th time derivative of (T, ...) samples ``x`` at ``fps`` after a fixed-bandwidth low-pass.

    Returns (K, ...) values on a common time grid, in units of x per s^order; empty when T <= order, when
    ``fps`` <= 0 or when ``x`` holds a non-finite value. The method, the same at every source rate:

    1. Interpolate: S(t), the quintic interpolating spline through (i / fps, x_i) (degree min(5, T - 1); its
       amplitude response is within 2 % of 1 up to fps / 3, i.e. up to 4 Hz for a 12 fps source), sampled
       at t_k = k / G, 0 <= t_k <= (T - 1) / fps, on the grid G = max(:data:`SMOOTHNESS_GRID_FPS`, fps)
       (120 fps for every common source rate).
    2. Low-pass on that grid: y = LP_fc(S), a Butterworth of order 4 run forward and backward (zero phase,
       amplitude response |H(f)|^2 = 1 / (1 + (f / fc)^8)); each end is extended by its point reflection over
       :data:`SMOOTHNESS_PAD_S` = 1 s (position and velocity stay continuous). For n >= 2 the straight line
       through the first and last grid samples is subtracted first: it has no n-th derivative, and removing it
       spares the filter a start-up transient (a constant velocity reads exactly 0).
    3. Differentiate: D^n y[k] = G^n sum_m (-1)^(n-m) C(n, m) y[k + m]; for n = 3,
       (y[k+3] - 3 y[k+2] + 3 y[k+1] - y[k]) G^3, the GVHMR/WHAM jitter formula applied on the grid. Its error
       against the true derivative, (sin(pi f / G) / (pi f / G))^n - 1, is -0.6 % at 4 Hz.
    4. Trim: the samples within min(:data:`SMOOTHNESS_TRIM_S` = 0.25 s, duration / 8) of either end are dropped.
       At a clip's ends the reflection cannot continue the acceleration, and the filter turns that step into a
       jerk transient that dies out in ~1 / fc: untrimmed, 2 s of synthetic walking or jumping read 4-9 % low
       and a steadily accelerating cubic 2x high; trimmed, walking and jumping within 4 % (the cubic 15 %).

    The metrics average |D^n y| over the grid samples (and joints): a time average, in which the number of
    source frames does not enter. Filtering once on the common grid, not at the source rate, gives every source
    the same digital filter.

    Why these cutoffs: a frame-rate-free measure can only look at frequencies that every supported source
    holds. The slowest rate the pipeline meets, 12 fps, holds nothing above its Nyquist frequency of 6 Hz, and
    jerk weighs the spectrum by (2 pi f)^3, so the weighted response |H|^2 f^3 of a cutoff fc peaks near fc and
    only falls to a quarter of that at 1.5 fc: 4 Hz is the highest cutoff whose weighted band stays inside 6 Hz
    (synthetic walking, standing and jumping, clean and noisy, read within 3 % of each other from 12 to 60 fps;
    at 5 Hz they spread up to 7 %, the spline passing only 88 % of 5 Hz from 12 fps). Human voluntary motion lies
    mostly below ~6 Hz (the customary cutoff of gait marker filters and PHUMA's pose filter), while estimator
    noise is broadband: the band holds most of the motion and the low-frequency share of the noise, the share a
    trainer's own low-pass lets through. PHUMA's 6 Hz pose filter itself cannot serve: a 12 fps source has
    nothing to show above 6 Hz. The pelvis uses PHUMA's 3 Hz root filter (quality.md), so ``root_jerk_m_s3`` is
    comparable with PHUMA's root jerk (< 50 m/s^3).

    Noise: an estimator's i.i.d. per-frame noise of sigma (m per axis) is not one physical signal at every rate:
    at ``fps`` it spreads the same variance over 0 .. fps / 2, so the band below fc holds less of it the higher
    the rate. For fps >> fc its jerk has the per-axis standard deviation
    sigma sqrt(2 / fps) (2 pi)^3 fc^3.5 sqrt(integral_0^inf u^6 / (1 + u^8)^2 du), and the mean norm of the
    3-D jerk is 2 sqrt(2 / pi) times that: 2.57e4 sigma / sqrt(fps) m/s^3 at fc = 4 Hz, 9.4e3 sigma / sqrt(fps)
    at 3 Hz (per-frame noise averages out at a higher rate, as it would under a trainer's low-pass). Motion, and
    noise that is a continuous-time process (drift, slow wobble of the fit), read the same at every rate.
    """
    x = np.asarray(x, dtype=np.float64)
    t = x.shape[0] if x.ndim else 0
    if t <= order or not fps > 0 or not np.isfinite(x).all():
        return np.zeros((0,) + x.shape[1:])
    from scipy.interpolate import make_interp_spline
    from scipy.signal import butter, sosfiltfilt

    from pipeline.resample import output_times_s

    grid_fps = max(SMOOTHNESS_GRID_FPS, float(fps))
    times = output_times_s(t, fps, grid_fps)
    y = make_interp_spline(np.arange(t) / fps, x, k=min(5, t - 1), axis=0)(times)
    k = len(y)
    if cutoff_hz > 0 and k > 1:
        if order >= 2:
            w = (np.arange(k) / (k - 1)).reshape((-1,) + (1,) * (y.ndim - 1))
            y = y - (y[:1] * (1.0 - w) + y[-1:] * w)
        sos = butter(SMOOTHNESS_FILTER_ORDER, cutoff_hz, btype="low", fs=grid_fps, output="sos")
        y = sosfiltfilt(sos, y, axis=0, padtype="odd", padlen=min(k - 1, int(round(SMOOTHNESS_PAD_S * grid_fps))))
    d = np.diff(y, n=order, axis=0) * grid_fps**order
    trim = int(round(min(SMOOTHNESS_TRIM_S, (t - 1) / fps / 8.0) * grid_fps))
    return d[trim : len(d) - trim] if len(d) > 2 * trim else d


def _longest_run(mask: np.ndarray) -> int:
    """Length of the longest run of True in a 1-D bool array."""
    if not mask.any():
        return 0
    padded = np.concatenate([[0], mask.astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return int((edges[1::2] - edges[::2]).max())
