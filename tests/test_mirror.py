"""Runs whose output is a URI: a local staging folder mirrored through pyarrow's filesystem, resume from the
remote's markers, and reading the remote catalog back (a ``file://`` URI stands in for an object store)."""

from __future__ import annotations

import shutil

import pytest

from catalog.db import run_query
from catalog.mirror import Mirror, is_remote, local_run_folder
from cluster.config import RunConfig
from cluster.run import ExecOptions, run
from phalp_factory import make_phalp_pickle
from run_helpers import catalog_snapshot, cli

pytestmark = pytest.mark.slow

CONFIG = RunConfig(backend="phalp-pkl")


def test_uris_are_mirrored_and_plain_paths_are_not():
    assert is_remote("s3://bucket/run") and is_remote("gs://b/r") and is_remote("file:///tmp/x")
    assert not is_remote("/tmp/x") and not is_remote("runs/demo")


def test_a_run_to_a_uri_mirrors_every_video_and_resumes_from_the_remote(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        make_phalp_pickle(folder / f"v{i}.pkl", 1, num_frames=90, seed=i)
    (folder / "bad.pkl").write_bytes(b"nope")
    remote = tmp_path / "bucket" / "run"
    uri = f"file://{remote}"
    lst = tmp_path / "videos.txt"
    lst.write_text("\n".join(str(p) for p in sorted(folder.iterdir())) + "\n")
    staging = tmp_path / "staging"
    report = run([], [f"file://{lst}"], uri, CONFIG, ExecOptions(progress=False, staging_dir=str(staging)))
    assert report.counts == {"ok": 3, "failed": 1} and report.out_dir == uri and report.unpublished == 0
    # the remote is a complete run folder: markers, fragments, motions, info, views, stats
    assert len(Mirror(uri).done_ids(CONFIG.config_hash())) == 4
    assert (remote / "g1forge.json").is_file() and (remote / "catalog.duckdb").is_file()
    assert len(list(remote.glob("data/*/*/clips/*.g1.npz"))) == 3 and list(remote.glob("state/runs/*.json"))
    assert catalog_snapshot(remote) == catalog_snapshot(staging)

    # a new machine: empty staging, the remote says everything is done
    shutil.rmtree(staging)
    again = run([], [str(lst)], uri, CONFIG, ExecOptions(progress=False, staging_dir=str(staging)))
    assert again.processed == 0 and again.already_done == 4
    # a video whose remote marker is gone (a copy cut short) is redone, nothing else
    victim = next(remote.glob("data/*/*/_done.*"))
    victim.unlink()
    redo = run([], [str(lst)], uri, CONFIG, ExecOptions(progress=False, staging_dir=str(staging)))
    assert redo.processed == 1 and len(Mirror(uri).done_ids(CONFIG.config_hash())) == 4

    # reading the remote: query and status go through a local copy of its catalog
    local = local_run_folder(uri)
    assert run_query(local, "SELECT count(*) AS n FROM videos").to_pylist() == [{"n": 4}]
    st = cli("status", uri)
    assert st.returncode == 0 and "ok 3" in st.stdout, st.stderr
    bad = cli("compact", uri)
    assert bad.returncode == 2 and "local run folder" in bad.stderr
