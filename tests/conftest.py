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


def pytest_collection_modifyitems(config, items):
    """Skip, with the reason, tests whose needs this machine does not meet."""
    import os

    network_ok = os.environ.get("G1FORGE_NETWORK_TESTS") == "1"
    for item in items:
        if "network" in item.keywords and not network_ok:
            item.add_marker(pytest.mark.skip(reason="needs the internet: set G1FORGE_NETWORK_TESTS=1 to run"))
