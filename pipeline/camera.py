"""Pinhole camera helpers: the focal-length assumption, projection, and the root translation that places a
metric body (known up to translation) in front of the camera so that it projects onto 2D keypoints.

Camera frame: OpenCV, x right, y down, z forward (metres); image coordinates in pixels, x right, y down, with
principal point ``(cx, cy)``. A point ``P = (X, Y, Z)`` projects to ``x = f X / Z + cx``, ``y = f Y / Z + cy``.
"""

from __future__ import annotations

import numpy as np

from ingest.errors import ConfigError

#: Minimum number of joints with positive weight needed to solve a root translation.
MIN_JOINTS_FOR_TRANSLATION = 3


def default_focal_px(
    width: int, height: int, fov_deg: float | None = None, *, focal_px: float | None = None
) -> float:
    """Focal length in pixels for an image of ``width`` x ``height`` pixels.

    Stated assumption when nothing is configured: the focal length equals the image diagonal in pixels,
    ``f = sqrt(W^2 + H^2)``, i.e. a diagonal field of view of ``2 atan(1/2)`` ~ 53.1 deg (a typical phone or
    camcorder main lens). ``focal_px`` (pixels) wins if given; otherwise ``fov_deg`` is the *diagonal* field of
    view in degrees: ``f = (diag / 2) / tan(fov / 2)``.

    Raises :class:`ConfigError` for a non-positive focal length or a field of view outside (0, 180).
    """
    if width <= 0 or height <= 0:
        raise ConfigError(f"image size must be positive, got {width}x{height}")
    diag_px = float(np.hypot(width, height))
    if focal_px is not None:
        if not focal_px > 0:
            raise ConfigError(f"focal_px must be > 0 pixels, got {focal_px}")
        return float(focal_px)
    if fov_deg is not None:
        if not 0 < fov_deg < 180:
            raise ConfigError(f"fov_deg (diagonal field of view) must be in (0, 180) degrees, got {fov_deg}")
        return float(0.5 * diag_px / np.tan(np.radians(fov_deg) / 2))
    return diag_px


def principal_point_px(width: int, height: int) -> np.ndarray:
    """(2,) principal point at the image centre, ``(W / 2, H / 2)`` pixels."""
    return np.array([width / 2.0, height / 2.0])


