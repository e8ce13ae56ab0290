"""Where everything lives inside a run folder. Every path is derived from ids only (never from titles or URLs).

::

    OUT/
      g1forge.json                         info file: format version, configuration and its hash
      catalog.duckdb                       DuckDB views over the Parquet fragments (paths relative to OUT)
      data/<shard>/<video_id>/             one committed folder per video, published by an atomic rename;
                                           a video with tracks or clips (status ok or filtered) holds:
          videos.parquet                   exactly one row
          tracks.parquet                   one row per track
          clips.parquet                    one row per clip (ok and filtered)
          clips/<clip_id>.npz              the clip's world-frame human motion (see pipeline.motion_io)
          clips/<clip_id>.g1.npz           the clip retargeted to the G1 (see pipeline.g1_motion)
          _done.<config_hash>              completion marker, written last inside the staged folder
                                           a failed video (format 3 on) holds one file and nothing else:
          videos.failed.<config_hash>.parquet   its one row of ``videos``, and by its name its completion
                                           marker (no tracks or clips: it has none); compaction merges the row
                                           and leaves ``_done.<config_hash>`` in its place
      data/_schema/_schema/*.parquet       zero-row fragments carrying the full schema (views never see "no files")
      data/_compacted/CURRENT.json         the committed compaction generation (see catalog.compact)
      data/_compacted/gen-<NNNNNN>/<table>/*.parquet   that generation's merged rows of each table
      state/catalog.lock                   advisory lock: runs hold it shared, compaction exclusive
      state/plan.parquet                   the latest run's input list (video_id, uri), for `g1forge status`
      state/runs/<run_id>.json             stats of each run
      cache/downloads/                     remote videos, named by video_id
      tmp/                                 staging; anything here is incomplete and safe to delete

A video is done under a configuration when its folder holds ``_done.<config_hash>`` or
``videos.failed.<config_hash>.parquet`` (:meth:`RunLayout.is_done`: at most two ``stat`` calls, no read).
Folders written before format 3 hold a failed video as four files (the three fragments, two of them empty, and
``_done.<config_hash>``); they read and resume as they are.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

FORMAT_VERSION = 3
#: What each catalog format version changed (docs/catalog.md has the full contract).
FORMAT_HISTORY = {
    1: "per-video Parquet fragments under data/<shard>/<video_id>/, views over their glob",
    2: "compaction generations under data/_compacted/ (CURRENT.json says which); views read the generation's "
       "rows of videos without a fragment plus every fragment",
    3: "a failed video's folder holds one file, videos.failed.<config_hash>.parquet: its row and, by its name, "
       "its completion marker",
}
INFO_FILE = "g1forge.json"
DUCKDB_FILE = "catalog.duckdb"
TABLES = ("videos", "tracks", "clips")
SCHEMA_DIR = "_schema"
COMPACTED_DIR = "_compacted"
COMPACTION_STATE_FILE = "CURRENT.json"
#: A completion marker is ``_done.<config_hash>``; a failed video's one file is
#: ``videos.failed.<config_hash>.parquet``. Both sit directly in the video's folder.
DONE_PREFIX = "_done."
FAILED_PREFIX = "videos.failed."
PARQUET_SUFFIX = ".parquet"


def done_marker_name(config_hash: str) -> str:
    """``_done.<config_hash>``: the completion marker of a video with tracks or clips (or of any video in a
    folder written before format 3, or after compaction merged a failed row)."""
    return f"{DONE_PREFIX}{config_hash}"


def failed_fragment_name(config_hash: str) -> str:
    """``videos.failed.<config_hash>.parquet``: a failed video's only file, its ``videos`` row and marker."""
    return f"{FAILED_PREFIX}{config_hash}{PARQUET_SUFFIX}"


def completion_names(config_hash: str) -> tuple[str, str]:
    """The file names, directly in a video folder, any one of which says the video is done under
    ``config_hash`` (the marker first: most finished videos have one)."""
    return done_marker_name(config_hash), failed_fragment_name(config_hash)


def failed_fragment_hash(name: str) -> str | None:
    """The configuration hash in a failed video's file name, None for any other name."""
    if name.startswith(FAILED_PREFIX) and name.endswith(PARQUET_SUFFIX):
        chash = name[len(FAILED_PREFIX):-len(PARQUET_SUFFIX)]
        return chash if chash and "." not in chash else None
    return None


