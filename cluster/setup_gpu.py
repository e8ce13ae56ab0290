"""``g1forge setup gpu``: install the 4D-Humans GPU stack at pinned commits, fetch and verify its weights.

Steps (``--dry-run`` prints them, nothing runs):

1. pip installs, each a ``subprocess`` argument list (never a shell string): torch/torchvision (``--torch-index``
   picks the CUDA build), detectron2 from git at a pinned commit, the 4D-Humans checkout cloned and checked out at
   6ec7965 and installed editable with ``--no-deps``, PHALP from git at 96f7e6c with ``--no-deps``, then their
   PyPI dependencies listed explicitly (so pip never tries the broken git ``chumpy`` both setup.py files name).
   ``--texture`` adds the neural_renderer fork (not pinned: no commit recorded, the fork's default branch).
2. Weights into the cache home (``--home``; default ``$G1FORGE_4DHUMANS_HOME`` or the real home): each file
   downloaded to ``<name>.part`` with HTTP Range resume, its size checked against the server's length (and a
   SHA-256 when known), then renamed into place, so an interrupted download never leaves a truncated file at the
   path the upstream code checks. ``hmr2_data.tar.gz`` is extracted. A manifest (size + SHA-256 of every file)
   is written beside them.
3. ``--smpl-pkl`` (the official ``basicModel_neutral_lbs_10_207_0_v1.0.0.pkl``, licence from smpl.is.tue.mpg.de)
   is converted to a plain-numpy pickle without chumpy and placed where both caches expect ``SMPL_NEUTRAL.pkl``.

``--cache-dir DIR`` instead points at a pre-provisioned folder (offline nodes): its files are verified (against
its manifest when present) and ``.cache/4DHumans``, ``.cache/phalp``, ``.cache/torch`` and ``.torch/iopath_cache``
of the home are linked to it; nothing is downloaded.

``--src DIR`` installs from local source folders instead of git URLs (nodes without GitHub access): ``DIR`` holds
``detectron2/``, ``4D-Humans/`` and ``PHALP/`` at the pinned commits (``git archive`` / ``git worktree`` of each);
a ``.g1forge_commit`` file in a folder, when present, must name the pinned commit. ``--venv DIR`` creates a
separate virtual environment, installs into it, and installs g1forge itself there too (the backend imports the
stack in-process). ``--cpu`` builds detectron2 without CUDA (``FORCE_CUDA=0``; tests and benchmarks on CPU
machines); otherwise ``FORCE_CUDA=1``, so a build where torch sees no GPU (a container build) fails loudly instead
of silently producing CPU-only ops. ``--jobs N`` sets ``MAX_JOBS`` for the detectron2 compile.

What was found installing it for real (see docs/gpu.md): PyPI has no CPU build of torchvision (its wheels link
``libc10_cuda.so``), so a CPU machine without the PyTorch index installs PyPI's CUDA torch, which runs on the CPU;
torch is pinned to g1forge's range (``<2.14``), an unpinned install upgraded it past what g1forge supports;
detectron2's own requirements pull omegaconf 2.3.1 and numpy 2, and opencv-python >= 4.12 requires numpy >= 2, so
the PyPI step pins ``omegaconf==2.3.0``, ``numpy<2`` and ``opencv-python<4.12`` explicitly; setuptools >= 81 has
no ``pkg_resources``, which detectron2's ``model_zoo`` imports (``setuptools<81``).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ingest.errors import ConfigError, DownloadError, G1ForgeError, InputNotFound, NetworkError
from pipeline.backends.fourdhumans import CACHE_FILES, ENV_CHECKOUT, ENV_CACHE_HOME, default_cache_home

FOURDHUMANS_REPO = "https://github.com/shubham-goel/4D-Humans"
FOURDHUMANS_SHA = "6ec79656a23c33237c724742ca2a0ec00b398b53"
PHALP_REPO = "https://github.com/brjathu/PHALP"
PHALP_SHA = "96f7e6c09fb858ec3f597d59246c151ab4394bc3"
#: newest detectron2 commit in the snapshot we could read (its last tag, v0.6, predates torch 2)
DETECTRON2_SHA = "02b5c4e295e990042a714712c21dc79b731e8833"
NMR_REPO = "https://github.com/shubham-goel/NMR"

#: torch within g1forge's own range (pyproject: >=2.1,<2.14); torchvision follows (each release pins one torch).
TORCH_SPECS = ("torch>=2.1,<2.14", "torchvision")

#: PyPI dependencies of hmr2 and PHALP, without chumpy (broken on Python 3.11 / numpy >= 1.24) and the git-only
#: packages installed above. omegaconf 2.3.0: 2.4 rejects Human4DConfig's Tuple[int] default of length 2 (and
#: detectron2's requirements pull 2.3.1). numpy<2: g1forge's pin (mediapipe); opencv-python 4.12+ needs numpy 2.
PYPI_DEPS = (
    "pytorch-lightning", "smplx==0.1.28", "pyrender", "opencv-python<4.12", "yacs", "scikit-image", "einops", "timm",
    "webdataset", "dill", "pandas", "gdown", "joblib", "scikit-learn", "rich", "scenedetect[opencv]",
    "hydra-core==1.3.2", "omegaconf==2.3.0", "av", "pytube", "PyOpenGL", "pycocotools", "numpy<2",
    "setuptools<81",  # detectron2's model_zoo imports pkg_resources, gone from setuptools 81
)
#: folder names under ``--src`` and the commit each must be at
SRC_TREES = {"detectron2": DETECTRON2_SHA, "4D-Humans": FOURDHUMANS_SHA, "PHALP": PHALP_SHA}
PROJECT_ROOT = Path(__file__).resolve().parents[1]

MANIFEST_NAME = "g1forge_manifest.json"
SMPL_TARGETS = (".cache/4DHumans/data/smpl/SMPL_NEUTRAL.pkl", ".cache/phalp/3D/models/smpl/SMPL_NEUTRAL.pkl")
LINKED_DIRS = (".cache/4DHumans", ".cache/phalp", ".cache/torch", ".torch/iopath_cache")


class ChecksumMismatch(DownloadError):
    """A downloaded file whose size or SHA-256 is not what was expected (it is deleted, never installed)."""

    reason = "checksum_mismatch"


# -- downloads ---------------------------------------------------------------------------------------------


@dataclass
class DownloadResult:
    """path: the verified file. size_bytes, sha256: what it holds. resumed_from: bytes already in ``.part``."""

    path: Path
    size_bytes: int
    sha256: str
    resumed_from: int = 0
    skipped: bool = False


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def download_file(url: str, dest: str | Path, *, expected_size: int | None = None, sha256: str | None = None,
                  timeout_s: float = 60.0, chunk_bytes: int = 1 << 20) -> DownloadResult:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming a previous partial download (HTTP Range).

    The final path is only written by an atomic rename after the size (server length, ``expected_size``) and the
    SHA-256 (when given) check out. A connection cut keeps the ``.part`` and raises :class:`NetworkError`
    (run again to resume); a size/checksum mismatch deletes it and raises :class:`ChecksumMismatch`.
    An existing ``dest`` that passes the checks is kept (``skipped``).
    """
    dest = Path(dest)
    if dest.is_file() and (expected_size is None or dest.stat().st_size == expected_size):
        digest = sha256_of(dest)
        if sha256 is None or digest == sha256:
            return DownloadResult(dest, dest.stat().st_size, digest, skipped=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout_s)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send: the .part may already be complete
            resp = None
        else:
            raise DownloadError(f"{url} answered HTTP {exc.code}; check the URL or fetch the file by hand into "
                                f"{dest}", reason="http_error") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise NetworkError(f"cannot reach {url} ({exc}); check the network or use --cache-dir") from exc
    total = None
    resumed_from = 0
    if resp is not None:
        with resp:
            if resp.status == 206:
                resumed_from = have
                crange = resp.headers.get("Content-Range", "")
                total = int(crange.rsplit("/", 1)[1]) if "/" in crange and not crange.endswith("*") else None
                mode = "ab"
            else:  # 200: the server ignored the range, start over
                length = resp.headers.get("Content-Length")
                total = int(length) if length else None
                mode = "wb"
            try:
                with open(part, mode) as fh:
                    while block := resp.read(chunk_bytes):
                        fh.write(block)
            except Exception as exc:  # a cut connection: http.client.IncompleteRead, ConnectionResetError, timeout
                raise NetworkError(f"download of {url} was cut after {part.stat().st_size} bytes "
                                   f"({type(exc).__name__}); run the same command again to resume") from exc
    size = part.stat().st_size
    if total is not None and size < total:
        raise NetworkError(f"download of {url} stopped at {size} of {total} bytes; run the same command again "
                           "to resume")
    want = expected_size if expected_size is not None else total
    if want is not None and size != want:
        part.unlink()
        raise ChecksumMismatch(f"{url}: got {size} bytes, expected {want}; the partial file was deleted, run again")
    digest = sha256_of(part)
    if sha256 is not None and digest != sha256:
        part.unlink()
        raise ChecksumMismatch(f"{url}: SHA-256 {digest} is not the expected {sha256}; the file was deleted (a "
                               "changed or corrupted upstream file): check the source before retrying")
    os.replace(part, dest)
    return DownloadResult(dest, size, digest, resumed_from=resumed_from)


