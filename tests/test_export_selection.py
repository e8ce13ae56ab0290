"""Training-set export: seeded samples, balancing, the train/validation split by video, the manifest's provenance,
the dataset card and its plots, byte-identical re-exports, the export folder's rules and the CLI flags."""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest
from export_catalog_factory import motion_templates, new_run, publish
from run_helpers import cli

from catalog import db
from catalog.card import CARD_FILES, command_line
from catalog.export import EXPORT_MARKER, PARQUET_METADATA_KEY, export
from catalog.schema import CLIP_BASE
from catalog.scoring import thresholds_hash
from catalog.selection import (
    SelectionSpec,
    balanced_quotas,
    sample_key,
    select_clips,
    split_of,
    split_unit,
)
from ingest.errors import ConfigError
from pipeline.g1.model import load_g1

LICENSES = ("cc-by", "cc-by", "cc-by", "cc0", "cc-by-sa", None)  # video k gets LICENSES[k % 6]


def _select(layout, **kw):
    con = db.connect(layout.root)
    try:
        return select_clips(con, SelectionSpec(**kw))
    finally:
        con.close()


def _ids(selected):
    return selected.table.column("clip_id").to_pylist()


@pytest.fixture(scope="module")
def model():
    return load_g1()


@pytest.fixture(scope="module")
def rows_run(tmp_path_factory):
    """30 videos x 4 ok clips (+1 filtered each), rows only: licences as LICENSES, tags by video parity."""
    layout = new_run(tmp_path_factory.mktemp("sel") / "run")
    for k in range(30):
        publish(layout, f"file-{k:04d}", 4, license=LICENSES[k % 6], source_kind="youtube" if k % 5 == 0 else "local",
                tags=("walk",) if k % 2 else ("dance", "outdoor"), extra_statuses=("filtered",))
    return layout


@pytest.fixture(scope="module")
def files_run(tmp_path_factory, model):
    """8 videos x 2-3 ok clips with real G1 motion files, three licences."""
    root = tmp_path_factory.mktemp("files")
    templates = motion_templates(model, root / "templates")
    layout = new_run(root / "run")
    for k in range(8):
        publish(layout, f"file-{k:04d}", 2 + k % 2, templates=templates, license=("cc-by", "cc0", "cc-by-sa")[k % 3],
                tags=("walk",) if k % 2 else ("run",), jitter=[10.0 * k + j for j in range(3)])
    return layout


# --- pure functions -------------------------------------------------------------------------------------------


def test_balanced_quotas_examples():
    sizes = {"a": 10, "b": 2, "c": 5}
    assert balanced_quotas(sizes, 12) == {"a": 5, "b": 2, "c": 5}
    assert balanced_quotas(sizes, 10) == {"a": 4, "b": 2, "c": 4}
    assert balanced_quotas(sizes, 11) == {"a": 5, "b": 2, "c": 4}  # the odd clip goes to the first label
    assert balanced_quotas(sizes, 3) == {"a": 1, "b": 1, "c": 1}
    assert balanced_quotas(sizes, 2) == {"a": 1, "b": 1, "c": 0}
    assert balanced_quotas(sizes, 100) == sizes
    assert balanced_quotas(sizes, None) == {"a": 2, "b": 2, "c": 2}
    assert balanced_quotas({}, 5) == {} and balanced_quotas({"a": 0}, 5) == {}


def test_balanced_quotas_invariants_on_random_groups():
    rng = random.Random(7)
    for _ in range(500):
        sizes = {f"g{i}": rng.randint(1, 40) for i in range(rng.randint(1, 7))}
        total = rng.randint(0, 200)
        q = balanced_quotas(sizes, total)
        assert sum(q.values()) == min(total, sum(sizes.values()))
        assert all(0 <= q[g] <= sizes[g] for g in sizes)
        # water filling: a group below the largest quota gave everything it had
        top = max(q.values())
        assert all(q[g] == sizes[g] for g in sizes if q[g] < top - 1)
        assert all(q[g] >= min(sizes[g], top - 1) for g in sizes)


def test_split_is_by_hash_of_seed_and_video():
    ids = [f"file-{i:05d}" for i in range(4000)]
    val = [v for v in ids if split_of(v, 3, 0.2) == "val"]
    assert abs(len(val) / len(ids) - 0.2) < 4 * np.sqrt(0.2 * 0.8 / len(ids))  # binomial, 4 sigma
    assert all(split_unit(3, v) < 0.2 for v in val) and 0 <= min(split_unit(3, v) for v in ids)
    assert max(split_unit(3, v) for v in ids) < 1
    other_seed = {v for v in ids if split_of(v, 4, 0.2) == "val"}
    assert 0 < len(other_seed & set(val)) < len(val)  # another seed, another split
    assert split_of("file-00001", 3, None) == split_of("file-00001", 3, 0) == "train"
    digest = hashlib.sha256(b"3:split:file-00001").hexdigest()
    assert split_unit(3, "file-00001") == int(digest[:15], 16) / 16**15


