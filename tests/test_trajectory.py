"""World root trajectories under moving cameras (pipeline/trajectory.py), against synthetic ground truth.

Known world motions (tests/motion_factory.py) are observed by cameras that stand still, pan on a tripod, follow
the person (translate with them) and shake; the camera-frame joints a backend would give are generated from
them, with the depth noise of a monocular estimator. Tolerances over a walk (the issue's): path length within
10 %, heading drift within 15 degrees, final position within 10 % of the distance.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from motion_factory import add_depth_noise, jumping_motion, standing_motion, walking_motion
from pipeline.skeleton import BODY_JOINTS
from pipeline.trajectory import TrajectoryConfig, recover_trajectory

PELVIS = BODY_JOINTS.index("pelvis")
CAM_HEIGHT_M = 1.5


def _look_at(position_m: np.ndarray, target_m: np.ndarray) -> np.ndarray:
    """(3, 3) R_cam_from_world of an OpenCV camera at ``position_m`` looking at ``target_m`` (world z up)."""
    z = target_m - position_m
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return np.stack([x, y, z])


def _observe(joints_world: np.ndarray, positions: np.ndarray, rotations: np.ndarray):
    """Camera-frame joints (T, J, 3) and R_cam0_from_cam (T, 3, 3) for cameras at ``positions`` (T, 3) with
    R_cam_from_world ``rotations`` (T, 3, 3)."""
    cam = np.einsum("tab,tjb->tja", rotations, joints_world - positions[:, None, :])
    r_cam0_from_cam = np.einsum("ab,tcb->tac", rotations[0], rotations)
    return cam, r_cam0_from_cam


def _camera(kind: str, pelvis: np.ndarray, rng: np.random.Generator):
    """(positions, rotations) of a camera rig of ``kind`` for a pelvis trajectory (T, 3) in the world."""
    n = len(pelvis)
    side = np.array([0.0, -6.0, CAM_HEIGHT_M - 1.0])
    target0 = pelvis[0] + [2.0, 0.0, 0.0]
    if kind == "static":
        pos = np.tile(target0 + side, (n, 1))
        rot = np.tile(_look_at(pos[0], target0), (n, 1, 1))
    elif kind == "pan":  # a tripod turning to keep the person in view
        pos = np.tile(target0 + side, (n, 1))
        rot = np.stack([_look_at(pos[0], p) for p in pelvis])
    elif kind == "follow":  # a camera travelling beside the person at a fixed height, always 6 m away
        pos = np.column_stack([pelvis[:, :2], np.full(n, pelvis[0, 2])]) + side
        rot = np.stack([_look_at(pos[t], pelvis[t]) for t in range(n)])
    elif kind == "behind":  # a camera following the person walking away from it, 4 m behind
        heading = pelvis[-1, :2] - pelvis[0, :2]
        heading = heading / np.linalg.norm(heading)
        back = np.array([-4.0 * heading[0], -4.0 * heading[1], CAM_HEIGHT_M - 1.0])
        pos = np.column_stack([pelvis[:, :2], np.full(n, pelvis[0, 2])]) + back
        rot = np.stack([_look_at(pos[t], pelvis[t]) for t in range(n)])
    elif kind == "shake":  # hand-held on the spot: small random rotations around a fixed aim
        pos = np.tile(target0 + side, (n, 1))
        base = _look_at(pos[0], target0)
        angles = np.cumsum(rng.normal(0.0, 0.004, size=(n, 3)), axis=0)
        rot = np.stack([_small_rotation(a) @ base for a in angles])
    else:
        raise ValueError(kind)
    return pos, rot


def _small_rotation(a: np.ndarray) -> np.ndarray:
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + k + 0.5 * k @ k


def _recover(motion, kind: str, *, depth_noise_m: float = 0.05, tell_moving: bool = False, seed: int = 0):
    rng = np.random.default_rng(seed)
    world = motion.joints_world_m
    pos, rot = _camera(kind, world[:, PELVIS], rng)
    cam, r_cam0 = _observe(world, pos, rot)
    cam = add_depth_noise(cam, depth_noise_m, rng) + rng.normal(0.0, 0.01, size=cam.shape)
    moving = np.full(len(cam), kind in ("follow", "behind")) if tell_moving else None
    traj = recover_trajectory(cam, np.full(cam.shape[:2], 0.95), motion.fps, BODY_JOINTS,
                              R_cam0_from_cam=r_cam0, camera_moving=moving)
    truth = np.einsum("ab,tb->ta", rot[0], world[:, PELVIS] - pos[0])  # the pelvis in cam0
    return traj, truth


def _horizontal(path: np.ndarray, up: np.ndarray) -> np.ndarray:
    return path - np.outer(path @ up, up)


def _errors(traj, truth):
    """(path length error fraction, heading drift deg, final position error as a fraction of the distance)."""
    up = np.array([0.0, -1.0, 0.0])  # the synthetic cameras are level at frame 0: up is -y in cam0
    est = _horizontal(traj.root_m - traj.root_m[0], up)
    ref = _horizontal(truth - truth[0], up)
    length = lambda p: float(np.linalg.norm(np.diff(p[:: max(1, len(p) // 40)], axis=0), axis=1).sum())  # noqa: E731
    distance = float(np.linalg.norm(ref[-1]))
    heading = math.degrees(math.acos(np.clip(est[-1] @ ref[-1] / (np.linalg.norm(est[-1]) * distance), -1, 1)))
    return abs(length(est) - length(ref)) / length(ref), heading, float(np.linalg.norm(est[-1] - ref[-1])) / distance


@pytest.mark.parametrize("kind", ["static", "pan", "follow", "behind", "shake"])
def test_a_walk_is_recovered_whatever_the_camera_does(kind):
    motion = walking_motion(num_frames=300, fps=30.0, speed_m_s=1.2, turn_rate_rad_m=0.0)
    traj, truth = _recover(motion, kind)
    length_err, heading_deg, final_err = _errors(traj, truth)
    assert length_err <= 0.10 and heading_deg <= 15.0 and final_err <= 0.10, (kind, length_err, heading_deg,
                                                                                 final_err, traj.method)
    assert traj.recovered
    assert (traj.method == "camera") == (kind not in ("follow", "behind"))  # following: found by disagreement


def test_a_turning_walk_followed_by_the_camera():
    motion = walking_motion(num_frames=300, fps=30.0, speed_m_s=1.0, turn_rate_rad_m=0.08)
    traj, truth = _recover(motion, "follow", tell_moving=True)
    length_err, heading_deg, final_err = _errors(traj, truth)
    assert length_err <= 0.10 and heading_deg <= 15.0 and final_err <= 0.10, (length_err, heading_deg, final_err)
    assert traj.method == "odometry" and traj.recovered and traj.odometry_frac > 0.9


def test_without_the_trajectory_fix_a_followed_walker_walks_in_place():
    """The failure the module exists for: camera-frame roots under a following camera barely move."""
    motion = walking_motion(num_frames=300, fps=30.0, speed_m_s=1.2)
    rng = np.random.default_rng(0)
    pos, rot = _camera("follow", motion.joints_world_m[:, PELVIS], rng)
    cam, _ = _observe(motion.joints_world_m, pos, rot)
    assert np.linalg.norm(cam[-1, PELVIS] - cam[0, PELVIS]) < 0.3  # 12 m walked, < 0.3 m seen
    traj, truth = _recover(motion, "follow")
    assert np.linalg.norm(traj.root_m[-1] - traj.root_m[0]) > 10.0


@pytest.mark.parametrize("kind", ["static", "follow"])
def test_standing_and_jumping_stay_in_place(kind):
    for motion in (standing_motion(num_frames=150, sway_m=0.05), jumping_motion(num_frames=150)):
        traj, truth = _recover(motion, kind, tell_moving=True)
        drift = np.linalg.norm(_horizontal(traj.root_m[-1] - traj.root_m[0], np.array([0.0, -1.0, 0.0])))
        assert drift < 0.3, (motion.kind, kind, drift)
        if motion.kind == "jump":
            assert traj.flight.sum() > 10  # the flights are seen (vertical motion from the camera)
            rise_m = -(traj.root_m[:, 1] - traj.root_m[0, 1]).min()  # y points down
            assert 0.15 < rise_m < 0.4  # apex 0.25 m


def test_a_moving_camera_without_contacts_is_not_recovered():
    """Feet never confident (e.g. cut off by the frame) and a moving camera: the trajectory cannot be trusted."""
    motion = walking_motion(num_frames=150, fps=30.0, speed_m_s=1.2)
    rng = np.random.default_rng(1)
    pos, rot = _camera("follow", motion.joints_world_m[:, PELVIS], rng)
    cam, r_cam0 = _observe(motion.joints_world_m, pos, rot)
    conf = np.full(cam.shape[:2], 0.95)
    conf[:, [BODY_JOINTS.index(n) for n in ("left_heel", "right_heel", "left_toe", "right_toe")]] = 0.0
    traj = recover_trajectory(cam, conf, 30.0, BODY_JOINTS, R_cam0_from_cam=r_cam0,
                              camera_moving=np.ones(len(cam), bool), config=TrajectoryConfig())
    assert not traj.recovered and traj.odometry_frac == 0.0
