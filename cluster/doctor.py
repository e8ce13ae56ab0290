"""``g1forge doctor``: for each registered backend, can it run here, and if not, the exact fix.

Checks are cheap: packages are looked up with :func:`importlib.util.find_spec` (not imported), files by path.
torch is imported only to ask for a CUDA GPU when it is installed (the ``4dhumans`` check). With
``$G1FORGE_4DHUMANS_DEVICE=cpu`` a missing GPU is a note, not a problem (the backend's ``device=cpu``: tests and
benchmarks with the generated stand-in files of tests/make_4dhumans_standins.py, which the report names).
"""

from __future__ import annotations

import ctypes.util
import importlib.util
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.backends.base import available_backends


@dataclass
class Problem:
    """what: what is missing or wrong. fix: the exact action (a command or a path to fill)."""

    what: str
    fix: str


@dataclass
class BackendReport:
    """ok: the backend can run here. problems: what stops it. notes: informational lines."""

    backend: str
    ok: bool
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _check_mediapipe_legacy() -> tuple[list[Problem], list[str]]:
    probs = []
    if not _has("mediapipe"):
        probs.append(Problem("mediapipe is not installed", "pip install 'mediapipe==0.10.21'"))
    if not _has("av"):
        probs.append(Problem("PyAV is not installed", "pip install av"))
    return probs, []


def _check_mediapipe() -> tuple[list[Problem], list[str]]:
    probs, notes = _check_mediapipe_legacy()  # the models come from the mediapipe wheel
    if not _has("ai_edge_litert"):
        probs.append(Problem("ai-edge-litert (the TFLite runtime) is not installed",
                             "pip install 'ai-edge-litert>=2.3'"))
    if not _has("norfair"):
        probs.append(Problem("norfair (the multi-person tracker) is not installed", "pip install 'norfair>=2.2,<3'"))
    return probs, notes


def _check_phalp_pkl() -> tuple[list[Problem], list[str]]:
    notes = [] if _has("joblib") else ["joblib is not installed: compressed PHALP pickles need pip install joblib"]
    return [], notes


#: written by tests/make_4dhumans_standins.py into a home of generated (meaningless) model files
STANDIN_NOTICE = "G1FORGE_STANDIN_WEIGHTS.txt"

#: (module, fix) the 4dhumans backend imports
FOURDHUMANS_PACKAGES = (
    ("torch", "pip install torch torchvision --index-url https://download.pytorch.org/whl/cu121 "
              "(or g1forge setup gpu --torch-index ...)"),
    ("omegaconf", "pip install omegaconf==2.3.0"),
    ("detectron2", "g1forge setup gpu (installs detectron2 from git at a pinned commit)"),
    ("hmr2", "g1forge setup gpu (installs 4D-Humans at 6ec7965)"),
    ("phalp", "g1forge setup gpu (installs PHALP at 96f7e6c; PyPI phalp 0.1.3 does not work)"),
    ("pytorch_lightning", "pip install pytorch-lightning"),
    ("smplx", "pip install smplx==0.1.28"),
    ("pyrender", "pip install pyrender"),
    ("scenedetect", "pip install 'scenedetect[opencv]'"),
    ("cv2", "pip install opencv-python"),
    ("pycocotools", "pip install pycocotools"),
    ("joblib", "pip install joblib"),
)


