"""Shared fixtures: paths to ../shared and markers that skip with a reason."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"
SHARED_VIDEOS = SHARED_DIR / "videos"
RUNNER_VIDEO = SHARED_VIDEOS / "phalp_runner.mp4"  # 1920x1088, 30 fps, 180 frames, one runner
TENNIS_VIDEO = SHARED_VIDEOS / "gvhmr_tennis.mp4"  # 812x720, VFR ~29.8 fps, 312 frames


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent: clone the project with ../shared beside it to run this test")
    return path


@pytest.fixture
def runner_video() -> Path:
    return _require(RUNNER_VIDEO)


@pytest.fixture
def tennis_video() -> Path:
    return _require(TENNIS_VIDEO)


#: The versions of g1forge's direct dependencies that the suite last passed with on a fresh install (CI). The
#: header of every test run prints what is installed now and marks each one that differs, so that a release
#: that breaks the suite (duckdb 2.0.1 did) is named at the top of the failing run. Refresh it after a green run:
#: ``python tests/conftest.py > tests/tested_versions.txt``.
TESTED_VERSIONS = REPO_ROOT / "tests" / "tested_versions.txt"


def installed_requirements() -> list[tuple[str, str | None, bool]]:
    """(name, installed version or None, satisfies g1forge's requirement) for each direct dependency of the
    installed g1forge (core and the ``dev`` extra), in name order."""
    from importlib import metadata

    from packaging.requirements import Requirement

    out = {}
    for text in metadata.requires("g1forge") or []:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": "dev"}):
            continue
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            version = None
        ok = version is not None and req.specifier.contains(version, prereleases=True)
        name = req.name.lower()
        prev = out.get(name)
        out[name] = (name, version, ok and (prev is None or prev[2]))
    return [out[k] for k in sorted(out)]


def _tested_versions() -> dict[str, str]:
    if not TESTED_VERSIONS.exists():
        return {}
    pairs = (line.split("==", 1) for line in TESTED_VERSIONS.read_text().splitlines() if "==" in line)
    return {name.strip().lower(): version.strip() for name, version in pairs}


def _version_lines() -> tuple[list[str], list[str]]:
    """(lines to print, the changed dependencies) for the top of a test run."""
    tested = _tested_versions()
    parts, changed = [], []
    for name, version, _ok in installed_requirements():
        parts.append(f"{name} {version}")
        if tested.get(name) != version:
            changed.append(f"{name} {version} (suite last green with {tested.get(name, 'none')})")
    lines = ["dependencies: " + ", ".join(parts)]
    if changed:
        lines.append("dependencies NEW since the last green run: " + "; ".join(changed))
    return lines, changed


def pytest_sessionstart(session):
    """Print the installed versions first, whatever the verbosity (``-q`` hides pytest's own header)."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        for line in _version_lines()[0]:
            reporter.write_line(line)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """A failing run names again, at the end, the dependencies that changed since the last green run."""
    changed = _version_lines()[1]
    if exitstatus != 0 and changed:
        terminalreporter.write_line("dependencies NEW since the last green run (a suspect): " + "; ".join(changed))


def pytest_collection_modifyitems(config, items):
    """Skip, with the reason, tests whose needs this machine does not meet."""
    import os

    network_ok = os.environ.get("G1FORGE_NETWORK_TESTS") == "1"
    gpu_skip = _gpu_skip_reason() if any("gpu" in item.keywords for item in items) else None
    for item in items:
        if "network" in item.keywords and not network_ok:
            item.add_marker(pytest.mark.skip(reason="needs the internet: set G1FORGE_NETWORK_TESTS=1 to run"))
        if "gpu" in item.keywords and gpu_skip:
            item.add_marker(pytest.mark.skip(reason=gpu_skip))


def _gpu_skip_reason() -> str | None:
    """Why the real 4D-Humans backend cannot run here (None when it can): checkout, CUDA GPU, weights."""
    import os

    checkout = os.environ.get("G1FORGE_4DHUMANS_DIR")
    if not checkout or not (Path(checkout) / "track.py").is_file():
        return "needs the 4D-Humans stack: set G1FORGE_4DHUMANS_DIR to a checkout (see `g1forge setup gpu`)"
    try:
        import torch
    except ImportError:
        return "needs torch with CUDA (see `g1forge setup gpu`)"
    if not torch.cuda.is_available():
        return "needs a CUDA GPU (torch.cuda.is_available() is False)"
    from pipeline.backends.fourdhumans import default_cache_home, missing_cache_files

    missing = missing_cache_files(default_cache_home())
    if missing:
        return f"needs the 4D-Humans weights: {len(missing)} file(s) missing, first {missing[0]} (g1forge setup gpu)"
    return None


# --- reliability figures (tests/test_reliability.py adds to them; one summary line at the end) -------------

_RELIABILITY = pytest.StashKey[dict]()


def pytest_configure(config):
    config.stash[_RELIABILITY] = {"inputs": 0, "crashes": 0, "rows_lost": 0, "kills": 0, "full_disks": 0,
                                  "second_runs": 0}


@pytest.fixture
def reliability_figures(request) -> dict:
    """The session's reliability counters: inputs tried, crashes (worker losses), rows lost, kills survived,
    full disks survived (the run stopped with its message, nothing lost), second runs on a busy folder refused."""
    return request.config.stash[_RELIABILITY]


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    f = config.stash.get(_RELIABILITY, None)
    if f and (f["inputs"] or f["kills"] or f["full_disks"] or f["second_runs"]):
        terminalreporter.write_line(f"reliability: {f['inputs']} inputs tried, {f['crashes']} crashes, "
                                    f"{f['rows_lost']} rows lost, {f['kills']} kills survived, "
                                    f"{f['full_disks']} full disks survived, {f['second_runs']} second runs "
                                    "refused")


if __name__ == "__main__":  # print the installed versions in the format of tests/tested_versions.txt
    for _name, _version, _ok in installed_requirements():
        print(f"{_name}=={_version}")
