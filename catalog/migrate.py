"""Bringing a run folder of an older catalog format up to :data:`catalog.layout.FORMAT_VERSION`, in place.

Format history (:data:`catalog.layout.FORMAT_HISTORY`, docs/catalog.md):

1. per-video fragments only; the views read their glob.
2. adds compaction generations under ``data/_compacted/`` and ``data/_compacted/CURRENT.json`` naming the
   committed one (absent: no generation). A format-1 folder is a valid format-2 folder without a generation,
   so the upgrade stamps the info file (with a ``format_history`` entry) and the caller rewrites the views;
   no fragment is touched. The number matters for older code: version-1 g1forge refuses to write into a
   format-2 folder, where it would rewrite the views without the compacted rows.
3. a failed video is one file, ``videos.failed.<config_hash>.parquet`` (its row and its done marker), instead
   of a folder of three fragments and a marker. A format-2 folder is a valid format-3 folder (both layouts
   read, resume and compact), so the upgrade only stamps the info file; format-2 code would not see the
   one-file failures when compacting.

Every step is idempotent and keyed on what is on disk, not on the info file's number alone (a run stamps the
info file before it writes the views), so an upgrade interrupted anywhere is finished by the next one.
Readers never upgrade: format-1 folders read as they are; a folder of a newer format is refused with the fix.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from catalog.layout import FORMAT_VERSION, RunLayout
from catalog.writer import write_text_atomic
from ingest.errors import ConfigError


def read_info(layout: RunLayout) -> dict:
    """The run folder's info file (``g1forge.json``); ConfigError when it is not a run folder."""
    if not layout.info_path.exists():
        raise ConfigError(f"{layout.root} is not a g1forge run folder (no {layout.info_path.name}); "
                          "pass the --out folder of a `g1forge run`")
    try:
        return json.loads(layout.info_path.read_text())
    except ValueError as exc:
        raise ConfigError(f"{layout.info_path} is not valid JSON ({exc}); restore it or run g1forge run with the "
                          "same --out to rewrite it") from None


def format_version(info: dict) -> int:
    """The catalog format an info file declares (folders from before versioning count as 1)."""
    return max(1, int(info.get("format_version") or 1))


def check_readable(layout: RunLayout) -> int:
    """The folder's format version if this g1forge can read it; ConfigError naming the fix otherwise."""
    version = format_version(read_info(layout))
    if version > FORMAT_VERSION:
        raise ConfigError(f"{layout.root} holds a catalog of format {version}, newer than this g1forge reads "
                          f"(format {FORMAT_VERSION}); upgrade g1forge (pip install -U g1forge) to read it")
    return version


def upgrade(layout: RunLayout) -> list[str]:
    """Upgrade the run folder at ``layout`` to the current format in place; returns the steps taken (empty when
    it was current). The caller rewrites the views (:func:`catalog.db.refresh_views`)."""
    check_readable(layout)
    steps: list[str] = []
    info = read_info(layout)
    if info.get("format_version") != FORMAT_VERSION:
        before = format_version(info)
        history = list(info.get("format_history") or [])
        history.append({"from": before, "to": FORMAT_VERSION, "at": datetime.now(timezone.utc).isoformat()})
        info.update(format_version=FORMAT_VERSION, format_history=history)
        write_text_atomic(layout.info_path, json.dumps(info, indent=2, default=str))
        steps.append(f"format {before} -> {FORMAT_VERSION}")
    return steps


def prepare_for_writing(layout: RunLayout) -> list[str]:
    """Everything a writer needs before it publishes: :func:`upgrade`, then re-open sealed views to fragments
    (:func:`catalog.compact.unseal`). Returns the steps taken; the caller rewrites the views."""
    from catalog.compact import unseal

    steps = upgrade(layout)
    if unseal(layout):
        steps.append("views re-opened to new fragments (the catalog was sealed by g1forge compact)")
    return steps
