"""Trainer formats, checked against each consumer's contract re-implemented here from reading its code:

- Unitree CSV: ``np.loadtxt(delimiter=",")``, 36 columns, quaternion xyzw, joints in SDK order.
- Tracking NPZ: the tracking task's ``MotionLoader`` (``np.load`` without pickle, six arrays, the bodies it tracks
  picked by their index in the simulated robot, BeyondMimic also reading ``fps``), filled as the trainer's own
  ``csv_to_npz`` fills it: ``torch.gradient`` for joint and root velocities, the root angular velocity from
  ``q(t+1) q(t-1)^-1`` with the ends repeating their neighbour, body velocities propagated by the simulator (here
  MuJoCo) from that root twist and those joint rates, at the body origin (mjlab) or centre of mass (Isaac Lab,
  whose ``write_root_state_to_sim`` takes the root velocity as the centre of mass's).
- The robots: mjlab's G1 from the mjlab wheel (``pip download``; skipped with the reason when it cannot be had);
  the Isaac Lab articulation from Unitree's G1 URDF, whose tree is transcribed below (links, joints, fixed
  transforms, inertial origins) with an independent fixed-joint merge and breadth-first ordering.
- GMR pickle: its ``load_robot_motion`` keys, ``link_body_list`` = its MJCF's bodies in depth-first pre-order,
  ``local_body_pos`` = forward kinematics with the root at the origin (tree transcribed below).
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from catalog import formats as F
from ingest.errors import BadResultFile, ConfigError
from pipeline.g1.model import BODY_NAMES, ISAAC_BODY_NAMES, ISAAC_JOINT_NAMES, JOINT_NAMES, TRACKED_BODIES, load_g1
from pipeline.g1_motion import G1Motion
from pipeline.resample import motion_with_fk, resample_g1_motion
from pipeline.rotations import quat_from_axis_angle, quat_to_matrix, rotvec_to_quat
from formats_motions import g1_test_motion

mujoco = pytest.importorskip("mujoco", reason="mujoco is the retarget extra")

# ------------------------------------------------------------------------------------------------ reference data

# Unitree's G1 29-DoF URDF (unitree_ros robots/g1_description/g1_29dof_rev_1_0.urdf): every joint in file order as
# (type, parent, child); "F" fixed, "R" revolute.
URDF_JOINTS = (
    ("F", "pelvis", "pelvis_contour_link"),
    ("R", "pelvis", "left_hip_pitch_link"), ("R", "left_hip_pitch_link", "left_hip_roll_link"),
    ("R", "left_hip_roll_link", "left_hip_yaw_link"), ("R", "left_hip_yaw_link", "left_knee_link"),
    ("R", "left_knee_link", "left_ankle_pitch_link"), ("R", "left_ankle_pitch_link", "left_ankle_roll_link"),
    ("R", "pelvis", "right_hip_pitch_link"), ("R", "right_hip_pitch_link", "right_hip_roll_link"),
    ("R", "right_hip_roll_link", "right_hip_yaw_link"), ("R", "right_hip_yaw_link", "right_knee_link"),
    ("R", "right_knee_link", "right_ankle_pitch_link"), ("R", "right_ankle_pitch_link", "right_ankle_roll_link"),
    ("R", "pelvis", "waist_yaw_link"), ("R", "waist_yaw_link", "waist_roll_link"),
    ("R", "waist_roll_link", "torso_link"),
    ("F", "torso_link", "logo_link"), ("F", "torso_link", "head_link"), ("F", "torso_link", "imu_in_torso"),
    ("F", "pelvis", "imu_in_pelvis"), ("F", "torso_link", "d435_link"), ("F", "torso_link", "mid360_link"),
    ("R", "torso_link", "left_shoulder_pitch_link"), ("R", "left_shoulder_pitch_link", "left_shoulder_roll_link"),
    ("R", "left_shoulder_roll_link", "left_shoulder_yaw_link"), ("R", "left_shoulder_yaw_link", "left_elbow_link"),
    ("R", "left_elbow_link", "left_wrist_roll_link"), ("R", "left_wrist_roll_link", "left_wrist_pitch_link"),
    ("R", "left_wrist_pitch_link", "left_wrist_yaw_link"), ("F", "left_wrist_yaw_link", "left_rubber_hand"),
    ("R", "torso_link", "right_shoulder_pitch_link"),
    ("R", "right_shoulder_pitch_link", "right_shoulder_roll_link"),
    ("R", "right_shoulder_roll_link", "right_shoulder_yaw_link"),
    ("R", "right_shoulder_yaw_link", "right_elbow_link"), ("R", "right_elbow_link", "right_wrist_roll_link"),
    ("R", "right_wrist_roll_link", "right_wrist_pitch_link"), ("R", "right_wrist_pitch_link", "right_wrist_yaw_link"),
    ("F", "right_wrist_yaw_link", "right_rubber_hand"),
)  # fmt: skip
URDF_FIXED_ORIGINS = {  # child: (xyz, rpy) of its fixed joint
    "pelvis_contour_link": ((0, 0, 0), (0, 0, 0)),
    "logo_link": ((0.0039635, 0, -0.044), (0, 0, 0)),
    "head_link": ((0.0039635, 0, -0.044), (0, 0, 0)),
    "imu_in_torso": ((-0.03959, -0.00224, 0.14792), (0, 0, 0)),
    "imu_in_pelvis": ((0.04525, 0, -0.08339), (0, 0, 0)),
    "d435_link": ((0.0576235, 0.01753, 0.42987), (0, 0.8307767239493009, 0)),
    "mid360_link": ((0.0002835, 0.00003, 0.428434), (np.pi, 0.05112069379091391, 0)),
    "left_rubber_hand": ((0.0415, 0.003, 0), (0, 0, 0)),
    "right_rubber_hand": ((0.0415, -0.003, 0), (0, 0, 0)),
}
URDF_INERTIAL_ORIGIN = {  # the URDF's own (unmerged) inertial origins, where our MJCF's merged ones differ
    "pelvis": (0, 0, -0.07605), "torso_link": (0.000931, 0.000346, 0.15082),
    "left_wrist_yaw_link": (0.02200382, 0.00049485, 0.00053861),
    "right_wrist_yaw_link": (0.02200382, -0.00049485, 0.00053861),
    "pelvis_contour_link": (0, 0, 0), "logo_link": (0, 0, 0), "head_link": (0.005267, 0.000299, 0.449869),
    "left_rubber_hand": (0.05361311, -0.00295905, 0.00215413),
    "right_rubber_hand": (0.05361311, 0.00295905, 0.00215413),
    # imu_in_torso, imu_in_pelvis, d435_link, mid360_link: no <inertial>, mass at the link origin
}

# GMR's unitree_g1 MJCF (assets/unitree_g1/g1_mocap_29dof.xml): its bodies in file order with their parent, and the
# origin offset of those our MJCF lacks.
GMR_TREE = (
    ("pelvis", None), ("left_hip_pitch_link", "pelvis"), ("left_hip_roll_link", "left_hip_pitch_link"),
    ("left_hip_yaw_link", "left_hip_roll_link"), ("left_knee_link", "left_hip_yaw_link"),
    ("left_ankle_pitch_link", "left_knee_link"), ("left_ankle_roll_link", "left_ankle_pitch_link"),
    ("left_toe_link", "left_ankle_roll_link"), ("pelvis_contour_link", "pelvis"),
    ("right_hip_pitch_link", "pelvis"), ("right_hip_roll_link", "right_hip_pitch_link"),
    ("right_hip_yaw_link", "right_hip_roll_link"), ("right_knee_link", "right_hip_yaw_link"),
    ("right_ankle_pitch_link", "right_knee_link"), ("right_ankle_roll_link", "right_ankle_pitch_link"),
    ("right_toe_link", "right_ankle_roll_link"), ("waist_yaw_link", "pelvis"), ("waist_roll_link", "waist_yaw_link"),
    ("torso_link", "waist_roll_link"), ("head_link", "torso_link"), ("head_mocap", "torso_link"),
    ("imu_in_torso", "torso_link"),
    ("left_shoulder_pitch_link", "torso_link"), ("left_shoulder_roll_link", "left_shoulder_pitch_link"),
    ("left_shoulder_yaw_link", "left_shoulder_roll_link"), ("left_elbow_link", "left_shoulder_yaw_link"),
    ("left_wrist_roll_link", "left_elbow_link"), ("left_wrist_pitch_link", "left_wrist_roll_link"),
    ("left_wrist_yaw_link", "left_wrist_pitch_link"), ("left_rubber_hand", "left_wrist_yaw_link"),
    ("right_shoulder_pitch_link", "torso_link"), ("right_shoulder_roll_link", "right_shoulder_pitch_link"),
    ("right_shoulder_yaw_link", "right_shoulder_roll_link"), ("right_elbow_link", "right_shoulder_yaw_link"),
    ("right_wrist_roll_link", "right_elbow_link"), ("right_wrist_pitch_link", "right_wrist_roll_link"),
    ("right_wrist_yaw_link", "right_wrist_pitch_link"), ("right_rubber_hand", "right_wrist_yaw_link"),
)  # fmt: skip
GMR_EXTRA_OFFSETS = {
    "left_toe_link": (0.1, 0, -0.02), "right_toe_link": (0.1, 0, -0.02), "pelvis_contour_link": (0, 0, 0),
    "head_link": (0.0039635, 0, -0.044), "head_mocap": (0, 0, 0.4), "imu_in_torso": (-0.03959, -0.00224, 0.14792),
    "left_rubber_hand": (0.0415, 0.003, 0), "right_rubber_hand": (0.0415, -0.003, 0),
}

NPZ_KEYS = ("fps", "joint_pos", "joint_vel", "body_pos_w", "body_quat_w", "body_lin_vel_w", "body_ang_vel_w")


def urdf_articulation(merge_fixed: bool) -> tuple[list[str], list[str]]:
    """(body names, joint names) of an Isaac Lab articulation of the URDF: fixed children merged into their parent
    when ``merge_fixed``; links listed breadth-first, siblings in file order; one DoF per revolute joint, in the
    order of the links it moves."""
    children: dict[str, list[tuple[str, str]]] = {}
    for kind, parent, child in URDF_JOINTS:
        children.setdefault(parent, []).append((kind, child))
    links, queue = [], ["pelvis"]
    while queue:
        link = queue.pop(0)
        links.append(link)
        queue += [c for kind, c in children.get(link, []) if not (merge_fixed and kind == "F")]
    revolute = {c for kind, _, c in URDF_JOINTS if kind == "R"}
    # the URDF names each revolute joint after the link it moves, but torso_link's is waist_pitch_joint
    joints = ["waist_pitch_joint" if link == "torso_link" else link.removesuffix("_link") + "_joint"
              for link in links if link in revolute]
    return links, joints


def rpy_matrix(rpy) -> np.ndarray:
    r, p, y = rpy
    rx = np.array([[1, 0, 0], [0, np.cos(r), -np.sin(r)], [0, np.sin(r), np.cos(r)]])
    ry = np.array([[np.cos(p), 0, np.sin(p)], [0, 1, 0], [-np.sin(p), 0, np.cos(p)]])
    rz = np.array([[np.cos(y), -np.sin(y), 0], [np.sin(y), np.cos(y), 0], [0, 0, 1]])
    return rz @ ry @ rx


def load_like_tracking_task(path, robot_body_names, tracked=TRACKED_BODIES) -> dict:
    """The tracking task's MotionLoader: np.load (no pickle), the six arrays, ``fps``, tracked bodies by the robot's
    index of each name."""
    with np.load(path) as data:  # allow_pickle defaults to False, as in the trainers
        out = {k: np.asarray(data[k]) for k in NPZ_KEYS}
    idx = [list(robot_body_names).index(n) for n in tracked]
    for key in ("body_pos_w", "body_quat_w", "body_lin_vel_w", "body_ang_vel_w"):
        assert out[key].shape[1] == len(robot_body_names), (key, out[key].shape)
        out["tracked_" + key] = out[key][:, idx]
    return out


def converter_rates(root_pos, root_quat, joint_pos, fps: float):
    """What csv_to_npz computes at the output rate, with torch where installed: torch.gradient for the root and
    joints; the so3 derivative (central, ends repeating their neighbour) for the root angular velocity."""
    dt = 1.0 / fps
    torch = pytest.importorskip("torch")
    lin = torch.gradient(torch.tensor(root_pos), spacing=dt, dim=0)[0].numpy()
    qd = torch.gradient(torch.tensor(joint_pos), spacing=dt, dim=0)[0].numpy()
    omega = np.zeros((len(root_quat), 3))
    for t in range(1, len(root_quat) - 1):
        rel, neg = np.zeros(4), np.zeros(4)
        mujoco.mju_negQuat(neg, root_quat[t - 1])
        mujoco.mju_mulQuat(rel, root_quat[t + 1], neg)
        if rel[0] < 0:
            rel = -rel
        mujoco.mju_quat2Vel(omega[t], rel, 2 * dt)
    omega[0], omega[-1] = omega[1], omega[-2]
    return lin, omega, qd


def mj_velocities(m, qpos, root_quat, root_vel_w, omega_w, qd, body_names, at: str):
    """Per body (B, 6) [ang, lin] world velocities from MuJoCo for one frame: ``at`` 'origin' (mjOBJ_XBODY,
    root_vel_w = root origin velocity) or 'com' (mjOBJ_BODY, root_vel_w = pelvis centre-of-mass velocity)."""
    d = mujoco.MjData(m)
    d.qpos[:] = qpos
    mujoco.mj_kinematics(m, d)
    mujoco.mj_comPos(m, d)
    root = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "pelvis")
    lin = np.array(root_vel_w, dtype=np.float64)
    if at == "com":
        lin = lin - np.cross(omega_w, d.xipos[root] - d.xpos[root])
    rmat = quat_to_matrix(root_quat)
    d.qvel[:] = 0.0
    d.qvel[0:3], d.qvel[3:6] = lin, rmat.T @ omega_w
    jnt = [m.jnt_dofadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, n + "_joint")] for n in JOINT_NAMES]
    d.qvel[jnt] = qd
    mujoco.mj_forward(m, d)
    out = np.zeros((len(body_names), 6))
    kind = mujoco.mjtObj.mjOBJ_XBODY if at == "origin" else mujoco.mjtObj.mjOBJ_BODY
    for i, name in enumerate(body_names):
        mujoco.mj_objectVelocity(m, d, kind, mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, name), out[i], 0)
    return out, d


@pytest.fixture(scope="module")
def model():
    return load_g1()


@pytest.fixture(scope="module")
def motion(model):
    return g1_test_motion(model)


@pytest.fixture(scope="module")
def tumbling(model):
    """50 fps, the root rolling, pitching and yawing with a changing rate (so the ends' rules show)."""
    n = 41
    t = np.arange(n) / 50.0
    base = g1_test_motion(model, num_frames=n, fps=50.0, seed=3)
    rotvec = np.stack([0.3 * np.sin(2 * t), 0.2 * t**2, 0.8 * t + 0.9 * t**2], axis=1)
    return motion_with_fk("tumble", 50.0, base.root_pos_m, rotvec_to_quat(rotvec), tuple(model.joint_names),
                          base.joint_pos_rad, model)


@pytest.fixture(scope="module")
def mjlab_g1(tmp_path_factory):
    """mjlab's own G1 (from its wheel), compiled without visual meshes."""
    from test_g1_model import mjlab_reference_model

    return mjlab_reference_model(tmp_path_factory.mktemp("mjlab"))


# ------------------------------------------------------------------------------------------------ Unitree CSV


def test_csv_round_trip_equals_the_motion(tmp_path, motion):
    path = tmp_path / "m.csv"
    F.write_unitree_csv(motion, path)
    back = F.read_unitree_csv(path, fps=motion.fps)
    assert back.num_frames == motion.num_frames and back.joint_names == tuple(JOINT_NAMES)
    np.testing.assert_allclose(back.root_pos_m, motion.root_pos_m, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(back.root_quat_wxyz, motion.root_quat_wxyz, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(back.joint_pos_rad, motion.joint_pos_rad, rtol=1e-8, atol=1e-9)
    # and what csv_to_npz does with it: np.loadtxt, 36 columns, no header, quaternion reordered by [3, 0, 1, 2]
    table = np.loadtxt(path, delimiter=",")
    assert table.shape == (motion.num_frames, 36)
    assert path.read_text().splitlines()[0][0] in "-0123456789"  # no header line
    np.testing.assert_allclose(table[:, 3:7][:, [3, 0, 1, 2]], motion.root_quat_wxyz, atol=1e-8)


def test_csv_columns_are_xyz_xyzw_then_joints_in_sdk_order(tmp_path):
    t = 3
    quat = quat_from_axis_angle(np.tile([0.0, 0.0, 1.0], (t, 1)), np.full(t, np.pi / 2))  # wxyz (c, 0, 0, s)
    joints = np.tile(np.arange(29) * 0.01, (t, 1))
    # joints given in reverse order: the writer must put them back into SDK order
    m = G1Motion(clip_id="c", fps=30.0, root_pos_m=np.tile([1.0, 2.0, 0.75], (t, 1)), root_quat_wxyz=quat,
                 joint_names=tuple(reversed(JOINT_NAMES)), joint_pos_rad=joints[:, ::-1], body_names=(),
                 body_pos_m=np.zeros((t, 0, 3)), body_quat_wxyz=np.zeros((t, 0, 4)))
    F.write_unitree_csv(m, tmp_path / "c.csv")
    row = np.loadtxt(tmp_path / "c.csv", delimiter=",")[0]
    s = np.sqrt(0.5)
    np.testing.assert_allclose(row[:7], [1.0, 2.0, 0.75, 0.0, 0.0, s, s], atol=1e-9)
    np.testing.assert_allclose(row[7:], np.arange(29) * 0.01, atol=1e-12)


def test_csv_reader_rejects_other_layouts(tmp_path):
    (tmp_path / "bad.csv").write_text("1,2,3\n4,5,6\n")
    with pytest.raises(BadResultFile, match="36"):
        F.read_unitree_csv(tmp_path / "bad.csv")
    (tmp_path / "text.csv").write_text("a,b\n")
    with pytest.raises(BadResultFile, match="numeric"):
        F.read_unitree_csv(tmp_path / "text.csv")


# ------------------------------------------------------------------------------------------------ tracking NPZ


def test_format_names_and_variants():
    assert {"unitree-csv", "mjlab-npz", "isaaclab-npz", "gmr-pkl"} <= set(F.FORMATS)  # the original names stay
    assert F.FORMATS["isaaclab-npz-all-links"].ext == "npz" and F.FORMATS["isaaclab-npz-all-links"].needs_bodies
    with pytest.raises(ConfigError, match="isaaclab-npz-all-links"):
        F.get_format("isaaclab-npz-39")


def test_isaac_articulations_of_the_urdf(model):
    """Our Isaac Lab body axes are those of the URDF's articulation, merged (30) or with the fixed links (39)."""
    from pipeline.g1.trainer_bodies import isaac_body_names

    merged, joints = urdf_articulation(merge_fixed=True)
    full, joints_full = urdf_articulation(merge_fixed=False)
    assert len(merged) == 30 and len(full) == 39 and joints == joints_full and len(joints) == 29
    assert isaac_body_names("merged", model) == tuple(merged) == tuple(ISAAC_BODY_NAMES)
    assert isaac_body_names("all-links", model) == tuple(full)
    assert tuple(j.removesuffix("_joint") for j in joints) == tuple(ISAAC_JOINT_NAMES)
    # what a 30-body file would do in the 39-body robot: 3 tracked bodies out of range, 10 others misread
    idx = [full.index(b) for b in TRACKED_BODIES]
    assert sum(i >= 30 for i in idx) == 3
    assert sum(i < 30 and merged[i] != b for i, b in zip(idx, TRACKED_BODIES)) == 10


@pytest.mark.parametrize("fmt, fixed", [("isaaclab-npz", True), ("isaaclab-npz-all-links", False)])
def test_isaaclab_npz_loads_in_the_urdf_articulation(tmp_path, motion, model, fmt, fixed):
    out = resample_g1_motion(motion, 50.0, model)
    F.write_motion(fmt, out, tmp_path / "m.npz")
    bodies, joints = urdf_articulation(merge_fixed=fixed)
    data = load_like_tracking_task(tmp_path / "m.npz", bodies)
    n = out.num_frames
    assert data["fps"].shape == (1,) and float(data["fps"][0]) == 50.0
    assert data["joint_pos"].shape == data["joint_vel"].shape == (n, 29)
    for key in ("body_pos_w", "body_lin_vel_w", "body_ang_vel_w"):
        assert data[key].shape == (n, len(bodies), 3) and data[key].dtype == np.float32
    assert data["body_quat_w"].shape == (n, len(bodies), 4)
    with np.load(tmp_path / "m.npz") as z:
        assert tuple(z["body_names"]) == tuple(bodies) and tuple(z["joint_names"]) == tuple(joints)
    # joints in the articulation's order
    col = [list(JOINT_NAMES).index(j.removesuffix("_joint")) for j in joints]
    np.testing.assert_allclose(data["joint_pos"], out.joint_pos_rad[:, col], atol=1e-6)
    # the 14 tracked bodies read where the robot has them
    pos, _ = model.fk(out.root_pos_m, out.root_quat_wxyz, out.joint_pos_rad)
    want = pos[:, [list(BODY_NAMES).index(b) for b in TRACKED_BODIES]]
    np.testing.assert_allclose(data["tracked_body_pos_w"], want, atol=2e-6)


def test_isaaclab_fixed_links_sit_at_their_urdf_transforms(tmp_path, tumbling, model):
    F.write_motion("isaaclab-npz-all-links", tumbling, tmp_path / "m.npz")
    tm = F.read_tracking_npz(tmp_path / "m.npz")
    names = list(tm.body_names)
    for child, (xyz, rpy) in URDF_FIXED_ORIGINS.items():
        parent = next(p for _, p, c in URDF_JOINTS if c == child)
        rp = quat_to_matrix(tm.body_quat_w[:, names.index(parent)].astype(np.float64))
        pp = tm.body_pos_w[:, names.index(parent)].astype(np.float64)
        np.testing.assert_allclose(tm.body_pos_w[:, names.index(child)], pp + rp @ np.array(xyz), atol=3e-6)
        rc = quat_to_matrix(tm.body_quat_w[:, names.index(child)].astype(np.float64))
        np.testing.assert_allclose(rc, rp @ rpy_matrix(rpy), atol=3e-6)


def _check_velocities(tm, motion, m, at: str, com_of=None):
    """Compare a written NPZ's joint and body velocities with csv_to_npz's rates pushed through MuJoCo."""
    lin, omega, qd = converter_rates(motion.root_pos_m, motion.root_quat_wxyz, motion.joint_pos_rad, motion.fps)
    col = [list(JOINT_NAMES).index(j.removesuffix("_joint")) for j in tm.joint_names]
    np.testing.assert_allclose(tm.joint_vel, qd[:, col], atol=2e-5)
    com_of = com_of or {}
    model_bodies = [b for b in tm.body_names
                    if mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, b) >= 0 and b not in com_of]
    rows = [tm.body_names.index(b) for b in model_bodies]
    qpos_adr = [m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, n + "_joint")] for n in JOINT_NAMES]
    for t in sorted({0, 1, 7, motion.num_frames - 2, motion.num_frames - 1}):
        qpos = np.zeros(m.nq)
        qpos[0:3], qpos[3:7], qpos[qpos_adr] = motion.root_pos_m[t], motion.root_quat_wxyz[t], motion.joint_pos_rad[t]
        vel, d = mj_velocities(m, qpos, motion.root_quat_wxyz[t], lin[t], omega[t], qd[t], model_bodies, at)
        np.testing.assert_allclose(tm.body_ang_vel_w[t, rows], vel[:, :3], atol=2e-5, err_msg=f"frame {t}")
        np.testing.assert_allclose(tm.body_lin_vel_w[t, rows], vel[:, 3:], atol=2e-5, err_msg=f"frame {t}")
        for name, com in com_of.items():  # bodies MuJoCo lacks or whose centre of mass differs
            i = tm.body_names.index(name)
            b = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, name)
            if b < 0:  # a fixed link: moves with its parent
                parent = next(p for kind, p, c in URDF_JOINTS if c == name and kind == "F")
                b = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, parent)
            origin = np.zeros(6)
            mujoco.mj_objectVelocity(m, d, mujoco.mjtObj.mjOBJ_XBODY, b, origin, 0)
            x = tm.body_pos_w[t, i].astype(np.float64) + quat_to_matrix(tm.body_quat_w[t, i].astype(np.float64)) @ com
            np.testing.assert_allclose(tm.body_ang_vel_w[t, i], origin[:3], atol=2e-5)
            want = origin[3:] + np.cross(origin[:3], x - d.xpos[b])
            np.testing.assert_allclose(tm.body_lin_vel_w[t, i], want, atol=3e-5, err_msg=f"{name} frame {t}")