def project(points_cam_m: np.ndarray, focal_px: float, principal_px) -> np.ndarray:
    """Pinhole projection of camera-frame points.

    points_cam_m: (..., 3) metres, camera frame. Returns (..., 2) pixels; NaN where ``Z <= 0`` (behind the camera).
    """
    p = np.asarray(points_cam_m, dtype=np.float64)
    c = np.asarray(principal_px, dtype=np.float64)
    z = p[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = focal_px * p[..., :2] / z[..., None] + c
    uv[z <= 0] = np.nan
    return uv


def solve_root_translation_batch(
    points_body_m: np.ndarray,
    keypoints_px: np.ndarray,
    weights: np.ndarray,
    focal_px: float,
    principal_px,
    *,
    min_joints: int = MIN_JOINTS_FOR_TRANSLATION,
    min_weight: float = 1e-3,
    min_spread_px: float = 2.0,
) -> np.ndarray:
    """Per-frame translation ``t`` such that ``points_body_m + t`` projects onto ``keypoints_px``.

    points_body_m: (T, J, 3) metres, body points in camera-aligned axes (e.g. hip-centred), translation unknown.
    keypoints_px: (T, J, 2) observed pixels. weights: (T, J) >= 0 (e.g. visibility); NaN inputs get weight 0.
    Returns (T, 3) translations in metres in the camera frame; a row is NaN when fewer than ``min_joints`` joints
    have weight >= ``min_weight``, when the system is degenerate (the weighted keypoints have an RMS spread
    below ``min_spread_px`` pixels: depth unobservable), or when the solution puts the body at or behind the
    camera (``t_z`` <= 0).

    Method: with normalised coordinates ``u = (x - cx) / f``, ``v = (y - cy) / f`` the pinhole equations
    ``(x - cx)(Z + tz) = f (X + tx)`` and ``(y - cy)(Z + tz) = f (Y + ty)`` become linear in ``t``::

        tx - u tz = u Z - X
        ty - v tz = v Z - Y

    Two rows per joint, solved by weighted linear least squares through the 3x3 normal equations, vectorised
    over frames. The residual it minimises is in normalised image units scaled by depth (algebraic error); it
    matches the reprojection error when the body's depth extent is small compared with its distance.
    """
    P = np.asarray(points_body_m, dtype=np.float64)
    K = np.asarray(keypoints_px, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64).copy()
    if P.ndim != 3 or P.shape[-1] != 3 or K.shape != P.shape[:-1] + (2,) or w.shape != P.shape[:-1]:
        raise ValueError(
            f"expected points (T,J,3), keypoints (T,J,2), weights (T,J); got {P.shape}, {K.shape}, {w.shape}"
        )
    c = np.asarray(principal_px, dtype=np.float64)
    bad = ~(np.isfinite(P).all(-1) & np.isfinite(K).all(-1) & np.isfinite(w)) | (w < min_weight)
    w[bad] = 0.0
    P = np.where(bad[..., None], 0.0, P)
    K = np.where(bad[..., None], 0.0, K)
    u = (K[..., 0] - c[0]) / focal_px
    v = (K[..., 1] - c[1]) / focal_px
    X, Y, Z = P[..., 0], P[..., 1], P[..., 2]
    # A^T W A for rows [1, 0, -u] and [0, 1, -v]
    sw = w.sum(-1)
    swu = (w * u).sum(-1)
    swv = (w * v).sum(-1)
    swuv2 = (w * (u * u + v * v)).sum(-1)
    T = P.shape[0]
    AtA = np.zeros((T, 3, 3))
    AtA[:, 0, 0] = sw
    AtA[:, 1, 1] = sw
    AtA[:, 0, 2] = AtA[:, 2, 0] = -swu
    AtA[:, 1, 2] = AtA[:, 2, 1] = -swv
    AtA[:, 2, 2] = swuv2
    bx = u * Z - X
    by = v * Z - Y
    Atb = np.stack([(w * bx).sum(-1), (w * by).sum(-1), -(w * (u * bx + v * by)).sum(-1)], axis=-1)

    out = np.full((T, 3), np.nan)
    enough = (w > 0).sum(-1) >= min_joints
    # det(AtA / sw) equals the weighted variance of (u, v): the system is singular exactly when the keypoints
    # have no spread, and depth is then unobservable. Require an RMS spread of ``min_spread_px`` pixels.
    sw_safe = np.where(sw > 0, sw, 1.0)
    mu, mv = swu / sw_safe, swv / sw_safe
    spread = (w * ((u - mu[:, None]) ** 2 + (v - mv[:, None]) ** 2)).sum(-1) / sw_safe
    ok = enough & (spread > (min_spread_px / focal_px) ** 2)
    if ok.any():
        out[ok] = np.linalg.solve(AtA[ok], Atb[ok][..., None])[..., 0]
    out[~(out[:, 2] > 0)] = np.nan
    return out


def solve_root_translation(
    points_body_m: np.ndarray,
    keypoints_px: np.ndarray,
    weights: np.ndarray,
    focal_px: float,
    principal_px,
    **kwargs,
) -> np.ndarray:
    """Single-frame :func:`solve_root_translation_batch`: (J,3), (J,2), (J,) -> (3,) metres, or NaNs."""
    return solve_root_translation_batch(
        np.asarray(points_body_m)[None],
        np.asarray(keypoints_px)[None],
        np.asarray(weights)[None],
        focal_px,
        principal_px,
        **kwargs,
    )[0]
