"""SMPL joint centres with smplx (:mod:`pipeline.smpl_joints`) and the ``smpl_model_dir`` backend option.

A synthetic SMPL model file is written in the plain-numpy pickle format ``smplx.SMPL`` reads: ``v_template``
(V, 3), ``shapedirs`` (V, 3, 10), ``posedirs`` (V, 3, 207), ``J_regressor`` (24, V), ``weights`` (V, 24),
``kintree_table`` (2, 24), ``f`` (F, 3). V is SMPL's 6890 because smplx's SMPL always gathers extra keypoints at
fixed SMPL-H vertex ids (up to 6787). The first 24 vertices are the joints (``J_regressor`` = identity on them),
so the rest joints are known exactly; expected posed joints come from an independent numpy forward kinematics.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from ingest.errors import MissingDependencyError
from ingest.items import VideoItem
from pipeline.backends.base import create_backend
from pipeline.motion import SMPLParams
from pipeline.skeleton import BODY_JOINTS, joint_index
from pipeline.smpl_joints import (
    ENV_SMPL_DIR,
    SMPL_MODEL_FILE,
    SMPL_TO_BODY,
    smpl_joints_cam_m,
)
from tests.phalp_factory import make_phalp_pickle, synthetic_tracks

pytest.importorskip("torch", reason="SMPL joints need torch: pip install torch")
pytest.importorskip("smplx", reason="SMPL joints need smplx: pip install 'g1forge[gpu]'")

NUM_VERTS = 6890
#: SMPL's kinematic tree (parent of each of the 24 joints; -1 for the pelvis).
PARENTS = np.array([-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21])
TOL = {"rtol": 0, "atol": 2e-5}  # smplx evaluates in float32
#: The mapping issue 4 asks for, written out independently of the module.
EXPECTED_SMPL_ROW = {
    "pelvis": 0, "left_hip": 1, "right_hip": 2, "left_knee": 4, "right_knee": 5, "left_ankle": 7, "right_ankle": 8,
    "neck": 12, "head": 15, "left_shoulder": 16, "right_shoulder": 17, "left_elbow": 18, "right_elbow": 19,
    "left_wrist": 20, "right_wrist": 21,
}


def rest_joints() -> np.ndarray:
    """A deterministic (24, 3) rest skeleton in metres (SMPL's y-up body frame), distinct points."""
    rng = np.random.default_rng(7)
    return rng.uniform(-0.5, 0.5, (24, 3))


def shape_dirs() -> np.ndarray:
    """(24, 3, 10) shape directions of the joint vertices (the other vertices have none)."""
    return np.random.default_rng(8).normal(0, 0.02, (24, 3, 10))


def write_model(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    v_template = np.zeros((NUM_VERTS, 3))
    v_template[:24] = rest_joints()
    shapedirs = np.zeros((NUM_VERTS, 3, 10))
    shapedirs[:24] = shape_dirs()
    j_regressor = np.zeros((24, NUM_VERTS))
    j_regressor[:, :24] = np.eye(24)
    weights = np.zeros((NUM_VERTS, 24))
    weights[:24] = np.eye(24)
    weights[24:, 0] = 1.0
    kintree = np.stack([np.where(PARENTS < 0, 4294967295, PARENTS), np.arange(24)]).astype(np.int64)
    model = {
        "v_template": v_template,
        "shapedirs": shapedirs,
        "posedirs": np.zeros((NUM_VERTS, 3, 207), dtype=np.float32),
        "J_regressor": j_regressor,
        "weights": weights,
        "kintree_table": kintree,
        "f": np.array([[0, 1, 2], [1, 2, 3]], dtype=np.int64),
    }
    with open(folder / SMPL_MODEL_FILE, "wb") as fh:
        pickle.dump(model, fh, protocol=2)
    return folder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return write_model(tmp_path_factory.mktemp("smpl"))


def rot(axis, angle: float) -> np.ndarray:
    k = np.asarray(axis, dtype=np.float64)
    k = k / np.linalg.norm(k)
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


def fk(rest: np.ndarray, rotmats: np.ndarray, transl: np.ndarray) -> np.ndarray:
    """Independent forward kinematics: (24, 3) rest joints, (24, 3, 3) local rotations -> (24, 3) posed joints."""
    R = np.zeros((24, 3, 3))
    p = np.zeros((24, 3))
    for j in range(24):
        if PARENTS[j] < 0:
            R[j], p[j] = rotmats[j], rest[j]
        else:
            q = PARENTS[j]
            R[j] = R[q] @ rotmats[j]
            p[j] = p[q] + R[q] @ (rest[j] - rest[q])
    # SMPL turns the body about its root joint: the root stays at its rest position before the translation.
    return p + transl


def params(go: np.ndarray, bp: np.ndarray, betas: np.ndarray, transl: np.ndarray) -> SMPLParams:
    return SMPLParams(global_orient_rotmat=go, body_pose_rotmat=bp, betas=betas, transl_cam_m=transl)


def identity_params(t: int) -> SMPLParams:
    return params(np.broadcast_to(np.eye(3), (t, 3, 3)).copy(), np.broadcast_to(np.eye(3), (t, 23, 3, 3)).copy(),
                  np.zeros((t, 10)), np.zeros((t, 3)))


def test_zero_pose_and_translation_give_the_rest_joints(model_dir):
    out = smpl_joints_cam_m(identity_params(3), model_dir)
    assert out.shape == (3, 24, 3) and out.dtype == np.float64
    np.testing.assert_allclose(out, np.broadcast_to(rest_joints(), out.shape), **TOL)


def test_betas_move_the_rest_joints_along_the_shape_directions(model_dir):
    p = identity_params(2)
    p.betas[1] = np.linspace(-2, 2, 10)
    out = smpl_joints_cam_m(p, model_dir)
    np.testing.assert_allclose(out[0], rest_joints(), **TOL)
    np.testing.assert_allclose(out[1], rest_joints() + shape_dirs() @ p.betas[1], **TOL)
    assert np.abs(out[1] - out[0]).max() > 0.01


def test_global_rotation_and_translation(model_dir):
    R = rot([0.3, 1.0, -0.2], 2.1)
    t = np.array([0.4, -0.2, 5.0])
    p = identity_params(1)
    p.global_orient_rotmat[0] = R
    p.transl_cam_m[0] = t
    out = smpl_joints_cam_m(p, model_dir)[0]
    rest = rest_joints()
    # SMPL rotates about the root joint: J0 stays, every other joint turns about it, then the translation.
    expected = rest[0] + (rest - rest[0]) @ R.T + t
    np.testing.assert_allclose(out, expected, **TOL)
    np.testing.assert_allclose(out, fk(rest, np.concatenate([R[None], np.broadcast_to(np.eye(3), (23, 3, 3))]), t),
                               **TOL)


def descendants(j: int) -> set[int]:
    out = set()
    for k in range(24):
        q = PARENTS[k]
        while q >= 0:
            if q == j:
                out.add(k)
                break
            q = PARENTS[q]
    return out


@pytest.mark.parametrize("joint", [4, 16, 9])  # left knee, left shoulder, spine3
def test_one_joint_rotation_moves_only_its_descendants(model_dir, joint):
    R = rot([1.0, 0.2, 0.1], 0.9)
    p = identity_params(1)
    p.body_pose_rotmat[0, joint - 1] = R  # body_pose row k is SMPL joint k + 1
    out = smpl_joints_cam_m(p, model_dir)[0]
    rest = rest_joints()
    moved = descendants(joint)
    assert moved  # every chosen joint has children
    still = [k for k in range(24) if k not in moved]
    np.testing.assert_allclose(out[still], rest[still], **TOL)
    idx = sorted(moved)
    np.testing.assert_allclose(out[idx], rest[joint] + (rest[idx] - rest[joint]) @ R.T, **TOL)
    assert np.linalg.norm(out[idx] - rest[idx], axis=1).min() > 1e-3


def test_random_poses_match_forward_kinematics_in_chunks(model_dir, monkeypatch):
    import pipeline.smpl_joints as sj

    monkeypatch.setattr(sj, "CHUNK_FRAMES", 3)  # several smplx calls
    rng = np.random.default_rng(3)
    t = 7
    rots = np.stack([[rot(rng.normal(size=3), rng.uniform(0, 1.5)) for _ in range(24)] for _ in range(t)])
    transl = rng.normal(0, 2, (t, 3))
    p = params(rots[:, 0], rots[:, 1:], np.zeros((t, 10)), transl)
    out = smpl_joints_cam_m(p, model_dir)
    for i in range(t):
        np.testing.assert_allclose(out[i], fk(rest_joints(), rots[i], transl[i]), **TOL)


def test_mapping_names_the_documented_smpl_joints():
    import smplx.joint_names as names

    assert SMPL_TO_BODY == EXPECTED_SMPL_ROW
    assert set(SMPL_TO_BODY) <= set(BODY_JOINTS)
    assert not {"left_heel", "right_heel", "left_toe", "right_toe", "nose"} & set(SMPL_TO_BODY)
    for body, k in SMPL_TO_BODY.items():
        assert names.JOINT_NAMES[k] == body  # smplx's own joint order (the first 22 are SMPL's)


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv(ENV_SMPL_DIR, raising=False)


def test_phalp_pkl_with_smpl_model_dir_replaces_exactly_the_mapped_joints(tmp_path, model_dir, no_env):
    tracks = synthetic_tracks(2, 40, seed=4)
    fake = make_phalp_pickle(tmp_path / "video.pkl", tracks, size_hw=(720, 1280))
    item = VideoItem("video", str(fake.path), "file")
    plain = create_backend("phalp-pkl").process(item, None)
    smpl_backend = create_backend("phalp-pkl", smpl_model_dir=str(model_dir))
    res = smpl_backend.process(item, None)
    assert plain.extra["joints_source"] == "phalp_rows" and res.extra["joints_source"] == "smpl"
    assert res.backend_version == "phalp-pkl-1+smpl-joints" == smpl_backend.version
    assert plain.backend_version == "phalp-pkl-1"
    mapped = joint_index(*EXPECTED_SMPL_ROW)
    kept = [j for j in range(len(BODY_JOINTS)) if j not in mapped]
    assert sorted(BODY_JOINTS[j] for j in kept) == ["left_heel", "left_toe", "nose", "right_heel", "right_toe"]
    for a, b in zip(plain.tracks, res.tracks):
        assert a.track_id == b.track_id
        np.testing.assert_array_equal(b.joints_cam_m[:, kept], a.joints_cam_m[:, kept])
        np.testing.assert_array_equal(b.keypoints_px, a.keypoints_px)
        go = fake.expected[a.track_id].global_orient_rotmat
        bp = fake.expected[a.track_id].body_pose_rotmat
        tr = fake.expected[a.track_id].transl_cam_m
        for i in range(0, a.num_frames, 9):
            rots = np.concatenate([go[i][None], bp[i]])
            rest = rest_joints() + shape_dirs() @ fake.expected[a.track_id].betas[i]
            want = fk(rest, rots, tr[i])
            np.testing.assert_allclose(b.joints_cam_m[i, mapped], want[list(EXPECTED_SMPL_ROW.values())], atol=5e-5)
        assert np.abs(b.joints_cam_m[:, mapped] - a.joints_cam_m[:, mapped]).max() > 0.01


def test_missing_model_file_names_the_expected_path(tmp_path, no_env, monkeypatch):
    with pytest.raises(MissingDependencyError, match=str(tmp_path / "nowhere" / SMPL_MODEL_FILE)):
        create_backend("phalp-pkl", smpl_model_dir=str(tmp_path / "nowhere"))
    monkeypatch.setenv(ENV_SMPL_DIR, str(tmp_path / "env-dir"))
    with pytest.raises(MissingDependencyError, match=ENV_SMPL_DIR):
        create_backend("phalp-pkl")


def test_env_variable_sets_the_model_dir(tmp_path, model_dir, monkeypatch):
    monkeypatch.setenv(ENV_SMPL_DIR, str(model_dir))
    backend = create_backend("phalp-pkl")
    assert backend.smpl_model_dir == model_dir and backend.version.endswith("+smpl-joints")
    monkeypatch.delenv(ENV_SMPL_DIR)
    assert create_backend("phalp-pkl").smpl_model_dir is None


def test_fourdhumans_backend_takes_the_option(tmp_path, model_dir, no_env):
    pytest.importorskip("omegaconf", reason="the 4dhumans adapter needs omegaconf")
    from tests.fourdhumans_standin import write_standin_checkout

    checkout = write_standin_checkout(tmp_path / "4D-Humans")
    backend = create_backend("4dhumans", checkout_dir=str(checkout), smpl_model_dir=str(model_dir))
    assert backend.smpl_model_dir == model_dir and backend.version.endswith("+smpl-joints")
    assert create_backend("4dhumans", checkout_dir=str(checkout)).smpl_model_dir is None
    with pytest.raises(MissingDependencyError, match=SMPL_MODEL_FILE):
        create_backend("4dhumans", checkout_dir=str(checkout), smpl_model_dir=str(tmp_path))
