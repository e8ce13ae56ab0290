"""``g1forge publish``: log an export's clips to Weights & Biases as the motion artifacts trainers fetch.

mjlab's and BeyondMimic's trainers take ``--registry-name ENTITY/wandb-registry-motions/NAME`` and read the
file ``motion.npz`` of that artifact (:mod:`catalog.trainers`). For every clip folder of an export in
``mjlab-npz``, ``isaaclab-npz`` or ``isaaclab-npz-all-links`` format (``<clip_id>/motion.npz``, :mod:`catalog.export`), this logs one artifact:

- name: the clip id (a W&B artifact name: letters, digits, ``-``, ``_``, ``.``); type ``motions``;
- one file, ``motion.npz``, byte for byte the exported file;
- metadata: the clip's ``clip.json`` (source, licence, fps, frames, configuration hash, ...);

then links it into the registry collection ``wandb-registry-motions/<clip_id>``, where trainers look. All clips
go through one W&B run (``--project``, default ``g1forge``; ``job_type`` ``publish``). Linking needs the W&B
server: in offline mode (``WANDB_MODE=offline``, or ``--offline``) the artifacts are logged into the local run
folder and the links are listed as skipped (``wandb sync`` then uploads the run; link in the W&B app, or publish
again online). Publishing the same export twice adds no new artifact version: W&B deduplicates by content.

W&B is an optional dependency (``pip install 'g1forge[wandb]'``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from catalog.export import CLIP_INFO, EXPORT_MARKER, MOTION_STEM, SPLITS
from catalog.trainers import WANDB_ARTIFACT_TYPE, WANDB_REGISTRY
from ingest.errors import ConfigError, require_module

#: Export formats whose files the registry-fetching trainers load.
PUBLISHABLE_FORMATS = ("mjlab-npz", "isaaclab-npz", "isaaclab-npz-all-links")
_ARTIFACT_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass
class PublishReport:
    """What a publish did: ``artifacts`` logged (name, split), ``links`` made (registry paths), ``skipped``
    ``(what, why)``, the W&B ``run_path`` (``entity/project/run_id``, or the local run folder offline)."""

    artifacts: list[tuple[str, str]] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    run_path: str = ""
    offline: bool = False

    def summary(self) -> str:
        lines = [f"published {len(self.artifacts)} clips as W&B '{WANDB_ARTIFACT_TYPE}' artifacts in {self.run_path}"]
        if self.links:
            lines.append(f"  linked into {WANDB_REGISTRY}: {len(self.links)} (train with --registry-name "
                         f"ENTITY/{WANDB_REGISTRY}/<clip_id>)")
        if self.offline:
            lines.append("  offline: nothing was uploaded or linked; `wandb sync` the run folder, then publish again "
                         "online to link the clips into the registry")
        lines += [f"  skipped {what}: {why}" for what, why in self.skipped]
        return "\n".join(lines)


def clip_folders(export_dir: Path) -> list[tuple[str, Path]]:
    """``(split, folder)`` of every clip folder holding ``motion.npz`` in an export, in split then name order."""
    out = []
    for split, base in [("", export_dir)] + [(s, export_dir / s) for s in SPLITS]:
        if base.is_dir():
            out += [(split or "all", p) for p in sorted(base.iterdir())
                    if p.is_dir() and p.name not in SPLITS and (p / f"{MOTION_STEM}.npz").is_file()]
    return out


def publish(export_dir: str | Path, *, project: str = "g1forge", entity: str | None = None,
            splits: tuple[str, ...] = ("train", "all"), link: bool = True, offline: bool | None = None,
            wandb_dir: str | Path | None = None) -> PublishReport:
    """Log the clips of the export folder ``export_dir`` as W&B motion artifacts and link them (module docstring).

    splits: which clip folders to publish: ``train``, ``val`` and ``all`` (an export without a split);
    link: link each artifact into the ``motions`` registry (online only); offline: force W&B's offline mode
    (None: as the environment says); wandb_dir: where W&B keeps its run folder (default: W&B's).
    Raises :class:`ConfigError` when the folder is not an npz export or W&B is missing.
    """
    export_dir = Path(export_dir).expanduser()
    if not (export_dir / EXPORT_MARKER).is_file():
        raise ConfigError(f"{export_dir} is not a g1forge export folder; export first: g1forge export RUN "
                          "--format mjlab-npz --dest FOLDER")
    params = _export_parameters(export_dir)
    if params.get("format") not in PUBLISHABLE_FORMATS or params.get("layout", "folders") != "folders":
        raise ConfigError(f"{export_dir} holds a {params.get('format')!r} export with the "
                          f"{params.get('layout', 'folders')!r} layout; trainers fetch motion.npz artifacts: "
                          f"export with --format {' or '.join(PUBLISHABLE_FORMATS)} (folders layout)")
    wandb = require_module("wandb", "g1forge publish", "pip install 'g1forge[wandb]'")
    clips = [(s, p) for s, p in clip_folders(export_dir) if s in splits]
    report = PublishReport()
    mode = "offline" if offline else None
    run = wandb.init(project=project, entity=entity, job_type="publish", mode=mode,
                     dir=str(wandb_dir) if wandb_dir is not None else None,
                     config={"export": params, "num_clips": len(clips)})
    try:
        report.offline = bool(getattr(run.settings, "_offline", False)) or run.offline
        report.run_path = str(Path(run.dir).parent) if report.offline else run.path
        for split, folder in clips:
            name = folder.name
            if not _ARTIFACT_NAME.match(name):
                report.skipped.append((name, "not a valid W&B artifact name"))
                continue
            info = _read_info(folder)
            art = wandb.Artifact(name=name, type=WANDB_ARTIFACT_TYPE, metadata={**info, "split": split},
                                 description=f"g1forge clip {name} ({info.get('format', '')}, "
                                             f"{info.get('fps', '')} fps)")
            art.add_file(str(folder / f"{MOTION_STEM}.npz"), name=f"{MOTION_STEM}.npz")
            logged = run.log_artifact(art)
            report.artifacts.append((name, split))
            if not link:
                continue
            if report.offline:
                report.skipped.append((f"link {name}", "offline"))
                continue
            target = f"{WANDB_REGISTRY}/{name}"
            run.link_artifact(logged, target_path=target)
            report.links.append(target)
    finally:
        run.finish()
    return report


def _export_parameters(export_dir: Path) -> dict:
    """The export's parameters from its manifest's metadata (format, fps, layout, ...)."""
    import pyarrow.parquet as pq

    from catalog.export import MANIFEST_PARQUET, PARQUET_METADATA_KEY

    try:
        meta = pq.read_schema(export_dir / MANIFEST_PARQUET).metadata or {}
        return json.loads(meta[PARQUET_METADATA_KEY])
    except (OSError, KeyError, ValueError) as exc:
        raise ConfigError(f"cannot read the export's manifest in {export_dir} ({exc}); export again") from None


def _read_info(folder: Path) -> dict:
    try:
        return json.loads((folder / CLIP_INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
