"""The G1 model: our MJCF and its kinematics against MuJoCo, the reference G1 in the mjlab wheel, and g1.md."""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pytest

mujoco = pytest.importorskip("mujoco")

from ingest.errors import ConfigError  # noqa: E402
from pipeline.g1 import model as g1  # noqa: E402

REFERENCE_XML_IN_WHEEL = "mjlab/asset_zoo/robots/unitree_g1/xmls/g1.xml"


@pytest.fixture(scope="module")
def model() -> g1.G1Model:
    return g1.load_g1()


def random_states(model: g1.G1Model, n: int, seed: int):
    """Random root poses (anywhere, any orientation) and joint angles uniformly within the limits."""
    rng = np.random.default_rng(seed)
    root_pos = rng.uniform(-3.0, 3.0, (n, 3))
    root_quat = rng.normal(size=(n, 4))
    root_quat /= np.linalg.norm(root_quat, axis=1, keepdims=True)
    lo, hi = model.joint_range_rad[:, 0], model.joint_range_rad[:, 1]
    return root_pos, root_quat, rng.uniform(lo, hi, (n, 29))


def pose(model: g1.G1Model, **angles: float) -> np.ndarray:
    """Joint angles (29,) from keyword angles; ``both_knee=0.3`` sets left and right."""
    q = np.zeros(29)
    for name, value in angles.items():
        sides = ("left_", "right_") if name.startswith("both_") else ("",)
        for side in sides:
            q[model.joint_index(side + name.removeprefix("both_"))] = value
    return q


def mj_poses(m, qpos: np.ndarray, body_names) -> tuple[np.ndarray, np.ndarray]:
    """MuJoCo's own body positions (T, B, 3) and quaternions (T, B, 4) for qpos rows, bodies by name."""
    d = mujoco.MjData(m)
    ids = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, b) for b in body_names]
    pos, quat = [], []
    for row in qpos:
        d.qpos[:] = row
        mujoco.mj_kinematics(m, d)
        pos.append(d.xpos[ids].copy())
        quat.append(d.xquat[ids].copy())
    return np.array(pos), np.array(quat)