def is_completion_name(name: str) -> bool:
    """Whether ``name`` (a file directly in a video folder) says the video is done, under whatever hash:
    copies to an object store upload these last and delete them first (see catalog.storage)."""
    return name.startswith(DONE_PREFIX) or failed_fragment_hash(name) is not None


def generation_name(generation: int) -> str:
    """Folder name of compaction generation ``generation`` (>= 1): ``gen-000001``."""
    return f"gen-{generation:06d}"


def shard_of(video_id: str) -> str:
    """Two hex characters spreading video folders over 256 shards (stable across machines)."""
    return hashlib.sha1(video_id.encode("utf-8")).hexdigest()[:2]


@dataclass(frozen=True)
class RunLayout:
    """Path templates of one run folder ``root``."""

    root: Path

    @classmethod
    def at(cls, root: str | Path) -> "RunLayout":
        return cls(Path(root).expanduser().resolve())

    @property
    def info_path(self) -> Path:
        return self.root / INFO_FILE

    @property
    def duckdb_path(self) -> Path:
        return self.root / DUCKDB_FILE

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def tmp_dir(self) -> Path:
        return self.root / "tmp"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def plan_path(self) -> Path:
        return self.state_dir / "plan.parquet"

    @property
    def runs_dir(self) -> Path:
        return self.state_dir / "runs"

    @property
    def download_dir(self) -> Path:
        return self.root / "cache" / "downloads"

    def video_dir(self, video_id: str) -> Path:
        return self.data_dir / shard_of(video_id) / video_id

    def done_marker(self, video_id: str, config_hash: str) -> Path:
        return self.video_dir(video_id) / done_marker_name(config_hash)

    def failed_fragment(self, video_id: str, config_hash: str) -> Path:
        """A failed video's one file (row and marker), see the module docstring."""
        return self.video_dir(video_id) / failed_fragment_name(config_hash)

    def is_done(self, video_id: str, config_hash: str) -> bool:
        """Whether ``video_id`` is finished under ``config_hash``: its marker or its failed-row file exists
        (one or two ``stat`` calls; resume calls this for every listed video)."""
        folder = self.video_dir(video_id)
        return any(os.path.exists(os.path.join(folder, name)) for name in completion_names(config_hash))

    def schema_fragment(self, table: str) -> Path:
        return self.data_dir / SCHEMA_DIR / SCHEMA_DIR / f"{table}.parquet"

    @property
    def compacted_dir(self) -> Path:
        return self.data_dir / COMPACTED_DIR

    @property
    def compaction_state_path(self) -> Path:
        return self.compacted_dir / COMPACTION_STATE_FILE

    def generation_dir(self, generation: int) -> Path:
        return self.compacted_dir / generation_name(generation)

    @property
    def lock_path(self) -> Path:
        return self.state_dir / "catalog.lock"

    @staticmethod
    def compacted_glob(generation: int, table: str) -> str:
        """Glob of a compaction generation's files of ``table``, relative to the run folder."""
        return f"data/{COMPACTED_DIR}/{generation_name(generation)}/{table}/*.parquet"

    @staticmethod
    def fragment_glob(table: str) -> str:
        """Glob of a table's fragments, relative to the run folder (DuckDB resolves it with file_search_path).
        The ``videos`` glob also matches failed videos' one files (``videos.failed.<config_hash>.parquet``):
        one pattern, which the schema fragment always matches, so a view never meets "no files"."""
        return f"data/*/*/{table}*.parquet" if table == "videos" else f"data/*/*/{table}.parquet"

    @staticmethod
    def failed_fragment_glob() -> str:
        """Glob of the failed videos' one files, relative to the run folder (it may match nothing)."""
        return f"data/*/*/{FAILED_PREFIX}*{PARQUET_SUFFIX}"

    @staticmethod
    def clip_motion_relpath(video_id: str, clip_id: str) -> str:
        """Path of a clip's human motion file relative to the run folder (stored in the catalog)."""
        return f"data/{shard_of(video_id)}/{video_id}/clips/{clip_id}.npz"

    @staticmethod
    def g1_motion_relpath(video_id: str, clip_id: str) -> str:
        """Path of a clip's retargeted G1 motion file relative to the run folder (stored in the catalog)."""
        return f"data/{shard_of(video_id)}/{video_id}/clips/{clip_id}.g1.npz"