# -- SMPL conversion -----------------------------------------------------------------------------------------


class _ChumpyStub:
    """Receives the pickled state of any chumpy object; :func:`_plain` turns it into numpy."""

    def __setstate__(self, state):
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.__dict__["_state"] = state


class _NoChumpyUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module == "chumpy" or module.startswith("chumpy."):
            return _ChumpyStub
        return super().find_class(module, name)


def _plain(obj):
    import numpy as np  # noqa: PLC0415

    if isinstance(obj, _ChumpyStub):
        for key in ("x", "_state"):  # chumpy keeps a Ch's value in 'x'
            if key in obj.__dict__:
                return np.asarray(_plain(obj.__dict__[key]))
        raise ConfigError(f"a chumpy object in the SMPL file has no value ('x'); fields {sorted(obj.__dict__)}")
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    return obj


def convert_smpl_pickle(src: str | Path, dst: str | Path) -> dict:
    """Convert the official (chumpy, Python 2) SMPL pickle to a plain pickle of numpy / scipy objects.

    chumpy is never imported: its classes are stubbed and their values (``x``) become numpy arrays. Written via a
    temporary file and renamed. Returns the converted dict. Security: unpickling runs code; use the official file.
    """
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise InputNotFound(f"{src} does not exist: download basicModel_neutral_lbs_10_207_0_v1.0.0.pkl from "
                            "https://smpl.is.tue.mpg.de (after accepting its licence) and pass it with --smpl-pkl")
    with open(src, "rb") as fh:
        try:
            data = _plain(_NoChumpyUnpickler(fh, encoding="latin1").load())
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
            raise ConfigError(f"{src} is not a readable SMPL pickle ({exc}); give the official SMPL file") from exc
    if not isinstance(data, dict) or "v_template" not in data:
        raise ConfigError(f"{src} does not look like an SMPL model (no 'v_template'); give the official SMPL file")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    with open(tmp, "wb") as fh:
        pickle.dump(data, fh, protocol=4)
    os.replace(tmp, dst)
    return data