def test_mjlab_npz_is_what_mjlab_csv_to_npz_records_on_its_own_g1(tmp_path, tumbling, mjlab_g1):
    """Body poses from mjlab's G1 kinematics; velocities of the body origins from the converter's rates."""
    F.write_motion("mjlab-npz", tumbling, tmp_path / "m.npz")
    m = mjlab_g1
    robot_bodies = [m.body(b).name for b in range(1, m.nbody)]  # mjlab: spec.bodies[1:]
    data = load_like_tracking_task(tmp_path / "m.npz", robot_bodies)
    tm = F.read_tracking_npz(tmp_path / "m.npz")
    assert tm.body_names == tuple(robot_bodies)
    qpos_order = sorted(range(m.njnt), key=lambda j: m.jnt_qposadr[j])
    assert tm.joint_names == tuple(m.joint(j).name for j in qpos_order if m.jnt_type[j] == 3)  # hinges
    d = mujoco.MjData(m)
    for t in (0, 20, tumbling.num_frames - 1):
        d.qpos[:] = np.concatenate([tumbling.root_pos_m[t], tumbling.root_quat_wxyz[t], tumbling.joint_pos_rad[t]])
        mujoco.mj_kinematics(m, d)
        np.testing.assert_allclose(data["body_pos_w"][t], d.xpos[1:], atol=2e-6)
        np.testing.assert_allclose(np.abs(np.sum(data["body_quat_w"][t] * d.xquat[1:], axis=1)), 1.0, atol=2e-6)
    _check_velocities(tm, tumbling, m, "origin")
    # mjlab's converter asserts the root body moves at the velocity it was given
    lin, omega, _ = converter_rates(tumbling.root_pos_m, tumbling.root_quat_wxyz, tumbling.joint_pos_rad, 50.0)
    np.testing.assert_allclose(tm.body_lin_vel_w[:, 0], lin, atol=1e-5)
    np.testing.assert_allclose(tm.body_ang_vel_w[:, 0], omega, atol=1e-5)


