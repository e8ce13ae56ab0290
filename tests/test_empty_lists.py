"""A list file with no inputs stops the run before it starts, whatever its format.

Empty, or holding only blank lines, comments or a CSV header: ``collect_items`` raises :class:`InputListError`
naming the file and saying it has no inputs, and ``g1forge run`` exits 2 with that message (README, Reliability:
"A list file that cannot be read at all (no ``uri`` column, empty, not UTF-8) stops the run before it starts").
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.errors import InputListError
from ingest.sources import collect_items
from run_helpers import cli

#: file name -> text of a list that holds no input
NO_INPUTS = {
    "empty.txt": "",
    "comments.txt": "# videos for the next run\n\n   # none yet\n\t\n",
    "empty.csv": "",
    "header only.csv": "uri,start_s,tags\n",
    "header and comments.csv": "uri,tags\n# clips/a.mp4,walk\n\n",
    "empty.jsonl": "",
    "blank lines.jsonl": "\n   \n\t\n",
}


def _write_list(folder: Path, name: str) -> Path:
    path = folder / name
    if name.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"uri": pa.array([], pa.string())}), path)
    else:
        path.write_text(NO_INPUTS[name], encoding="utf-8")
    return path


ALL_NAMES = [*NO_INPUTS, "no rows.parquet"]


@pytest.mark.parametrize("name", ALL_NAMES)
def test_a_list_without_inputs_raises_naming_the_file(tmp_path, name):
    path = _write_list(tmp_path, name)
    with pytest.raises(InputListError) as info:
        collect_items([], [path])
    message = str(info.value)
    assert str(path) in message and "no inputs" in message, message
    assert info.value.reason == "bad_list"


def test_an_empty_list_stops_the_run_even_beside_other_inputs(tmp_path):
    from video_factory import make_video

    video = make_video(tmp_path / "a.mp4", num_frames=2)
    good = tmp_path / "good.txt"
    good.write_text(f"{video}\n")
    assert len(collect_items([], [good]).items) == 1  # a list with one input is fine
    with pytest.raises(InputListError, match="no inputs"):
        collect_items([str(video)], [good, _write_list(tmp_path, "comments.txt")])


def test_a_list_whose_entries_are_all_bad_is_not_empty(tmp_path):
    """Malformed entries are inputs: each becomes a failed row, as before."""
    path = tmp_path / "bad rows.jsonl"
    path.write_text('{not json\n{"uri": ""}\n', encoding="utf-8")
    result = collect_items([], [path])
    assert result.num_errors == 2 and len(result.items) == 2


@pytest.mark.slow
@pytest.mark.parametrize("name", ["comments.txt", "header only.csv", "blank lines.jsonl", "no rows.parquet"])
def test_g1forge_run_exits_2_on_a_list_without_inputs(tmp_path, name):
    path = _write_list(tmp_path, name)
    proc = cli("run", "--list", str(path), "--out", str(tmp_path / "out"), "--backend", "phalp-pkl",
               "--no-progress", timeout=300)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert str(path) in proc.stderr and "no inputs" in proc.stderr, proc.stderr
    assert "processed in" not in proc.stdout  # no run summary: the run never started
