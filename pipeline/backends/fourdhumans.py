"""The ``4dhumans`` backend: 4D-Humans (HMR2.0 + PHALP) tracking on a CUDA GPU, driven without editing its files.

One instance lives in one worker process pinned to one GPU (``CUDA_VISIBLE_DEVICES``, set before torch is
imported; ``cpus_per_worker`` stays 1). What it does differently from the seed's ``python track.py video.source=...``:

- ``track.py`` (a script, not part of the installed ``hmr2`` package) is imported by file path from the user's
  4D-Humans checkout (option ``checkout_dir`` or ``$G1FORGE_4DHUMANS_DIR``), with the warning filters it changes
  restored afterwards.
- The environment is set before that import: ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` (PyTorch >= 2.6 checkpoint
  loads), ``PYTHONBREAKPOINT=0`` (the bare ``breakpoint()`` in ``hmr2/datasets/utils.py``),
  ``PYOPENGL_PLATFORM=egl`` (headless), and with ``cache_home`` the ``HOME`` / ``FVCORE_CACHE`` / ``TORCH_HOME``
  of a provisioned cache (both repos read ``$HOME`` at import time).
- The config is ``OmegaConf.structured(Human4DConfig)`` merged with a dotlist, no Hydra: ``video.end_frame=-1``
  (no 1300-frame cap), ``render.enable=False``, ``detect_shots=True``, ``overwrite=True``.
- The tracker is constructed once (all models load in ``PHALP.__init__``) and reused: per video only
  ``cfg.video.source``, a fresh ``cfg.video.output_dir`` under a temporary folder and ``tracker.io_manager`` change.
- A subclass of ``HMR2_4dhuman``: the predictor (``HMR2Predictor``, "PHALP'+HMR2", or the paper's
  ``HMR2023TextureSampler``, which needs neural_renderer) is an option; the second (RPN) detector, used only for
  ground-truth-box ``.pkl`` sources, and the visualiser's OpenGL setup are no-ops when not rendering; missing
  weight files raise :class:`MissingWeightsError` naming them instead of downloading at construction (unless
  ``download_missing``); exceptions inside PHALP's frame loop, which ``track()`` prints and swallows, are
  captured and raised as :class:`BackendError` so the catalog row says why.
- :class:`StreamingFrameSource` replaces PHALP's ``IO_Manager``: frames are decoded on demand by
  :func:`ingest.decode.iter_frames` (in a prefetch thread) instead of being dumped to JPEG and read back; frame
  keys are ``(video_path, frame_idx)`` tuples, the form PHALP itself uses for in-video frames, so its shot
  detector reads the source video directly. The frame rate and per-frame times come from the stream (PHALP
  records neither).
- The returned results dict goes through :func:`pipeline.backends.phalp_pkl.pose_result_from_phalp`, the same
  conversion the ``phalp-pkl`` importer uses (real observations only, camera-frame joints from ``3d_joints`` +
  ``camera``, SMPL kept, 2D joints back to pixels).

- Throughput options (see :class:`FourDHumansOptions` and docs/gpu.md): ``det_stride`` (the detector on every
  k-th frame, its boxes carried in between), ``det_size`` (detector input side), ``max_people``, ``precision=bf16``
  (the ViT backbones under autocast); per-stage wall times are summed in :attr:`FourDHumansBackend.stage_times`.
- ``device=cpu`` runs the upstream code on the CPU (tests, benchmarks with the generated stand-in files of
  tests/make_4dhumans_standins.py): see :func:`install_cpu_shim`. HMR2 is loaded without its OpenGL renderer and
  without ``download_models()`` (the files were verified first).

Nothing here imports torch, hmr2, phalp or detectron2 at module import; they load in the first ``process``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ingest.errors import (
    BackendError,
    ConfigError,
    DecodeError,
    G1ForgeError,
    InputNotFound,
    MissingDependencyError,
)
from ingest.items import VideoItem
from pipeline.backends.base import PoseBackend, options_from_dict, register_backend
from pipeline.backends.phalp_pkl import pose_result_from_phalp
from pipeline.motion import PoseResult
from pipeline.smpl_joints import ENV_SMPL_DIR, SMPL_JOINTS_VERSION_TAG, resolve_smpl_model_dir

ENV_CHECKOUT = "G1FORGE_4DHUMANS_DIR"
ENV_CACHE_HOME = "G1FORGE_4DHUMANS_HOME"
#: default of the ``device`` option ("cuda", or "cpu" to run the upstream code on the CPU: tests, benchmarks)
ENV_DEVICE = "G1FORGE_4DHUMANS_DEVICE"
FOURDHUMANS_COMMIT = "6ec7965"
PHALP_COMMIT = "96f7e6c"
SETUP_HINT = "run `g1forge setup gpu` (or see the README section 'GPU backend (4D-Humans)')"

#: Environment set before 4D-Humans is imported (values the user already set win, except where noted).
BASE_ENV: dict[str, str] = {
    "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1",
    "PYTHONBREAKPOINT": "0",
    "PYOPENGL_PLATFORM": "egl",
}

#: Predictor option -> class name in track.py.
PREDICTORS = {"hmr2": "HMR2Predictor", "texture": "HMR2023TextureSampler"}


class MissingWeightsError(MissingDependencyError):
    """A weight / model file 4D-Humans needs is not in the cache."""

    reason = "missing_weights"


@dataclass(frozen=True)
class CacheFile:
    """One file 4D-Humans / PHALP read from their caches.

    rel_path: path relative to the cache home (the folder used as ``$HOME``).
    url: where the upstream code downloads it from ("" when it cannot be downloaded, e.g. the SMPL model).
    needed_for: which predictor choices need it at run time: "all", "texture", or "archive" (a download that other
        files are extracted from; never needed at run time).
    """

    rel_path: str
    url: str
    needed_for: str = "all"


_PHALP_URL = "https://www.cs.utexas.edu/~pavlakos/phalp"
HMR2_CHECKPOINT_REL = ".cache/4DHumans/logs/train/multiruns/hmr2/0/checkpoints/epoch=35-step=1000000.ckpt"
RESNET50_REL = ".cache/torch/hub/checkpoints/resnet50-19c8e357.pth"
RESNET50_URL = "https://download.pytorch.org/models/resnet50-19c8e357.pth"
VITDET_URL = ("https://dl.fbaipublicfiles.com/detectron2/ViTDet/COCO/cascade_mask_rcnn_vitdet_h/f328730692/"
              "model_final_f05665.pkl")

#: What a working cache holds (paths as the upstream code builds them from ``$HOME``; see the reference notes).
CACHE_FILES: tuple[CacheFile, ...] = (
    # the archive the next five files come from; not read at run time once extracted (needed_for="archive")
    CacheFile(".cache/4DHumans/hmr2_data.tar.gz",
              "https://people.eecs.berkeley.edu/~jathushan/projects/4dhumans/hmr2_data.tar.gz", "archive"),
    CacheFile(HMR2_CHECKPOINT_REL, ""),  # extracted from hmr2_data.tar.gz
    CacheFile(".cache/4DHumans/logs/train/multiruns/hmr2/0/model_config.yaml", ""),  # ditto
    CacheFile(".cache/4DHumans/data/SMPL_to_J19.pkl", ""),  # ditto (HMR2's SMPL reads it)
    CacheFile(".cache/4DHumans/data/smpl_mean_params.npz", ""),  # ditto (HMR2's head reads it)
    CacheFile(".cache/4DHumans/data/smpl/SMPL_NEUTRAL.pkl", ""),  # converted from the official SMPL file
    CacheFile(".cache/phalp/3D/models/smpl/SMPL_NEUTRAL.pkl", ""),  # ditto
    CacheFile(".cache/phalp/3D/head_faces.npy", f"{_PHALP_URL}/3D/head_faces.npy"),
    CacheFile(".cache/phalp/3D/mean_std.npy", f"{_PHALP_URL}/3D/mean_std.npy"),
    CacheFile(".cache/phalp/3D/smpl_mean_params.npz", f"{_PHALP_URL}/3D/smpl_mean_params.npz"),
    CacheFile(".cache/phalp/3D/SMPL_to_J19.pkl", f"{_PHALP_URL}/3D/SMPL_to_J19.pkl"),
    CacheFile(".cache/phalp/3D/texture.npz", f"{_PHALP_URL}/3D/texture.npz"),
    CacheFile(".cache/phalp/3D/bmap_256.npy", f"{_PHALP_URL}/bmap_256.npy", "texture"),
    CacheFile(".cache/phalp/3D/fmap_256.npy", f"{_PHALP_URL}/fmap_256.npy", "texture"),
    CacheFile(".cache/phalp/weights/hmar_v2_weights.pth", f"{_PHALP_URL}/weights/hmar_v2_weights.pth"),
    CacheFile(".cache/phalp/weights/pose_predictor.pth", f"{_PHALP_URL}/weights/pose_predictor_40006.ckpt"),
    CacheFile(".cache/phalp/weights/pose_predictor.yaml", f"{_PHALP_URL}/weights/config_40006.yaml"),
    CacheFile(".cache/phalp/ava/ava_labels.pkl", f"{_PHALP_URL}/ava/ava_labels.pkl"),
    CacheFile(".cache/phalp/ava/ava_class_mapping.pkl", f"{_PHALP_URL}/ava/ava_class_mappping.pkl"),
    # PHALP's HMAR builds its ResNet-50 with pretrained=True: torch.hub reads it from $TORCH_HOME (<home>/.cache/torch)
    CacheFile(RESNET50_REL, RESNET50_URL),
    # detectron2 keeps downloads under $FVCORE_CACHE (set to <home>/.torch/iopath_cache) by URL path.
    CacheFile(".torch/iopath_cache/detectron2/ViTDet/COCO/cascade_mask_rcnn_vitdet_h/f328730692/"
              "model_final_f05665.pkl", VITDET_URL),
)


def default_cache_home() -> Path:
    """The folder used as ``$HOME`` for the caches: ``$G1FORGE_4DHUMANS_HOME``, else the real home."""
    return Path(os.environ.get(ENV_CACHE_HOME) or Path.home()).expanduser()


def missing_cache_files(cache_home: str | Path, predictor: str = "hmr2") -> list[Path]:
    """Files of :data:`CACHE_FILES` absent (or empty) under ``cache_home`` for this predictor choice."""
    home = Path(cache_home)
    out = []
    for f in CACHE_FILES:
        if f.needed_for not in ("all", predictor):
            continue
        p = home / f.rel_path
        if not p.is_file() or p.stat().st_size == 0:
            out.append(p)
    return out


def resolve_checkout(checkout_dir: str | None) -> Path:
    """The 4D-Humans checkout holding ``track.py``: the option, else ``$G1FORGE_4DHUMANS_DIR``.

    Raises :class:`ConfigError` naming both ways to set it, or :class:`InputNotFound` when track.py is absent.
    """
    raw = checkout_dir or os.environ.get(ENV_CHECKOUT)
    if not raw:
        raise ConfigError(
            f"the 4dhumans backend needs a 4D-Humans checkout (commit {FOURDHUMANS_COMMIT}): pass "
            f"--backend-option checkout_dir=/path/to/4D-Humans or set {ENV_CHECKOUT}; {SETUP_HINT}"
        )
    path = Path(raw).expanduser().resolve()
    if not (path / "track.py").is_file():
        raise InputNotFound(f"{path / 'track.py'} does not exist: point checkout_dir / {ENV_CHECKOUT} at the "
                            f"root of a 4D-Humans git checkout; {SETUP_HINT}")
    return path


def prepare_environment(cache_home: str | Path | None = None, gpu: int | None = None) -> dict[str, str]:
    """Set the environment 4D-Humans needs before it is imported; returns what was set.

    cache_home: folder used as ``$HOME`` (it holds ``.cache/4DHumans``, ``.cache/phalp``, ``.torch``); also sets
        ``FVCORE_CACHE`` and ``TORCH_HOME`` inside it. None leaves them alone.
    gpu: pin this process to one GPU through ``CUDA_VISIBLE_DEVICES``. Raises :class:`ConfigError` if torch has
        already been imported with another pinning (the variable is only read when CUDA initialises).
    """
    env = {k: os.environ.get(k) or v for k, v in BASE_ENV.items()}
    env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"  # required, whatever was set before
    env["PYTHONBREAKPOINT"] = "0"
    if cache_home is not None:
        home = Path(cache_home).expanduser().resolve()
        env["HOME"] = str(home)
        env["FVCORE_CACHE"] = str(home / ".torch" / "iopath_cache")
        env["TORCH_HOME"] = str(home / ".cache" / "torch")
    if gpu is not None:
        wanted = str(int(gpu))
        if "torch" in sys.modules and os.environ.get("CUDA_VISIBLE_DEVICES") not in (None, wanted):
            raise ConfigError(
                f"gpu={gpu} was asked but torch is already imported with CUDA_VISIBLE_DEVICES="
                f"{os.environ.get('CUDA_VISIBLE_DEVICES')}; run one worker process per GPU and set it first"
            )
        env["CUDA_VISIBLE_DEVICES"] = wanted
    os.environ.update(env)
    return env


_TRACK_MODULES: dict[str, object] = {}


def import_track_module(checkout: Path):
    """Import ``<checkout>/track.py`` by path (once per process); the warning filters it changes are restored.

    Raises :class:`MissingDependencyError` naming the package that failed to import.
    """
    key = str(checkout / "track.py")
    if key in _TRACK_MODULES:
        return _TRACK_MODULES[key]
    name = f"g1forge_4dhumans_track_{len(_TRACK_MODULES)}"
    spec = importlib.util.spec_from_file_location(name, key)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look classes up through sys.modules
    sys.path.insert(0, str(checkout))  # track.py may import hmr2 from the checkout itself
    ok = False
    try:
        with warnings.catch_warnings():  # track.py and PHALP call warnings.filterwarnings('ignore') at import
            spec.loader.exec_module(module)
        ok = True
    except ModuleNotFoundError as exc:
        raise MissingDependencyError(
            f"importing {key} failed: module {exc.name!r} is not installed; the 4dhumans backend needs torch, "
            f"hmr2 (4D-Humans {FOURDHUMANS_COMMIT}), PHALP ({PHALP_COMMIT}) and detectron2 on a CUDA machine: "
            f"{SETUP_HINT}"
        ) from exc
    except ImportError as exc:
        raise MissingDependencyError(f"importing {key} failed ({exc}); reinstall the GPU stack: {SETUP_HINT}") from exc
    finally:
        try:
            sys.path.remove(str(checkout))
        except ValueError:
            pass
        if not ok:
            sys.modules.pop(name, None)
    for attr in ("HMR2_4dhuman", "Human4DConfig", *PREDICTORS.values()):
        if not hasattr(module, attr):
            raise MissingDependencyError(f"{key} has no {attr}: use 4D-Humans at commit {FOURDHUMANS_COMMIT}")
    _TRACK_MODULES[key] = module
    return module


# -- frames ---------------------------------------------------------------------------------------------------


def presentation_times_s(video_path: str | Path) -> np.ndarray:
    """(N,) presentation times in seconds (since the stream's first frame) of every frame, from one demux pass.

    Packets are not decoded. Streams without packet timestamps are decoded (small frames) to count them.
    Raises :class:`ingest.errors.ProbeError` / :class:`DecodeError` like :func:`ingest.decode.iter_frames`.
    """
    from ingest.decode import _import_av, iter_frames  # noqa: PLC0415

    av = _import_av()
    try:
        container = av.open(str(video_path))
    except (av.FFmpegError, OSError) as exc:
        from ingest.errors import ProbeError  # noqa: PLC0415

        raise ProbeError(f"cannot open {video_path} as a video ({exc}); check the file is a complete video") from exc
    try:
        if not container.streams.video:
            from ingest.errors import ProbeError  # noqa: PLC0415

            raise ProbeError(f"{video_path} has no video stream; give a video file")
        stream = container.streams.video[0]
        start = stream.start_time or 0
        tb = float(stream.time_base) if stream.time_base else 0.0
        pts = []
        missing = False
        for packet in container.demux(stream):
            if not packet.size:
                continue
            if packet.pts is None:
                missing = True
                break
            if packet.is_discard or packet.pts < start:
                continue
            pts.append(packet.pts)
    except av.FFmpegError as exc:
        raise DecodeError(f"reading {video_path} failed while indexing its frames: {exc}") from exc
    finally:
        container.close()
    if not missing and tb:
        return (np.sort(np.asarray(pts, dtype=np.int64)) - start) * tb
    with iter_frames(video_path, max_side_px=32) as frames:
        return np.array([f.time_s for f in frames], dtype=np.float64)


class StreamingFrameSource:
    """Stands in for PHALP's ``IO_Manager``: frames decoded on demand, never written to disk.

    PHALP calls ``get_frames_from_source()`` once, then ``read_frame(key)`` for each key in order, then
    ``close_video()``. Keys are ``(video_path, frame_idx)`` tuples (frame_idx over the whole video).

    Attributes after construction: ``frame_time_s`` (N,) times of frames 0..N-1 up to the end of the window,
    ``first_idx`` (index of the first frame tracked), ``fps`` (the stream's average rate, frames / second),
    ``keys`` (the frames PHALP will track).
    """

    def __init__(self, video_path: str | Path, *, video_name: str, start_s: float | None = None,
                 end_s: float | None = None, prefetch_depth: int = 8, stats: StageTimes | None = None):
        self.video_path = str(video_path)
        self.stats = stats
        self.video_name = video_name
        self.start_s, self.end_s = start_s, end_s
        self.prefetch_depth = prefetch_depth
        times = presentation_times_s(self.video_path)
        last = len(times) if end_s is None else int(np.searchsorted(times, end_s - 1e-9, side="left"))
        self.first_idx = 0 if not start_s else int(np.searchsorted(times, start_s - 1e-9, side="left"))
        self.frame_time_s = times[:last]
        self.keys = [(self.video_path, i) for i in range(self.first_idx, last)]
        self.fps = self._average_fps(times)
        self.frames_read = 0
        self._frames = None

    @staticmethod
    def _average_fps(times: np.ndarray) -> float:
        if len(times) >= 2 and times[-1] > times[0]:
            return float((len(times) - 1) / (times[-1] - times[0]))
        return 30.0

    def get_frames_from_source(self) -> dict:
        return {"list_of_frames": list(self.keys), "additional_data": {}, "video_name": self.video_name}

    def read_frame(self, key) -> np.ndarray:
        """(H, W, 3) uint8 BGR frame for ``key``; keys must come in increasing order (PHALP reads them so)."""
        if not isinstance(key, tuple) or len(key) != 2:
            raise DecodeError(f"frame key {key!r} is not a (video_path, frame_idx) tuple of this source")
        want = int(key[1])
        t0 = time.perf_counter()
        try:
            return self._read(want)
        finally:
            if self.stats is not None:
                self.stats.add("decode", time.perf_counter() - t0)

    def _read(self, want: int) -> np.ndarray:
        from ingest.decode import iter_frames, prefetch  # noqa: PLC0415

        if self._frames is None:
            self._frames = prefetch(iter_frames(self.video_path, start_s=self.start_s, end_s=self.end_s),
                                    depth=self.prefetch_depth)
        for frame in self._frames:
            if frame.frame_idx < want:
                continue
            if frame.frame_idx > want:
                raise DecodeError(f"{self.video_path}: frame {want} was not decoded (got {frame.frame_idx}); "
                                  "the file is damaged: re-encode it")
            self.frames_read += 1
            if self.stats is not None:
                self.stats.frames += 1
            return np.ascontiguousarray(frame.rgb[:, :, ::-1])
        raise DecodeError(f"{self.video_path} ended before frame {want} that its packets announce; the file is "
                          "truncated: re-download or re-encode it")

    def close_video(self) -> None:
        if self._frames is not None:
            self._frames.close()
            self._frames = None

    def reset(self) -> None:
        self.close_video()

    def save_video(self, *args, **kwargs) -> None:
        raise ConfigError("the 4dhumans backend does not render videos (render.enable must stay False)")


# -- the tracker subclass ---------------------------------------------------------------------------------------

#: Methods PHALP's ``track()`` calls inside its try block; exceptions there are recorded before PHALP swallows them.
LOOP_METHODS = ("get_list_of_shots", "get_detections", "run_additional_models", "get_human_features")

#: Stage names of :attr:`StageTimes.seconds` (wall time spent in each, summed over frames).
STAGES = ("decode", "detection", "hmr2", "tracking", "conversion")


@dataclass
class StageTimes:
    """Wall seconds per stage and counters, summed over the videos a backend processed.

    decode: waiting for ``read_frame`` (the decoder runs ahead in a thread, so this is the part not overlapped);
    detection: the detector (``get_detections``); hmr2: crops, HMR2 + PHALP's appearance/pose embeddings
    (``get_human_features``); tracking: PHALP's ``predict`` / ``update`` (pose predictor, association);
    conversion: results dict -> g1forge tracks. ``detector_runs`` / ``detections_carried``: frames on which the
    detector ran / whose boxes were carried from the last detection (``det_stride``). ``crops``: people through HMR2.
    """

    seconds: dict = field(default_factory=lambda: {k: 0.0 for k in STAGES})
    frames: int = 0
    detector_runs: int = 0
    detections_carried: int = 0
    crops: int = 0

    def add(self, stage: str, dt: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + dt

    def as_dict(self) -> dict:
        return {"seconds": dict(self.seconds), "frames": self.frames, "detector_runs": self.detector_runs,
                "detections_carried": self.detections_carried, "crops": self.crops}


_CPU_SHIM_INSTALLED = False


def install_cpu_shim() -> None:
    """Make the upstream code run on the CPU: PHALP and detectron2's predictor call ``.cuda()`` directly.

    In this (worker) process ``Tensor.cuda()`` / ``Module.cuda()`` become moves to the CPU and ``torch.load``
    defaults to ``map_location="cpu"`` (checkpoints saved on a GPU load here). Only with ``device=cpu``.
    """
    global _CPU_SHIM_INSTALLED
    if _CPU_SHIM_INSTALLED:
        return
    import torch  # noqa: PLC0415

    torch.Tensor.cuda = lambda self, *args, **kwargs: self.to("cpu")
    torch.nn.Module.cuda = lambda self, *args, **kwargs: self.to("cpu")
    original_load = torch.load

    def load(f, map_location=None, *args, **kwargs):
        return original_load(f, map_location if map_location is not None else "cpu", *args, **kwargs)

    torch.load = load
    _CPU_SHIM_INSTALLED = True


def _take(x, idx):
    if isinstance(x, np.ndarray):
        return x[idx]
    return [x[i] for i in idx]


def _to_float32(obj):
    """bf16 tensors (nested in dicts / lists) back to float32, so PHALP's ``.numpy()`` calls work."""
    import torch  # noqa: PLC0415

    if isinstance(obj, torch.Tensor):
        return obj.float() if obj.dtype in (torch.bfloat16, torch.float16) else obj
    if isinstance(obj, dict):
        return {k: _to_float32(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_float32(v) for v in obj)
    return obj


def _autocast_forward(module, device_type: str) -> None:
    """``module.forward`` under bf16 autocast, outputs back to float32 (instance attribute, class untouched)."""
    import torch  # noqa: PLC0415

    inner = module.forward

    def forward(*args, **kwargs):
        with torch.autocast(device_type=device_type, dtype=torch.bfloat16):
            out = inner(*args, **kwargs)
        return _to_float32(out)

    module.forward = forward


def _hmr2_loading_patches(device: str):
    """Context for constructing HMR2Predictor: no download (files were verified), no OpenGL renderer at load."""
    import contextlib  # noqa: PLC0415

    @contextlib.contextmanager
    def patches():
        try:
            import hmr2.models as hmr2_models  # noqa: PLC0415
            from hmr2.models.hmr2 import HMR2  # noqa: PLC0415
        except ImportError:  # not the real stack (the tests' stand-in track.py)
            yield
            return
        original_download = hmr2_models.download_models
        original_load = HMR2.__dict__.get("load_from_checkpoint")
        bound = HMR2.load_from_checkpoint

        def load_from_checkpoint(checkpoint_path, *args, **kwargs):
            kwargs.setdefault("init_renderer", False)  # MeshRenderer opens an OpenGL context at construction
            if device == "cpu":
                kwargs.setdefault("map_location", "cpu")
            return bound(checkpoint_path, *args, **kwargs)

        hmr2_models.download_models = lambda *a, **k: None
        HMR2.load_from_checkpoint = staticmethod(load_from_checkpoint)
        try:
            yield
        finally:
            hmr2_models.download_models = original_download
            if original_load is None:
                del HMR2.load_from_checkpoint
            else:
                HMR2.load_from_checkpoint = original_load

    return patches()


def make_tracker_class(track_mod, predictor: str, download_missing: bool, cache_home: Path, options=None,
                       stats: StageTimes | None = None):
    """A subclass of ``track_mod.HMR2_4dhuman`` with the behaviour described in the module docstring.

    options: the :class:`FourDHumansOptions` (``det_stride``, ``max_people``, ``det_size``, ``precision``,
    ``device``); None = defaults. stats: where stage times are added (a fresh :class:`StageTimes` if None).
    """
    base = track_mod.HMR2_4dhuman
    predictor_cls = getattr(track_mod, PREDICTORS[predictor])
    opts = options if options is not None else FourDHumansOptions()
    stats = stats if stats is not None else StageTimes()

    def _guarded(name):
        def method(self, *args, **kwargs):
            try:
                return getattr(super(G1ForgeTracker, self), name)(*args, **kwargs)
            except Exception as exc:
                self._record_loop_error(exc)
                raise

        method.__name__ = name
        return method

    run_detector = _guarded("get_detections")
    human_features = _guarded("get_human_features")

    class G1ForgeTracker(base):
        loop_error: BaseException | None = None
        loop_traceback: str = ""
        stage_times: StageTimes = stats

        def __init__(self, cfg):
            super().__init__(cfg)
            self._last_detections = None
            self._apply_detector_size()
            self._apply_precision()

        def _record_loop_error(self, exc: BaseException) -> None:
            if self.loop_error is None:
                self.loop_error = exc
                self.loop_traceback = traceback.format_exc()

        # -- construction ------------------------------------------------------------------------------------

        def cached_download_from_drive(self, additional_urls=None):
            missing = missing_cache_files(cache_home, predictor)
            if missing and download_missing:
                return super().cached_download_from_drive(additional_urls)
            if missing:
                raise MissingWeightsError(
                    f"{len(missing)} 4D-Humans/PHALP file(s) missing, first {missing[0]}; {SETUP_HINT} "
                    "(or --cache-dir for a pre-provisioned folder), or set download_missing=true"
                )
            return None

        def setup_hmr(self):
            with _hmr2_loading_patches(opts.device):
                self.HMAR = predictor_cls(self.cfg)

        def setup_detectron2_with_RPN(self):
            self.detector_x = None  # only used for ground-truth-box .pkl sources, which this backend never gives

        def setup_visualizer(self):
            if self.cfg.render.enable:
                return super().setup_visualizer()
            self.visualizer = None
            return None

        def _apply_detector_size(self):
            """det_size: the detector's input side (ViTDet: resize + square pad; default 1024, as trained)."""
            size = opts.det_size
            model = getattr(getattr(self, "detector", None), "model", None)
            if not size or model is None:
                return
            import detectron2.data.transforms as T  # noqa: PLC0415

            self.detector.aug = T.AugmentationList([T.ResizeShortestEdge(short_edge_length=size, max_size=size)])
            backbone = getattr(model, "backbone", None)
            if backbone is not None and hasattr(backbone, "_square_pad"):
                backbone._square_pad = size

        def _apply_precision(self):
            if opts.precision != "bf16":
                return
            device_type = "cuda" if opts.device.startswith("cuda") else "cpu"
            hmr2_model = getattr(getattr(self, "HMAR", None), "model", None)
            if hmr2_model is not None:
                _autocast_forward(hmr2_model, device_type)  # HMR2's ViT-H + transformer head
            det_model = getattr(getattr(self, "detector", None), "model", None)
            if det_model is not None and hasattr(det_model, "backbone"):
                _autocast_forward(det_model.backbone, device_type)  # ViTDet's ViT-H backbone + pyramid

        def setup_deepsort(self):
            super().setup_deepsort()
            tracker = self.tracker
            for name in ("predict", "update"):
                inner = getattr(tracker, name)

                def wrapped(*args, _inner=inner, **kwargs):
                    t0 = time.perf_counter()
                    try:
                        return _inner(*args, **kwargs)
                    except Exception as exc:
                        self._record_loop_error(exc)
                        raise
                    finally:
                        stats.add("tracking", time.perf_counter() - t0)

                setattr(tracker, name, wrapped)

        # -- the frame loop ----------------------------------------------------------------------------------

        def get_list_of_shots(self, list_of_frames):
            shots = _guarded("get_list_of_shots")(self, list_of_frames)
            # PHALP's shot detector numbers frames over the whole video; the loop compares them with positions.
            if not len(list_of_frames) or not isinstance(list_of_frames[0], tuple):
                return shots
            first = int(list_of_frames[0][1])
            n = len(list_of_frames)
            return [int(s) - first for s in shots if 0 < int(s) - first < n]

        def get_detections(self, image, frame_name, t_, additional_data=None, measurments=None):
            """The detector every ``det_stride`` frames (and at each shot start); in between the last boxes."""
            t0 = time.perf_counter()
            stride = max(1, int(opts.det_stride))
            try:
                carry = (stride > 1 and self._last_detections is not None and t_ % stride != 0
                         and not getattr(self.cfg.phalp, "shot", 0))
                if carry:
                    stats.detections_carried += 1
                    return tuple(list(x) if isinstance(x, list) else x for x in self._last_detections)
                out = run_detector(self, image, frame_name, t_, additional_data, measurments)
                stats.detector_runs += 1
                if opts.max_people and len(out[3]) > opts.max_people:
                    out = tuple(_take(x, self._keep_people(out[0], out[3], opts.max_people)) for x in out)
                self._last_detections = out
                return out
            finally:
                stats.add("detection", time.perf_counter() - t0)

        def _keep_people(self, boxes, scores, n: int) -> np.ndarray:
            """Indices of the ``n`` best detections, those PHALP keeps (>= small_w x small_h px) first."""
            boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
            small_w = getattr(self.cfg.phalp, "small_w", 0)
            small_h = getattr(self.cfg.phalp, "small_h", 0)
            big = ((boxes[:, 2] - boxes[:, 0]) >= small_w) & ((boxes[:, 3] - boxes[:, 1]) >= small_h)
            order = np.lexsort((-np.asarray(scores, dtype=np.float64), ~big))
            return order[:n]

        def get_human_features(self, *args, **kwargs):
            t0 = time.perf_counter()
            try:
                out = human_features(self, *args, **kwargs)
                stats.crops += len(out) if out is not None else 0
                return out
            finally:
                stats.add("hmr2", time.perf_counter() - t0)

        def track(self):
            self.loop_error, self.loop_traceback = None, ""
            self._last_detections = None
            return super().track()

    G1ForgeTracker.run_additional_models = _guarded("run_additional_models")
    G1ForgeTracker.__name__ = G1ForgeTracker.__qualname__ = "G1ForgeTracker"
    return G1ForgeTracker


# -- options and the backend ---------------------------------------------------------------------------------


@dataclass
class FourDHumansOptions:
    """Options of the ``4dhumans`` backend (``--backend-option KEY=VALUE``).

    checkout_dir: 4D-Humans checkout holding ``track.py`` (default ``$G1FORGE_4DHUMANS_DIR``).
    cache_home: folder used as ``$HOME`` for weights (default ``$G1FORGE_4DHUMANS_HOME``, else the real home).
    predictor: ``"hmr2"`` (HMR2Predictor, PHALP'+HMR2, no neural_renderer) or ``"texture"``
        (HMR2023TextureSampler, the paper's tracker; needs neural_renderer).
    detect_shots: PHALP's scene-cut detector (a cut restarts track association).
    detector: PHALP's detector, ``"vitdet"`` (default) or ``"maskrcnn"``.
    gpu: pin to this GPU index via ``CUDA_VISIBLE_DEVICES`` (None: leave the variable, e.g. set by Ray).
    work_dir: parent of the per-video output folders (default: the system temp folder).
    keep_outputs: keep PHALP's per-video output folder (its results pickle) instead of deleting it.
    download_missing: let PHALP / HMR2 download missing weights at construction (default: fail, naming them).
    prefetch_frames: frames decoded ahead in a background thread.
    config: extra OmegaConf dotlist entries for Human4DConfig, e.g. ``["phalp.low_th_c=0.7"]``.
    smpl_model_dir: folder with ``SMPL_NEUTRAL.pkl`` (default ``$G1FORGE_SMPL_DIR``, else None): body joints become
        SMPL joint centres computed with smplx (see :mod:`pipeline.smpl_joints`); None keeps PHALP's ``3d_joints``.
    device: ``"cuda"`` (default, or ``$G1FORGE_4DHUMANS_DEVICE``) or ``"cpu"``: the upstream code on the CPU
        (its direct ``.cuda()`` calls are redirected, see :func:`install_cpu_shim`); run with
        ``--gpus-per-pose-worker 0``.
    det_stride: run the detector on every k-th frame (and at each shot start); the frames in between reuse the
        last detections (boxes, masks), HMR2 and PHALP's tracking still run on every frame. 1 = every frame.
    det_size: the detector's input side in pixels (ViTDet: resize of the long side + square pad; None = 1024 as
        trained; 640 or 768 trade accuracy for speed, see docs/gpu.md).
    max_people: keep at most this many detections per frame (highest scores); None = all.
    precision: ``"fp32"`` (default) or ``"bf16"``: HMR2's and ViTDet's ViT backbones under bf16 autocast, outputs
        back to float32.
    """

    checkout_dir: str | None = None
    cache_home: str | None = None
    predictor: str = "hmr2"
    detect_shots: bool = True
    detector: str = "vitdet"
    gpu: int | None = None
    work_dir: str | None = None
    keep_outputs: bool = False
    download_missing: bool = False
    prefetch_frames: int = 8
    config: list[str] = field(default_factory=list)
    smpl_model_dir: str | None = None
    device: str = field(default_factory=lambda: os.environ.get(ENV_DEVICE) or "cuda")
    det_stride: int = 1
    det_size: int | None = None
    max_people: int | None = None
    precision: str = "fp32"

    @classmethod
    def from_dict(cls, options: dict) -> FourDHumansOptions:
        opts = options_from_dict(cls, options, "4dhumans")
        if opts.predictor not in PREDICTORS:
            raise ConfigError(f"predictor must be one of {', '.join(PREDICTORS)}, got {opts.predictor!r}")
        if opts.detector not in ("vitdet", "maskrcnn"):
            raise ConfigError(f"detector must be vitdet or maskrcnn, got {opts.detector!r}")
        if isinstance(opts.config, str):
            opts.config = [opts.config]
        if opts.device != "cpu" and not opts.device.startswith("cuda"):
            raise ConfigError(f"device must be cuda or cpu, got {opts.device!r}")
        if int(opts.det_stride) < 1:
            raise ConfigError(f"det_stride must be >= 1, got {opts.det_stride}")
        if opts.det_size is not None and not 128 <= int(opts.det_size) <= 2048:
            raise ConfigError(f"det_size must be between 128 and 2048 pixels, got {opts.det_size}")
        if opts.max_people is not None and int(opts.max_people) < 1:
            raise ConfigError(f"max_people must be >= 1, got {opts.max_people}")
        if opts.precision not in ("fp32", "bf16"):
            raise ConfigError(f"precision must be fp32 or bf16, got {opts.precision!r}")
        return opts


def build_config(track_mod, dotlist: list[str]):
    """``OmegaConf.structured(track_mod.Human4DConfig)`` merged with ``dotlist`` (no Hydra)."""
    try:
        from omegaconf import OmegaConf  # noqa: PLC0415
    except ImportError as exc:
        raise MissingDependencyError("omegaconf is needed by the 4dhumans backend: pip install omegaconf") from exc
    cfg = OmegaConf.structured(track_mod.Human4DConfig)
    try:
        return OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(dotlist)))
    except Exception as exc:  # omegaconf raises its own ValidationError / ConfigKeyError
        raise ConfigError(f"bad 4D-Humans config override in {dotlist}: {exc}") from exc


@register_backend("4dhumans")
class FourDHumansBackend(PoseBackend):
    """4D-Humans (HMR2.0 + PHALP) on one CUDA GPU; see the module docstring. Options: :class:`FourDHumansOptions`."""

    version = f"4dhumans-{FOURDHUMANS_COMMIT}-phalp-{PHALP_COMMIT}-1"
    needs_video = True
    cpus_per_worker = 1
    gpus_per_worker = 1  # the driver asks Ray for one GPU per worker; Ray sets CUDA_VISIBLE_DEVICES
    result_env = (ENV_SMPL_DIR,)
    input_extensions = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")

    def __init__(self, **options):
        self.options = FourDHumansOptions.from_dict(options)
        self.checkout = resolve_checkout(self.options.checkout_dir)
        self.smpl_model_dir = resolve_smpl_model_dir(self.options.smpl_model_dir)
        if self.smpl_model_dir is not None:
            self.version = f"{type(self).version}+{SMPL_JOINTS_VERSION_TAG}"
        self.cache_home = (Path(self.options.cache_home).expanduser() if self.options.cache_home
                           else default_cache_home())
        self._tracker = None
        self.stage_times = StageTimes()
        self._work_root: Path | None = None
        self.tracker_constructions = 0
        self.videos_done = 0

    def config_dotlist(self, work_root: Path) -> list[str]:
        """The config entries this backend sets (then the user's ``config`` option)."""
        o = self.options
        return [
            f"video.output_dir={work_root}",
            "video.start_frame=-1",
            "video.end_frame=-1",
            "phalp.start_frame=-1",
            "render.enable=False",
            f"detect_shots={o.detect_shots}",
            f"phalp.detector={o.detector}",
            "overwrite=True",
            "use_gt=False",
            f"device={'cpu' if o.device == 'cpu' else 'cuda'}",
            *o.config,
        ]

    @property
    def tracker(self):
        """The tracker, constructed on first use (all models load here) and reused for every video."""
        if self._tracker is None:
            cache_given = self.options.cache_home or os.environ.get(ENV_CACHE_HOME)
            prepare_environment(self.cache_home if cache_given else None, self.options.gpu)
            if self.options.device == "cpu":
                install_cpu_shim()
            track_mod = import_track_module(self.checkout)
            self._work_root = Path(tempfile.mkdtemp(prefix="g1forge-4dh-", dir=self.options.work_dir))
            cfg = build_config(track_mod, self.config_dotlist(self._work_root))
            if cfg.render.enable:
                raise ConfigError("render.enable=True is not supported by the 4dhumans backend; leave it off")
            cls = make_tracker_class(track_mod, self.options.predictor, self.options.download_missing,
                                     self.cache_home, self.options, self.stage_times)
            try:
                self._tracker = cls(cfg)
            except G1ForgeError:
                raise
            except Exception as exc:
                raise _as_backend_error(exc, "constructing the 4D-Humans tracker") from exc
            self.tracker_constructions += 1
        return self._tracker

    def process(self, item: VideoItem, video_path: str | None) -> PoseResult:
        if not video_path:
            raise InputNotFound(f"{item.uri}: the 4dhumans backend needs a local video file")
        tracker = self.tracker
        source = StreamingFrameSource(video_path, video_name=_safe_name(item.video_id), start_s=item.start_s,
                                      end_s=item.end_s, prefetch_depth=self.options.prefetch_frames,
                                      stats=self.stage_times)
        if not source.keys:
            raise DecodeError(f"{video_path} has no frame between {item.start_s} s and {item.end_s} s")
        out_dir = Path(tempfile.mkdtemp(prefix=_safe_name(item.video_id) + "-", dir=self._work_root))
        tracker.cfg.video.source = str(video_path)
        tracker.cfg.video.output_dir = str(out_dir)
        tracker.io_manager = source
        try:
            ret = tracker.track()
        except G1ForgeError:
            raise
        except Exception as exc:
            raise _as_backend_error(exc, f"4D-Humans track() on {video_path}") from exc
        finally:
            source.close_video()
            if not self.options.keep_outputs:
                shutil.rmtree(out_dir, ignore_errors=True)
        if ret is None:
            err = tracker.loop_error
            if isinstance(err, G1ForgeError):
                raise err
            if err is not None:
                raise _as_backend_error(err, f"4D-Humans frame loop on {video_path}") from err
            raise BackendError(f"4D-Humans track() returned None on {video_path}: an exception inside its frame "
                               "loop was printed to the worker log; check it")
        if not isinstance(ret, tuple) or len(ret) != 2 or not isinstance(ret[0], dict):
            raise BackendError(f"4D-Humans track() returned {type(ret).__name__} instead of (results, pkl_path); "
                               f"use 4D-Humans {FOURDHUMANS_COMMIT} with PHALP {PHALP_COMMIT}")
        results = ret[0]
        self.videos_done += 1
        t0 = time.perf_counter()
        try:
            return pose_result_from_phalp(results, source=str(video_path), fps=source.fps,
                                          frame_time_s=source.frame_time_s, frame_offset=source.first_idx,
                                          backend=self.name, backend_version=self.version,
                                          smpl_model_dir=self.smpl_model_dir)
        finally:
            self.stage_times.add("conversion", time.perf_counter() - t0)

    def close(self) -> None:
        self._tracker = None
        if self._work_root is not None:
            shutil.rmtree(self._work_root, ignore_errors=True)
            self._work_root = None


def _safe_name(text: str) -> str:
    """Only [A-Za-z0-9_-]: PHALP builds shell commands from the output folder and video name."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[:80] or "video"


def _as_backend_error(exc: BaseException, where: str) -> G1ForgeError:
    msg = f"{where} failed: {type(exc).__name__}: {exc}"
    if "out of memory" in str(exc).lower():
        return G1ForgeError(msg + "; lower the video resolution or run fewer workers per GPU", reason="out_of_memory")
    return BackendError(msg)