def test_isaaclab_npz_velocities_are_the_centres_of_mass(tmp_path, tumbling, model):
    F.write_motion("isaaclab-npz", tumbling, tmp_path / "m.npz")
    _check_velocities(F.read_tracking_npz(tmp_path / "m.npz"), tumbling, model.mj_model(), "com")


def test_isaaclab_all_links_velocities_use_the_urdf_links(tmp_path, tumbling, model):
    F.write_motion("isaaclab-npz-all-links", tumbling, tmp_path / "m.npz")
    tm = F.read_tracking_npz(tmp_path / "m.npz")
    coms = {n: np.array(URDF_INERTIAL_ORIGIN.get(n, (0.0, 0.0, 0.0)), dtype=np.float64)
            for n in list(URDF_FIXED_ORIGINS) + ["torso_link", "left_wrist_yaw_link", "right_wrist_yaw_link"]}
    _check_velocities(tm, tumbling, model.mj_model(), "com", com_of=coms)


def test_velocities_at_the_ends_follow_the_converters(tmp_path, tumbling):
    F.write_motion("mjlab-npz", tumbling, tmp_path / "m.npz")
    tm = F.read_tracking_npz(tmp_path / "m.npz")
    q, dt = tumbling.joint_pos_rad, 1 / 50.0
    np.testing.assert_allclose(tm.joint_vel[0], (q[1] - q[0]) / dt, atol=2e-5)
    np.testing.assert_allclose(tm.joint_vel[-1], (q[-1] - q[-2]) / dt, atol=2e-5)
    np.testing.assert_allclose(tm.joint_vel[5], (q[6] - q[4]) / (2 * dt), atol=2e-5)
    # the root angular velocity at the first and last frame repeats its neighbour (it changes along the clip)
    assert np.array_equal(tm.body_ang_vel_w[0, 0], tm.body_ang_vel_w[1, 0])
    assert np.array_equal(tm.body_ang_vel_w[-1, 0], tm.body_ang_vel_w[-2, 0])
    assert np.abs(tm.body_ang_vel_w[2, 0] - tm.body_ang_vel_w[1, 0]).max() > 1e-3
    p = tumbling.root_pos_m
    np.testing.assert_allclose(tm.body_lin_vel_w[0, 0], (p[1] - p[0]) / dt, atol=2e-5)
    np.testing.assert_allclose(tm.body_lin_vel_w[-1, 0], (p[-1] - p[-2]) / dt, atol=2e-5)


