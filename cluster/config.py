"""The run's configuration: what decides the results (hashed) versus how the run executes (not hashed).

Resume is keyed by ``video_id`` + :meth:`RunConfig.config_hash`: changing the worker count, the list order or
adding videos never redoes finished work, while changing anything that alters results (backend, its options,
clip settings) does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from ingest.errors import ConfigError
from pipeline.clips import ClipConfig
from pipeline.identity import IdentityGuardConfig
from pipeline.retarget import KeyPoint, RetargetConfig, RobotPoint
from pipeline.trajectory import TrajectoryConfig
from pipeline.world import WorldConfig

#: Version of what a video's results are (rows and motion files), part of the configuration hash. It is not the
#: catalog's ``FORMAT_VERSION``: reorganising the catalog (compaction, migrations) must not redo finished videos.
RESULTS_VERSION = 2  # 2: every person tracked (mediapipe multi-person), identity-jump guard


@dataclass
class DownloadConfig:
    """How remote videos are fetched. Only ``max_height`` changes results, so only it is hashed."""

    max_height: int = 720
    socket_timeout_s: float = 30.0
    retries: int = 3
    max_bytes: int = 4 * 1024**3
    use_pytube_fallback: bool = False
    deadline_s: float = 3600.0
    """Overall wall-clock limit of one download, retries included: a trickling server cannot hold a worker."""


@dataclass
class RunConfig:
    """Everything that decides what a video turns into.

    backend: pose backend registry name (``mediapipe``, ``phalp-pkl``).
    backend_options: backend keyword options (e.g. ``{"focal_px": 1200.0}``); validated by the backend.
    clip: segmentation, world-alignment and metric settings.
    retarget: the G1 retargeter's weights and key points; ``g1_mjcf``: a user G1 MJCF (None: the bundled one).
    download: remote-source settings.
    """

    backend: str = "mediapipe"
    backend_options: dict = field(default_factory=dict)
    clip: ClipConfig = field(default_factory=ClipConfig)
    retarget: RetargetConfig = field(default_factory=RetargetConfig)
    g1_mjcf: str | None = None
    download: DownloadConfig = field(default_factory=DownloadConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        d = dict(d)
        try:
            clip_d = dict(d.pop("clip", {}))
            world = WorldConfig(**clip_d.pop("world", {}))
            identity = IdentityGuardConfig(**clip_d.pop("identity", {}))
            trajectory = TrajectoryConfig(**clip_d.pop("trajectory", {}))
            clip = ClipConfig(world=world, identity=identity, trajectory=trajectory, **clip_d)
            retarget = _retarget_config_from_dict(d.pop("retarget", {}))
            download = DownloadConfig(**d.pop("download", {}))
            return cls(clip=clip, retarget=retarget, download=download, **d)
        except TypeError as exc:
            raise ConfigError(f"bad configuration: {exc}") from None

    def hashed_dict(self) -> dict:
        """The part of the configuration that changes results (what the hash covers)."""
        return {
            "format_version": RESULTS_VERSION,
            "backend": self.backend,
            "backend_options": self.backend_options,
            "backend_env": _backend_env(self.backend),
            "clip": dataclasses.asdict(self.clip),
            "retarget": dataclasses.asdict(self.retarget),
            "g1_mjcf_sha256": _file_sha256(self.g1_mjcf) if self.g1_mjcf else None,
            "max_height": self.download.max_height,
        }

    def config_hash(self) -> str:
        """12 hex characters of the SHA-256 of :meth:`hashed_dict` as canonical JSON."""
        blob = json.dumps(self.hashed_dict(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]


def _backend_env(backend: str) -> dict:
    """Values of the environment variables the backend declares as changing its results."""
    import os

    from pipeline.backends.base import backend_class

    return {k: os.environ.get(k) for k in backend_class(backend).result_env}


def _retarget_config_from_dict(d: dict) -> RetargetConfig:
    d = dict(d)
    if "keypoints" in d:
        d["keypoints"] = tuple(
            KeyPoint(human=k["human"], parent=k["parent"], weight=k.get("weight", 1.0),
                     robot=tuple(RobotPoint(body=r["body"], offset_m=tuple(r.get("offset_m", (0.0, 0.0, 0.0))),
                                            sole=r.get("sole", "")) for r in k["robot"]))
            for k in d["keypoints"]
        )
    return RetargetConfig(**d)


def _file_sha256(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError as exc:
        raise ConfigError(f"cannot read the G1 MJCF {path}: {exc}") from None