def _check_4dhumans(env: dict[str, str] | None = None) -> tuple[list[Problem], list[str]]:
    from pipeline.backends.fourdhumans import (  # noqa: PLC0415
        ENV_CACHE_HOME,
        ENV_CHECKOUT,
        ENV_DEVICE,
        default_cache_home,
        missing_cache_files,
    )

    env = os.environ if env is None else env
    probs: list[Problem] = []
    notes: list[str] = []
    checkout = env.get(ENV_CHECKOUT)
    if not checkout:
        probs.append(Problem(f"no 4D-Humans checkout configured (${ENV_CHECKOUT} unset)",
                             f"g1forge setup gpu, then export {ENV_CHECKOUT}=/path/to/4D-Humans "
                             "(or --backend-option checkout_dir=...)"))
    elif not (Path(checkout) / "track.py").is_file():
        probs.append(Problem(f"{Path(checkout) / 'track.py'} does not exist",
                             f"point {ENV_CHECKOUT} at the root of a 4D-Humans checkout (g1forge setup gpu)"))
    for module, fix in FOURDHUMANS_PACKAGES:
        if not _has(module):
            probs.append(Problem(f"python package {module!r} is not installed", fix))
    if _has("detectron2") and not _has("detectron2._C"):
        probs.append(Problem("detectron2 is installed without its compiled ops (detectron2._C)",
                             "reinstall it with g1forge setup gpu (it compiles them; needs a C++ compiler, and nvcc "
                             "for the CUDA ops)"))
    home = Path(env.get(ENV_CACHE_HOME) or default_cache_home())
    if (home / STANDIN_NOTICE).is_file():
        notes.append(f"{home} holds GENERATED STAND-IN model files (random weights, made-up SMPL): the stack runs, "
                     "its poses are meaningless; install the real weights for production")
    cpu_only = (env.get(ENV_DEVICE) or "").lower() == "cpu"
    missing = missing_cache_files(home)
    smpl = [p for p in missing if p.name == "SMPL_NEUTRAL.pkl"]
    weights = [p for p in missing if p.name != "SMPL_NEUTRAL.pkl"]
    for p in smpl:
        probs.append(Problem(f"SMPL model missing: {p}",
                             "download basicModel_neutral_lbs_10_207_0_v1.0.0.pkl from https://smpl.is.tue.mpg.de "
                             "and run g1forge setup gpu --skip-install --smpl-pkl FILE"))
    for p in weights:
        probs.append(Problem(f"weight file missing: {p}",
                             f"g1forge setup gpu --skip-install (or --cache-dir DIR with a provisioned copy, or "
                             f"export {ENV_CACHE_HOME}=DIR)"))
    if _has("torch"):
        try:
            import torch  # noqa: PLC0415

            if not torch.cuda.is_available() and cpu_only:
                notes.append(f"no CUDA GPU: runs on the CPU only (${ENV_DEVICE}=cpu; seconds per frame, for tests)")
            elif not torch.cuda.is_available():
                probs.append(Problem("no CUDA GPU visible to torch (torch.cuda.is_available() is False)",
                                     "run on a machine with an NVIDIA GPU and driver, with a CUDA build of torch; "
                                     "check nvidia-smi and CUDA_VISIBLE_DEVICES"))
            else:
                notes.append(f"{torch.cuda.device_count()} CUDA GPU(s): {torch.cuda.get_device_name(0)}")
        except Exception as exc:  # a broken torch install
            probs.append(Problem(f"importing torch failed ({type(exc).__name__}: {exc})",
                                 "reinstall torch (g1forge setup gpu)"))
    elif shutil.which("nvidia-smi") is None:
        notes.append("nvidia-smi not found: no NVIDIA driver on this machine")
    if ctypes.util.find_library("EGL") is None:
        probs.append(Problem("libEGL not found (headless OpenGL for pyrender, PYOPENGL_PLATFORM=egl)",
                             "apt-get install libegl1 libgl1 (or the NVIDIA driver's EGL libraries)"))
    return probs, notes


CHECKS = {"mediapipe": _check_mediapipe, "mediapipe-legacy": _check_mediapipe_legacy, "phalp-pkl": _check_phalp_pkl,
          "4dhumans": _check_4dhumans}


def diagnose(backends: list[str] | None = None) -> list[BackendReport]:
    """One report per registered backend (or those named)."""
    out = []
    for name in backends or available_backends():
        check = CHECKS.get(name)
        if check is None:
            out.append(BackendReport(name, True, notes=["no checks defined for this backend"]))
            continue
        probs, notes = check()
        out.append(BackendReport(name, not probs, probs, notes))
    return out


def format_reports(reports: list[BackendReport]) -> str:
    lines = []
    for r in reports:
        lines.append(f"{r.backend}: {'ok' if r.ok else 'cannot run here'}")
        for p in r.problems:
            lines.append(f"  - {p.what}\n      fix: {p.fix}")
        for n in r.notes:
            lines.append(f"  . {n}")
    return "\n".join(lines)


def main(args) -> int:
    reports = diagnose(args.backends or None)
    if getattr(args, "json", False):
        import dataclasses  # noqa: PLC0415
        import json  # noqa: PLC0415

        print(json.dumps([dataclasses.asdict(r) for r in reports], indent=2))
    else:
        print(format_reports(reports))
    return 1 if args.strict and not all(r.ok for r in reports) else 0
