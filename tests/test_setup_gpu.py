"""``g1forge setup gpu``: resumable verified downloads (loopback server), the chumpy-free SMPL converter, the plan."""

from __future__ import annotations

import hashlib
import pickle
import sys
import threading
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse

from cluster.cli import main as cli_main
from cluster.setup_gpu import (
    DETECTRON2_SHA,
    FOURDHUMANS_SHA,
    PHALP_SHA,
    SMPL_TARGETS,
    ChecksumMismatch,
    SetupOptions,
    convert_smpl_pickle,
    download_file,
    link_cache,
    plan,
    write_manifest,
)
from ingest.errors import InputNotFound, NetworkError
from pipeline.backends.fourdhumans import CACHE_FILES

PAYLOAD = bytes(range(256)) * 400  # 102400 bytes


class _Server:
    """Serves PAYLOAD at /file with Range support; ``cut_at`` closes the first response after that many bytes."""

    def __init__(self):
        self.cut_at: int | None = None
        self.ranges: list[str | None] = []
        self.payload = PAYLOAD
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                outer.ranges.append(rng)
                data, start = outer.payload, 0
                if rng:
                    start = int(rng.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if outer.cut_at is not None:
                    body, outer.cut_at = body[: outer.cut_at], None
                    self.wfile.write(body)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/file"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


def test_download_resumes_after_a_cut_and_never_writes_a_truncated_final_file(server, tmp_path):
    dest = tmp_path / "w" / "weights.pth"
    server.cut_at = 30000
    with pytest.raises(NetworkError, match="resume"):
        download_file(server.url, dest, timeout_s=10)
    assert not dest.exists()  # the truncated-file trap: only the .part holds the partial bytes
    part = dest.with_name("weights.pth.part")
    assert part.stat().st_size == 30000
    res = download_file(server.url, dest, sha256=hashlib.sha256(PAYLOAD).hexdigest(), timeout_s=10)
    assert server.ranges == [None, "bytes=30000-"]
    assert res.resumed_from == 30000 and dest.read_bytes() == PAYLOAD and not part.exists()
    again = download_file(server.url, dest, expected_size=len(PAYLOAD), timeout_s=10)
    assert again.skipped and len(server.ranges) == 2


def test_checksum_or_size_mismatch_is_rejected(server, tmp_path):
    dest = tmp_path / "x.bin"
    with pytest.raises(ChecksumMismatch, match="SHA-256"):
        download_file(server.url, dest, sha256="0" * 64, timeout_s=10)
    assert not dest.exists() and not dest.with_name("x.bin.part").exists()
    with pytest.raises(ChecksumMismatch, match="expected 5"):
        download_file(server.url, dest, expected_size=5, timeout_s=10)
    assert not dest.exists()


def _fake_chumpy(monkeypatch):
    """A module ``chumpy.ch`` with a ``Ch`` class whose value lives in ``x``, like chumpy's."""
    pkg = types.ModuleType("chumpy")
    ch = types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, x):
            self.x = np.asarray(x)
            self._dirty = {"cache": 1}

    Ch.__module__ = "chumpy.ch"
    Ch.__qualname__ = "Ch"
    ch.Ch = Ch
    pkg.ch = ch
    monkeypatch.setitem(sys.modules, "chumpy", pkg)
    monkeypatch.setitem(sys.modules, "chumpy.ch", ch)
    return Ch


