"""`g1forge export` as a library call: selection through the read-only catalog, one file per clip, the manifest,
--where filtering and errors, byte-identical re-exports."""

from __future__ import annotations

import csv
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from catalog import db, writer
from catalog.export import export
from catalog.formats import read_tracking_npz, read_unitree_csv
from catalog.layout import RunLayout
from ingest.errors import ConfigError
from pipeline.g1.model import load_g1
from pipeline.g1_motion import load_g1_motion, save_g1_motion
from pipeline.resample import resample_g1_motion
from formats_motions import g1_test_motion

METRICS = ["g1_key_body_err_mean_m", "jitter_m_s3"]


@pytest.fixture(scope="module")
def model():
    return load_g1()


def _g1_relpath(video_id, clip_id):
    return RunLayout.clip_motion_relpath(video_id, clip_id).replace(".npz", ".g1.npz")


def _publish(layout, model, video_id, clips, seed=0):
    """clips: list of (clip_id, status, has_g1, jitter)."""
    video = {"video_id": video_id, "uri": f"/videos/{video_id}.mp4", "status": "ok", "reason": "",
             "backend": "synthetic", "backend_version": "1.0", "config_hash": "cfg123", "code_version": "abc",
             "license": "cc-by"}
    rows, motions = [], {}
    for i, (clip_id, status, has_g1, jitter) in enumerate(clips):
        row = {"clip_id": clip_id, "video_id": video_id, "track_id": 0, "status": status, "reason": "",
               "start_s": 2.0 * i, "end_s": 2.0 * i + 2.0, "duration_s": 2.0, "num_frames": 61, "fps": 30.0,
               "jitter_m_s3": jitter, "g1_key_body_err_mean_m": 0.01 * (i + 1),
               "g1_motion_path": _g1_relpath(video_id, clip_id) if has_g1 else None}
        rows.append(row)
        if has_g1:
            motions[clip_id] = g1_test_motion(model, clip_id=clip_id, seed=seed + len(motions))

    def write_motions(clips_dir):
        for cid, m in motions.items():
            save_g1_motion(m, clips_dir / f"{cid}.g1.npz")

    writer.publish_video(layout, video_id, "cfg123", video, [], rows, METRICS, write_motions)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, model):
    layout = RunLayout.at(tmp_path_factory.mktemp("exp") / "run")
    layout.root.mkdir()
    layout.info_path.write_text(json.dumps({"format_version": 1}))
    writer.write_schema_fragments(layout, METRICS)
    db.write_views(layout)
    _publish(layout, model, "file-aaaa", [("file-aaaa-t0-c0", "ok", True, 1.0),
                                          ("file-aaaa-t0-c1", "ok", True, 5.0),
                                          ("file-aaaa-t0-c2", "filtered", False, 9.0),
                                          ("file-aaaa-t0-c3", "ok", False, 1.0)])  # not retargeted
    _publish(layout, model, "file-bbbb", [("file-bbbb-t0-c0", "ok", True, 3.0)], seed=5)
    return layout.root


EXPORTED = ["file-aaaa-t0-c0", "file-aaaa-t0-c1", "file-bbbb-t0-c0"]


