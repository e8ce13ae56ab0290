"""Quaternions and rotations in numpy: one convention, written down once.

Convention: unit quaternions are **scalar first** (``quat_wxyz``, MuJoCo / mjlab / Isaac Lab NPZ) everywhere inside
g1forge; :func:`wxyz_to_xyzw` / :func:`xyzw_to_wxyz` convert at the edges (Unitree CSV, GMR pickle, scipy are
scalar last). Products are Hamilton products; ``quat_multiply(a, b)`` rotates by ``b`` first, then by ``a``
(matrices: ``R(a) @ R(b)``). A quaternion ``q_world_from_body`` maps body-frame vectors into the world frame:
``v_world = quat_rotate(q, v_body)``. Rotation vectors (axis-angle) are ``axis * angle_rad`` with the angle in
[0, pi].

Every function takes arrays with any number of leading dimensions (``(..., 4)``, ``(..., 3)``, ``(..., 3, 3)``)
and broadcasts them.
"""

from __future__ import annotations

import numpy as np

_EPS = 1e-12


def wxyz_to_xyzw(quat_wxyz: np.ndarray) -> np.ndarray:
    """(..., 4) scalar-first -> (..., 4) scalar-last."""
    q = np.asarray(quat_wxyz)
    return np.concatenate([q[..., 1:4], q[..., 0:1]], axis=-1)


def xyzw_to_wxyz(quat_xyzw: np.ndarray) -> np.ndarray:
    """(..., 4) scalar-last -> (..., 4) scalar-first."""
    q = np.asarray(quat_xyzw)
    return np.concatenate([q[..., 3:4], q[..., 0:3]], axis=-1)


def quat_identity(shape: tuple[int, ...] = ()) -> np.ndarray:
    """Identity rotations of shape ``shape + (4,)`` (wxyz)."""
    q = np.zeros(tuple(shape) + (4,))
    q[..., 0] = 1.0
    return q


def quat_normalize(quat_wxyz: np.ndarray) -> np.ndarray:
    """(..., 4) unit quaternions; raises ``ValueError`` on (near) zero ones, which are not rotations."""
    q = np.asarray(quat_wxyz, dtype=np.float64)
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    if np.any(norm < 1e-9):
        raise ValueError("zero-length quaternion: not a rotation")
    return q / norm


def quat_conjugate(quat_wxyz: np.ndarray) -> np.ndarray:
    """(..., 4) conjugate = inverse for unit quaternions."""
    q = np.array(quat_wxyz, dtype=np.float64)
    q[..., 1:] *= -1.0
    return q


def quat_multiply(a_wxyz: np.ndarray, b_wxyz: np.ndarray) -> np.ndarray:
    """Hamilton product ``a * b`` of (..., 4) quaternions (apply ``b`` first, then ``a``)."""
    a = np.asarray(a_wxyz, dtype=np.float64)
    b = np.asarray(b_wxyz, dtype=np.float64)
    aw, ax, ay, az = a[..., 0], a[..., 1], a[..., 2], a[..., 3]
    bw, bx, by, bz = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return np.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        axis=-1,
    )


def quat_rotate(quat_wxyz: np.ndarray, vec: np.ndarray) -> np.ndarray:
    """Rotate (..., 3) vectors by (..., 4) unit quaternions: ``v' = q v q*``."""
    q = np.asarray(quat_wxyz, dtype=np.float64)
    v = np.asarray(vec, dtype=np.float64)
    w = q[..., :1]
    u = q[..., 1:]
    t = 2.0 * np.cross(u, v)
    return v + w * t + np.cross(u, t)


def quat_to_matrix(quat_wxyz: np.ndarray) -> np.ndarray:
    """(..., 4) quaternions (normalised here) -> (..., 3, 3) rotation matrices."""
    q = quat_normalize(quat_wxyz)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], axis=-1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], axis=-1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], axis=-1),
        ],
        axis=-2,
    )


