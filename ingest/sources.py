"""Turn what the user typed (paths, folders, globs, URLs, list files) into :class:`VideoItem` records.

An INPUT is a video file, a folder (searched recursively), a glob (``clips/**/*.mp4``), an http(s) URL or a
YouTube link. A list file holds many inputs:

* ``.txt``: one input per line; blank lines and lines starting with ``#`` are ignored;
* ``.csv`` (with a header), ``.jsonl`` (one JSON object per line) or ``.parquet``: a ``uri`` column plus
  optional ``start_s``, ``end_s`` (seconds), ``tags`` (a list, or a string split on ``,`` / ``;``) and
  ``license`` columns; any other column travels in ``VideoItem.extra`` as text.

Relative paths in a list resolve against the list file's folder. Entries that cannot be understood (missing
file, unsupported extension, malformed line, bad ``start_s``/``end_s``) never raise: they become items whose
``list_error`` holds ``"<reason>: <message>"`` (the ``catalog_reason()`` of an :mod:`ingest.errors` class,
``not_found`` or ``bad_list``) and whose id is :func:`ingest.ids.bad_entry_id` of the entry text, so the run
records them as failed rows. Only a list file that cannot be read at all raises :class:`InputListError`, and so
does a list without inputs (empty, or only blank lines, comments or a header), whatever its format.

Items with the same ``video_id`` are kept once (the first wins) and counted in ``num_duplicates``.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import gc
import glob
import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from ingest.errors import G1ForgeError, InputListError, InputNotFound, MissingDependencyError
from ingest.ids import bad_entry_id, classify_uri, file_id, kind_and_id
from ingest.items import VideoItem, new_video_item

VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
"""Extensions (any letter case) collected from folders and globs and accepted for named files."""

LIST_FORMATS: tuple[str, ...] = (".txt", ".csv", ".jsonl", ".parquet")

KNOWN_COLUMNS = ("uri", "start_s", "end_s", "tags", "license")
_KNOWN_COLUMN_SET = frozenset(KNOWN_COLUMNS)

_GLOB_CHARS = re.compile(r"[*?\[]")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_TAG_SPLIT = re.compile(r"[,;]")


@dataclass
class CollectResult:
    """The items of one collection and how they were counted.

    items: unique items in input order (first occurrence wins), including ``list_error`` items.
    num_duplicates: entries dropped because an earlier item had the same ``video_id``.
    num_by_kind: kept items per kind: ``"file"``, ``"youtube"``, ``"url"``, and ``"error"`` for items
        with ``list_error`` set.
    num_by_source: kept items per source: the INPUT text as given, or the list file's path.
    """

    items: list[VideoItem] = field(default_factory=list)
    num_duplicates: int = 0
    num_by_kind: dict[str, int] = field(default_factory=dict)
    num_by_source: dict[str, int] = field(default_factory=dict)

    @property
    def num_errors(self) -> int:
        return self.num_by_kind.get("error", 0)


class _Meta(NamedTuple):
    """Per-entry fields from a list file that travel into every item the entry expands to.

    A NamedTuple, like :class:`_Entry`: as immutable as a frozen dataclass and cheaper to build (one per line of
    lists of up to ~100,000 lines, re-read on every resume).
    """

    start_s: float | None = None
    end_s: float | None = None
    tags: tuple[str, ...] = ()
    license: str | None = None
    extra: tuple[tuple[str, str], ...] = ()


_NO_META = _Meta()


class _Entry(NamedTuple):
    """One line/row of a list file: either a uri with its metadata, or the error that spoiled it."""

    raw_text: str
    uri: str | None
    meta: _Meta = _NO_META
    error: G1ForgeError | None = None


def _normalise_extensions(extensions: Iterable[str]) -> tuple[str, ...]:
    normalised = []
    for ext in extensions:
        ext = ext.strip().lower()
        normalised.append(ext if ext.startswith(".") else "." + ext)
    return tuple(normalised)


class _Collector:
    """Accumulates items, dropping duplicate ids."""

    def __init__(self, extensions: tuple[str, ...]):
        self.extensions = extensions
        self.result = CollectResult()
        self._seen: set[str] = set()

    # --- recording ---------------------------------------------------------------------------------

    def _keep(self, item: VideoItem, source: str) -> None:
        result = self.result
        if item.video_id in self._seen:
            result.num_duplicates += 1
            return
        self._seen.add(item.video_id)
        result.items.append(item)
        kind = "error" if item.list_error is not None else item.kind
        result.num_by_kind[kind] = result.num_by_kind.get(kind, 0) + 1
        result.num_by_source[source] = result.num_by_source.get(source, 0) + 1

    def _keep_error(self, error: G1ForgeError, *, id_text: str, uri: str, source: str) -> None:
        item = VideoItem(
            video_id=bad_entry_id(id_text),
            uri=uri,
            kind=classify_uri(uri),
            list_error=error.catalog_reason(),
        )
        self._keep(item, source)

    def _keep_video(self, video_id: str, uri: str, kind: str, meta: _Meta, source: str) -> None:
        if video_id in self._seen:  # a duplicate (counted as _keep counts it), found before building its item
            self.result.num_duplicates += 1
            return
        start_s, end_s, tags, license_text, extra = meta
        # new_video_item: VideoItem(...) with every field given, built faster (one item per line of long lists).
        self._keep(new_video_item(video_id, uri, kind, start_s, end_s, tags, license_text, None, extra), source)

    # --- expansion ---------------------------------------------------------------------------------

    def add_entry(self, text: str, *, base_dir: str, source: str, meta: _Meta = _NO_META) -> None:
        """Expand one INPUT (file, folder, glob, URL) into items."""
        text = text.strip()
        if not text:
            self._keep_error(InputListError("an empty input: give a file, folder, glob or URL"),
                             id_text="<empty input>", uri="", source=source)
            return
        try:
            kind, video_id = kind_and_id(text)  # one parse of the text: a list holds up to ~100,000 URLs
        except G1ForgeError as error:  # a YouTube link that names no video
            self._keep_error(error, id_text=text, uri=text, source=source)
            return
        if video_id is not None:  # a URL or YouTube link; local paths are resolved and hashed below
            self._keep_video(video_id, text, kind, meta, source)
            return

        if text.lower().startswith("file://"):
            text = text[len("file://") :]
        elif _SCHEME.match(text):
            scheme = text.split("://", 1)[0]
            error = InputListError(
                f"{text!r}: unsupported URL scheme {scheme!r}; give an http(s) URL, a YouTube link or a local path"
            )
            self._keep_error(error, id_text=text, uri=text, source=source)
            return

        if "\x00" in text:  # no file system takes it (glob would raise ValueError)
            error = InputListError(f"{text!r} contains a NUL character: no file can be named so; fix the entry")
            self._keep_error(error, id_text=text, uri=text, source=source)
            return
        path = os.path.abspath(os.path.join(base_dir, os.path.expanduser(text)))
        if os.path.isfile(path):
            self._add_file(path, meta, source, named=True)
        elif os.path.isdir(path):
            self._add_folder(path, meta, source)
        elif _GLOB_CHARS.search(text):
            self._add_glob(path, meta, source)
        else:
            error = InputNotFound(f"{path} does not exist: check the path (relative paths in a list resolve "
                                  "against the list file's folder)")
            self._keep_error(error, id_text=path, uri=path, source=source)

    def _add_file(self, path: str, meta: _Meta, source: str, *, named: bool) -> None:
        extension = os.path.splitext(path)[1].lower()
        if extension not in self.extensions:
            if not named:
                return
            hint = " (to read a list of inputs, pass it as a list file)" if extension in LIST_FORMATS else ""
            error = InputNotFound(
                f"{path}: unsupported extension {extension or '(none)'!r}; supported: "
                f"{', '.join(self.extensions)}{hint}"
            )
            self._keep_error(error, id_text=path, uri=path, source=source)
            return
        try:
            video_id = file_id(path)
        except OSError as exc:
            error = InputNotFound(f"{path} cannot be read ({exc.strerror or exc}): check its permissions")
            self._keep_error(error, id_text=path, uri=path, source=source)
            return
        self._keep_video(video_id, path, "file", meta, source)

    def _add_folder(self, folder: str, meta: _Meta, source: str) -> None:
        """Every video file under ``folder``, recursively, in sorted order; hidden files and folders
        (names starting with ``.``, e.g. macOS ``._clip.mp4``) are skipped."""
        found = 0
        for root, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if name.startswith(".") or os.path.splitext(name)[1].lower() not in self.extensions:
                    continue
                found += 1
                self._add_file(os.path.join(root, name), meta, source, named=False)
        if not found:
            error = InputNotFound(f"folder {folder} holds no files with extension {', '.join(self.extensions)}")
            self._keep_error(error, id_text=folder, uri=folder, source=source)

    def _add_glob(self, pattern: str, meta: _Meta, source: str) -> None:
        matches = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
        videos = [p for p in matches if os.path.splitext(p)[1].lower() in self.extensions]
        for path in videos:
            self._add_file(path, meta, source, named=False)
        if not videos:
            error = InputNotFound(
                f"the pattern {pattern} matches no files with extension {', '.join(self.extensions)}"
            )
            self._keep_error(error, id_text=pattern, uri=pattern, source=source)

    def add_list_entries(self, entries: Iterable[_Entry], *, base_dir: str, source: str) -> int:
        """Expand every entry of one list file, in order (the per-line loop of lists of up to ~100,000 lines).
        Returns how many entries the list had (blank lines, comments and a header are not entries)."""
        add_entry = self.add_entry
        num_entries = 0
        for raw_text, uri, meta, error in entries:
            num_entries += 1
            if error is None and uri is not None:
                add_entry(uri, base_dir=base_dir, source=source, meta=meta)
            else:
                error = error or InputListError(f"entry {raw_text!r} has no uri")
                self._keep_error(error, id_text=raw_text, uri=uri or raw_text, source=source)
        return num_entries


# --- list files --------------------------------------------------------------------------------------


def _optional_seconds(name: str, value: object) -> float | None:
    """Seconds from a cell (text or number); None when the cell is empty or NaN; an error for anything else that
    is not a finite number >= 0."""
    if value is None:
        return None
    if isinstance(value, str):
        if not value.strip():
            return None
    elif isinstance(value, bool):
        raise InputListError(f"{name} must be a number of seconds, got {value!r}")
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer beyond float range (10**400)
        raise InputListError(f"{name} must be a number of seconds, got {value!r}") from None
    if 0.0 <= seconds < math.inf:  # the usual case in one comparison (False for NaN, infinities and negatives)
        return seconds
    if math.isnan(seconds):
        return None
    raise InputListError(f"{name} must be a finite number of seconds >= 0, got {value!r}")


def _tags(value: object) -> tuple[str, ...]:
    """Tags from a string split on ``,`` / ``;`` or from a list; blanks dropped, each tag stripped."""
    if value is None:
        return ()
    if isinstance(value, float) and math.isnan(value):
        return ()
    if isinstance(value, str):
        return _split_tags(value)
    if isinstance(value, (list, tuple)):
        stripped = [str(part).strip() for part in value if part is not None]
        return tuple([tag for tag in stripped if tag])
    raise InputListError(f"tags must be a list or a comma/semicolon-separated string, got {value!r}")


@functools.lru_cache(maxsize=4096)
def _split_tags(text: str) -> tuple[str, ...]:
    """The tags of a ``,`` / ``;``-separated string. Cached: a list's rows usually repeat a few tag strings, and
    the result depends on the text alone."""
    stripped = [part.strip() for part in _TAG_SPLIT.split(text)]
    return tuple([tag for tag in stripped if tag])


def _text(value: object) -> str:
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def _is_given(value: object) -> bool:
    """False for a cell left empty: None, ``""`` or NaN (how pandas-written files mark a missing value)."""
    return value is not None and value != "" and not (isinstance(value, float) and math.isnan(value))


def _extra(record: Mapping[str, object]) -> tuple[tuple[str, str], ...]:
    """``(column, text)`` of the given cells of the columns outside :data:`KNOWN_COLUMNS`, sorted by column."""
    if record.keys() <= _KNOWN_COLUMN_SET:  # the usual case: no other column (and no set built per row)
        return ()
    extra_columns = record.keys() - _KNOWN_COLUMN_SET
    return tuple(sorted((key, _text(record[key])) for key in extra_columns if _is_given(record[key])))


def _entry_from_record(record: Mapping[str, object], raw_text: str) -> _Entry:
    """Validate one row (keys already lower-case) into an :class:`_Entry`."""
    uri_value = record.get("uri")
    uri = uri_value.strip() if isinstance(uri_value, str) else None
    if not uri:
        return _Entry(raw_text, None, error=InputListError(f"entry {raw_text!r} has no uri"))
    try:
        start_s = _optional_seconds("start_s", record.get("start_s"))
        end_s = _optional_seconds("end_s", record.get("end_s"))
        if start_s is not None and end_s is not None and end_s <= start_s:
            raise InputListError(f"end_s ({end_s:g}) must be greater than start_s ({start_s:g})")
        tags = _tags(record.get("tags"))
    except InputListError as error:
        return _Entry(raw_text, uri, error=InputListError(f"{uri}: {error}"))
    license_value = record.get("license")
    license_text = None
    if license_value is not None and not (isinstance(license_value, float) and math.isnan(license_value)):
        license_text = str(license_value).strip() or None
    return _Entry(raw_text, uri, _Meta(start_s, end_s, tags, license_text, _extra(record)))


def _open_text(path: str):
    try:
        return open(path, encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise InputListError(f"list file {path} does not exist: check the --list path") from None
    except OSError as exc:
        raise InputListError(f"list file {path} cannot be opened ({exc.strerror or exc})") from None


def _read_lines(path: str) -> list[str]:
    with _open_text(path) as handle:
        try:
            return handle.read().splitlines()
        except UnicodeDecodeError as exc:
            raise InputListError(f"list file {path} is not UTF-8 text ({exc.reason}): save it as UTF-8") from None


def _txt_entries(path: str) -> Iterator[_Entry]:
    for line in _read_lines(path):
        text = line.strip()
        if text and not text.startswith("#"):
            yield _Entry(text, text)


def _csv_entries(path: str) -> Iterator[_Entry]:
    lines = _read_lines(path)
    rows = csv.reader(lines)
    try:
        header = next(rows)
    except StopIteration:  # an empty file: no entries (collect_items says the list has no inputs)
        return
    except csv.Error as exc:
        raise InputListError(f"list file {path}: cannot parse the CSV header ({exc})") from None
    columns = [name.strip().lower() for name in header]
    if "uri" not in columns:
        raise InputListError(
            f"list file {path} has no 'uri' column (columns: {', '.join(columns) or 'none'}); "
            "add a header line such as: uri,start_s,end_s,tags,license"
        )
    num_columns = len(columns)
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except csv.Error as exc:
            # csv cannot resume inside a broken quoted field; record the rest of the file as one bad entry.
            yield _Entry(f"{path}:{rows.line_num}", None, error=InputListError(
                f"{path} line {rows.line_num}: malformed CSV ({exc}); fix the quoting"))
            return
        raw_text = ",".join(row)
        unindented = raw_text.lstrip()
        if not unindented or unindented[0] == "#":  # a blank row or a comment
            continue
        if len(row) > num_columns:
            yield _Entry(raw_text, None, error=InputListError(
                f"{path} line {rows.line_num} has {len(row)} fields but the header has {num_columns}: "
                "quote fields that contain commas"))
            continue
        yield _entry_from_record(dict(zip(columns, map(str.strip, row))), raw_text)


def _jsonl_entries(path: str) -> Iterator[_Entry]:
    """The entries of a JSON Lines list; keys are stripped and lower-cased like CSV column names."""
    saw_object = False
    saw_uri = False
    # The keys of the last object and whether they were already stripped and lower-case: lines usually repeat the
    # same keys, so most objects are used as they are instead of being copied key by key.
    last_keys: tuple[object, ...] | None = None
    keys_are_normal = False
    for number, line in enumerate(_read_lines(path), start=1):
        text = line.strip()
        if not text:
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            yield _Entry(text, None, error=InputListError(f"{path} line {number} is not valid JSON ({exc.msg})"))
            continue
        if not isinstance(record, dict):
            yield _Entry(text, None, error=InputListError(
                f"{path} line {number} is not a JSON object: write {{\"uri\": \"...\"}}"))
            continue
        saw_object = True
        keys = tuple(record)
        if keys != last_keys:
            last_keys = keys
            keys_are_normal = all(isinstance(key, str) and key == key.strip().lower() for key in keys)
        if not keys_are_normal:
            record = {str(key).strip().lower(): value for key, value in record.items()}
        saw_uri = saw_uri or "uri" in record
        yield _entry_from_record(record, text)
    if saw_object and not saw_uri:
        raise InputListError(f"list file {path} has no 'uri' key in any line: write one {{\"uri\": ...}} per line")


def _parquet_entries(path: str) -> Iterator[_Entry]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise MissingDependencyError(f"reading {path} needs pyarrow: pip install pyarrow ({exc})") from None
    if not os.path.exists(path):
        raise InputListError(f"list file {path} does not exist: check the --list path")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for a file that is not Parquet
        raise InputListError(f"list file {path} is not a readable Parquet file ({exc})") from None
    columns = [name.strip().lower() for name in table.column_names]
    if "uri" not in columns:
        raise InputListError(
            f"list file {path} has no 'uri' column (columns: {', '.join(columns) or 'none'}); add one"
        )
    table = table.rename_columns(columns)
    for record in table.to_pylist():
        raw_text = json.dumps(record, sort_keys=True, default=str)
        yield _entry_from_record(record, raw_text)


_LIST_READERS = {
    ".txt": _txt_entries,
    ".csv": _csv_entries,
    ".jsonl": _jsonl_entries,
    ".parquet": _parquet_entries,
}


def _read_list_file(path: str | os.PathLike[str]) -> Iterator[_Entry]:
    """The entries of one list file, made as they are consumed (raises :class:`InputListError` when the file
    cannot be read: an unknown format or a folder at once, the rest once iteration starts).

    Entries are not gathered in a list: each one lives only until the collector has turned it into an item, so a
    100,000-line list does not hold 100,000 entries at once (or give the garbage collector that many objects to
    scan)."""
    path = os.path.abspath(os.fspath(path))
    extension = os.path.splitext(path)[1].lower()
    reader = _LIST_READERS.get(extension)
    if reader is None:
        raise InputListError(
            f"list file {path}: unknown format {extension or '(no extension)'!r}; "
            f"use one of {', '.join(LIST_FORMATS)}"
        )
    if os.path.isdir(path):
        raise InputListError(f"list file {path} is a folder: pass folders as inputs, not as lists")
    return reader(path)


def entry_error(item: VideoItem) -> G1ForgeError | None:
    """The error of an item whose entry could not be understood (``list_error`` set), rebuilt with its
    original reason code (``not_found`` or ``bad_list``), ready to become a failed catalog row; None for a
    good item."""
    if item.list_error is None:
        return None
    reason, sep, message = item.list_error.partition(": ")
    if not sep or not re.fullmatch(r"[a-z_]+", reason):
        return InputListError(item.list_error)
    return G1ForgeError(message, reason=reason)


def collect_items(
    inputs: Iterable[str] = (),
    list_files: Iterable[str | os.PathLike[str]] = (),
    extensions: Iterable[str] = VIDEO_EXTENSIONS,
) -> CollectResult:
    """Collect :class:`VideoItem` records from INPUTs and list files (see the module docstring).

    inputs: files, folders, globs, URLs or YouTube links; relative paths resolve against the working folder.
    list_files: ``.txt``, ``.csv``, ``.jsonl`` or ``.parquet`` lists; relative paths inside resolve against
        the list file's folder.
    extensions: file extensions to collect (any case, with or without the dot); another result type (e.g.
        ``(".pkl",)`` for PHALP pickles) reuses the same collection.

    Inputs come first, then list files, each in order; ids are computed once per entry (local files are
    hashed: :func:`ingest.ids.file_id` reads at most 3 MiB per file).
    Raises :class:`InputListError` only for a list file that cannot be read at all or holds no inputs.
    """
    collector = _Collector(_normalise_extensions(extensions))
    working_dir = os.getcwd()
    with _cyclic_gc_paused():
        for text in inputs:
            collector.add_entry(str(text), base_dir=working_dir, source=str(text))
        for list_file in list_files:
            entries = _read_list_file(list_file)
            list_path = os.path.abspath(os.fspath(list_file))
            base_dir = os.path.dirname(list_path)
            collector.result.num_by_source.setdefault(list_path, 0)
            if not collector.add_list_entries(entries, base_dir=base_dir, source=list_path):
                raise InputListError(
                    f"list file {list_path} has no inputs: it is empty or holds only blank lines, comments or a "
                    "header; add one input per line (or row), or leave the file out"
                )
    return collector.result


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for the block, and restore its previous state after it.

    Why: collecting a list of ~100,000 lines allocates container objects per line that stay alive (the items,
    their tags), so the collector keeps running collections that find nothing to free: 3-5 % of the collection's
    CPU time in bench/bench_lists.py, ~10 % in a process that already holds a million objects. Memory is still
    freed by reference counting; the few reference cycles made meanwhile wait for the next collection. When the
    collector was already disabled (by the caller), it is left disabled. The switch is process-wide: other
    threads run without the collector for that time (well under a second per 100,000 lines).
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