def quat_angle_rad(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle between orientations given as unit wxyz quaternions (sign-invariant; accurate near zero)."""
    chord = np.minimum(np.linalg.norm(a - b, axis=-1), np.linalg.norm(a + b, axis=-1))
    return 4.0 * np.arcsin(np.clip(chord / 2.0, 0.0, 1.0))


# ---------------------------------------------------------------------------- import and orders


def test_import_pulls_in_neither_torch_nor_mujoco():
    code = (
        "import sys, pipeline.g1, pipeline.g1.model as m\n"
        "assert len(m.JOINT_NAMES) == 29 and len(m.ISAAC_BODY_NAMES) == 30\n"
        "print(','.join(x for x in ('torch', 'mujoco') if x in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_orders_are_consistent_permutations(model):
    assert len(g1.BODY_NAMES) == 30 and len(set(g1.BODY_NAMES)) == 30
    assert len(g1.JOINT_NAMES) == 29 and len(set(g1.JOINT_NAMES)) == 29
    assert sorted(g1.ISAAC_BODY_NAMES) == sorted(g1.BODY_NAMES)
    assert sorted(g1.ISAAC_JOINT_NAMES) == sorted(g1.JOINT_NAMES)
    assert len(g1.TRACKED_BODIES) == 14 and set(g1.TRACKED_BODIES) <= set(g1.BODY_NAMES)
    assert g1.ANCHOR_BODY in g1.TRACKED_BODIES and set(g1.FOOT_BODIES) <= set(g1.BODY_NAMES)
    # the constants are what the bundled file says
    assert model.joint_names == g1.JOINT_NAMES
    assert model.body_names == g1.BODY_NAMES
    assert tuple(model.parent_index) == g1.BODY_PARENT_INDEX
    assert (model.isaac_body_names, model.isaac_joint_names) == (g1.ISAAC_BODY_NAMES, g1.ISAAC_JOINT_NAMES)
    # each joint moves the body of the same name; depth-first order keeps every parent before its children
    for k, name in enumerate(g1.JOINT_NAMES):
        body = "torso_link" if name == "waist_pitch" else name + "_link"
        assert model.body_names[model.joint_body_index[k]] == body
        assert model.body_joint_index[model.joint_body_index[k]] == k
    assert all(p < i for i, p in enumerate(model.parent_index))


def test_isaac_order_is_breadth_first_as_physx_lists_it():
    # g1.md: "left_hip_pitch, right_hip_pitch, waist_yaw, left_hip_roll, right_hip_roll, waist_roll, ..."
    assert g1.ISAAC_JOINT_NAMES[:6] == (
        "left_hip_pitch", "right_hip_pitch", "waist_yaw", "left_hip_roll", "right_hip_roll", "waist_roll",
    )  # fmt: skip
    assert g1.ISAAC_BODY_NAMES[:4] == ("pelvis", "left_hip_pitch_link", "right_hip_pitch_link", "waist_yaw_link")
    assert g1.ISAAC_JOINT_NAMES[-2:] == ("left_wrist_yaw", "right_wrist_yaw")
    # a tiny tree with a known answer: 0 -> (1, 2); 1 -> 3; 2 -> (4, 5); 3 -> 6
    assert g1.breadth_first_order([-1, 0, 0, 1, 2, 2, 3]) == [0, 1, 2, 3, 4, 5, 6]
    assert g1.breadth_first_order([-1, 0, 1, 0, 3, 1]) == [0, 1, 3, 2, 5, 4]


# ---------------------------------------------------------------------------- limits, masses, sites


G1_MD_VELOCITY_RAD_S = {  # g1.md: motor velocity limits by joint
    "hip_pitch": 32, "hip_yaw": 32, "waist_yaw": 32, "hip_roll": 20, "knee": 20,
    "ankle_pitch": 37, "ankle_roll": 37, "waist_roll": 37, "waist_pitch": 37,
    "shoulder_pitch": 37, "shoulder_roll": 37, "shoulder_yaw": 37, "elbow": 37, "wrist_roll": 37,
    "wrist_pitch": 22, "wrist_yaw": 22,
}  # fmt: skip
G1_MD_EFFORT_NM = {  # g1.md table: effort column
    "hip_pitch": 88, "hip_yaw": 88, "waist_yaw": 88, "hip_roll": 139, "knee": 139,
    "ankle_pitch": 50, "ankle_roll": 50, "waist_roll": 50, "waist_pitch": 50,
    "shoulder_pitch": 25, "shoulder_roll": 25, "shoulder_yaw": 25, "elbow": 25, "wrist_roll": 25,
    "wrist_pitch": 5, "wrist_yaw": 5,
}  # fmt: skip
G1_MD_RANGES = {  # g1.md table (rounded there, hence the tolerance)
    "left_hip_pitch": (-2.531, 2.88), "left_hip_roll": (-0.5236, 2.967), "right_hip_roll": (-2.967, 0.5236),
    "left_hip_yaw": (-2.758, 2.758), "left_knee": (-0.08727, 2.88), "left_ankle_pitch": (-0.8727, 0.5236),
    "left_ankle_roll": (-0.2618, 0.2618), "waist_yaw": (-2.618, 2.618), "waist_roll": (-0.52, 0.52),
    "waist_pitch": (-0.52, 0.52), "left_shoulder_pitch": (-3.089, 2.67), "left_shoulder_roll": (-1.588, 2.252),
    "right_shoulder_roll": (-2.252, 1.588), "left_elbow": (-1.047, 2.094), "left_wrist_roll": (-1.972, 1.972),
    "left_wrist_pitch": (-1.614, 1.614), "right_wrist_yaw": (-1.614, 1.614),
}  # fmt: skip


def _kind(joint: str) -> str:
    return joint.removeprefix("left_").removeprefix("right_")


def test_limits_match_the_reference_tables(model):
    for k, name in enumerate(model.joint_names):
        assert model.joint_vel_limit_rad_s[k] == G1_MD_VELOCITY_RAD_S[_kind(name)], name
        assert model.joint_effort_limit_nm[k] == G1_MD_EFFORT_NM[_kind(name)], name
        assert g1.MOTOR_VELOCITY_LIMIT_RAD_S[name] == model.joint_vel_limit_rad_s[k]
        assert g1.MOTOR_EFFORT_LIMIT_NM[name] == model.joint_effort_limit_nm[k]
    for name, (lo, hi) in G1_MD_RANGES.items():
        np.testing.assert_allclose(model.joint_range_rad[model.joint_index(name)], (lo, hi), atol=1.5e-3)
    assert model.joint_vel_limit_rad_s[model.joint_index("left_knee")] == 20
    assert model.joint_vel_limit_rad_s[model.joint_index("right_wrist_pitch")] == 22
    # the mirrored legs and arms share their ranges except the roll joints, which mirror
    for joint in g1.JOINT_NAMES:
        if joint.startswith("left_"):
            lo, hi = model.joint_range_rad[model.joint_index(joint)]
            mirrored = model.joint_range_rad[model.joint_index("right_" + joint[5:])]
            expected = (-hi, -lo) if joint.endswith(("hip_roll", "shoulder_roll")) else (lo, hi)
            np.testing.assert_allclose(mirrored, expected, atol=1e-9)


def test_mass_sites_and_mujoco_agree(model):
    assert model.total_mass_kg == pytest.approx(33.34, abs=0.01)
    assert model.body_mass_kg[model.body_index("torso_link")] == pytest.approx(7.818)
    np.testing.assert_allclose(model.site_pos("left_foot"), (0.04, 0.0, -0.037))
    np.testing.assert_allclose(model.site_pos("right_palm"), (0.08, 0.0, 0.0))
    assert model.site_body("left_foot") == "left_ankle_roll_link"
    assert model.site_body("imu_in_pelvis") == "pelvis"
    assert model.site_body("right_palm") == "right_wrist_yaw_link"
    with pytest.raises(ConfigError, match="left_palm"):
        model.site_pos("nose")
    m = model.mj_model()
    assert (m.nq, m.nv, m.nbody) == (36, 35, 31)
    assert m.body_mass.sum() == pytest.approx(model.total_mass_kg)
    assert m.nmesh == 0  # no meshes: kinematics, inertia and capsules only


def test_standing_heights_match_the_reference(model):
    """Soles on z = 0: pelvis at 0.792 m with zero joints, 0.757 m knees bent (g1.md)."""

    def lowest_sole_z(q: np.ndarray, pelvis_z: float) -> float:
        pos, quat = model.fk(np.array([0.0, 0.0, pelvis_z]), np.array([1.0, 0.0, 0.0, 0.0]), q)
        rot = g1.quat_wxyz_to_rotmat(quat)
        zs = []
        for body in g1.FOOT_BODIES:
            b = model.body_index(body)
            zs.extend((pos[b] + model.sole_points_m(body) @ rot[b].T)[:, 2])
        return float(min(zs))

    assert lowest_sole_z(np.zeros(29), g1.STANDING_PELVIS_HEIGHT_M) == pytest.approx(0.0, abs=0.5e-3)
    assert lowest_sole_z(np.zeros(29), 0.0) == pytest.approx(-0.792, abs=1e-3)
    bent = pose(model, both_hip_pitch=-0.312, both_knee=0.669, both_ankle_pitch=-0.363)
    assert lowest_sole_z(bent, 0.0) == pytest.approx(-0.757, abs=1e-3)
    assert model.sole_points_m("left_ankle_roll_link").shape == (4, 3)
    with pytest.raises(ConfigError, match="capsule"):
        model.sole_points_m("left_hip_pitch_link")


def test_feet_rest_on_a_feet_only_ground_plane(model):
    """MuJoCo with a plane that touches only the soles (contact bit 1): contact just below 0.792 m, none above."""
    spec = mujoco.MjSpec.from_file(str(model.mjcf_path))
    plane = spec.worldbody.add_geom()
    plane.type = mujoco.mjtGeom.mjGEOM_PLANE
    plane.size = [5.0, 5.0, 0.1]
    plane.contype, plane.conaffinity = 2, 2
    m = spec.compile()
    d = mujoco.MjData(m)

    def contacts(pelvis_z: float, q: np.ndarray) -> set[str]:
        d.qpos[:] = model.qpos([0.0, 0.0, pelvis_z], [1.0, 0.0, 0.0, 0.0], q)
        mujoco.mj_forward(m, d)
        names = set()
        for c in d.contact[: d.ncon]:
            names |= {m.geom(c.geom1).name, m.geom(c.geom2).name}
        return names - {""}

    assert contacts(0.792 + 0.002, np.zeros(29)) == set()
    touching = contacts(0.792 - 0.002, np.zeros(29))
    assert touching and all("sole" in n for n in touching)
    assert len(touching) == 4  # both capsules of both feet
    # a body part below the plane does not touch a feet-only plane: kneel the robot through it
    assert all("sole" in n for n in contacts(0.3, np.zeros(29)))


# ---------------------------------------------------------------------------- forward kinematics


def test_fk_matches_mujoco_on_our_model(model):
    root_pos, root_quat, q = random_states(model, 64, seed=1)
    pos, quat = model.fk(root_pos, root_quat, q)
    assert pos.shape == (64, 30, 3) and quat.shape == (64, 30, 4)
    ref_pos, ref_quat = mj_poses(model.mj_model(), model.qpos(root_pos, root_quat, q), model.body_names)
    assert np.abs(pos - ref_pos).max() < 1e-6
    assert quat_angle_rad(quat, ref_quat).max() < 1e-6
    np.testing.assert_allclose(np.linalg.norm(quat, axis=-1), 1.0, atol=1e-12)
    # unbatched input and an unnormalised root quaternion work too
    p1, q1 = model.fk(root_pos[3], 2.5 * root_quat[3], q[3])
    np.testing.assert_allclose(p1, pos[3], atol=1e-12)
    assert quat_angle_rad(q1, quat[3]).max() < 1e-9
    with pytest.raises(ValueError, match="joint_pos"):
        model.fk(root_pos, root_quat, q[:, :28])


def test_joint_axes_move_only_their_subtree(model):
    root = (np.zeros(3), np.array([1.0, 0.0, 0.0, 0.0]))
    base, _ = model.fk(*root, np.zeros(29))
    k = model.joint_index("left_elbow")
    bent, _ = model.fk(*root, pose(model, left_elbow=1.0))
    moved = {model.body_names[b] for b in np.flatnonzero(np.abs(bent - base).max(axis=1) > 1e-9)}
    assert moved == {"left_wrist_roll_link", "left_wrist_pitch_link", "left_wrist_yaw_link"}
    assert model.body_names[model.joint_body_index[k]] == "left_elbow_link"


def test_fk_torch_equals_numpy_and_its_gradient_matches_finite_differences(model):
    torch = pytest.importorskip("torch")
    root_pos, root_quat, q = random_states(model, 16, seed=2)
    pos, quat = model.fk(root_pos, root_quat, q)
    rot = g1.quat_wxyz_to_rotmat(root_quat)
    tpos, trot = model.fk_torch(torch.tensor(root_pos), torch.tensor(rot), torch.tensor(q))
    assert tpos.shape == (16, 30, 3) and trot.shape == (16, 30, 3, 3) and tpos.dtype == torch.float64
    np.testing.assert_allclose(tpos.numpy(), pos, atol=1e-10)
    np.testing.assert_allclose(trot.numpy(), g1.quat_wxyz_to_rotmat(quat), atol=1e-10)
    # float32 follows the joint dtype and stays within float precision
    p32, _ = model.fk_torch(torch.tensor(root_pos, dtype=torch.float32), torch.tensor(rot), torch.tensor(q).float())
    assert p32.dtype == torch.float32 and np.abs(p32.numpy() - pos).max() < 1e-5

    # gradient of a random scalar of all outputs against central differences along random directions
    rng = np.random.default_rng(12)
    w_pos, w_rot = torch.tensor(rng.normal(size=(4, 30, 3))), torch.tensor(rng.normal(size=(4, 30, 3, 3)))

    def loss(rp, rr, qq):
        p, r = model.fk_torch(rp, rr, qq)
        return (w_pos * p).sum() + (w_rot * r).sum()

    x = [torch.tensor(root_pos[:4]), torch.tensor(rot[:4]), torch.tensor(q[:4])]
    leaves = [t.clone().requires_grad_(True) for t in x]
    grads = torch.autograd.grad(loss(*leaves), leaves)
    eps = 1e-6
    for _ in range(6):
        dirs = [torch.tensor(rng.normal(size=t.shape)) for t in x]
        plus = loss(*[t + eps * d for t, d in zip(x, dirs)])
        minus = loss(*[t - eps * d for t, d in zip(x, dirs)])
        numeric = float((plus - minus) / (2 * eps))
        analytic = float(sum((g * d).sum() for g, d in zip(grads, dirs)))
        assert analytic == pytest.approx(numeric, rel=1e-6, abs=1e-6)
    # and joint by joint, so that no single axis can hide in a sum
    for k in range(29):
        step = torch.zeros(4, 29, dtype=torch.float64)
        step[:, k] = eps
        numeric = float((loss(x[0], x[1], x[2] + step) - loss(x[0], x[1], x[2] - step)) / (2 * eps))
        assert float(grads[2][:, k].sum()) == pytest.approx(numeric, rel=1e-6, abs=1e-6), g1.JOINT_NAMES[k]


def test_fk_torch_is_vectorised_over_frames(model):
    torch = pytest.importorskip("torch")
    n = 300
    root_pos, root_quat, q = random_states(model, n, seed=3)
    args = (torch.tensor(root_pos), torch.tensor(g1.quat_wxyz_to_rotmat(root_quat)), torch.tensor(q))
    model.fk_torch(*args)  # warm the constants
    import time

    t0 = time.process_time()  # CPU time (all threads): other jobs on a shared machine do not inflate it
    for _ in range(5):
        model.fk_torch(*args)
    per_call_s = (time.process_time() - t0) / 5
    assert per_call_s < 0.5, f"fk_torch on {n} frames took {per_call_s:.3f} s of CPU"


# ---------------------------------------------------------------------------- the reference G1 (mjlab wheel)


def _mjlab_wheel(tmp_dir: Path) -> Path:
    """The mjlab wheel: $G1FORGE_MJLAB_WHEEL, a cached download, or ``pip download --no-deps mjlab``."""
    explicit = os.environ.get("G1FORGE_MJLAB_WHEEL")
    if explicit and Path(explicit).is_file():
        return Path(explicit)
    cache = Path(os.environ.get("G1FORGE_TEST_CACHE", Path.home() / ".cache" / "g1forge-test"))
    for directory in (cache, tmp_dir):
        found = sorted(directory.glob("mjlab-*.whl")) if directory.is_dir() else []
        if found:
            return found[-1]
    for directory in (cache, tmp_dir):
        try:
            directory.mkdir(parents=True, exist_ok=True)
            proc = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--timeout", "20",
                 "--disable-pip-version-check", "-d", str(directory), "mjlab"],
                capture_output=True, text=True, timeout=240,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"cannot download the mjlab wheel for the reference G1: {exc}")
        found = sorted(directory.glob("mjlab-*.whl"))
        if found:
            return found[-1]
        if proc.returncode != 0 and directory == tmp_dir:
            pytest.skip(f"pip download --no-deps mjlab failed: {proc.stderr.strip()[-300:]}")
    pytest.skip("pip download --no-deps mjlab produced no wheel")


def _strip_meshes(xml_text: str) -> str:
    """The reference XML without its visual meshes (not in our checkout): kinematics and inertials unchanged."""
    root = ET.fromstring(xml_text)
    for parent in root.iter():
        for child in list(parent):
            if child.tag == "mesh" or (child.tag == "geom" and "mesh" in child.attrib):
                parent.remove(child)
    return ET.tostring(root, encoding="unicode")


def mjlab_reference_model(folder):
    """mjlab's own G1 from its wheel (downloaded into ``folder``), compiled without visual meshes; skips the
    calling test when the wheel cannot be had or lacks the model."""
    wheel = _mjlab_wheel(folder)
    with zipfile.ZipFile(wheel) as zf:
        try:
            text = zf.read(REFERENCE_XML_IN_WHEEL).decode()
        except KeyError:
            pytest.skip(f"{wheel.name} has no {REFERENCE_XML_IN_WHEEL}")
    return mujoco.MjModel.from_xml_string(_strip_meshes(text))


@pytest.fixture(scope="module")
def reference_model(tmp_path_factory):
    return mjlab_reference_model(tmp_path_factory.mktemp("mjlab"))


def test_fk_matches_the_reference_g1_within_1_mm(model, reference_model):
    m = reference_model
    ref_joint_adr = [m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, n + "_joint")]
                     for n in g1.JOINT_NAMES]  # fmt: skip
    assert ref_joint_adr == list(range(7, 36)), "the reference qpos order is the SDK order"
    ref_bodies = tuple(m.body(b).name for b in range(1, m.nbody))
    assert ref_bodies == model.body_names, "same bodies in the same depth-first order"
    root_pos, root_quat, q = random_states(model, 200, seed=4)
    qpos = np.zeros((200, m.nq))
    qpos[:, 0:3], qpos[:, 3:7], qpos[:, 7:] = root_pos, root_quat, q
    ref_pos, ref_quat = mj_poses(m, qpos, model.body_names)
    pos, quat = model.fk(root_pos, root_quat, q)
    assert np.abs(pos - ref_pos).max() < 1e-3
    assert np.abs(pos - ref_pos).max() < 1e-9, "our offsets are the reference numbers"
    assert quat_angle_rad(quat, ref_quat).max() < 1e-6
    for name in ("left_foot", "right_foot", "left_palm", "right_palm", "imu_in_pelvis", "imu_in_torso"):
        sid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, name)
        np.testing.assert_allclose(model.site_pos(name), m.site_pos[sid], atol=1e-12)


def test_inertials_ranges_and_axes_equal_the_reference(model, reference_model):
    m = reference_model
    ids = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, b) for b in model.body_names]
    np.testing.assert_allclose(model.body_mass_kg, m.body_mass[ids], rtol=0, atol=1e-12)
    np.testing.assert_allclose(model.body_com_m, m.body_ipos[ids], atol=1e-12)

    def inertia_tensor(diag, quat):
        r = g1.quat_wxyz_to_rotmat(quat)
        return r @ (diag[..., None] * np.swapaxes(r, -1, -2))

    ours = inertia_tensor(model.body_inertia_kg_m2, model.body_inertia_quat_wxyz)
    ref = inertia_tensor(np.array(m.body_inertia[ids]), np.array(m.body_iquat[ids]))
    np.testing.assert_allclose(ours, ref, atol=1e-10)
    assert model.total_mass_kg == pytest.approx(float(m.body_mass.sum()))
    jids = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, n + "_joint") for n in g1.JOINT_NAMES]
    np.testing.assert_allclose(model.joint_range_rad, m.jnt_range[jids], atol=1e-12)
    np.testing.assert_allclose(model.joint_axis[model.joint_body_index], m.jnt_axis[jids], atol=1e-12)


# ---------------------------------------------------------------------------- collision shapes


def _self_contacts(model: g1.G1Model, q: np.ndarray) -> set[tuple[str, str]]:
    m = model.mj_model()
    d = mujoco.MjData(m)
    d.qpos[:] = model.qpos([0.0, 0.0, 2.0], [1.0, 0.0, 0.0, 0.0], q)
    mujoco.mj_forward(m, d)
    return {tuple(sorted((m.geom(c.geom1).name, m.geom(c.geom2).name))) for c in d.contact[: d.ncon]}


def test_rest_poses_are_free_of_self_collision_and_folded_ones_are_not(model):
    home = pose(model, both_hip_pitch=-0.1, both_knee=0.3, both_ankle_pitch=-0.2, both_shoulder_pitch=0.2,
                both_elbow=1.28, left_shoulder_roll=0.2, right_shoulder_roll=-0.2)  # fmt: skip
    bent = pose(model, both_hip_pitch=-0.312, both_knee=0.669, both_ankle_pitch=-0.363, both_elbow=0.6)
    extremes = pose(model, waist_pitch=0.52, waist_roll=0.52, both_ankle_pitch=0.52, both_ankle_roll=0.26,
                    both_wrist_pitch=1.6, both_wrist_yaw=1.6, both_wrist_roll=1.9)  # fmt: skip
    for q in (np.zeros(29), home, bent, extremes):
        assert _self_contacts(model, q) == set()
    arm_into_torso = _self_contacts(model, pose(model, left_shoulder_roll=-1.5))
    assert ("left_upper_arm_collision", "torso_collision") in arm_into_torso
    crossed = _self_contacts(model, pose(model, left_hip_roll=-0.5, right_hip_roll=0.5))
    assert ("left_thigh_collision", "right_thigh_collision") in crossed


def test_capsule_table_matches_mujoco_geoms_and_pairs(model):
    c = model.collision
    assert c.skipped == () and len(c.names) == len(c.radius_m) == len(c.a_m)
    assert c.is_sole.sum() == 4
    root_pos, root_quat, q = random_states(model, 40, seed=5)
    pos, quat = model.fk(root_pos, root_quat, q)
    rot = g1.quat_wxyz_to_rotmat(quat)
    m = model.mj_model()
    d = mujoco.MjData(m)
    gids = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, n) for n in c.names]
    names = {tuple(sorted((c.names[i], c.names[k]))) for i, k in c.self_pairs}
    bodies = [{c.body_index[i], c.body_index[k]} for i, k in c.self_pairs]
    for i, par in enumerate(model.parent_index):
        assert {i, par} not in bodies, "parent-child pairs never collide"
    seen = 0
    for t in range(len(q)):
        d.qpos[:] = model.qpos(root_pos[t], root_quat[t], q[t])
        mujoco.mj_forward(m, d)
        a_w = pos[t, c.body_index] + np.einsum("gij,gj->gi", rot[t, c.body_index], c.a_m)
        b_w = pos[t, c.body_index] + np.einsum("gij,gj->gi", rot[t, c.body_index], c.b_m)
        np.testing.assert_allclose(0.5 * (a_w + b_w), d.geom_xpos[gids], atol=1e-9)
        for con in d.contact[: d.ncon]:
            assert tuple(sorted((m.geom(con.geom1).name, m.geom(con.geom2).name))) in names
            seen += 1
    assert seen > 0, "random configurations should produce some self-contacts to compare"


# ---------------------------------------------------------------------------- user MJCFs


def _bundled_text() -> str:
    return g1.DEFAULT_MJCF_PATH.read_text()


def test_user_mjcf_missing_a_joint_is_a_config_error(tmp_path):
    path = tmp_path / "g1_broken.xml"
    path.write_text(_bundled_text().replace('name="left_knee_joint"', 'name="left_knee_hinge"'))
    with pytest.raises(ConfigError, match="left_knee_joint") as exc:
        g1.load_g1(path)
    assert exc.value.reason == "config"
    with pytest.raises(ConfigError, match="not found"):
        g1.load_g1(tmp_path / "nope.xml")
    bad = tmp_path / "bad.xml"
    bad.write_text("<mujoco><worldbody><body></mujoco>")
    with pytest.raises(ConfigError, match="cannot compile"):
        g1.load_g1(bad)


def test_user_mjcf_with_bare_joint_names_and_other_order_gives_the_same_kinematics(model, tmp_path):
    """Joint names without ``_joint``, the arms' hinges listed before the legs', no velocity numerics."""
    text = _bundled_text()
    text = re.sub(r'<joint name="(\w+)_joint"', r'<joint name="\1"', text)
    root = ET.fromstring(text)
    root.remove(root.find("custom"))
    pelvis = root.find("worldbody/body")
    legs = [b for b in pelvis.findall("body") if "hip" in b.get("name")]
    for leg in legs:  # move the legs after the waist: file qpos order differs from the SDK order
        pelvis.remove(leg)
        pelvis.append(leg)
    path = tmp_path / "g1_user.xml"
    path.write_text(ET.tostring(root, encoding="unicode"))
    user = g1.load_g1(path)
    assert user.joint_names == g1.JOINT_NAMES and user.body_names != model.body_names
    assert sorted(user.body_names) == sorted(model.body_names)
    np.testing.assert_array_equal(user.joint_vel_limit_rad_s, model.joint_vel_limit_rad_s)  # table fallback
    assert user.joint_qpos_index[0] != 7
    root_pos, root_quat, q = random_states(model, 8, seed=6)
    pos, _ = model.fk(root_pos, root_quat, q)
    upos, _ = user.fk(root_pos, root_quat, q)
    order = [user.body_index(b) for b in model.body_names]
    np.testing.assert_allclose(upos[:, order], pos, atol=1e-12)
    ref_pos, _ = mj_poses(user.mj_model(), user.qpos(root_pos, root_quat, q), user.body_names)
    np.testing.assert_allclose(upos, ref_pos, atol=1e-9)
    assert user.isaac_joint_names[:3] == ("waist_yaw", "left_hip_pitch", "right_hip_pitch")


def test_model_is_cached_and_picklable(model):
    assert g1.load_g1() is model and g1.load_g1(g1.DEFAULT_MJCF_PATH) is model
    model.mj_model()
    clone = pickle.loads(pickle.dumps(model))
    root_pos, root_quat, q = random_states(model, 4, seed=7)
    np.testing.assert_allclose(clone.fk(root_pos, root_quat, q)[0], model.fk(root_pos, root_quat, q)[0])
    assert not model.body_pos_m.flags.writeable