# --- selection on the catalog ---------------------------------------------------------------------------------


def _reference_sample(candidates: list[str], seed: int, n: int) -> list[str]:
    return sorted(sorted(candidates, key=lambda c: hashlib.sha256(f"{seed}:{c}".encode()).hexdigest())[:n])


def test_sample_is_the_first_n_by_hash_and_independent_of_row_and_publish_order(rows_run, tmp_path):
    all_ids = _ids(_select(rows_run))
    assert len(all_ids) == 120 and all_ids == sorted(all_ids)  # no filtered clips, clip id order
    s = _select(rows_run, sample=25, seed=11)
    assert _ids(s) == _reference_sample(all_ids, 11, 25) and s.num_candidates == 120
    assert s.table.column("sample_key").to_pylist() == [sample_key(11, c) for c in _ids(s)]
    assert _ids(_select(rows_run, sample=25, seed=11)) == _ids(s)  # deterministic
    assert _ids(_select(rows_run, sample=25, seed=12)) != _ids(s)
    # the same content published in the opposite order, each fragment's rows reversed
    other = new_run(tmp_path / "reversed")
    for k in reversed(range(30)):
        publish(other, f"file-{k:04d}", 4, license=LICENSES[k % 6], source_kind="youtube" if k % 5 == 0 else "local",
                tags=("walk",) if k % 2 else ("dance", "outdoor"), extra_statuses=("filtered",), reverse_rows=True)
    assert _ids(_select(other, sample=25, seed=11)) == _ids(s)
    # --limit keeps the first of the sample's order: a smaller sample of the same draw
    assert _ids(_select(rows_run, sample=25, seed=11, limit=7)) == _reference_sample(all_ids, 11, 7)
    assert _ids(_select(rows_run, limit=3)) == all_ids[:3]
    assert _ids(_select(rows_run, sample=500, seed=1)) == all_ids


def test_balance_by_a_video_column_with_and_without_sample(rows_run):
    sizes = Counter(LICENSES[k % 6] or "(null)" for k in range(30) for _ in range(4))
    assert sizes == {"cc-by": 60, "cc0": 20, "cc-by-sa": 20, "(null)": 20}
    s = _select(rows_run, balance="license", sample=50, seed=2)
    assert s.group_sizes == dict(sorted(sizes.items()))
    got = Counter(s.table.column("balance_group").to_pylist())
    assert got == {"(null)": 13, "cc-by": 13, "cc-by-sa": 12, "cc0": 12} == s.quotas
    # inside a group the clips are the group's first by hash
    cc0 = [r["clip_id"] for r in s.table.to_pylist() if r["balance_group"] == "cc0"]
    all_cc0 = [r["clip_id"] for r in _select(rows_run, where="license = 'cc0'").table.to_pylist()]
    assert sorted(cc0) == _reference_sample(all_cc0, 2, 12)
    # a small group gives all it has and the rest goes to the others
    s = _select(rows_run, balance="license", sample=110, seed=2)
    assert Counter(s.table.column("balance_group").to_pylist()) == {"cc-by": 50, "cc0": 20, "cc-by-sa": 20,
                                                                      "(null)": 20}
    # without --sample every group gives as many as the smallest
    s = _select(rows_run, balance="license", where="license IS NOT NULL AND track_id = 0")
    assert Counter(s.table.column("balance_group").to_pylist()) == {"cc-by": 20, "cc0": 20, "cc-by-sa": 20}


def test_balance_by_expression_and_list_column(rows_run):
    s = _select(rows_run, balance="tags[1]", sample=10, seed=0)
    assert Counter(s.table.column("balance_group").to_pylist()) == {"dance": 5, "walk": 5}
    s = _select(rows_run, balance="tags")  # a list groups by its whole value
    assert set(s.group_sizes) == {"[dance, outdoor]", "[walk]"}
    s = _select(rows_run, balance="source_kind", sample=12, seed=5)
    assert Counter(s.table.column("balance_group").to_pylist()) == {"local": 6, "youtube": 6}


