"""cluster/deploy: the container recipes, the KubeRay RayJob and the cluster-launcher YAML agree with each other
and with the code (CLI, pinned commits, pyproject's version ranges, Ray's own config schema)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from cluster import setup_gpu
from cluster.cli import build_parser
from pipeline.backends.base import backend_class

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "cluster" / "deploy"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
IMAGE_RE = re.compile(r"^(?P<registry>[^\s:]+)/g1forge-(?P<variant>[a-z0-9]+):(?P<tag>[A-Za-z0-9._-]+)$")
SHA_RE = re.compile(r"\b[0-9a-f]{40}\b")


# -- helpers -----------------------------------------------------------------------------------------------


class Dockerfile:
    """The instructions of a Dockerfile, with continuation lines joined, per build stage."""

    def __init__(self, path: Path):
        self.path = path
        self.text = path.read_text()
        logical, buf = [], ""
        for raw in self.text.splitlines():
            line = raw.strip()
            if not buf and (not line or line.startswith("#")):
                continue
            if line.startswith("#"):  # a comment inside a continued instruction
                continue
            if line.endswith("\\"):
                buf += line[:-1] + " "
                continue
            logical.append(buf + line)
            buf = ""
        self.instructions = [(ins.split(None, 1)[0].upper(), ins.split(None, 1)[1] if " " in ins else "")
                             for ins in logical]
        self.global_args: dict[str, str] = {}
        self.stages: list[dict] = []  # {"from": image, "alias": str|None, "args": {}, "ins": [(op, rest)]}
        for op, rest in self.instructions:
            if op == "FROM":
                parts = rest.split()
                alias = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
                self.stages.append({"from": parts[0], "alias": alias, "args": {}, "ins": []})
            elif op == "ARG" and not self.stages:
                self.global_args.update(_arg(rest))
            elif self.stages:
                if op == "ARG":
                    self.stages[-1]["args"].update(_arg(rest))
                self.stages[-1]["ins"].append((op, rest))

    def arg(self, name: str) -> str:
        """The default of ``ARG name``; every stage that declares it must give the same default."""
        values = {s["args"][name] for s in self.stages if s["args"].get(name) is not None}
        if name in self.global_args and self.global_args[name] is not None:
            values.add(self.global_args[name])
        assert len(values) == 1, f"{self.path.name}: ARG {name} has defaults {values or 'none'}"
        return values.pop()

    def resolved_bases(self) -> list[str]:
        """The images the stages start from, with global ARG defaults substituted; stage aliases left out."""
        aliases = {s["alias"] for s in self.stages if s["alias"]}
        out = []
        for s in self.stages:
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: self.global_args[m.group(1) or m.group(2)], s["from"])
            if image not in aliases:
                out.append(image)
        return out

    def runs(self, stage: int | None = None) -> list[str]:
        stages = self.stages if stage is None else [self.stages[stage]]
        return [rest for s in stages for op, rest in s["ins"] if op == "RUN"]


def _arg(rest: str) -> dict[str, str | None]:
    name, sep, default = rest.partition("=")
    return {name.strip(): default.strip().strip('"') if sep else None}


def _recipes() -> dict[str, Dockerfile]:
    return {p.name.split(".", 1)[1]: Dockerfile(p) for p in sorted(DEPLOY.glob("Dockerfile.*"))
            if not p.name.endswith(".dockerignore")}


def _rayjob() -> dict:
    return yaml.safe_load((DEPLOY / "rayjob.yaml").read_text())


def _launcher() -> dict:
    return yaml.safe_load((DEPLOY / "gpu-cluster.yaml").read_text())


def _parse_cli(command: str):
    argv = shlex.split(command)
    assert argv[0] == "g1forge", command
    return build_parser().parse_args(argv[1:])


def _images(node, key_names=("image", "worker_image", "head_image")) -> list[str]:
    found = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k in key_names and isinstance(v, str):
                found.append(v)
            else:
                found += _images(v, key_names)
    elif isinstance(node, list):
        for v in node:
            found += _images(v, key_names)
    return found


def _variant(image: str) -> str:
    m = IMAGE_RE.match(image)
    assert m, f"{image} is not REGISTRY/g1forge-<variant>:<tag>"
    return m.group("variant")


def _pyproject_spec(name: str) -> SpecifierSet:
    for dep in PYPROJECT["project"]["dependencies"]:
        req = Requirement(dep)
        if req.name == name:
            return req.specifier
    raise AssertionError(f"{name} is not a dependency in pyproject.toml")


def _containers(pod_template: dict) -> list[dict]:
    return pod_template["spec"]["containers"]


def _gpus(container: dict) -> float:
    res = container.get("resources", {})
    limit = float(res.get("limits", {}).get("nvidia.com/gpu", 0))
    request = float(res.get("requests", {}).get("nvidia.com/gpu", limit))
    assert request == limit, f"{container['name']}: GPU requests and limits must be equal in Kubernetes"
    return limit


def _pose_gpus(args) -> float:
    """GPUs one pose worker of this run reserves: the flag, else the backend's default."""
    flag = getattr(args, "gpus_per_pose_worker", None)
    return float(flag) if flag is not None else float(backend_class(args.backend).gpus_per_worker)


