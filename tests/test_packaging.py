"""Package-level contracts: light imports, the console script, the configuration hash."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

PACKAGES = ("ingest", "pipeline", "catalog", "cluster")


def test_importing_packages_does_not_import_torch_or_ray():
    code = (
        "import sys, importlib\n"
        "import ingest, pipeline, catalog, cluster\n"
        "import ingest.sources, ingest.ids, ingest.probe, ingest.download, ingest.decode\n"
        "import pipeline.clips, pipeline.world, pipeline.quality, pipeline.process, pipeline.backends.base\n"
        "import pipeline.backends.mediapipe_backend, pipeline.backends.phalp_pkl\n"
        "import catalog.db, catalog.writer, cluster.run, cluster.cli, cluster.stages, cluster.pipeline, cluster.config\n"
        "heavy = [m for m in ('torch', 'ray', 'mediapipe', 'av', 'yt_dlp', 'jax') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"importing the packages pulled in: {out}"


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "cluster.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "run" in out.stdout and "query" in out.stdout and "status" in out.stdout


def test_config_hash_ignores_execution_but_not_results():
    from cluster.config import RunConfig

    a = RunConfig()
    b = RunConfig()
    b.download.retries = 9  # how to download does not change results
    b.download.socket_timeout_s = 1.0
    assert a.config_hash() == b.config_hash()
    c = RunConfig(clip=dataclasses.replace(RunConfig().clip, max_clip_s=7.0))
    d = RunConfig(backend_options={"focal_px": 1000.0})
    assert len({a.config_hash(), c.config_hash(), d.config_hash()}) == 3
    assert RunConfig.from_dict(c.to_dict()).config_hash() == c.config_hash()


def test_config_from_dict_reports_unknown_keys():
    from cluster.config import RunConfig
    from ingest.errors import ConfigError

    with pytest.raises(ConfigError, match="bad configuration"):
        RunConfig.from_dict({"clip": {"no_such_setting": 1}})
    with pytest.raises(ConfigError, match="min_clip_s"):
        RunConfig.from_dict({"clip": {"min_clip_s": -1.0}})


def test_unknown_backend_names_the_choices():
    from ingest.errors import ConfigError
    from pipeline.backends.base import create_backend

    with pytest.raises(ConfigError, match="mediapipe") as exc:
        create_backend("openpose")
    assert "phalp-pkl" in str(exc.value)


def test_errors_carry_reason_codes():
    from ingest.errors import NoPerson, NetworkError, classify_exception

    assert NoPerson("empty").catalog_reason() == "no_person: empty"
    assert NoPerson().status == "filtered" and NetworkError().retryable
    wrapped = classify_exception(ValueError("boom"))
    assert wrapped.catalog_reason() == "internal: ValueError: boom" and wrapped.status == "failed"
    assert classify_exception(OSError(28, "No space left")).reason == "write"


def test_config_hash_follows_environment_a_backend_declares(monkeypatch):
    from cluster.config import RunConfig
    from pipeline.smpl_joints import ENV_SMPL_DIR

    monkeypatch.delenv(ENV_SMPL_DIR, raising=False)
    plain_pkl, plain_mp = RunConfig(backend="phalp-pkl").config_hash(), RunConfig().config_hash()
    monkeypatch.setenv(ENV_SMPL_DIR, "/models/smpl")
    assert RunConfig(backend="phalp-pkl").config_hash() != plain_pkl  # SMPL joints change phalp-pkl results
    assert RunConfig().config_hash() == plain_mp  # and nothing of mediapipe's


def test_the_suite_runs_with_the_dependencies_pyproject_asks_for():
    """Every direct dependency (core and ``dev``) is installed at a version pyproject.toml allows: a suite run in
    a stale environment would otherwise pass or fail for reasons a fresh install does not have."""
    from conftest import installed_requirements

    wrong = [f"{name} {version or '(missing)'}" for name, version, ok in installed_requirements() if not ok]
    assert not wrong, f"installed versions outside pyproject.toml's ranges: {wrong}; run pip install -e '.[dev]'"
    assert {"duckdb", "mediapipe", "numpy", "pyarrow", "ray", "torch"} <= {n for n, _, _ in installed_requirements()}