def test_mjlab_npz_keys_shapes_and_names(tmp_path, motion, model):
    out = resample_g1_motion(motion, 50.0, model)
    F.write_motion("mjlab-npz", out, tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:  # the trainers' loaders do not allow pickle
        assert set(z.files) == set(NPZ_KEYS) | {"joint_names", "body_names"}
        arrays = {k: z[k] for k in z.files}
    n = out.num_frames
    assert n == 101  # 2 s of clip at 50 Hz
    assert arrays["fps"].shape == (1,) and arrays["fps"][0] == 50.0
    assert arrays["joint_pos"].shape == (n, 29) and arrays["joint_pos"].dtype == np.float32
    assert arrays["body_pos_w"].shape == (n, 30, 3) and arrays["body_quat_w"].shape == (n, 30, 4)
    assert tuple(arrays["body_names"]) == tuple(BODY_NAMES)
    assert tuple(arrays["joint_names"]) == tuple(j + "_joint" for j in JOINT_NAMES)
    pos, quat = model.fk(out.root_pos_m, out.root_quat_wxyz, arrays["joint_pos"].astype(np.float64))
    np.testing.assert_allclose(arrays["body_pos_w"], pos, atol=2e-6)
    np.testing.assert_allclose(quat_to_matrix(arrays["body_quat_w"].astype(np.float64)), quat_to_matrix(quat),
                               atol=2e-6)
    # the root body is the pelvis: 0.3 m/s along x, constant yaw rate 0.8 rad/s
    np.testing.assert_allclose(arrays["body_lin_vel_w"][:, 0], np.tile([0.3, 0.0, 0.0], (n, 1)), atol=1e-5)
    np.testing.assert_allclose(arrays["body_ang_vel_w"][:, 0], np.tile([0.0, 0.0, 0.8], (n, 1)), atol=1e-5)
    q = arrays["body_quat_w"].astype(np.float64)
    assert np.all(np.sum(q[1:] * q[:-1], axis=-1) > 0)  # sign-continuous over time


def test_isaaclab_npz_poses_are_the_breadth_first_permutation_of_mjlab(tmp_path, motion, model):
    out = resample_g1_motion(motion, 50.0, model)
    F.write_motion("mjlab-npz", out, tmp_path / "mj.npz")
    F.write_motion("isaaclab-npz", out, tmp_path / "il.npz")
    mj, il = F.read_tracking_npz(tmp_path / "mj.npz"), F.read_tracking_npz(tmp_path / "il.npz")
    assert il.body_names == tuple(ISAAC_BODY_NAMES) and il.joint_names == tuple(j + "_joint" for j in ISAAC_JOINT_NAMES)
    b = [mj.body_names.index(n) for n in il.body_names]
    j = [mj.joint_names.index(n) for n in il.joint_names]
    np.testing.assert_array_equal(il.joint_pos, mj.joint_pos[:, j])
    np.testing.assert_array_equal(il.joint_vel, mj.joint_vel[:, j])
    for key in ("body_pos_w", "body_quat_w"):
        np.testing.assert_array_equal(getattr(il, key), getattr(mj, key)[:, b])
    np.testing.assert_allclose(il.body_ang_vel_w, mj.body_ang_vel_w[:, b], atol=1e-6)
    # linear velocities differ by the centre-of-mass offsets: omega x (R com), less the pelvis's
    com = model.body_com_m[b]
    r = quat_to_matrix(il.body_quat_w.astype(np.float64))
    offset = np.cross(il.body_ang_vel_w, np.einsum("tbij,bj->tbi", r, com))
    offset -= np.cross(il.body_ang_vel_w[:, :1], np.einsum("tij,j->ti", r[:, 0], com[0])[:, None])
    np.testing.assert_allclose(il.body_lin_vel_w - mj.body_lin_vel_w[:, b], offset, atol=2e-5)


# ------------------------------------------------------------------------------------------------ GMR pickle


def load_robot_motion_like_gmr(path):
    """GMR's loader: pickle.load, then fps, root_pos, root_rot, dof_pos, local_body_pos, link_body_list."""
    with open(path, "rb") as f:
        d = pickle.load(f)
    return d, d["fps"], d["root_pos"], d["root_rot"], d["dof_pos"], d["local_body_pos"], d["link_body_list"]


def test_gmr_pickle_bodies_are_gmrs_38_with_fk_from_a_zero_root(tmp_path, tumbling, model):
    out = resample_g1_motion(tumbling, 30.0, model)
    F.write_motion("gmr-pkl", out, tmp_path / "m.pkl")
    d, fps, root_pos, root_rot, dof_pos, local, names = load_robot_motion_like_gmr(tmp_path / "m.pkl")
    assert set(d) == {"fps", "root_pos", "root_rot", "dof_pos", "local_body_pos", "link_body_list"}
    assert fps == 30 and isinstance(fps, int)
    n = out.num_frames
    assert root_pos.shape == (n, 3) and root_rot.shape == (n, 4) and dof_pos.shape == (n, 29)
    np.testing.assert_allclose(root_rot, out.root_quat_wxyz[:, [1, 2, 3, 0]])  # xyzw
    np.testing.assert_allclose(dof_pos, out.joint_pos_rad)  # SDK order = GMR's actuator order
    # GMR's KinematicsModel lists bodies depth-first, children in file order
    children: dict = {}
    for name, parent in GMR_TREE:
        children.setdefault(parent, []).append(name)
    preorder, stack = [], ["pelvis"]
    while stack:
        node = stack.pop()
        preorder.append(node)
        stack += reversed(children.get(node, []))
    assert names == preorder and len(names) == 38
    # local_body_pos: forward kinematics with the root at the origin, unrotated (MuJoCo, plus fixed offsets)
    m = model.mj_model()
    dd = mujoco.MjData(m)
    for t in (0, n // 2, n - 1):
        dd.qpos[:] = model.qpos([0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], out.joint_pos_rad[t])
        mujoco.mj_kinematics(m, dd)
        for i, name in enumerate(names):
            b = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, name)
            if b >= 0:
                want = dd.xpos[b]
            else:
                p = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, dict(GMR_TREE)[name])
                want = dd.xpos[p] + dd.xmat[p].reshape(3, 3) @ np.array(GMR_EXTRA_OFFSETS[name])
            np.testing.assert_allclose(local[t, i], want, atol=1e-9, err_msg=f"{name} frame {t}")


