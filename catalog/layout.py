"""Where everything lives inside a run folder. Every path is derived from ids only (never from titles or URLs).

::

    OUT/
      g1forge.json                         info file: format version, configuration and its hash
      catalog.duckdb                       DuckDB views over the Parquet fragments (paths relative to OUT)
      data/<shard>/<video_id>/             one committed folder per video, published by an atomic rename:
          videos.parquet                   exactly one row
          tracks.parquet                   one row per track
          clips.parquet                    one row per clip (ok and filtered)
          clips/<clip_id>.npz              the clip's world-frame human motion (see pipeline.motion_io)
          clips/<clip_id>.g1.npz           the clip retargeted to the G1 (see pipeline.g1_motion)
          _done.<config_hash>              completion marker, written last inside the staged folder
      data/_schema/_schema/*.parquet       zero-row fragments carrying the full schema (views never see "no files")
      data/_compacted/CURRENT.json         the committed compaction generation (see catalog.compact)
      data/_compacted/gen-<NNNNNN>/<table>/*.parquet   that generation's merged rows of each table
      state/catalog.lock                   advisory lock: runs hold it shared, compaction exclusive
      state/plan.parquet                   the latest run's input list (video_id, uri), for `g1forge status`
      state/runs/<run_id>.json             stats of each run
      cache/downloads/                     remote videos, named by video_id
      tmp/                                 staging; anything here is incomplete and safe to delete
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

FORMAT_VERSION = 2
#: What each catalog format version changed (docs/catalog.md has the full contract).
FORMAT_HISTORY = {
    1: "per-video Parquet fragments under data/<shard>/<video_id>/, views over their glob",
    2: "compaction generations under data/_compacted/ (CURRENT.json says which); views read the generation's "
       "rows of videos without a fragment plus every fragment",
}
INFO_FILE = "g1forge.json"
DUCKDB_FILE = "catalog.duckdb"
TABLES = ("videos", "tracks", "clips")
SCHEMA_DIR = "_schema"
COMPACTED_DIR = "_compacted"
COMPACTION_STATE_FILE = "CURRENT.json"


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
        return self.video_dir(video_id) / f"_done.{config_hash}"

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
        """Glob of a table's fragments, relative to the run folder (DuckDB resolves it with file_search_path)."""
        return f"data/*/*/{table}.parquet"

    @staticmethod
    def clip_motion_relpath(video_id: str, clip_id: str) -> str:
        """Path of a clip's human motion file relative to the run folder (stored in the catalog)."""
        return f"data/{shard_of(video_id)}/{video_id}/clips/{clip_id}.npz"

    @staticmethod
    def g1_motion_relpath(video_id: str, clip_id: str) -> str:
        """Path of a clip's retargeted G1 motion file relative to the run folder (stored in the catalog)."""
        return f"data/{shard_of(video_id)}/{video_id}/clips/{clip_id}.g1.npz"
