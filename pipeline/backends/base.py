"""The pose-backend interface and registry.

A backend is a class with a registry name that turns one video into a :class:`pipeline.motion.PoseResult`.
It is constructed once per worker (models load in ``__init__`` or lazily on first use) and then called for
many videos, so a long-lived worker never reloads its models.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

from ingest.errors import ConfigError
from ingest.items import VideoItem
from pipeline.motion import PoseResult


class PoseBackend(ABC):
    """Turns a video into tracks of 3D human motion.

    Subclasses set ``name`` and ``version`` and implement :meth:`process`.
    ``options`` are backend-specific settings (e.g. ``focal_px``); unknown keys raise :class:`ConfigError`.
    """

    name: str = ""
    version: str = ""
    #: whether the backend reads the video's frames (so the video must be downloaded/probed first)
    needs_video: bool = True
    #: CPU cores one worker of this backend keeps busy (its own threads plus decoding); sizes the worker pool
    cpus_per_worker: int = 1
    #: environment variables that change this backend's results (their values join the configuration hash)
    result_env: tuple[str, ...] = ()
    #: GPUs one worker needs (Ray pins each worker to its own GPU through CUDA_VISIBLE_DEVICES); 0 for CPU backends
    gpus_per_worker: float = 0
    #: True when the pose stage is light (reading results, not running a model): the run then gives the CPUs
    #: to the finish stage (clips and retargeting) and keeps one pose worker
    light_pose: bool = False

    @abstractmethod
    def process(self, item: VideoItem, video_path: str | None) -> PoseResult:
        """Track every person in ``video_path`` (the local file for ``item``; None when not ``needs_video``).

        Raises a :class:`ingest.errors.G1ForgeError` subclass for anything that should become a catalog reason.
        """

    def close(self) -> None:  # pragma: no cover - default no-op
        """Release models and files."""


_REGISTRY: dict[str, Callable[..., PoseBackend]] = {}


def register_backend(name: str):
    """Class decorator: make a backend available as ``--backend name``."""

    def deco(cls):
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def available_backends() -> list[str]:
    _load_builtin_backends()
    return sorted(_REGISTRY)


#: Plugin hook: comma-separated module names (importable on ``PYTHONPATH``) that register more backends with
#: :func:`register_backend` when imported. They are imported only when a name is not already known.
BACKEND_MODULES_ENV = "G1FORGE_BACKEND_MODULES"


def backend_class(name: str):
    """The class registered as ``name`` (no instance, no model load).

    A name that no built-in backend has makes the modules listed in ``$G1FORGE_BACKEND_MODULES`` be imported
    (each registers its backends on import), then the registry is looked up again. Ray workers of a local
    cluster (started by ``ray.init`` in the driver) inherit the driver's environment, so setting the variable
    and ``PYTHONPATH`` before the run makes such a backend load inside the pose workers too; on a remote
    cluster, set both in the workers' environment (e.g. the image or the runtime environment).
    Raises :class:`ConfigError` listing the known backends when ``name`` is still unknown, or naming the
    plugin module that could not be imported.
    """
    _load_builtin_backends()
    if name not in _REGISTRY:
        _load_plugin_backends()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown backend {name!r}; choose one of: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def _load_plugin_backends() -> None:
    """Import the modules named in ``$G1FORGE_BACKEND_MODULES`` (already imported ones are not re-run)."""
    import importlib
    import os

    for module in filter(None, (m.strip() for m in os.environ.get(BACKEND_MODULES_ENV, "").split(","))):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"backend plugin module {module!r} (from ${BACKEND_MODULES_ENV}) cannot be "
                              f"imported: {exc}; put its folder on PYTHONPATH or fix ${BACKEND_MODULES_ENV}") from exc


def create_backend(name: str, **options) -> PoseBackend:
    """Instantiate the backend registered as ``name`` with its ``options``."""
    return backend_class(name)(**options)


def _load_builtin_backends() -> None:
    # Importing these modules registers them; they import their heavy dependencies lazily.
    from pipeline.backends import fourdhumans, mediapipe_backend, mediapipe_multi, phalp_pkl  # noqa: F401


def options_from_dict(options_cls, options: dict, backend: str):
    """Build a backend's options dataclass from ``--backend-option`` values.

    Unknown keys raise :class:`ConfigError` naming every valid option; value checks stay with each backend.
    """
    from dataclasses import fields

    valid = [f.name for f in fields(options_cls)]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(f"unknown {backend} option(s) {', '.join(unknown)}; valid options: {', '.join(valid)}")
    return options_cls(**options)