# ------------------------------------------------------------------------------------------------ all formats


def test_writers_are_deterministic(tmp_path, motion, model):
    out = resample_g1_motion(motion, 50.0, model)
    for fmt in F.FORMATS:
        a, b = tmp_path / f"a.{fmt}", tmp_path / f"b.{fmt}"
        F.write_motion(fmt, out, a)
        F.write_motion(fmt, out, b)
        assert a.read_bytes() == b.read_bytes(), fmt
    assert not list(tmp_path.glob(".*.tmp"))


def test_npz_writer_refuses_object_arrays_and_unknown_formats(tmp_path, motion):
    with pytest.raises(TypeError, match="pickle"):
        F.write_npz(tmp_path / "x.npz", {"a": np.array([{"x": 1}], dtype=object)})
    with pytest.raises(ConfigError, match="unitree-csv"):
        F.get_format("bvh")
    for fmt in ("mjlab-npz", "isaaclab-npz", "gmr-pkl"):
        with pytest.raises(ValueError, match="no body kinematics"):
            F.write_motion(fmt, resample_g1_motion(motion, 50.0, bodies=False), tmp_path / "y.npz")


def test_short_clips_write(tmp_path, model):
    """Two frames (the converters' so3 derivative needs three) and one frame still give finite files."""
    for n in (1, 2):
        m = g1_test_motion(model, num_frames=n, fps=50.0)
        for fmt in F.FORMATS:
            F.write_motion(fmt, m, tmp_path / f"s{n}.{F.FORMATS[fmt].ext}")
        tm = F.read_tracking_npz(tmp_path / f"s{n}.npz")
        assert tm.num_frames == n and np.all(np.isfinite(tm.body_lin_vel_w))
