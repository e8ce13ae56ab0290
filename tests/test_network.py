"""Live checks against YouTube; skipped unless G1FORGE_NETWORK_TESTS=1 (CI has no internet)."""

from __future__ import annotations

import pytest

from run_helpers import cli

pytestmark = [pytest.mark.network, pytest.mark.slow]

# "Me at the zoo": 19 s, one person in front of the camera, public since 2005.
YOUTUBE_URL = "https://www.youtube.com/watch?v=jNQXAC9IVRw"


def test_youtube_link_end_to_end(tmp_path):
    from catalog.db import run_query

    res = cli("run", YOUTUBE_URL, "--out", str(tmp_path / "out"), "--no-progress")
    assert res.returncode == 0, res.stderr
    rows = run_query(tmp_path / "out", "SELECT video_id, status, reason, height_px FROM videos").to_pylist()
    assert rows[0]["video_id"] == "yt-jNQXAC9IVRw"
    assert rows[0]["status"] == "ok", rows[0]["reason"]
    assert rows[0]["height_px"] <= 720
