"""collect_items: inputs, folders, globs, URLs and list files become VideoItems; bad entries become rows."""

from __future__ import annotations

import dataclasses
import gc
import inspect
import json
import pickle
from pathlib import Path

import pytest

from ingest.errors import InputListError
from ingest.ids import ID_PATTERN, bad_entry_id, file_id, url_id
from ingest.items import VideoItem, new_video_item
from ingest.sources import VIDEO_EXTENSIONS, CollectResult, collect_items, entry_error

YT = "https://www.youtube.com/watch?v=dQw4w9WgXcQ"


def _write(path: Path, content: bytes | str = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        # distinct content per path: the id is a content hash
        path.write_bytes(content or f"fake video {path.name}".encode())
    return path


def _ok(result: CollectResult):
    return [item for item in result.items if item.list_error is None]


def _errors(result: CollectResult):
    return [item for item in result.items if item.list_error is not None]


def test_folder_is_searched_recursively_for_video_extensions_in_any_case(tmp_path):
    root = tmp_path / "videos"
    expected = [
        _write(root / "a.mp4"),
        _write(root / "b.MOV"),
        _write(root / "deep" / "er" / "c.Mkv"),
        _write(root / "sub" / "d.webm"),
        _write(root / "sub" / "e.m4v"),
        _write(root / "sub" / "f.AVI"),
    ]
    _write(root / "notes.txt", "not a video")
    _write(root / "sub" / "._e.m4v")  # macOS resource fork
    _write(root / ".hidden" / "g.mp4")
    result = collect_items([str(root)])
    assert result.num_errors == 0
    assert sorted(item.uri for item in result.items) == sorted(str(p) for p in expected)
    assert all(item.kind == "file" and item.video_id == file_id(item.uri) for item in result.items)
    # deterministic order: a second collection gives the same list
    assert collect_items([str(root)]).items == result.items
    assert result.num_by_kind == {"file": 6}
    assert result.num_by_source == {str(root): 6}


def test_file_glob_url_and_youtube_inputs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    clip = _write(tmp_path / "clip.mp4")
    _write(tmp_path / "g" / "one.mp4")
    _write(tmp_path / "g" / "two.mkv")
    _write(tmp_path / "g" / "skip.txt", "x")
    result = collect_items(["clip.mp4", "g/*", "https://example.com/v.mp4", YT])
    kinds = [(item.kind, Path(item.uri).name if item.kind == "file" else item.uri) for item in result.items]
    assert kinds == [
        ("file", "clip.mp4"),
        ("file", "one.mp4"),
        ("file", "two.mkv"),
        ("url", "https://example.com/v.mp4"),
        ("youtube", YT),
    ]
    assert result.items[0].uri == str(clip)  # relative inputs become absolute paths
    assert entry_error(result.items[0]) is None
    assert result.items[3].video_id == url_id("https://example.com/v.mp4")
    assert result.items[4].video_id == "yt-dQw4w9WgXcQ"
    assert result.num_by_kind == {"file": 3, "url": 1, "youtube": 1}
    assert result.num_by_source["g/*"] == 2


def test_recursive_glob(tmp_path):
    _write(tmp_path / "a" / "b" / "x.mp4")
    _write(tmp_path / "a" / "y.mp4")
    result = collect_items([str(tmp_path / "**" / "*.mp4")])
    assert sorted(Path(i.uri).name for i in result.items) == ["x.mp4", "y.mp4"]


def test_bad_inputs_become_error_items_not_exceptions(tmp_path):
    _write(tmp_path / "notes.txt", "hello")
    (tmp_path / "empty").mkdir()
    inputs = [
        str(tmp_path / "missing.mp4"),
        str(tmp_path / "notes.txt"),
        str(tmp_path / "empty"),
        str(tmp_path / "*.nothing"),
        "s3://bucket/clip.mp4",
        "https://www.youtube.com/playlist?list=PL123",
        "   ",
    ]
    result = collect_items(inputs)
    assert len(result.items) == len(inputs) == result.num_errors
    reasons = [item.list_error.split(":", 1)[0] for item in result.items]
    assert reasons == ["not_found", "not_found", "not_found", "not_found", "bad_list", "bad_list", "bad_list"]
    assert "does not exist" in result.items[0].list_error
    assert "unsupported extension '.txt'" in result.items[1].list_error
    assert "list file" in result.items[1].list_error  # hint: pass lists as list files
    assert "holds no files" in result.items[2].list_error
    assert "matches no files" in result.items[3].list_error
    assert "unsupported URL scheme 's3'" in result.items[4].list_error
    assert "without a video id" in result.items[5].list_error
    assert "an empty input" in result.items[6].list_error  # never "the working folder"
    for item in result.items:
        assert item.video_id.startswith("bad-") and ID_PATTERN.match(item.video_id)
    assert result.items[0].video_id == bad_entry_id(str(tmp_path / "missing.mp4"))
    # deterministic ids: the same inputs give the same error rows
    assert collect_items(inputs).items == result.items
    # the error comes back with its own reason code for the catalog
    error = entry_error(result.items[0])
    assert error.reason == "not_found" and error.catalog_reason() == result.items[0].list_error


def test_txt_list_with_comments_and_paths_relative_to_the_list(tmp_path, monkeypatch):
    lists = tmp_path / "lists"
    clip = _write(lists / "clips" / "a.mp4")
    other = _write(tmp_path / "elsewhere" / "b.mov")
    list_file = _write(
        lists / "inputs.TXT",
        "# my videos\n\nclips/a.mp4\n   \n"
        f"{other}\n# {YT}\nhttps://example.com/x.mp4\nclips/missing.mp4\n",
    )
    monkeypatch.chdir(tmp_path / "elsewhere")  # relative entries must not resolve against the cwd
    result = collect_items([], [str(list_file)])
    assert [i.uri for i in _ok(result)] == [str(clip), str(other), "https://example.com/x.mp4"]
    [missing] = _errors(result)
    assert missing.uri == str(lists / "clips" / "missing.mp4")
    assert result.num_by_source == {str(list_file): 4}


def test_csv_list_carries_range_tags_license_and_extra_columns(tmp_path):
    _write(tmp_path / "a.mp4")
    _write(tmp_path / "b.mp4")
    list_file = _write(
        tmp_path / "list.csv",
        "uri,start_s,end_s,tags,license,Source\n"
        'a.mp4,1.5,4,"run; outdoor",CC-BY,kinetics\n'
        "b.mp4,,,,,\n"
        f"{YT},10,20,dance,,yt\n"
        "c.mp4,5,2,,,\n"  # end before start
        "d.mp4,abc,,,,\n"  # not a number
        "e.mp4,-1,,,,\n"  # negative
        ",1,2,,,\n"  # no uri
        "f.mp4,1,2,x,y,z,extra\n",  # too many fields
    )
    result = collect_items([], [list_file])
    ok = _ok(result)
    assert [Path(i.uri).name if i.kind == "file" else i.uri for i in ok] == ["a.mp4", "b.mp4", YT]
    a, b, yt = ok
    assert (a.start_s, a.end_s, a.tags, a.license, a.extra) == (1.5, 4.0, ("run", "outdoor"), "CC-BY",
                                                                (("source", "kinetics"),))
    assert (b.start_s, b.end_s, b.tags, b.license, b.extra) == (None, None, (), None, ())
    assert (yt.start_s, yt.end_s, yt.tags, yt.kind) == (10.0, 20.0, ("dance",), "youtube")
    errors = [i.list_error for i in _errors(result)]
    assert len(errors) == 5
    assert all(e.startswith("bad_list: ") for e in errors)
    assert "end_s (2) must be greater than start_s (5)" in errors[0]
    assert "start_s must be a number" in errors[1]
    assert "start_s must be a finite number of seconds >= 0" in errors[2]
    assert "has no uri" in errors[3]
    assert "7 fields but the header has 6" in errors[4]


def test_jsonl_list(tmp_path):
    _write(tmp_path / "v" / "a.mp4")
    list_file = _write(
        tmp_path / "list.jsonl",
        "\n".join(
            [
                json.dumps({"uri": "v/a.mp4", "tags": ["jump", " spin "], "start_s": 0, "license": "CC0",
                            "meta": {"k": 1}}),
                "",
                "{not json",
                json.dumps(["a", "list"]),
                json.dumps({"uri": "https://example.com/1.mp4", "end_s": None, "tags": "a,b"}),
                json.dumps({"uri": "https://example.com/2.mp4", "start_s": True}),
            ]
        ),
    )
    result = collect_items([], [list_file])
    a, url = _ok(result)
    assert (a.tags, a.start_s, a.license, a.extra) == (("jump", "spin"), 0.0, "CC0", (("meta", '{"k": 1}'),))
    assert (url.tags, url.end_s) == (("a", "b"), None)
    errors = [i.list_error for i in _errors(result)]
    assert len(errors) == 3
    assert "line 3 is not valid JSON" in errors[0]
    assert "not a JSON object" in errors[1]
    assert "start_s must be a number" in errors[2]


def test_jsonl_keys_are_normalised_whatever_the_previous_line_had(tmp_path):
    """Lines with the same keys reuse the check of the previous line; a change of keys is checked again."""
    lines = [
        {"uri": "https://example.com/1.mp4", "start_s": 1},
        {"URI": "https://example.com/2.mp4", " Start_S ": 2, "Note": "x"},
        {"URI": "https://example.com/3.mp4", " Start_S ": 3, "Note": "y"},
        {"uri": "https://example.com/4.mp4", "start_s": 4},
        {"uri": "https://example.com/5.mp4", "start_s": 5, "note": "z"},
    ]
    list_file = _write(tmp_path / "list.jsonl", "\n".join(json.dumps(line) for line in lines))
    result = collect_items([], [list_file])
    assert [(i.uri[-5], i.start_s, i.extra) for i in result.items] == [
        ("1", 1.0, ()), ("2", 2.0, (("note", "x"),)), ("3", 3.0, (("note", "y"),)), ("4", 4.0, ()),
        ("5", 5.0, (("note", "z"),)),
    ]


def test_new_video_item_builds_the_same_item_as_the_constructor():
    values = ("url-0123456789abcdef", "https://x.org/a.mp4", "url", 1.5, 2.0, ("a", "b"), "CC-BY", None,
              (("note", "x"),))
    item = new_video_item(*values)
    reference = VideoItem(*values)
    assert item == reference and hash(item) == hash(reference) and repr(item) == repr(reference)
    assert dataclasses.astuple(item) == values
    assert pickle.loads(pickle.dumps(item)) == item
    assert dataclasses.replace(item, uri="/a.mp4") == VideoItem(*values[:1], "/a.mp4", *values[2:])
    with pytest.raises(dataclasses.FrozenInstanceError):
        item.uri = "/elsewhere.mp4"  # type: ignore[misc]
    # new_video_item takes every field, in the dataclass's order (its slot setters follow the fields)
    assert list(inspect.signature(new_video_item).parameters) == [f.name for f in dataclasses.fields(VideoItem)]


@pytest.mark.parametrize("enabled", [True, False])
def test_collect_items_restores_the_garbage_collector_state(tmp_path, enabled):
    list_file = _write(tmp_path / "list.txt", "https://example.com/1.mp4\n")
    was_enabled = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        assert len(collect_items([], [list_file]).items) == 1
        assert gc.isenabled() == enabled
        with pytest.raises(InputListError):
            collect_items([], [tmp_path / "missing.txt"])
        assert gc.isenabled() == enabled
    finally:
        gc.enable() if was_enabled else gc.disable()


def test_parquet_list_with_list_tags(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    _write(tmp_path / "a.mp4")
    table = pa.table(
        {
            "uri": ["a.mp4", "https://example.com/z.mp4", None],
            "start_s": [1.0, None, 2.0],
            "end_s": [2.5, None, None],
            "tags": [["x", "y"], [], None],
            "license": ["CC-BY", None, None],
            "score": [0.5, 0.7, 0.1],
        }
    )
    list_file = tmp_path / "list.parquet"
    pq.write_table(table, list_file)
    result = collect_items([], [list_file])
    a, z = _ok(result)
    assert (a.start_s, a.end_s, a.tags, a.license, a.extra) == (1.0, 2.5, ("x", "y"), "CC-BY", (("score", "0.5"),))
    assert (z.start_s, z.tags, z.license) == (None, (), None)
    [bad] = _errors(result)
    assert "has no uri" in bad.list_error


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("missing.txt", None, "does not exist"),
        ("list.xlsx", "uri\na.mp4\n", "unknown format '.xlsx'"),
        ("list.csv", "path,start_s\na.mp4,1\n", "no 'uri' column"),
        ("empty.csv", "", "is empty"),
        ("list.jsonl", '{"path": "a.mp4"}\n{"file": "b.mp4"}\n', "no 'uri' key"),
        ("list.parquet", "this is not parquet", "not a readable Parquet file"),
        ("missing.parquet", None, "does not exist"),
    ],
)
def test_unreadable_list_files_raise_input_list_error(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        _write(path, content)
    with pytest.raises(InputListError, match=message) as info:
        collect_items([], [path])
    assert info.value.reason == "bad_list"


def test_non_utf8_list_raises(tmp_path):
    path = tmp_path / "list.txt"
    path.write_bytes(b"\xff\xfe\x00a.mp4\n\x80\x81")
    with pytest.raises(InputListError, match="not UTF-8"):
        collect_items([], [path])


def test_duplicates_are_kept_once_first_wins(tmp_path):
    clip = _write(tmp_path / "a.mp4", b"same bytes")
    copy = _write(tmp_path / "copy" / "a_copy.mp4", b"same bytes")
    list_file = _write(
        tmp_path / "list.csv",
        f"uri,tags\n{copy},second\nhttps://Example.com/x.mp4?b=1&a=2,\nhttps://youtu.be/dQw4w9WgXcQ,\n",
    )
    result = collect_items([str(clip), "https://example.com/x.mp4?a=2&b=1#frag", YT], [list_file])
    assert [i.uri for i in result.items] == [str(clip), "https://example.com/x.mp4?a=2&b=1#frag", YT]
    assert result.items[0].tags == ()  # the first occurrence wins
    assert result.num_duplicates == 3
    assert result.num_by_source == {str(clip): 1, "https://example.com/x.mp4?a=2&b=1#frag": 1, YT: 1,
                                    str(list_file): 0}


def test_extensions_parameter_collects_other_result_files(tmp_path):
    _write(tmp_path / "r" / "a.pkl")
    _write(tmp_path / "r" / "b.PKL")
    _write(tmp_path / "r" / "c.mp4")
    result = collect_items([str(tmp_path / "r")], extensions=("pkl",))
    assert sorted(Path(i.uri).name for i in result.items) == ["a.pkl", "b.PKL"]
    named = collect_items([str(tmp_path / "r" / "c.mp4")], extensions=(".pkl",))
    assert named.num_errors == 1 and "supported: .pkl" in named.items[0].list_error
    assert ".mp4" in VIDEO_EXTENSIONS and ".m4v" in VIDEO_EXTENSIONS


def test_file_uri_input(tmp_path):
    clip = _write(tmp_path / "a.mp4")
    result = collect_items([f"file://{clip}"])
    assert [i.uri for i in result.items] == [str(clip)]


def test_large_url_list_counts_duplicates_and_kinds(tmp_path):
    """A list large enough to exercise the per-line path (its speed is measured by bench/bench_lists.py)."""
    num_urls, num_youtube, num_duplicates = 10_000, 500, 250
    lines = [f"https://cdn.example.com/videos/{i:06d}.mp4?sig={i * 7919 % 10007}" for i in range(num_urls)]
    lines += [f"https://www.youtube.com/watch?v={i:011d}" for i in range(num_youtube)]
    lines += lines[:num_duplicates]  # duplicates
    list_file = _write(tmp_path / "big.txt", "\n".join(lines))
    result = collect_items([], [list_file])
    assert len(result.items) == num_urls + num_youtube
    assert result.num_duplicates == num_duplicates
    assert result.num_by_kind == {"url": num_urls, "youtube": num_youtube}
    assert result.num_by_source == {str(list_file): num_urls + num_youtube}
    assert [item.uri for item in result.items] == lines[: num_urls + num_youtube]
    assert result.items[3].video_id == url_id(lines[3])
    assert result.items[num_urls].video_id == "yt-00000000000"
    assert all(ID_PATTERN.match(item.video_id) for item in result.items)


def test_large_csv_list_parses_every_row(tmp_path):
    num_rows = 10_000
    rows = ["uri,start_s,end_s,tags"] + [
        f"https://cdn.example.com/{i}.mp4,{i % 60},{i % 60 + 5},a;b" for i in range(num_rows)
    ]
    list_file = _write(tmp_path / "big.csv", "\n".join(rows))
    result = collect_items([], [list_file])
    assert len(result.items) == num_rows and result.num_errors == 0 and result.num_duplicates == 0
    assert result.num_by_kind == {"url": num_rows}
    assert result.items[7].start_s == 7.0 and result.items[7].end_s == 12.0 and result.items[7].tags == ("a", "b")
    assert result.items[61].start_s == 1.0 and result.items[61].end_s == 6.0
    assert result.items[-1].video_id == url_id(f"https://cdn.example.com/{num_rows - 1}.mp4")


def test_entries_no_file_system_or_float_can_take_become_failed_rows(tmp_path):
    """A NUL character in a path (glob would raise) and a start time beyond float range (float() would raise)."""
    txt = _write(tmp_path / "nul.txt", "a\x00/*.mp4\n")
    jsonl = _write(tmp_path / "big.jsonl", '{"uri": "https://cdn.example.com/a.mp4", "start_s": ' + "9" * 400 + "}\n")
    result = collect_items([], [txt, jsonl])
    assert [i.list_error.split(":")[0] for i in result.items] == ["bad_list", "bad_list"]
    assert "NUL" in result.items[0].list_error and "start_s" in result.items[1].list_error
