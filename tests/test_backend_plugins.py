"""The backend plugin hook: ``$G1FORGE_BACKEND_MODULES`` names modules that register more pose backends."""

from __future__ import annotations

import sys
import textwrap
import time

import pytest

from ingest.errors import ConfigError
from pipeline.backends import base

PLUGIN = textwrap.dedent('''
    from pipeline.backends.base import PoseBackend, register_backend

    @register_backend("{name}")
    class PluginBackend(PoseBackend):
        version = "plugin-1"
        needs_video = False

        def process(self, item, video_path):
            raise NotImplementedError
''')


def write_plugin(folder, module: str, backend_name: str) -> None:
    import importlib

    (folder / f"{module}.py").write_text(PLUGIN.format(name=backend_name))
    importlib.invalidate_caches()  # the folder's listing may be cached from before the file existed


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """A folder on sys.path; the registry and the imported plugin modules are restored afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(base.BACKEND_MODULES_ENV, raising=False)
    base.available_backends()  # the built-ins register once per process: keep them in the saved registry
    saved = dict(base._REGISTRY)
    yield tmp_path
    base._REGISTRY.clear()
    base._REGISTRY.update(saved)
    for mod in [m for m in sys.modules if m.startswith("g1forge_test_plugin")]:
        del sys.modules[mod]


def test_a_backend_in_a_module_named_by_the_environment_is_found_and_created(plugin_dir, monkeypatch):
    write_plugin(plugin_dir, "g1forge_test_plugin_a", "test-plugin-a")
    with pytest.raises(ConfigError, match="unknown backend 'test-plugin-a'"):
        base.backend_class("test-plugin-a")  # not importable by name until the variable says so

    monkeypatch.setenv(base.BACKEND_MODULES_ENV, " g1forge_test_plugin_b , g1forge_test_plugin_a")
    write_plugin(plugin_dir, "g1forge_test_plugin_b", "test-plugin-b")
    cls = base.backend_class("test-plugin-a")
    assert cls.name == "test-plugin-a" and cls.version == "plugin-1"
    assert base.backend_class("test-plugin-b").name == "test-plugin-b"  # every listed module was imported
    assert isinstance(base.create_backend("test-plugin-a"), base.PoseBackend)
    assert {"test-plugin-a", "test-plugin-b", "phalp-pkl", "mediapipe"} <= set(base.available_backends())
    # built-in names never import plugins, so a broken plugin cannot break them
    monkeypatch.setenv(base.BACKEND_MODULES_ENV, "g1forge_test_plugin_nowhere")
    assert base.backend_class("phalp-pkl").name == "phalp-pkl"


def test_an_unknown_name_still_errors_listing_the_known_backends(plugin_dir, monkeypatch):
    write_plugin(plugin_dir, "g1forge_test_plugin_c", "test-plugin-c")
    monkeypatch.setenv(base.BACKEND_MODULES_ENV, "g1forge_test_plugin_c")
    with pytest.raises(ConfigError) as info:
        base.backend_class("no-such-backend")
    msg = str(info.value)
    assert "unknown backend 'no-such-backend'" in msg
    assert "phalp-pkl" in msg and "test-plugin-c" in msg  # the plugin's backend is listed among the choices


def test_a_plugin_module_that_cannot_be_imported_is_named_with_the_fix(plugin_dir, monkeypatch):
    monkeypatch.setenv(base.BACKEND_MODULES_ENV, "g1forge_test_plugin_nowhere")
    with pytest.raises(ConfigError, match="g1forge_test_plugin_nowhere.*PYTHONPATH"):
        base.backend_class("anything")


def test_a_subprocess_inherits_the_hook_through_its_environment(plugin_dir, monkeypatch):
    """What a Ray worker of a local cluster sees: the driver's environment, not its sys.path."""
    import os
    import subprocess

    write_plugin(plugin_dir, "g1forge_test_plugin_d", "test-plugin-d")
    env = {**os.environ, base.BACKEND_MODULES_ENV: "g1forge_test_plugin_d",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(plugin_dir), os.environ.get("PYTHONPATH")]))}
    code = "from pipeline.backends.base import backend_class; print(backend_class('test-plugin-d').version)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "plugin-1"


def test_the_benchmark_stand_in_loads_through_the_hook_and_returns_phalp_pkl_s_result(tmp_path, monkeypatch):
    """``bench/slow_pose_backend.py`` (the GPU-idle benchmark's slow pose stage) is a plugin like any other."""
    from pathlib import Path

    import numpy as np

    from ingest.items import VideoItem
    from phalp_factory import make_phalp_pickle

    bench_dir = Path(__file__).resolve().parents[1] / "bench"
    monkeypatch.syspath_prepend(str(bench_dir))
    monkeypatch.setenv(base.BACKEND_MODULES_ENV, "slow_pose_backend")
    base.available_backends()
    saved = dict(base._REGISTRY)
    try:
        cls = base.backend_class("bench-slow-pose")
        assert cls.gpus_per_worker == 1.0 and not cls.light_pose and not cls.needs_video
        pkl = make_phalp_pickle(tmp_path / "v.pkl", 1, num_frames=40, seed=3).path
        item = VideoItem(video_id="file-0", uri=str(pkl), kind="file")
        slow = base.create_backend("bench-slow-pose", sleep_s=0.05)
        t0 = time.perf_counter()
        got = slow.process(item, None)
        assert time.perf_counter() - t0 >= 0.05
        want = base.create_backend("phalp-pkl").process(item, None)
        assert got.num_frames == want.num_frames == 40 and len(got.tracks) == len(want.tracks) == 1
        np.testing.assert_array_equal(got.tracks[0].joints_cam_m, want.tracks[0].joints_cam_m)
        with pytest.raises(ConfigError, match="sleep_s"):
            base.create_backend("bench-slow-pose", sleep_s=-1)
    finally:
        base._REGISTRY.clear()
        base._REGISTRY.update(saved)
        sys.modules.pop("slow_pose_backend", None)