# -- the recipes -------------------------------------------------------------------------------------------


def test_each_recipe_pins_its_base_images():
    recipes = _recipes()
    assert {"gpu", "cpu"} <= set(recipes)
    for name, df in recipes.items():
        bases = df.resolved_bases()
        assert bases, name
        for image in bases:
            repo, _, tag = image.rpartition(":")
            assert repo and "/" not in tag, f"{name}: base image {image} has no tag"
            assert tag != "latest" and re.search(r"\d", tag), f"{name}: base image {image} is not pinned"
        assert ":latest" not in df.text


def test_recipes_install_the_same_python_and_ray_within_pyprojects_ranges():
    recipes = _recipes()
    python = {df.arg("PYTHON_VERSION") for df in recipes.values()}
    ray = {df.arg("RAY_VERSION") for df in recipes.values()}
    assert len(python) == 1 and len(ray) == 1, "every node of a Ray cluster needs one Python and one Ray version"
    (python,), (ray,) = python, ray
    assert Version(python) in SpecifierSet(PYPROJECT["project"]["requires-python"])
    assert Version(ray) in _pyproject_spec("ray")
    for name, df in recipes.items():
        assert Version(df.arg("TORCH_VERSION")) in _pyproject_spec("torch"), name
        installs = " ".join(df.runs())
        assert re.search(r'"ray\[default[^"]*\]==\$\{RAY_VERSION\}"', installs), f"{name} must install ray[default]"
        assert 'python install "${PYTHON_VERSION}"' in installs, f"{name} must install PYTHON_VERSION"
    assert str(_rayjob()["spec"]["rayClusterSpec"]["rayVersion"]) == ray


def test_recipes_install_the_package_from_its_own_sources():
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.rstrip("*") for p in include}
    for name, df in _recipes().items():
        copies = {src for s in df.stages for op, rest in s["ins"] if op == "COPY" and "--from" not in rest
                  for src in rest.split()[:-1]}
        copied = {c.rstrip("/") for c in copies}
        assert packages <= copied, f"{name}: COPY misses {sorted(packages - copied)}"
        assert "pyproject.toml" in copied and PYPROJECT["project"]["readme"] in copied
    gpu_installs = " ".join(_recipes()["gpu"].runs())
    assert 'pip install "/src[gpu]"' in gpu_installs


def test_gpu_recipe_installs_the_commits_setup_gpu_pins():
    df = _recipes()["gpu"]
    pins = {"DETECTRON2_SHA": setup_gpu.DETECTRON2_SHA, "FOURDHUMANS_SHA": setup_gpu.FOURDHUMANS_SHA,
            "PHALP_SHA": setup_gpu.PHALP_SHA}
    for arg, sha in pins.items():
        assert df.arg(arg) == sha, f"Dockerfile.gpu ARG {arg} differs from cluster/setup_gpu.py"
    assert set(SHA_RE.findall(df.text)) == set(pins.values()), "a commit in Dockerfile.gpu that setup_gpu.py lacks"
    runs = df.runs()
    setup = [r for r in runs if "g1forge setup gpu" in r and "--skip-weights" in r]
    assert setup, "the GPU image must install the stack through `g1forge setup gpu`"
    # the build-time check compares every declared commit with the installed module's
    check = next(r for r in runs if "check_image.py" in r and "--gpu" in r)
    for name, arg in (("detectron2", "DETECTRON2_SHA"), ("4d-humans", "FOURDHUMANS_SHA"), ("phalp", "PHALP_SHA")):
        assert f'--expect "{name}=${{{arg}}}"' in check
    labels = " ".join(rest for s in df.stages for op, rest in s["ins"] if op == "LABEL")
    for arg in pins:
        assert f"${{{arg}}}" in labels