def test_where_reaches_video_columns_and_bad_options_are_named(rows_run):
    s = _select(rows_run, where="license = 'cc0' AND jitter_m_s3 <= 2")
    assert len(_ids(s)) == 10 and set(s.table.column("license").to_pylist()) == {"cc0"}
    assert _ids(_select(rows_run, where="status = 'filtered'")) == []  # status is the clip's
    with pytest.raises(ConfigError, match="bad --balance expression") as info:
        _select(rows_run, balance="no_such_column")
    assert "DESCRIBE videos" in str(info.value)
    with pytest.raises(ConfigError, match="bad --where predicate"):
        _select(rows_run, where="no_such_column > 1", balance="license")
    with pytest.raises(ConfigError, match="bad --balance"):  # one statement only, like --where
        _select(rows_run, where="TRUE --", balance="license) FROM joined; COPY (SELECT 1) TO 'x.csv'; --")
    for kw, msg in ((dict(sample=-1), "--sample"), (dict(limit=1.5), "--limit"), (dict(val_frac=1.0), "--val-frac"),
                    (dict(val_frac=float("nan")), "--val-frac"), (dict(seed="x"), "--seed"),
                    (dict(balance=" "), "--balance")):
        with pytest.raises(ConfigError, match=msg):
            SelectionSpec(**kw).validate()
    with pytest.raises(ConfigError, match="--sample.*--val-frac"):  # every problem at once
        SelectionSpec(sample=-2, val_frac=2).validate()


# --- export: split, manifest, card ----------------------------------------------------------------------------


def test_split_export_puts_whole_videos_in_train_and_val_folders(files_run, tmp_path):
    dest = tmp_path / "set"
    r = export(files_run.root, None, "unitree-csv", dest, val_frac=0.4, seed=1)
    manifest = pq.read_table(r.manifest_parquet).to_pylist()
    assert len(manifest) == 20 and not r.skipped
    by_video = {}
    for row in manifest:
        assert row["split"] == split_of(row["video_id"], 1, 0.4)
        assert row["file"] == f"{row['split']}/{row['clip_id']}/motion.csv" and (dest / row["file"]).is_file()
        by_video.setdefault(row["video_id"], set()).add(row["split"])
    assert all(len(s) == 1 for s in by_video.values())  # no video straddles train and val
    assert {"train", "val"} <= {s for v in by_video.values() for s in v}
    assert sorted(p.name for p in (dest / "val").iterdir()) == sorted(
        m["clip_id"] for m in manifest if m["split"] == "val")
    assert r.split_counts == {s: sum(m["split"] == s for m in manifest) for s in ("train", "val")}
    assert "train: " in r.summary() and [p.name for p in dest.glob("*.csv")] == ["manifest.csv"]


def test_a_videos_split_does_not_change_when_videos_are_added(model, tmp_path):
    templates = motion_templates(model, tmp_path / "t", lengths=(31,))
    small, big = new_run(tmp_path / "small"), new_run(tmp_path / "big")
    for k in range(40):
        if k < 12:
            publish(small, f"file-{k:04d}", 1, templates=templates)
        publish(big, f"file-{k:04d}", 1, templates=templates)
    a = export(small.root, None, "unitree-csv", tmp_path / "a", val_frac=0.3, seed=9)
    b = export(big.root, None, "unitree-csv", tmp_path / "b", val_frac=0.3, seed=9)
    split_a = {m["video_id"]: m["split"] for m in pq.read_table(a.manifest_parquet).to_pylist()}
    split_b = {m["video_id"]: m["split"] for m in pq.read_table(b.manifest_parquet).to_pylist()}
    assert len(split_a) == 12 and all(split_b[v] == s for v, s in split_a.items())
    assert 0 < Counter(split_b.values())["val"] < 40


