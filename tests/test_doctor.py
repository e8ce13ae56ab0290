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
    assert len(weights) == len(CACHE_FILES) - 3 - 2 and str(home) in weights[0].what
    import torch

    if not torch.cuda.is_available():
        assert any("no CUDA GPU" in p.what for p in probs)