# -- the plan ------------------------------------------------------------------------------------------------


@dataclass
class Step:
    """One action: ``argv`` for a subprocess, or a Python action named by ``kind`` with its ``args``."""

    description: str
    argv: list[str] | None = None
    kind: str = "run"
    args: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)

    def render(self) -> str:
        if self.argv is not None:
            env = "".join(f"{k}={v} " for k, v in self.env.items())
            return f"{self.description}\n    $ {env}{subprocess.list2cmdline(self.argv)}"
        return f"{self.description}\n    ({self.kind}: {', '.join(f'{k}={v}' for k, v in self.args.items())})"


@dataclass
class SetupOptions:
    """checkout_dir: where 4D-Humans is cloned. home: the cache home. python: the interpreter to install into.
    torch_index: pip index for the CUDA torch build (e.g. https://download.pytorch.org/whl/cu121), None = PyPI.
    smpl_pkl: the official SMPL file to convert. texture: also install neural_renderer (texture predictor).
    cache_dir: a pre-provisioned cache home to verify and link instead of installing weights.
    skip_install / skip_weights: leave out those parts.
    src_dir: local source folders (``detectron2/``, ``4D-Humans/``, ``PHALP/``) instead of git URLs.
    venv: create this virtual environment and install into it (g1forge included); overrides ``python``.
    cpu: build detectron2 without CUDA (FORCE_CUDA=0). jobs: MAX_JOBS of the detectron2 build (None: unset)."""

    checkout_dir: Path
    home: Path
    python: str = sys.executable
    torch_index: str | None = None
    smpl_pkl: Path | None = None
    texture: bool = False
    cache_dir: Path | None = None
    skip_install: bool = False
    skip_weights: bool = False
    src_dir: Path | None = None
    venv: Path | None = None
    cpu: bool = False
    jobs: int | None = None


