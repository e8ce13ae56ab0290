"""Several processes publishing the same video at once (a retried video whose first worker still ran): one
complete folder remains, nobody gets an error, no staging is left behind."""

from __future__ import annotations

import multiprocessing
import traceback
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from catalog import writer
from catalog.layout import RunLayout

VIDEO_ID = "file-00000000race0001"
CONFIG_HASH = "cafe1234"
METRICS = ["jitter_m_s3"]
NUM_WRITERS = 4
PUBLISHES_EACH = 15


def _publish_many(root: str, writer_index: int, start, errors) -> None:
    """One writer process: publish the same video ``PUBLISHES_EACH`` times, each time with its own tag in the
    row and in the motion file, so a folder mixing two publishes is detectable. Every round, all writers
    finish staging, meet at a barrier (the writer's pre-publish hook) and rename at the same moment."""
    layout = RunLayout.at(root)
    writer._before_publish_hook = lambda staging: start.wait(timeout=60)
    for n in range(PUBLISHES_EACH):
        tag = f"writer {writer_index} publish {n}"

        def write_motions(clips_dir: Path, tag: str = tag) -> None:
            (clips_dir / "c0.npz").write_text(tag)

        row = {"video_id": VIDEO_ID, "uri": "/v.mp4", "status": "ok", "reason": tag}
        try:
            writer.publish_video(layout, VIDEO_ID, CONFIG_HASH, row, [], [], METRICS, write_motions)
        except BaseException:  # noqa: BLE001 - reported to the test
            errors.put(f"writer {writer_index}: {traceback.format_exc()}")


@pytest.mark.slow
def test_concurrent_publishes_of_one_video_leave_one_complete_folder(tmp_path):
    layout = RunLayout.at(tmp_path / "run")
    layout.tmp_dir.mkdir(parents=True)
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that has pyarrow's threads
    start = ctx.Barrier(NUM_WRITERS)
    errors = ctx.Queue()
    procs = [ctx.Process(target=_publish_many, args=(str(layout.root), i, start, errors))
             for i in range(NUM_WRITERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    reported = []
    while not errors.empty():
        reported.append(errors.get())
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    assert reported == [], "\n".join(reported[:3])

    folders = [d for d in layout.data_dir.glob("*/*") if d.is_dir()]
    assert folders == [layout.video_dir(VIDEO_ID)]
    final = folders[0]
    assert sorted(p.name for p in final.iterdir()) == sorted(
        ["_done." + CONFIG_HASH, "clips", "clips.parquet", "tracks.parquet", "videos.parquet"])
    (row,) = pq.read_table(final / "videos.parquet").to_pylist()
    assert (final / "clips" / "c0.npz").read_text() == row["reason"]  # one writer's folder, whole
    assert list(layout.tmp_dir.iterdir()) == []  # no staging, no replaced folders left behind


def test_a_publish_replaces_the_previous_folder(tmp_path):
    layout = RunLayout.at(tmp_path / "run")
    for tag in ("first", "second"):
        row = {"video_id": VIDEO_ID, "uri": "/v.mp4", "status": "ok", "reason": tag}
        final = writer.publish_video(layout, VIDEO_ID, CONFIG_HASH, row, [], [], METRICS)
    assert pq.read_table(final / "videos.parquet").to_pylist()[0]["reason"] == "second"
    assert list(layout.tmp_dir.iterdir()) == []
