"""``g1forge doctor``: every backend reported, exact fixes for what is missing, non-zero only with --strict."""

from __future__ import annotations

import json

from cluster import doctor
from cluster.cli import main as cli_main
from pipeline.backends.base import available_backends
from pipeline.backends.fourdhumans import CACHE_FILES
from tests.fourdhumans_standin import write_standin_checkout


def test_every_backend_is_reported_and_strict_decides_the_exit_code(capsys, monkeypatch):
    monkeypatch.delenv("G1FORGE_4DHUMANS_DIR", raising=False)
    assert cli_main(["doctor"]) == 0
    out = capsys.readouterr().out
    for name in available_backends():
        assert f"{name}: " in out
    assert "4dhumans: cannot run here" in out and "G1FORGE_4DHUMANS_DIR" in out
    assert cli_main(["doctor", "--strict", "4dhumans"]) == 1
    capsys.readouterr()
    assert cli_main(["doctor", "--strict", "phalp-pkl", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["backend"] == "phalp-pkl"


def test_4dhumans_fixes_name_packages_files_and_gpu(tmp_path, monkeypatch):
    home = tmp_path / "home"
    for f in CACHE_FILES[:3]:
        (home / f.rel_path).parent.mkdir(parents=True, exist_ok=True)
        (home / f.rel_path).write_bytes(b"x")
    env = {"G1FORGE_4DHUMANS_DIR": str(write_standin_checkout(tmp_path / "co")), "G1FORGE_4DHUMANS_HOME": str(home)}
    monkeypatch.setattr(doctor, "_has", lambda m: m not in ("hmr2", "detectron2"))
    probs, _ = doctor._check_4dhumans(env)
    text = "\n".join(f"{p.what} | {p.fix}" for p in probs)
    assert "'hmr2' is not installed" in text and "'detectron2' is not installed" in text
    assert "'torch' is not installed" not in text and "track.py" not in text
    smpl = [p for p in probs if p.what.startswith("SMPL model missing")]
    assert len(smpl) == 2 and all("--smpl-pkl" in p.fix for p in smpl)
    weights = [p for p in probs if p.what.startswith("weight file missing")]
    runtime = [f for f in CACHE_FILES if f.needed_for in ("all", "hmr2")]  # not the archive, not texture-only
    written = sum(1 for f in CACHE_FILES[:3] if f.needed_for == "all")
    assert len(weights) == len(runtime) - written - 2 and str(home) in weights[0].what
    assert not any("hmr2_data.tar.gz" in p.what for p in probs)
    import torch

    if not torch.cuda.is_available():
        assert any("no CUDA GPU" in p.what for p in probs)


def test_4dhumans_on_cpu_with_standins_is_runnable(tmp_path, monkeypatch):
    """device=cpu: no GPU is a note; a home of generated stand-ins is named as such."""
    home = tmp_path / "home"
    for f in CACHE_FILES:
        (home / f.rel_path).parent.mkdir(parents=True, exist_ok=True)
        (home / f.rel_path).write_bytes(b"x")
    (home / doctor.STANDIN_NOTICE).write_text("generated")
    env = {"G1FORGE_4DHUMANS_DIR": str(write_standin_checkout(tmp_path / "co")), "G1FORGE_4DHUMANS_HOME": str(home),
           "G1FORGE_4DHUMANS_DEVICE": "cpu"}
    monkeypatch.setattr(doctor, "_has", lambda m: True)
    monkeypatch.setattr(doctor.ctypes.util, "find_library", lambda name: "libEGL.so.1")
    probs, notes = doctor._check_4dhumans(env)
    import torch

    if not torch.cuda.is_available():
        assert probs == [] and any("CPU only" in n for n in notes)
    assert any("STAND-IN" in n for n in notes)