def venv_python(venv: Path) -> Path:
    return Path(venv) / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def plan(opts: SetupOptions) -> list[Step]:
    """The steps ``g1forge setup gpu`` runs, in order."""
    py, steps = opts.python, []
    if opts.venv is not None and not opts.skip_install:
        py = str(venv_python(opts.venv))
        if not Path(py).exists():
            steps.append(Step(f"create the virtual environment {opts.venv}",
                              [sys.executable, "-m", "venv", str(opts.venv)]))
    pip = [py, "-m", "pip", "install"]
    if not opts.skip_install:
        torch_argv = [*pip, *TORCH_SPECS]
        if opts.torch_index:
            torch_argv += ["--index-url", opts.torch_index]
        steps.append(Step("PyTorch" + (" (CUDA build)" if not opts.cpu else ""), torch_argv))
        if opts.venv is not None:
            steps.append(Step("g1forge itself, editable from this checkout (the backend imports the stack in-process)",
                              [*pip, "-e", str(PROJECT_ROOT)]))
        build_env = {"FORCE_CUDA": "0" if opts.cpu else "1"}
        if opts.jobs:
            build_env["MAX_JOBS"] = str(int(opts.jobs))
        src = Path(opts.src_dir).resolve() if opts.src_dir is not None else None
        if src is not None:
            steps.append(Step(f"check the source folders under {src} (pinned commits)", kind="check_src",
                              args={"src_dir": src}))
        d2 = str(src / "detectron2") if src else f"git+https://github.com/facebookresearch/detectron2@{DETECTRON2_SHA}"
        steps.append(Step(f"detectron2 at {DETECTRON2_SHA[:7]} (compiles its C++{'' if opts.cpu else '/CUDA'} ops "
                          "against the torch above)", [*pip, "--no-build-isolation", d2], env=build_env))
        if src is None:
            if not (opts.checkout_dir / ".git").exists():
                steps.append(Step("clone 4D-Humans", ["git", "clone", FOURDHUMANS_REPO, str(opts.checkout_dir)]))
            steps.append(Step(f"4D-Humans at {FOURDHUMANS_SHA[:7]}",
                              ["git", "-C", str(opts.checkout_dir), "checkout", "--detach", FOURDHUMANS_SHA]))
        steps.append(Step("hmr2 from the checkout, without its git chumpy dependency",
                          [*pip, "--no-deps", "-e", str(opts.checkout_dir)]))
        steps.append(Step(f"PHALP at {PHALP_SHA[:7]}, without its git dependencies",
                          [*pip, "--no-deps", str(src / "PHALP") if src else f"git+{PHALP_REPO}@{PHALP_SHA}"]))
        steps.append(Step("PyPI dependencies of hmr2 and PHALP (no chumpy)", [*pip, *PYPI_DEPS]))
        if opts.texture:
            steps.append(Step("neural_renderer fork for the texture predictor (default branch, not pinned)",
                              [*pip, "--no-build-isolation", f"git+{NMR_REPO}"]))
    if opts.cache_dir is not None:
        steps.append(Step(f"verify the pre-provisioned cache {opts.cache_dir} and link it into {opts.home}",
                          kind="link_cache", args={"cache_dir": opts.cache_dir, "home": opts.home}))
    elif not opts.skip_weights:
        for f in CACHE_FILES:
            if f.url:
                steps.append(Step(f"download {f.rel_path} (resumable, verified)", kind="download",
                                  args={"url": f.url, "dest": opts.home / f.rel_path}))
        steps.append(Step("extract hmr2_data.tar.gz", kind="extract",
                          args={"archive": opts.home / ".cache/4DHumans/hmr2_data.tar.gz",
                                "into": opts.home / ".cache/4DHumans"}))
        if opts.smpl_pkl is not None:
            for target in SMPL_TARGETS:
                steps.append(Step(f"convert the SMPL model to plain numpy -> {target}", kind="convert_smpl",
                                  args={"src": opts.smpl_pkl, "dst": opts.home / target}))
        steps.append(Step("write the manifest (size and SHA-256 of every file)", kind="manifest",
                          args={"home": opts.home}))
    return steps


