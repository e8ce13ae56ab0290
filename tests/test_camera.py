"""Pinhole helpers: focal assumption, projection, root translation recovery and its degenerate cases."""

from __future__ import annotations

import numpy as np
import pytest

from ingest.errors import ConfigError
from pipeline.camera import (
    default_focal_px,
    principal_point_px,
    project,
    solve_root_translation,
    solve_root_translation_batch,
)


def _body(rng, j: int = 20) -> np.ndarray:
    """(J, 3) points spread like a 1.7 m person, centred near the origin."""
    return rng.normal(size=(j, 3)) * np.array([0.2, 0.45, 0.12])


def test_default_focal_is_diagonal_and_fov_and_override():
    assert default_focal_px(1920, 1080) == pytest.approx(np.hypot(1920, 1080))
    # a 53.13 deg diagonal field of view is the same as focal = diagonal
    assert default_focal_px(1920, 1080, fov_deg=2 * np.degrees(np.arctan(0.5))) == pytest.approx(np.hypot(1920, 1080))
    f90 = default_focal_px(800, 600, fov_deg=90.0)
    assert f90 == pytest.approx(500.0)  # half diagonal / tan(45 deg)
    assert default_focal_px(800, 600, fov_deg=90.0, focal_px=1234.0) == 1234.0
    for bad in (dict(fov_deg=0.0), dict(fov_deg=180.0), dict(focal_px=-1.0)):
        with pytest.raises(ConfigError):
            default_focal_px(800, 600, **bad)


def test_project_pinhole_and_behind_camera():
    uv = project(np.array([[1.0, -0.5, 2.0], [0.0, 0.0, -1.0]]), 1000.0, (320.0, 240.0))
    np.testing.assert_allclose(uv[0], [320 + 500, 240 - 250])
    assert np.isnan(uv[1]).all()


@pytest.mark.parametrize("t_true", [(0.3, -0.2, 6.0), (-2.0, 0.5, 3.0), (0.0, 0.0, 25.0)])
def test_recovers_translation_exactly_without_noise(t_true):
    rng = np.random.default_rng(1)
    body = _body(rng)
    f, c = default_focal_px(1920, 1080), principal_point_px(1920, 1080)
    kp = project(body + np.array(t_true), f, c)
    t = solve_root_translation(body, kp, np.ones(len(body)), f, c)
    np.testing.assert_allclose(t, t_true, atol=1e-9)


def test_batch_with_noise_and_weights():
    rng = np.random.default_rng(2)
    T, J = 50, 20
    bodies = np.stack([_body(rng, J) for _ in range(T)])
    t_true = np.column_stack([rng.uniform(-1, 1, T), rng.uniform(-0.3, 0.3, T), rng.uniform(3, 10, T)])
    f, c = 1500.0, np.array([640.0, 360.0])
    kp = project(bodies + t_true[:, None], f, c) + rng.normal(0, 1.0, (T, J, 2))  # 1 px noise
    w = np.ones((T, J))
    # a few outlier joints with near-zero weight must not matter
    kp[:, :3] += 200.0
    w[:, :3] = 1e-6
    t = solve_root_translation_batch(bodies, kp, w, f, c)
    assert t.shape == (T, 3)
    err = np.abs(t - t_true)
    assert np.all(err[:, :2] < 0.02) and np.all(err[:, 2] / t_true[:, 2] < 0.03)


def test_degenerate_and_low_weight_cases_are_nan():
    rng = np.random.default_rng(3)
    body = _body(rng, 20)
    f, c = 1000.0, (500.0, 500.0)
    kp = project(body + [0, 0, 5], f, c)
    # too few weighted joints
    w = np.zeros(20)
    w[:2] = 1.0
    assert np.isnan(solve_root_translation(body, kp, w, f, c)).all()
    # all weights zero / NaN keypoints
    assert np.isnan(solve_root_translation(body, kp, np.zeros(20), f, c)).all()
    assert np.isnan(solve_root_translation(body, np.full_like(kp, np.nan), np.ones(20), f, c)).all()
    # every keypoint at the same pixel: depth unobservable
    same = np.tile(kp[:1], (20, 1))
    assert np.isnan(solve_root_translation(body, same, np.ones(20), f, c)).all()
    # keypoints of a body behind the camera (z = -5 m) solve to t_z < 0, which is rejected
    behind = body + [0.0, 0.0, -5.0]
    kp_behind = f * behind[:, :2] / behind[:, 2:] + np.asarray(c)
    from pipeline import camera

    raw = camera.solve_root_translation_batch(body[None], kp_behind[None], np.ones((1, 20)), f, c, min_spread_px=0)
    assert np.isnan(raw).all()
    # one bad frame in a batch does not spoil the others
    batch = solve_root_translation_batch(
        np.stack([body, body]), np.stack([kp, same]), np.ones((2, 20)), f, c
    )
    np.testing.assert_allclose(batch[0], [0, 0, 5], atol=1e-9)
    assert np.isnan(batch[1]).all()


def test_shape_errors():
    with pytest.raises(ValueError):
        solve_root_translation_batch(np.zeros((2, 5, 3)), np.zeros((2, 4, 2)), np.ones((2, 5)), 1.0, (0, 0))
