"""Trainer formats: Unitree CSV round trip and column layout, tracking NPZ kinematics against the model's FK,
Isaac Lab order as a permutation of mjlab's, GMR pickle keys, deterministic bytes."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from catalog import formats as F
from ingest.errors import BadResultFile, ConfigError
from pipeline.g1.model import BODY_NAMES, ISAAC_BODY_NAMES, ISAAC_JOINT_NAMES, JOINT_NAMES, load_g1
from pipeline.g1_motion import G1Motion
from pipeline.resample import resample_g1_motion
from pipeline.rotations import quat_from_axis_angle, quat_to_matrix
from formats_motions import g1_test_motion


@pytest.fixture(scope="module")
def model():
    return load_g1()


@pytest.fixture(scope="module")
def motion(model):
    return g1_test_motion(model)


def test_csv_round_trip_equals_the_motion(tmp_path, motion):
    path = tmp_path / "m.csv"
    F.write_unitree_csv(motion, path)
    back = F.read_unitree_csv(path, fps=motion.fps)
    assert back.num_frames == motion.num_frames and back.joint_names == tuple(JOINT_NAMES)
    np.testing.assert_allclose(back.root_pos_m, motion.root_pos_m, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(back.root_quat_wxyz, motion.root_quat_wxyz, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(back.joint_pos_rad, motion.joint_pos_rad, rtol=1e-8, atol=1e-9)
    # and what mjlab's csv_to_npz does with it: np.loadtxt, 36 columns, no header
    table = np.loadtxt(path, delimiter=",")
    assert table.shape == (motion.num_frames, 36)
    assert path.read_text().splitlines()[0][0] in "-0123456789"  # no header line


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


def test_mjlab_npz_keys_shapes_and_fk(tmp_path, motion, model):
    out = resample_g1_motion(motion, 50.0, model)
    F.write_motion("mjlab-npz", out, tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:  # the trainers' loaders do not allow pickle
        assert set(z.files) == {"fps", "joint_pos", "joint_vel", "body_pos_w", "body_quat_w", "body_lin_vel_w",
                                "body_ang_vel_w", "joint_names", "body_names"}
        arrays = {k: z[k] for k in z.files}
    n = out.num_frames
    assert n == 101  # 2 s of clip at 50 Hz
    assert arrays["fps"].shape == (1,) and arrays["fps"][0] == 50.0
    assert arrays["joint_pos"].shape == (n, 29) and arrays["joint_pos"].dtype == np.float32
    assert arrays["body_pos_w"].shape == (n, 30, 3) and arrays["body_quat_w"].shape == (n, 30, 4)
    assert tuple(arrays["body_names"]) == tuple(BODY_NAMES) and tuple(arrays["joint_names"]) == tuple(JOINT_NAMES)
    # body kinematics are the model's FK of the written root and joints
    pos, quat = model.fk(out.root_pos_m, out.root_quat_wxyz, arrays["joint_pos"].astype(np.float64))
    np.testing.assert_allclose(arrays["body_pos_w"], pos, atol=2e-6)
    np.testing.assert_allclose(quat_to_matrix(arrays["body_quat_w"].astype(np.float64)), quat_to_matrix(quat),
                               atol=2e-6)
    # the root body is the pelvis: its velocities are the root's (0.3 m/s along x, constant yaw rate 0.8 rad/s)
    np.testing.assert_allclose(arrays["body_lin_vel_w"][:, 0], np.tile([0.3, 0.0, 0.0], (n, 1)), atol=1e-5)
    np.testing.assert_allclose(arrays["body_ang_vel_w"][:, 0], np.tile([0.0, 0.0, 0.8], (n, 1)), atol=1e-5)
    # joint velocities are derivatives of the written joints
    jv = np.gradient(out.joint_pos_rad, 1 / 50.0, axis=0)
    np.testing.assert_allclose(arrays["joint_vel"], jv, atol=1e-4)
    # body quaternions are sign-continuous over time
    q = arrays["body_quat_w"].astype(np.float64)
    assert np.all(np.sum(q[1:] * q[:-1], axis=-1) > 0)


def test_isaaclab_npz_is_the_breadth_first_permutation_of_mjlab(tmp_path, motion, model):
    out = resample_g1_motion(motion, 50.0, model)
    F.write_motion("mjlab-npz", out, tmp_path / "mj.npz")
    F.write_motion("isaaclab-npz", out, tmp_path / "il.npz")
    mj, il = F.read_tracking_npz(tmp_path / "mj.npz"), F.read_tracking_npz(tmp_path / "il.npz")
    assert il.body_names == tuple(ISAAC_BODY_NAMES) and il.joint_names == tuple(ISAAC_JOINT_NAMES)
    assert il.body_names != mj.body_names and il.joint_names != mj.joint_names
    assert il.body_names[:3] == ("pelvis", "left_hip_pitch_link", "right_hip_pitch_link")
    assert il.joint_names[:3] == ("left_hip_pitch", "right_hip_pitch", "waist_yaw")
    b = [mj.body_names.index(n) for n in il.body_names]
    j = [mj.joint_names.index(n) for n in il.joint_names]
    np.testing.assert_array_equal(il.joint_pos, mj.joint_pos[:, j])
    np.testing.assert_array_equal(il.joint_vel, mj.joint_vel[:, j])
    for key in ("body_pos_w", "body_quat_w", "body_lin_vel_w", "body_ang_vel_w"):
        np.testing.assert_array_equal(getattr(il, key), getattr(mj, key)[:, b])


def test_gmr_pickle_keys_and_local_body_positions(tmp_path, motion, model):
    out = resample_g1_motion(motion, 30.0, model)
    F.write_motion("gmr-pkl", out, tmp_path / "m.pkl")
    with open(tmp_path / "m.pkl", "rb") as f:
        d = pickle.load(f)
    assert set(d) == {"fps", "root_pos", "root_rot", "dof_pos", "local_body_pos", "link_body_list"}
    assert d["fps"] == 30 and isinstance(d["fps"], int)
    np.testing.assert_allclose(d["root_rot"], out.root_quat_wxyz[:, [1, 2, 3, 0]])  # xyzw
    np.testing.assert_allclose(d["dof_pos"], out.joint_pos_rad)
    assert d["link_body_list"] == list(BODY_NAMES)
    # GMR's definition: FK with the root at the origin and unrotated
    n = out.num_frames
    local, _ = model.fk(np.zeros((n, 3)), np.tile([1.0, 0, 0, 0], (n, 1)), out.joint_pos_rad)
    np.testing.assert_allclose(d["local_body_pos"], local, atol=1e-12)


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
    with pytest.raises(ValueError, match="no body kinematics"):
        F.write_motion("mjlab-npz", resample_g1_motion(motion, 50.0, bodies=False), tmp_path / "y.npz")


def test_mjlab_npz_bodies_match_mujoco_kinematics(tmp_path, motion, model):
    """What csv_to_npz records is the simulator's body state: compare with MuJoCo's own kinematics."""
    mujoco = pytest.importorskip("mujoco", reason="mujoco is the retarget extra")
    out = resample_g1_motion(motion, 50.0, model)
    F.write_motion("mjlab-npz", out, tmp_path / "m.npz")
    tm = F.read_tracking_npz(tmp_path / "m.npz")
    m = model.mj_model()
    d = mujoco.MjData(m)
    names = [mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_BODY, i) for i in range(1, m.nbody)]
    assert tuple(names) == tm.body_names  # MuJoCo's depth-first order, world excluded
    qpos = model.qpos(out.root_pos_m, out.root_quat_wxyz, out.joint_pos_rad)
    for t in (0, 37, out.num_frames - 1):
        d.qpos[:] = qpos[t]
        mujoco.mj_kinematics(m, d)
        np.testing.assert_allclose(tm.body_pos_w[t], d.xpos[1:], atol=2e-6)
        np.testing.assert_allclose(np.abs(np.sum(tm.body_quat_w[t] * d.xquat[1:], axis=1)), 1.0, atol=2e-6)