def test_csv_export_writes_every_selected_clip_and_a_manifest(run_dir, tmp_path):
    report = export(run_dir, None, "unitree-csv", tmp_path / "out")
    assert report.files == [f"{c}/motion.csv" for c in EXPORTED] and report.num_selected == 3 and not report.skipped
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        EXPORTED + [".g1forge-export", "README.md", "duration.png", "manifest.csv", "manifest.parquet",
                    "metrics.png"])
    for c in EXPORTED:  # one folder per clip: the motion and its provenance, nothing else
        assert sorted(p.name for p in (tmp_path / "out" / c).iterdir()) == ["clip.json", "motion.csv"]
    manifest = pq.read_table(report.manifest_parquet).to_pylist()
    assert [r["clip_id"] for r in manifest] == EXPORTED
    first = manifest[0]
    assert first["file"] == "file-aaaa-t0-c0/motion.csv" and first["format"] == "unitree-csv" and first["fps"] == 30.0
    info = json.loads((tmp_path / "out" / "file-aaaa-t0-c0" / "clip.json").read_text())
    assert info["clip_id"] == "file-aaaa-t0-c0" and info["fps"] == 30.0 and info["num_frames"] == 61
    assert info["source_uri"] == "/videos/file-aaaa.mp4" and info["license"] == "cc-by"
    assert info["config_hash"] == "cfg123" and info["format"] == "unitree-csv"
    assert first["num_frames"] == 61 and first["duration_s"] == pytest.approx(61 / 30.0)
    assert first["source_uri"] == "/videos/file-aaaa.mp4" and first["backend"] == "synthetic"
    assert first["config_hash"] == "cfg123" and first["code_version"] == "abc" and first["license"] == "cc-by"
    assert first["jitter_m_s3"] == 1.0 and first["g1_key_body_err_mean_m"] == pytest.approx(0.01)
    assert manifest[1]["clip_start_s"] == 2.0
    with open(report.manifest_csv, newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert [r["clip_id"] for r in csv_rows] == EXPORTED and csv_rows[2]["source_uri"] == "/videos/file-bbbb.mp4"
    # the CSV read back equals the stored motion (same 30 fps)
    stored = load_g1_motion(run_dir / _g1_relpath("file-aaaa", "file-aaaa-t0-c1"))
    back = read_unitree_csv(tmp_path / "out" / "file-aaaa-t0-c1" / "motion.csv", fps=30.0)
    np.testing.assert_allclose(back.joint_pos_rad, stored.joint_pos_rad, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(back.root_pos_m, stored.root_pos_m, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(back.root_quat_wxyz, stored.root_quat_wxyz, rtol=1e-8, atol=1e-9)
    assert "exported 3 of 3" in report.summary()


def test_where_filters_on_clip_columns_and_limit_caps(run_dir, tmp_path):
    r = export(run_dir, "jitter_m_s3 < 4", "unitree-csv", tmp_path / "a")
    assert r.files == ["file-aaaa-t0-c0/motion.csv", "file-bbbb-t0-c0/motion.csv"]
    assert [x["clip_id"] for x in pq.read_table(r.manifest_parquet).to_pylist()] == [
        "file-aaaa-t0-c0", "file-bbbb-t0-c0"]
    r = export(run_dir, "video_id = 'file-bbbb'", "gmr-pkl", tmp_path / "b", layout="flat")
    assert r.files == ["file-bbbb-t0-c0.pkl"] and (tmp_path / "b" / "file-bbbb-t0-c0.pkl").is_file()
    r = export(run_dir, "video_id IN (SELECT video_id FROM videos WHERE license = 'cc-by')", "unitree-csv",
               tmp_path / "c", limit=2)
    assert r.files == ["file-aaaa-t0-c0/motion.csv", "file-aaaa-t0-c1/motion.csv"]
    r = export(run_dir, "status = 'filtered'", "unitree-csv", tmp_path / "d")  # only ok clips are exported
    assert r.files == [] and pq.read_table(r.manifest_parquet).num_rows == 0


@pytest.mark.parametrize("where", ["no_such_column > 1", "duration_s >", "1; DROP VIEW clips"])
def test_bad_predicates_give_a_clear_error(run_dir, tmp_path, where):
    with pytest.raises(ConfigError, match="bad --where predicate") as info:
        export(run_dir, where, "unitree-csv", tmp_path / "x")
    assert "DESCRIBE clips" in str(info.value)
    assert db.run_query(run_dir, "SELECT count(*) AS n FROM clips").to_pylist() == [{"n": 5}]


def test_bad_options_and_folders(run_dir, tmp_path):
    with pytest.raises(ConfigError, match="unknown export format"):
        export(run_dir, None, "bvh", tmp_path / "x")
    with pytest.raises(ConfigError, match="--fps"):
        export(run_dir, None, "unitree-csv", tmp_path / "x", fps=0)
    with pytest.raises(ConfigError, match="not a g1forge run folder"):
        export(tmp_path, None, "unitree-csv", tmp_path / "x")


def test_npz_export_is_at_50_hz_with_fk_bodies(run_dir, tmp_path, model):
    report = export(run_dir, "clip_id = 'file-bbbb-t0-c0'", "mjlab-npz", tmp_path / "npz")
    assert report.fps == 50.0 and report.files == ["file-bbbb-t0-c0/motion.npz"]
    tm = read_tracking_npz(tmp_path / "npz" / "file-bbbb-t0-c0" / "motion.npz")
    stored = load_g1_motion(run_dir / _g1_relpath("file-bbbb", "file-bbbb-t0-c0"))
    expect = resample_g1_motion(stored, 50.0, model)
    assert tm.fps == 50.0 and tm.num_frames == expect.num_frames == 101
    np.testing.assert_allclose(tm.joint_pos, expect.joint_pos_rad, atol=1e-6)
    pos, _ = model.fk(expect.root_pos_m, expect.root_quat_wxyz, expect.joint_pos_rad)
    np.testing.assert_allclose(tm.body_pos_w, pos, atol=2e-6)
    row = pq.read_table(report.manifest_parquet).to_pylist()[0]
    assert row["fps"] == 50.0 and row["num_frames"] == 101


def test_custom_fps(run_dir, tmp_path):
    r = export(run_dir, "clip_id = 'file-aaaa-t0-c0'", "unitree-csv", tmp_path / "f", fps=60)
    back = read_unitree_csv(tmp_path / "f" / r.files[0], fps=60.0)
    assert back.num_frames == 121  # 2 s at 60 fps, both ends included


def test_reexport_is_byte_identical(run_dir, tmp_path):
    for fmt in ("unitree-csv", "isaaclab-npz", "gmr-pkl"):
        a = export(run_dir, "jitter_m_s3 > 2", fmt, tmp_path / f"{fmt}-1")
        b = export(run_dir, "jitter_m_s3 > 2", fmt, tmp_path / f"{fmt}-2")
        names = sorted(str(p.relative_to(a.dest)) for p in a.dest.rglob("*") if p.is_file())
        assert names == sorted(str(p.relative_to(b.dest)) for p in b.dest.rglob("*") if p.is_file())
        assert "manifest.parquet" in names and sum(n.endswith("/clip.json") for n in names) == len(a.files)
        for name in names:
            assert (a.dest / name).read_bytes() == (b.dest / name).read_bytes(), (fmt, name)


def test_missing_motion_file_is_skipped_and_reported(tmp_path, model):
    layout = RunLayout.at(tmp_path / "run")
    layout.root.mkdir()
    layout.info_path.write_text(json.dumps({"format_version": 1}))
    writer.write_schema_fragments(layout, METRICS)
    db.write_views(layout)
    _publish(layout, model, "file-cccc", [("file-cccc-t0-c0", "ok", True, 1.0),
                                          ("file-cccc-t0-c1", "ok", True, 1.0)])
    (layout.root / _g1_relpath("file-cccc", "file-cccc-t0-c0")).unlink()
    report = export(layout.root, None, "unitree-csv", tmp_path / "out")
    assert report.files == ["file-cccc-t0-c1/motion.csv"] and report.num_selected == 2
    assert not (tmp_path / "out" / "file-cccc-t0-c0").exists()  # no empty folder for a skipped clip
    assert report.skipped[0][0] == "file-cccc-t0-c0" and "missing" in report.skipped[0][1]
    assert [r["clip_id"] for r in pq.read_table(report.manifest_parquet).to_pylist()] == ["file-cccc-t0-c1"]
    assert "skipped file-cccc-t0-c0" in report.summary()


def test_corrupt_motion_file_is_skipped(tmp_path, model):
    layout = RunLayout.at(tmp_path / "run")
    layout.root.mkdir()
    layout.info_path.write_text(json.dumps({"format_version": 1}))
    writer.write_schema_fragments(layout, METRICS)
    db.write_views(layout)
    _publish(layout, model, "file-dddd", [("file-dddd-t0-c0", "ok", True, 1.0)])
    (layout.root / _g1_relpath("file-dddd", "file-dddd-t0-c0")).write_bytes(b"not an npz")
    report = export(layout.root, None, "mjlab-npz", tmp_path / "out")
    assert report.files == [] and report.skipped[0][0] == "file-dddd-t0-c0"


@pytest.mark.parametrize("fmt, fps, expected", [
    ("unitree-csv", None, ["--input_fps 30 --robot_model g1_29dof", "--input_fps 30 --output_name",
                           "--input-fps 30"]),
    ("unitree-csv", 60, ["--input_fps 60 --robot_model g1_29dof"]),
    ("mjlab-npz", None, ["train Mjlab-Tracking-Flat-Unitree-G1 --env.commands.motion.motion-file",
                         "--registry-name ENTITY/wandb-registry-motions/file-aaaa-t0-c0"]),
    ("isaaclab-npz", None, ["--registry_name ENTITY/wandb-registry-motions/file-aaaa-t0-c0", "--motion_file",
                            "**30 bodies**", "export `isaaclab-npz-all-links`"]),
    ("isaaclab-npz-all-links", None, ["**39 bodies**", "--registry_name ENTITY/wandb-registry-motions/"]),
    ("gmr-pkl", None, ["--robot unitree_g1 --robot_motion_path"]),
])
def test_the_card_gives_each_trainer_its_command_with_the_files_rate(run_dir, tmp_path, fmt, fps, expected):
    report = export(run_dir, None, fmt, tmp_path / "out", fps=fps, val_frac=0.5, seed=2)
    card = (tmp_path / "out" / "README.md").read_text()
    section = card.split("## Training with it", 1)[1].split("\n## ", 1)[0]
    for text in expected:
        assert text in section, (text, section)
    first = sorted(report.files, key=lambda f: f.split("/")[1])[0]  # the card's example clip
    assert first in section and (tmp_path / "out" / first).is_file()  # the commands name a file that exists
    manifest = pq.read_table(report.manifest_parquet).to_pylist()
    assert {r["fps"] for r in manifest} == {report.fps}


def _offline_artifacts(wandb_dir):
    """(name, type, {path: md5 digest}, metadata) of every artifact recorded in the offline runs under wandb_dir."""
    from wandb.proto import wandb_internal_pb2
    from wandb.sdk.internal import datastore

    out = {}
    for path in wandb_dir.rglob("*.wandb"):
        store = datastore.DataStore()
        store.open_for_scan(str(path))
        while (data := store.scan_data()) is not None:
            record = wandb_internal_pb2.Record()
            record.ParseFromString(data)
            if record.WhichOneof("record_type") == "artifact":
                a = record.artifact
                out[a.name] = (a.type, {e.path: e.digest for e in a.manifest.contents}, json.loads(a.metadata))
    return out


def test_publish_logs_each_npz_clip_as_a_motions_artifact_holding_motion_npz(run_dir, tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="g1forge publish needs the wandb extra")
    import base64
    import hashlib

    from catalog.publish import publish

    for var, sub in (("WANDB_DIR", "wandb"), ("WANDB_CACHE_DIR", "cache"), ("WANDB_CONFIG_DIR", "config"),
                     ("WANDB_DATA_DIR", "data"), ("WANDB_ARTIFACT_DIR", "artifacts")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_ERROR_REPORTING", "false")
    report = export(run_dir, None, "mjlab-npz", tmp_path / "out", val_frac=0.5, seed=2)
    result = publish(tmp_path / "out", offline=True, splits=("train", "val"), wandb_dir=tmp_path / "wandb")
    assert result.offline and sorted(n for n, _ in result.artifacts) == EXPORTED and not result.links
    assert sorted(w for w, _ in result.skipped) == [f"link {c}" for c in EXPORTED]  # linking needs the server
    logged = _offline_artifacts(tmp_path / "wandb")
    assert sorted(logged) == EXPORTED
    for rel in report.files:
        clip_id = rel.split("/")[1]
        kind, files, meta = logged[clip_id]
        digest = base64.b64encode(hashlib.md5((tmp_path / "out" / rel).read_bytes()).digest()).decode()
        assert kind == "motions" and files == {"motion.npz": digest}  # the trainers read exactly this file
        assert meta["clip_id"] == clip_id and meta["fps"] == 50.0 and meta["split"] == rel.split("/")[0]
        assert meta["license"] == "cc-by" and meta["config_hash"] == "cfg123"


def test_publish_refuses_what_trainers_cannot_fetch(run_dir, tmp_path):
    from catalog.publish import publish

    with pytest.raises(ConfigError, match="not a g1forge export"):
        publish(tmp_path)
    export(run_dir, None, "unitree-csv", tmp_path / "csv")
    with pytest.raises(ConfigError, match="mjlab-npz or isaaclab-npz"):
        publish(tmp_path / "csv")
