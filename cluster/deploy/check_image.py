"""Build-time check of a g1forge image: run as the last step of Dockerfile.gpu / Dockerfile.cpu.

It fails the build (exit 1, every problem listed) unless the installed Ray is the version the Dockerfile asked for
and g1forge imports without torch or ray; with ``--gpu``, also unless the 4D-Humans checkout, detectron2 and
PHALP are at the commits ``cluster/setup_gpu.py`` pins (read from the installed module, not repeated here),
detectron2's compiled CUDA ops are present, torch is a CUDA build, and every ``--expect NAME=SHA`` given by the
Dockerfile (its image labels) equals the module's commit.

Usage: ``python check_image.py [--gpu] --ray-version X.Y.Z [--expect detectron2=SHA ...]``
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys


def vcs_commit(distribution: str) -> str | None:
    """The git commit a distribution was installed from (pip's ``direct_url.json``), or None."""
    try:
        text = importlib.metadata.distribution(distribution).read_text("direct_url.json")
    except importlib.metadata.PackageNotFoundError:
        return None
    if not text:
        return None
    return (json.loads(text).get("vcs_info") or {}).get("commit_id")


def pinned_commits() -> dict[str, str]:
    """Name -> full commit that ``g1forge setup gpu`` installs."""
    from cluster import setup_gpu

    return {"detectron2": setup_gpu.DETECTRON2_SHA, "4d-humans": setup_gpu.FOURDHUMANS_SHA,
            "phalp": setup_gpu.PHALP_SHA}


def checkout_commit(path: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", path, "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    except FileNotFoundError:  # no git in the image: read HEAD by hand
        head = os.path.join(path, ".git", "HEAD")
        if not os.path.isfile(head):
            return None
        with open(head) as fh:
            return fh.read().strip()
    return out.stdout.strip() or None


def problems(ray_version: str, gpu: bool, expect: dict[str, str]) -> list[str]:
    """Everything wrong with the current environment as an image of this kind; empty when it is fine."""
    found = []
    try:
        installed_ray = importlib.metadata.version("ray")
    except importlib.metadata.PackageNotFoundError:
        installed_ray = None
    if installed_ray != ray_version:
        found.append(f"ray is {installed_ray}, the Dockerfile asked for {ray_version}")
    before = set(sys.modules)
    try:
        import cluster.cli  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure is a broken image
        found.append(f"g1forge does not import: {type(exc).__name__}: {exc}")
    heavy = {"torch", "ray"} & (set(sys.modules) - before)
    if heavy:
        found.append(f"importing g1forge imported {sorted(heavy)} (must stay lazy)")
    if not gpu:
        return found
    pins = pinned_commits()
    for name, sha in expect.items():
        if pins.get(name) != sha:
            found.append(f"the Dockerfile's {name} commit {sha} is not the one cluster/setup_gpu.py pins "
                         f"({pins.get(name)})")
    checkout = os.environ.get("G1FORGE_4DHUMANS_DIR", "")
    installed = {"detectron2": vcs_commit("detectron2"), "phalp": vcs_commit("phalp"),
                 "4d-humans": checkout_commit(checkout) if checkout else None}
    for name, sha in pins.items():
        if installed[name] != sha:
            found.append(f"{name} is installed at {installed[name]}, cluster/setup_gpu.py pins {sha}")
    if importlib.util.find_spec("detectron2") is None or importlib.util.find_spec("detectron2._C") is None:
        found.append("detectron2's compiled ops (detectron2._C) are missing")
    try:
        import torch

        if torch.version.cuda is None:
            found.append(f"torch {torch.__version__} is a CPU build; the GPU image needs a CUDA build")
    except ImportError as exc:
        found.append(f"torch does not import: {exc}")
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ray-version", required=True)
    p.add_argument("--gpu", action="store_true", help="also check the 4D-Humans stack")
    p.add_argument("--expect", action="append", default=[], metavar="NAME=SHA",
                   help="a commit the Dockerfile declares (detectron2, 4d-humans, phalp)")
    args = p.parse_args(argv)
    expect = dict(item.split("=", 1) for item in args.expect)
    found = problems(args.ray_version, args.gpu, expect)
    for line in found:
        print(f"check_image: {line}", file=sys.stderr)
    if not found:
        stack = ", 4D-Humans stack at the pinned commits" if args.gpu else ""
        print(f"check_image: ok (ray {args.ray_version}{stack})")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