def check_src(src_dir: Path) -> list[str]:
    """Problems of a ``--src`` folder: a missing tree, or a ``.g1forge_commit`` naming another commit."""
    problems = []
    for name, sha in SRC_TREES.items():
        tree = Path(src_dir) / name
        if not (tree / "setup.py").is_file():
            problems.append(f"{tree} is not a source tree (no setup.py): export {name} at {sha} there")
            continue
        marker = tree / ".g1forge_commit"
        if marker.is_file() and marker.read_text().strip() != sha:
            problems.append(f"{tree} is at {marker.read_text().strip()[:12]}, not the pinned {sha[:12]}")
    return problems


def write_manifest(home: Path) -> Path:
    entries = {}
    for f in CACHE_FILES:
        p = home / f.rel_path
        if p.is_file():
            entries[f.rel_path] = {"size_bytes": p.stat().st_size, "sha256": sha256_of(p)}
    out = home / MANIFEST_NAME
    out.write_text(json.dumps(entries, indent=1, sort_keys=True))
    return out


def verify_cache(cache_dir: Path) -> list[str]:
    """Problems of a cache home: missing/empty files, and size/SHA-256 differences from its manifest."""
    problems = []
    manifest_path = cache_dir / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    for f in CACHE_FILES:
        if f.needed_for == "archive":  # only the source of extracted files
            continue
        p = cache_dir / f.rel_path
        if not p.is_file() or p.stat().st_size == 0:
            problems.append(f"missing {p}")
            continue
        want = manifest.get(f.rel_path)
        if want and (p.stat().st_size != want["size_bytes"] or sha256_of(p) != want["sha256"]):
            problems.append(f"{p} differs from {manifest_path} (truncated or replaced)")
    return problems


def link_cache(cache_dir: Path, home: Path) -> list[str]:
    """Verify ``cache_dir`` then symlink its cache folders into ``home`` (existing folders are left alone)."""
    cache_dir, home = Path(cache_dir).resolve(), Path(home)
    problems = verify_cache(cache_dir)
    if problems:
        raise InputNotFound(f"the cache {cache_dir} is incomplete: {'; '.join(problems[:5])}"
                            + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""))
    done = []
    if cache_dir == home.resolve():
        return done
    for rel in LINKED_DIRS:
        link, target = home / rel, cache_dir / rel
        if link.is_symlink() and link.resolve() == target:
            continue
        if link.exists():
            done.append(f"kept existing {link} (not linked)")
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target, target_is_directory=True)
        done.append(f"linked {link} -> {target}")
    return done


def _extract(archive: Path, into: Path) -> None:
    marker = into / ".hmr2_data_extracted"
    if marker.exists():
        return
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    marker.write_text(str(archive.stat().st_size))