def matrix_to_quat(rotmat: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 4) unit quaternions (wxyz) with ``w >= 0``.

    Uses the largest of the four squared components (w, x, y, z) as the pivot, so it is accurate for every
    rotation, including half turns.
    """
    m = np.asarray(rotmat, dtype=np.float64)
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    # 4 * squared components, each from the trace-like combination that isolates it
    sq4 = np.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], axis=-1)
    pivot = np.argmax(sq4, axis=-1)
    # off-diagonal combinations: 4 w x, 4 w y, 4 w z, 4 x y, 4 x z, 4 y z
    wx = m[..., 2, 1] - m[..., 1, 2]
    wy = m[..., 0, 2] - m[..., 2, 0]
    wz = m[..., 1, 0] - m[..., 0, 1]
    xy = m[..., 0, 1] + m[..., 1, 0]
    xz = m[..., 0, 2] + m[..., 2, 0]
    yz = m[..., 1, 2] + m[..., 2, 1]
    # rows: 4 * c * (w, x, y, z) where c is the pivot component
    cands = np.stack(
        [
            np.stack([sq4[..., 0], wx, wy, wz], axis=-1),
            np.stack([wx, sq4[..., 1], xy, xz], axis=-1),
            np.stack([wy, xy, sq4[..., 2], yz], axis=-1),
            np.stack([wz, xz, yz, sq4[..., 3]], axis=-1),
        ],
        axis=-2,
    )
    q = np.take_along_axis(cands, pivot[..., None, None], axis=-2)[..., 0, :]
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(q[..., :1] < 0, -q, q)


def quat_from_axis_angle(axis: np.ndarray, angle_rad: np.ndarray | float) -> np.ndarray:
    """Rotation by ``angle_rad`` (...) about ``axis`` (..., 3) (normalised here) -> (..., 4) wxyz."""
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    half = 0.5 * np.asarray(angle_rad, dtype=np.float64)[..., None]
    return np.concatenate([np.cos(half), np.sin(half) * a], axis=-1)


def rotvec_to_quat(rotvec: np.ndarray) -> np.ndarray:
    """(..., 3) rotation vectors (axis * angle, rad) -> (..., 4) unit quaternions (wxyz)."""
    r = np.asarray(rotvec, dtype=np.float64)
    angle = np.linalg.norm(r, axis=-1, keepdims=True)
    half = 0.5 * angle
    # sin(angle/2)/angle, with its series near zero
    small = angle < 1e-6
    scale = np.where(small, 0.5 - angle**2 / 48.0, np.sin(half) / np.where(small, 1.0, angle))
    return np.concatenate([np.cos(half), scale * r], axis=-1)


def quat_to_rotvec(quat_wxyz: np.ndarray) -> np.ndarray:
    """(..., 4) quaternions -> (..., 3) rotation vectors with angle in [0, pi] (the shorter way round)."""
    q = quat_normalize(quat_wxyz)
    q = np.where(q[..., :1] < 0, -q, q)
    w = q[..., :1]
    v = q[..., 1:]
    s = np.linalg.norm(v, axis=-1, keepdims=True)
    angle = 2.0 * np.arctan2(s, w)
    small = s < 1e-9
    scale = np.where(small, 2.0 / np.where(small, w, 1.0), angle / np.where(small, 1.0, s))
    return scale * v


def quat_angle(quat_wxyz: np.ndarray) -> np.ndarray:
    """(...) rotation angle in [0, pi] of (..., 4) quaternions."""
    return np.linalg.norm(quat_to_rotvec(quat_wxyz), axis=-1)


def quat_continuous(quat_wxyz: np.ndarray) -> np.ndarray:
    """Sign continuity over time: flip ``q[t]`` to ``-q[t]`` where needed so neighbours share a hemisphere.

    quat_wxyz: (T, ..., 4), time on axis 0. Returns unit quaternions of the same shape describing the same
    rotations, with ``dot(q[t], q[t-1]) >= 0`` for every t (``q[0]`` keeps its sign).
    """
    q = quat_normalize(quat_wxyz)
    if len(q) < 2:
        return q
    dots = np.sum(q[1:] * q[:-1], axis=-1)
    flips = np.concatenate([np.zeros((1,) + dots.shape[1:], dtype=np.int64), np.cumsum(dots < 0, axis=0)])
    sign = np.where(flips % 2 == 1, -1.0, 1.0)
    return q * sign[..., None]


def quat_slerp(q0_wxyz: np.ndarray, q1_wxyz: np.ndarray, t: np.ndarray | float) -> np.ndarray:
    """Spherical linear interpolation along the shorter arc.

    q0_wxyz, q1_wxyz: (..., 4); t: (...) or scalar, 0 gives ``q0``, 1 gives ``q1`` (up to sign). Returns (..., 4)
    unit quaternions. Nearly equal pairs fall back to normalised linear interpolation.
    """
    q0 = quat_normalize(q0_wxyz)
    q1 = quat_normalize(q1_wxyz)
    t = np.asarray(t, dtype=np.float64)[..., None]
    dot = np.sum(q0 * q1, axis=-1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)
    dot = np.clip(np.abs(dot), -1.0, 1.0)
    theta = np.arccos(dot)
    sin_theta = np.sin(theta)
    near = sin_theta < 1e-6
    safe = np.where(near, 1.0, sin_theta)
    w0 = np.where(near, 1.0 - t, np.sin((1.0 - t) * theta) / safe)
    w1 = np.where(near, t, np.sin(t * theta) / safe)
    return quat_normalize(w0 * q0 + w1 * q1)


def angular_velocity_world(quat_wxyz: np.ndarray, dt_s: float) -> np.ndarray:
    """World-frame angular velocity (rad/s) of a rotation sequence by finite differences.

    quat_wxyz: (T, ..., 4) orientations ``q_world_from_body`` sampled every ``dt_s`` seconds (time on axis 0).
    Returns (T, ..., 3): central differences ``rotvec(q[t+1] q[t-1]^-1) / (2 dt)`` inside, one-sided
    ``rotvec(q[1] q[0]^-1) / dt`` and ``rotvec(q[T-1] q[T-2]^-1) / dt`` at the ends; zeros when T < 2.
    The rotation between the two samples must be under half a turn (it is taken the shorter way round).
    """
    q = quat_normalize(quat_wxyz)
    out = np.zeros(q.shape[:-1] + (3,))
    n = len(q)
    if n < 2:
        return out
    if n > 2:
        rel = quat_multiply(q[2:], quat_conjugate(q[:-2]))
        out[1:-1] = quat_to_rotvec(rel) / (2.0 * dt_s)
    out[0] = quat_to_rotvec(quat_multiply(q[1], quat_conjugate(q[0]))) / dt_s
    out[-1] = quat_to_rotvec(quat_multiply(q[-1], quat_conjugate(q[-2]))) / dt_s
    return out