def test_recipes_run_unprivileged_and_hold_no_secrets():
    for name, df in _recipes().items():
        final = df.stages[-1]["ins"]
        users = [rest.strip() for op, rest in final if op == "USER"]
        assert users and users[-1] not in ("root", "0"), f"{name}: the image must end as a non-root user"
        declared = [n for s in df.stages for n in s["args"]] + list(df.global_args)
        declared += [m for op, rest in df.instructions if op == "ENV" for m in re.findall(r"(\w+)=", rest)]
        leaky = [n for n in declared if re.search(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL", n, re.I)]
        assert not leaky, f"{name}: {leaky}"


def test_the_build_time_check_catches_a_broken_image(capsys):
    spec = importlib.util.spec_from_file_location("check_image", DEPLOY / "check_image.py")
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    installed_ray = importlib.metadata.version("ray")
    assert check.problems(installed_ray, gpu=False, expect={}) == []
    assert check.main(["--ray-version", installed_ray]) == 0
    wrong = check.problems("0.0.1", gpu=False, expect={})
    assert len(wrong) == 1 and "0.0.1" in wrong[0]
    # this test machine has no 4D-Humans stack: the GPU checks must say so, and a wrong declared commit too
    gpu = check.problems(installed_ray, gpu=True, expect={"phalp": "0" * 40, "detectron2": setup_gpu.DETECTRON2_SHA})
    text = "\n".join(gpu)
    assert "phalp commit 0000" in text and "detectron2 commit" not in text
    assert "detectron2 is installed at None" in text and "detectron2._C" in text
    assert check.main(["--ray-version", installed_ray, "--gpu"]) == 1
    assert "check_image:" in capsys.readouterr().err


# -- KubeRay ------------------------------------------------------------------------------------------------

RAYJOB_SPEC_FIELDS = {
    "activeDeadlineSeconds", "backoffLimit", "rayClusterSpec", "submitterPodTemplate", "metadata",
    "clusterSelector", "submitterConfig", "managedBy", "deletionStrategy", "entrypoint", "runtimeEnvYAML", "jobId",
    "submissionMode", "entrypointResources", "entrypointNumCpus", "entrypointNumGpus", "ttlSecondsAfterFinished",
    "shutdownAfterJobFinishes", "suspend", "schedule",
}
RAYCLUSTER_SPEC_FIELDS = {"headGroupSpec", "workerGroupSpecs", "rayVersion", "enableInTreeAutoscaling",
                          "autoscalerOptions", "headServiceAnnotations", "suspend", "gcsFaultToleranceOptions"}
HEAD_GROUP_FIELDS = {"serviceType", "headService", "enableIngress", "rayStartParams", "template"}
WORKER_GROUP_FIELDS = {"groupName", "replicas", "minReplicas", "maxReplicas", "numOfHosts", "rayStartParams",
                       "template", "scaleStrategy", "idleTimeoutSeconds", "suspend"}
AUTOSCALER_FIELDS = {"resources", "image", "imagePullPolicy", "env", "envFrom", "volumeMounts", "securityContext",
                     "idleTimeoutSeconds", "upscalingMode", "version"}


def test_rayjob_uses_only_kuberay_fields_and_cleans_up():
    job = _rayjob()
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    spec = job["spec"]
    assert set(spec) <= RAYJOB_SPEC_FIELDS, set(spec) - RAYJOB_SPEC_FIELDS
    cluster = spec["rayClusterSpec"]
    assert set(cluster) <= RAYCLUSTER_SPEC_FIELDS, set(cluster) - RAYCLUSTER_SPEC_FIELDS
    assert set(cluster["headGroupSpec"]) <= HEAD_GROUP_FIELDS
    assert set(cluster.get("autoscalerOptions", {})) <= AUTOSCALER_FIELDS
    assert spec["shutdownAfterJobFinishes"] is True and int(spec["ttlSecondsAfterFinished"]) > 0
    assert spec.get("submissionMode", "K8sJobMode") == "K8sJobMode" and _containers(spec["submitterPodTemplate"])
    groups = cluster["workerGroupSpecs"]
    assert len({g["groupName"] for g in groups}) == len(groups)
    for g in groups:
        assert set(g) <= WORKER_GROUP_FIELDS, set(g) - WORKER_GROUP_FIELDS
        assert 0 <= g["minReplicas"] <= g.get("replicas", g["minReplicas"]) <= g["maxReplicas"]
        assert all(isinstance(v, str) for v in g["rayStartParams"].values())
    assert all(isinstance(v, str) for v in cluster["headGroupSpec"]["rayStartParams"].values())


def test_rayjob_entrypoints_parse_with_the_cli():
    text = (DEPLOY / "rayjob.yaml").read_text()
    args = _parse_cli(_rayjob()["spec"]["entrypoint"])
    assert args.command == "run" and args.lists and args.out
    backend_class(args.backend)  # a registered backend
    variants = re.findall(r"^\s*#\s*entrypoint:\s*(g1forge run .+)$", text, re.M)
    assert variants, "the shared-filesystem variant is shown in a comment"
    for line in variants:
        alt = _parse_cli(line)
        assert alt.backend == args.backend and not alt.out.startswith(("s3://", "gs://"))


def test_rayjob_gives_the_pose_workers_gpus_from_the_gpu_image():
    spec = _rayjob()["spec"]
    args = _parse_cli(spec["entrypoint"])
    need = _pose_gpus(args)
    assert need > 0, "the RayJob runs a GPU backend"
    head = _containers(spec["rayClusterSpec"]["headGroupSpec"]["template"])
    assert all(_gpus(c) == 0 for c in head)
    gpu_groups = [g for g in spec["rayClusterSpec"]["workerGroupSpecs"]
                  if any(_gpus(c) > 0 for c in _containers(g["template"]))]
    assert gpu_groups, "no worker group requests nvidia.com/gpu"
    for g in gpu_groups:
        pod = g["template"]["spec"]
        for c in _containers(g["template"]):
            assert _gpus(c) >= need, f"{g['groupName']}: {_gpus(c)} GPU(s) per pod < {need} per pose worker"
            assert _variant(c["image"]) == "gpu"
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            home = env.get("G1FORGE_4DHUMANS_HOME")
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            assert home in mounts, "the weights folder the backend reads must be a mounted volume"
            assert mounts[home] in {v["name"] for v in pod["volumes"]}
        assert any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations", []))


# -- the cluster launcher -----------------------------------------------------------------------------------


def test_cluster_launcher_config_is_valid_for_ray():
    jsonschema = pytest.importorskip("jsonschema")
    ray_dir = Path(importlib.util.find_spec("ray").submodule_search_locations[0])
    schema = json.loads((ray_dir / "autoscaler" / "ray-schema.json").read_text())
    config = _launcher()
    jsonschema.validate(config, schema)
    assert config["provider"]["type"] == "aws" and config["head_node_type"] in config["available_node_types"]
    for name, t in config["available_node_types"].items():
        assert t.get("min_workers", 0) <= t.get("max_workers", 0) <= config["max_workers"], name


def test_cluster_launcher_has_gpu_workers_on_the_gpu_image():
    config = _launcher()
    types = config["available_node_types"]
    default_image = config["docker"]["image"]
    gpu_types = {name: t for name, t in types.items() if t["resources"].get("GPU", 0) > 0}
    assert gpu_types
    pose_need = float(backend_class("4dhumans").gpus_per_worker)
    for name, t in gpu_types.items():
        assert t["resources"]["GPU"] >= pose_need
        assert _variant(t.get("docker", {}).get("worker_image", default_image)) == "gpu", name
        for cmd in t.get("worker_setup_commands", []):
            args = _parse_cli(cmd)
            assert args.command == "setup" and args.target == "gpu" and args.skip_install and args.smpl_pkl
            smpl_dir = str(Path(args.smpl_pkl).parent)
            assert smpl_dir in config["file_mounts"], "the SMPL file must reach the node through file_mounts"
    head = types[config["head_node_type"]]
    head_cpus = head["resources"].get("CPU")
    start = " ".join(config["head_start_ray_commands"])
    if head_cpus == 0:
        assert "--num-cpus=0" in start
    assert "--dashboard-host=0.0.0.0" in start


def test_commands_in_the_launcher_comments_parse():
    text = (DEPLOY / "gpu-cluster.yaml").read_text()
    block = re.search(r"ray job submit[^\n]*--\s*\\\n((?:#.*\n)+?)#\s*ray down", text)
    assert block, "the submit example is in the header"
    command = " ".join(line.lstrip("#").strip().rstrip("\\") for line in block.group(1).splitlines())
    args = _parse_cli(command)
    assert args.command == "run" and args.backend == "4dhumans"


# -- images across both manifests -------------------------------------------------------------------------


def test_every_image_is_built_by_a_recipe_here_at_the_package_version():
    version = PYPROJECT["project"]["version"]
    images = _images(_rayjob()) + _images(_launcher())
    assert images
    for image in images:
        m = IMAGE_RE.match(image)
        assert m, f"{image} is not REGISTRY/g1forge-<variant>:<tag>"
        assert (DEPLOY / f"Dockerfile.{m.group('variant')}").is_file(), f"no recipe builds {image}"
        assert m.group("tag") == version, f"{image}: tag {m.group('tag')} != package version {version}"
        header = (DEPLOY / f"Dockerfile.{m.group('variant')}").read_text()
        assert f"g1forge-{m.group('variant')}:{version}" in header, "the recipe's build command names the same tag"