def execute(steps: list[Step], log=print) -> None:
    """Run ``steps`` in order; stops at the first failure with a :class:`G1ForgeError` saying which step."""
    for i, step in enumerate(steps, 1):
        log(f"[{i}/{len(steps)}] {step.description}")
        if step.argv is not None:
            env = {**os.environ, **step.env} if step.env else None
            rc = subprocess.run(step.argv, check=False, env=env).returncode
            if rc != 0:
                raise G1ForgeError(f"step {i} failed (exit {rc}): {subprocess.list2cmdline(step.argv)}; fix the "
                                   "error above and run the same command again (finished steps are quick to redo)",
                                   reason="setup")
        elif step.kind == "download":
            download_file(step.args["url"], step.args["dest"])
        elif step.kind == "extract":
            _extract(step.args["archive"], step.args["into"])
        elif step.kind == "convert_smpl":
            convert_smpl_pickle(step.args["src"], step.args["dst"])
        elif step.kind == "manifest":
            write_manifest(step.args["home"])
        elif step.kind == "check_src":
            problems = check_src(step.args["src_dir"])
            if problems:
                raise InputNotFound("; ".join(problems))
        elif step.kind == "link_cache":
            for line in link_cache(step.args["cache_dir"], step.args["home"]):
                log("    " + line)


def options_from_args(args) -> SetupOptions:
    home = Path(args.home).expanduser() if args.home else default_cache_home()
    src = getattr(args, "src", None)
    if src and not args.checkout_dir:
        checkout = str(Path(src) / "4D-Humans")
    else:
        checkout = args.checkout_dir or os.environ.get(ENV_CHECKOUT) or str(home / "4D-Humans")
    venv = getattr(args, "venv", None)
    return SetupOptions(checkout_dir=Path(checkout).expanduser().resolve(), home=home, python=args.python,
                        torch_index=args.torch_index, smpl_pkl=Path(args.smpl_pkl) if args.smpl_pkl else None,
                        texture=args.texture, cache_dir=Path(args.cache_dir) if args.cache_dir else None,
                        skip_install=args.skip_install, skip_weights=args.skip_weights,
                        src_dir=Path(src).expanduser() if src else None,
                        venv=Path(venv).expanduser().resolve() if venv else None,
                        cpu=getattr(args, "cpu", False), jobs=getattr(args, "jobs", None))


def add_arguments(p) -> None:
    p.add_argument("target", choices=["gpu"], help="what to set up (gpu: the 4D-Humans backend)")
    p.add_argument("--checkout-dir", help=f"where 4D-Humans is cloned (default ${ENV_CHECKOUT} or <home>/4D-Humans)")
    p.add_argument("--home", help=f"cache home for weights (default ${ENV_CACHE_HOME} or your home)")
    p.add_argument("--python", default=sys.executable, help="interpreter to install into (default: this one)")
    p.add_argument("--torch-index",
                   help="pip index of the CUDA torch build, e.g. https://download.pytorch.org/whl/cu121")
    p.add_argument("--smpl-pkl", help="the official basicModel_neutral_lbs_10_207_0_v1.0.0.pkl to convert")
    p.add_argument("--texture", action="store_true", help="also install neural_renderer (predictor=texture)")
    p.add_argument("--cache-dir", help="pre-provisioned cache home to verify and link (offline nodes; no downloads)")
    p.add_argument("--src", help="folder with detectron2/, 4D-Humans/, PHALP/ source trees at the pinned commits "
                                 "(install from them instead of git URLs)")
    p.add_argument("--venv", help="create this virtual environment and install the stack and g1forge into it")
    p.add_argument("--cpu", action="store_true", help="build detectron2 without CUDA (FORCE_CUDA=0)")
    p.add_argument("--jobs", type=int, help="MAX_JOBS for the detectron2 compile")
    p.add_argument("--skip-install", action="store_true", help="weights only")
    p.add_argument("--skip-weights", action="store_true", help="packages only")
    p.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")


def main(args) -> int:
    opts = options_from_args(args)
    steps = plan(opts)
    if args.dry_run:
        print(f"g1forge setup gpu: {len(steps)} steps (dry run, nothing runs)")
        for i, s in enumerate(steps, 1):
            print(f"[{i}] {s.render()}")
    else:
        execute(steps)
    if opts.venv is not None:
        print(f"the stack is in {opts.venv}: run g1forge there ({venv_python(opts.venv)} -m cluster.cli ...)")
    print(f"then: export {ENV_CHECKOUT}={opts.checkout_dir}"
          + (f" {ENV_CACHE_HOME}={opts.cache_dir or opts.home}" if (opts.cache_dir or args.home) else "")
          + "; check with `g1forge doctor`")
    return 0