def test_smpl_converter_needs_no_chumpy(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    truth = {
        "v_template": rng.normal(size=(6890, 3)),
        "shapedirs": rng.normal(size=(6890, 3, 10)),
        "posedirs": rng.normal(size=(20, 3, 207)),
        "J_regressor": scipy.sparse.random(24, 6890, density=0.001, format="csc", random_state=1),
        "weights": rng.random((6890, 24)),
        "f": rng.integers(0, 6890, (100, 3)),
        "kintree_table": np.vstack([np.arange(24) - 1, np.arange(24)]),
        "bs_type": "lrotmin",
    }
    with monkeypatch.context() as m:
        Ch = _fake_chumpy(m)
        official = dict(truth, v_template=Ch(truth["v_template"]), shapedirs=Ch(truth["shapedirs"]),
                        posedirs=Ch(truth["posedirs"]), weights=Ch(truth["weights"]))
        src = tmp_path / "basicModel_neutral_lbs_10_207_0_v1.0.0.pkl"
        src.write_bytes(pickle.dumps(official, protocol=2))
    assert "chumpy" not in sys.modules  # the converter must not need it
    dst = tmp_path / "out" / "SMPL_NEUTRAL.pkl"
    convert_smpl_pickle(src, dst)
    with open(dst, "rb") as fh:
        out = pickle.load(fh)  # loads with plain pickle: no chumpy class inside
    assert "chumpy" not in sys.modules
    for k in ("v_template", "shapedirs", "posedirs", "weights", "f", "kintree_table"):
        assert type(out[k]) is np.ndarray
        np.testing.assert_array_equal(out[k], truth[k])
    assert (out["J_regressor"] != truth["J_regressor"]).nnz == 0 and out["bs_type"] == "lrotmin"
    with pytest.raises(InputNotFound, match="smpl.is.tue.mpg.de"):
        convert_smpl_pickle(tmp_path / "nope.pkl", dst)


def test_plan_pins_commits_and_uses_argument_lists(tmp_path):
    opts = SetupOptions(checkout_dir=tmp_path / "4D-Humans", home=tmp_path / "home", python="/py",
                        torch_index="https://download.pytorch.org/whl/cu121", smpl_pkl=tmp_path / "smpl.pkl")
    steps = plan(opts)
    argvs = [s.argv for s in steps if s.argv is not None]
    assert all(isinstance(a, list) and all(isinstance(x, str) for x in a) for a in argvs)
    flat = [" ".join(a) for a in argvs]
    assert any(f"detectron2@{DETECTRON2_SHA}" in f for f in flat)
    assert any(f"checkout --detach {FOURDHUMANS_SHA}" in f for f in flat)
    assert any(f"PHALP@{PHALP_SHA}" in f and "--no-deps" in f for f in flat)
    assert not any("chumpy" in f for f in flat) and any("--index-url" in f for f in flat)
    assert any("torch>=2.1,<2.14" in f for f in flat)  # g1forge's own torch range
    pypi = next(a for a in argvs if "omegaconf==2.3.0" in a)
    assert "numpy<2" in pypi and "opencv-python<4.12" in pypi
    d2 = next(s for s in steps if s.argv and any("detectron2" in x for x in s.argv))
    assert d2.env["FORCE_CUDA"] == "1"  # a GPU build fails loudly rather than silently building CPU-only ops
    downloads = [s for s in steps if s.kind == "download"]
    assert any(str(s.args["dest"]).endswith("resnet50-19c8e357.pth") for s in downloads)
    assert len(downloads) == sum(1 for f in CACHE_FILES if f.url)
    assert [s.args["dst"] for s in steps if s.kind == "convert_smpl"] == [opts.home / t for t in SMPL_TARGETS]
    offline = plan(SetupOptions(checkout_dir=opts.checkout_dir, home=opts.home, cache_dir=tmp_path / "c",
                                skip_install=True))
    assert [s.kind for s in offline] == ["link_cache"]


def test_dry_run_prints_the_plan_and_runs_nothing(tmp_path, capsys):
    rc = cli_main(["setup", "gpu", "--dry-run", "--home", str(tmp_path / "h"), "--checkout-dir",
                   str(tmp_path / "co")])
    out = capsys.readouterr().out
    assert rc == 0 and "dry run" in out and FOURDHUMANS_SHA in out and "$ " in out
    assert not (tmp_path / "h").exists() and not (tmp_path / "co").exists()


def test_cache_dir_is_verified_against_its_manifest_then_linked(tmp_path):
    cache = tmp_path / "cache"
    for f in CACHE_FILES:
        (cache / f.rel_path).parent.mkdir(parents=True, exist_ok=True)
        (cache / f.rel_path).write_bytes(b"weights of " + f.rel_path.encode())
    write_manifest(cache)
    home = tmp_path / "home"
    lines = link_cache(cache, home)
    assert len(lines) == 4 and (home / ".cache/phalp").resolve() == (cache / ".cache/phalp").resolve()
    assert (home / ".cache/torch").resolve() == (cache / ".cache/torch").resolve()  # HMAR's ResNet-50
    assert (home / CACHE_FILES[5].rel_path).is_file()
    victim = cache / CACHE_FILES[6].rel_path
    victim.write_bytes(victim.read_bytes()[:5])  # truncated
    with pytest.raises(InputNotFound, match="truncated or replaced"):
        link_cache(cache, tmp_path / "home2")


def test_local_sources_venv_and_cpu_build(tmp_path, capsys):
    """--src installs from exported trees (offline), --venv makes the interpreter, --cpu builds without CUDA."""
    from cluster.setup_gpu import PROJECT_ROOT, SRC_TREES, check_src, execute

    src = tmp_path / "src"
    for name, sha in SRC_TREES.items():
        (src / name).mkdir(parents=True)
        (src / name / "setup.py").write_text("")
        (src / name / ".g1forge_commit").write_text(sha + "\n")
    assert check_src(src) == []
    venv = tmp_path / "venv"
    opts = SetupOptions(checkout_dir=src / "4D-Humans", home=tmp_path / "home", src_dir=src, venv=venv, cpu=True,
                        jobs=1, skip_weights=True)
    steps = plan(opts)
    assert steps[0].argv[-3:] == ["-m", "venv", str(venv)]
    argvs = [s.argv for s in steps if s.argv]
    assert all(a[0] == str(venv / "bin" / "python") for a in argvs[1:])
    flat = [" ".join(a) for a in argvs]
    assert not any("git" in f.split() or "git+" in f for f in flat)  # nothing from GitHub
    assert any(f.endswith(f"-e {PROJECT_ROOT}") for f in flat)  # g1forge itself in the stack's venv
    d2 = next(s for s in steps if s.argv and str(src / "detectron2") in s.argv)
    assert d2.env == {"FORCE_CUDA": "0", "MAX_JOBS": "1"} and "FORCE_CUDA=0 MAX_JOBS=1" in d2.render()
    assert any(f.endswith(f"--no-deps -e {src / '4D-Humans'}") for f in flat)
    (src / "PHALP" / ".g1forge_commit").write_text("0" * 40)
    (src / "detectron2" / "setup.py").unlink()
    problems = check_src(src)
    assert len(problems) == 2 and "not the pinned" in " ".join(problems)
    with pytest.raises(InputNotFound, match="not a source tree"):
        execute([s for s in steps if s.kind == "check_src"], log=lambda line: None)
    rc = cli_main(["setup", "gpu", "--dry-run", "--src", str(src), "--venv", str(venv), "--cpu", "--skip-weights",
                   "--home", str(tmp_path / "h")])
    assert rc == 0 and "FORCE_CUDA=0" in capsys.readouterr().out and not venv.exists()