def test_manifest_carries_provenance_export_parameters_and_every_clip_column(files_run, tmp_path):
    r = export(files_run.root, "jitter_m_s3 < 45", "mjlab-npz", tmp_path / "m", sample=5, seed=4,
               balance="license", val_frac=0.25)
    table = pq.read_table(r.manifest_parquet)
    rows = table.to_pylist()
    assert len(rows) == 5 and [x["clip_id"] for x in rows] == sorted(x["clip_id"] for x in rows)
    first = rows[0]
    assert first["source_uri"] == f"/videos/{first['video_id']}.mp4" and first["source_kind"] == "local"
    assert first["backend"] == "synthetic" and first["backend_version"] == "1.0" and first["config_hash"] == "cfg123"
    assert first["code_version"] == "run-1" and first["export_code_version"]
    assert first["tags"] in (["walk"], ["run"]) and first["format"] == "mjlab-npz" and first["fps"] == 50.0
    assert {x["balance_group"] for x in rows} <= {"cc-by", "cc0", "cc-by-sa"}
    assert all(x["balance_group"] == x["license"] for x in rows)
    assert all(x["sample_key"] == sample_key(4, x["clip_id"]) for x in rows)
    clip_cols = [c for c in db.run_query(files_run.root, "DESCRIBE clips").column("column_name").to_pylist()
                 if c not in CLIP_BASE.names]
    assert set(clip_cols) <= set(table.column_names)  # metrics and any computed clip column (e.g. quality)
    params = json.loads(table.schema.metadata[PARQUET_METADATA_KEY])
    assert params == {"where": "jitter_m_s3 < 45", "sample": 5, "seed": 4, "balance": "license", "limit": None,
                      "val_frac": 0.25, "format": "mjlab-npz", "fps": 50.0, "layout": "folders",
                      "exporter_code_version": first["export_code_version"],
                      "quality_thresholds_hash": thresholds_hash(files_run.root)}
    header = (tmp_path / "m" / "manifest.csv").read_text().splitlines()[0].split(",")
    assert header == table.column_names
    assert '["walk"]' in (tmp_path / "m" / "manifest.csv").read_text().replace('""', '"')


