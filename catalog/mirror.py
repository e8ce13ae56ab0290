"""A run whose ``--out`` is a URI (``s3://``, ``gs://``, ``file://``, ...): a local staging folder mirrored there.

The run works in a local run folder exactly as usual (atomic per-video publish, views, stats) and the catalog
writer copies each published video folder to the remote with :func:`catalog.storage.put_tree`, marker last.
The remote is the truth for resume: a video is done when its remote folder holds ``_done.<config_hash>`` or,
for a failed video, its one file ``videos.failed.<config_hash>.parquet`` (row and marker in one object), so a
run restarted on another machine with an empty staging folder skips what is already there. The run's files
(info file, views, quality thresholds, plan, run stats, schema fragments) are copied at the end of each run.

Reading a remote run (``g1forge query|status|export|preview s3://...``) pulls its Parquet files (and, for
export and preview, its motion files) into a local cache first; the copy is incremental.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from catalog import storage
from catalog.layout import DUCKDB_FILE, INFO_FILE, RunLayout

#: Run-level files copied after each run (relative to the run folder), besides ``data/_schema``.
RUN_FILES = (INFO_FILE, DUCKDB_FILE, "quality.toml", "state/plan.parquet")


def is_remote(out: str | os.PathLike) -> bool:
    """True when ``out`` is a URI (``s3://``, ``gs://``, also ``file://``): such runs are staged and mirrored
    through pyarrow's filesystem for that URI. A plain path is a run folder used in place."""
    return storage.is_remote(out) or os.fspath(out).lower().startswith("file://")


def default_staging_dir(uri: str) -> Path:
    """Where the local copy of the remote run ``uri`` lives: ``$G1FORGE_STAGING`` or ``~/.cache/g1forge/runs``,
    in a folder named by a hash of the URI (the same URI always maps to the same folder)."""
    root = Path(os.environ.get("G1FORGE_STAGING") or Path.home() / ".cache" / "g1forge" / "runs")
    return root / hashlib.sha256(uri.encode("utf-8")).hexdigest()[:16]


@dataclass
class Mirror:
    """The remote side of a run: its URI, pyarrow filesystem and base path."""

    uri: str

    def __post_init__(self) -> None:
        self.fs, self.base = storage.open_output(self.uri)

    def done_ids(self, config_hash: str) -> set[str]:
        """Video ids finished on the remote under ``config_hash`` (marked done, or failed as one file)."""
        return storage.list_markers(self.fs, self.base, config_hash)

    def push_video(self, layout: RunLayout, video_id: str) -> None:
        """Copy the published local folder of ``video_id`` to the remote, marker last. Raises ``WriteError``."""
        storage.put_tree(self.fs, layout.video_dir(video_id), storage.video_dir(self.base, video_id))

    def push_run_files(self, layout: RunLayout, run_stats: Path | None = None) -> None:
        """Copy the run-level files (and this run's stats file) to the remote."""
        rels = [r for r in RUN_FILES if (layout.root / r).is_file()]
        rels += [p.relative_to(layout.root).as_posix() for p in sorted((layout.data_dir / "_schema").rglob("*"))
                 if p.is_file()]
        if run_stats is not None and run_stats.is_file():
            rels.append(run_stats.relative_to(layout.root).as_posix())
        for rel in rels:
            storage.put_file(self.fs, layout.root / rel, storage.join(self.base, rel))

    def pull_catalog(self, dest: str | os.PathLike, with_motions: bool = False) -> Path:
        """Pull the remote run's catalog (Parquet, views, info; motion files too with ``with_motions``) into the
        local folder ``dest``; returns it. Incremental."""
        dest = Path(dest)
        suffixes = (".parquet", ".npz") if with_motions else (".parquet",)
        storage.get_tree(self.fs, storage.join(self.base, "data"), dest / "data", suffixes=suffixes)
        for rel in (*RUN_FILES, ):
            remote = storage.join(self.base, rel)
            if storage.exists(self.fs, remote):
                storage.get_file(self.fs, remote, dest / rel)
        return dest


def local_run_folder(out: str, with_motions: bool = False) -> str:
    """``out`` itself when it is local; for a remote run, a local copy of its catalog (see :class:`Mirror`)."""
    if not is_remote(out):
        return out
    return str(Mirror(out).pull_catalog(default_staging_dir(out) / "read", with_motions=with_motions))