def test_card_reports_counts_groups_licences_and_has_plots(files_run, tmp_path):
    r = export(files_run.root, None, "unitree-csv", tmp_path / "c", balance="license", val_frac=0.4, seed=1)
    rows = pq.read_table(r.manifest_parquet).to_pylist()
    text = (tmp_path / "c" / "README.md").read_text()
    n_val = sum(x["split"] == "val" for x in rows)
    n_train = len(rows) - n_val
    assert n_train and n_val
    dur = {s: sum(x["duration_s"] for x in rows if x["split"] == s) for s in ("train", "val")}
    assert f"| train | {n_train} | {dur['train']:.1f} |" in text and f"| val | {n_val} | {dur['val']:.1f} |" in text
    assert f"| all | {len(rows)} | {sum(dur.values()):.1f} |" in text
    frames = sum(x["num_frames"] for x in rows)
    videos = len({x["video_id"] for x in rows})
    assert f"| {frames} | {videos} |" in text
    params = json.loads(pq.read_schema(r.manifest_parquet).metadata[PARQUET_METADATA_KEY])
    assert command_line(params) in text
    assert "--format unitree-csv --fps 30 --balance license --val-frac 0.4 --seed 1 --dest DEST" in text
    for lic in ("cc-by", "cc0", "cc-by-sa"):
        n = sum(x["license"] == lic for x in rows)
        assert f"| {lic} | {n} |" in text
        g = r.group_sizes[lic]
        assert f"| {lic} | {g} | {r.quotas[lic]} |" in text
    assert "`jitter_m_s3`" in text and "![metric distributions](metrics.png)" in text
    for name in ("metrics.png", "duration.png"):
        data = (tmp_path / "c" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000 and b"Software" not in data


def test_empty_selection_still_writes_manifest_and_card(files_run, tmp_path):
    r = export(files_run.root, "jitter_m_s3 > 1e9", "gmr-pkl", tmp_path / "e", val_frac=0.1)
    assert r.files == [] and pq.read_table(r.manifest_parquet).num_rows == 0
    assert "0 clips matched" in (tmp_path / "e" / "README.md").read_text()
    assert all((tmp_path / "e" / n).is_file() for n in CARD_FILES)


# --- reproducibility and the export folder --------------------------------------------------------------------


def _tree(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_reexport_with_sample_balance_and_split_is_byte_identical_including_card_and_plots(files_run, tmp_path):
    kw = dict(sample=9, seed=3, balance="tags[1]", val_frac=0.3)
    a = export(files_run.root, "jitter_m_s3 >= 0", "isaaclab-npz", tmp_path / "a", **kw)
    b = export(files_run.root, "jitter_m_s3 >= 0", "isaaclab-npz", tmp_path / "b", **kw)
    ta, tb = _tree(a.dest), _tree(b.dest)
    assert ta.keys() == tb.keys() and {"README.md", "metrics.png", "duration.png", "manifest.parquet"} <= set(ta)
    assert [k for k in ta if ta[k] != tb[k]] == []
    assert len([k for k in ta if k.endswith(".npz")]) == 9
    c = export(files_run.root, "jitter_m_s3 >= 0", "isaaclab-npz", tmp_path / "a", **kw)  # into the same folder
    assert _tree(c.dest) == ta


def test_reexport_into_an_export_folder_replaces_it_and_foreign_folders_are_refused(files_run, tmp_path):
    dest = tmp_path / "d"
    export(files_run.root, None, "unitree-csv", dest, val_frac=0.5, seed=0)
    assert (dest / EXPORT_MARKER).is_file() and list((dest / "train").glob("*/motion.csv"))
    r = export(files_run.root, "clip_id = 'file-0003-t0-c1'", "unitree-csv", dest)  # no split, one clip
    assert sorted(p.name for p in dest.iterdir() if p.is_dir()) == ["file-0003-t0-c1"]
    assert not (dest / "train").exists() and not (dest / "val").exists() and r.files == ["file-0003-t0-c1/motion.csv"]
    r = export(files_run.root, "clip_id = 'file-0003-t0-c0'", "unitree-csv", dest, layout="flat")
    assert sorted(p.name for p in dest.iterdir() if p.suffix == ".csv") == ["file-0003-t0-c0.csv", "manifest.csv"]
    assert not [p for p in dest.iterdir() if p.is_dir()]  # the earlier clip folder is gone
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not empty"):
        export(files_run.root, None, "unitree-csv", foreign)
    assert (foreign / "notes.txt").read_text() == "keep me" and len(list(foreign.iterdir())) == 1
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        export(files_run.root, None, "unitree-csv", tmp_path / "file")


@pytest.mark.slow
def test_cli_flags_give_the_same_bytes_as_the_library_in_another_process(files_run, tmp_path):
    args = ["--where", "jitter_m_s3 < 60", "--sample", "6", "--seed", "8", "--balance", "license",
            "--val-frac", "0.3", "--limit", "5", "--format", "unitree-csv", "--fps", "25"]
    res = cli("export", str(files_run.root), *args, "--dest", str(tmp_path / "cli"))
    assert res.returncode == 0, res.stderr
    assert "exported 5 of 5 selected clips" in res.stdout and "train: " in res.stdout
    lib = export(files_run.root, "jitter_m_s3 < 60", "unitree-csv", tmp_path / "lib", sample=6, seed=8,
                 balance="license", val_frac=0.3, limit=5, fps=25)
    ta, tb = _tree(tmp_path / "cli"), _tree(lib.dest)
    assert ta.keys() == tb.keys() and [k for k in ta if ta[k] != tb[k]] == []  # PNGs too, across processes
    bad = cli("export", str(files_run.root), "--balance", "nope", "--format", "unitree-csv", "--dest",
              str(tmp_path / "bad"))
    assert bad.returncode == 2 and "--balance" in bad.stderr
    bad = cli("export", str(files_run.root), "--val-frac", "1.5", "--format", "unitree-csv", "--dest",
              str(tmp_path / "bad"))
    assert bad.returncode == 2 and "--val-frac" in bad.stderr


@pytest.mark.slow
def test_worker_processes_write_the_same_files_and_report_the_same_skips(model, tmp_path, monkeypatch):
    import catalog.export as export_module

    templates = motion_templates(model, tmp_path / "t", lengths=(31, 45))
    layout = new_run(tmp_path / "run")
    for k in range(6):
        publish(layout, f"file-{k:04d}", 2, templates=templates)
    (layout.root / layout.g1_motion_relpath("file-0002", "file-0002-t0-c1")).write_bytes(b"not an npz")
    monkeypatch.setattr(export_module, "MIN_CLIPS_PER_WORKER", 1)  # a pool even for 12 clips
    one = export(layout.root, None, "mjlab-npz", tmp_path / "one", val_frac=0.5, workers=1)
    two = export(layout.root, None, "mjlab-npz", tmp_path / "two", val_frac=0.5, workers=2)
    assert two.skipped == one.skipped and [c for c, _ in one.skipped] == ["file-0002-t0-c1"]
    assert two.files == one.files and len(one.files) == 11
    ta, tb = _tree(one.dest), _tree(two.dest)
    assert ta.keys() == tb.keys() and [k for k in ta if ta[k] != tb[k]] == []
    with pytest.raises(ConfigError, match="--workers"):
        export(layout.root, None, "mjlab-npz", tmp_path / "x", workers=0)


def test_metric_histograms_hide_only_real_tails():
    import numpy as np

    from catalog.card import histogram_range

    assert histogram_range(np.array([0.3, 0.9])) == (0.3, 0.9, 0)  # two clips: both shown
    tail = np.concatenate([np.linspace(0.0, 1.0, 1000), [50.0, 80.0]])
    lo, hi, outside = histogram_range(tail)
    assert lo < 0.01 and hi < 50.0 and outside >= 2  # far outliers in a large set are left out of the range
