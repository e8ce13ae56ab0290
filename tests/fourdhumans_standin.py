"""A stand-in for 4D-Humans' ``track.py``, written to a temporary "checkout" by the tests.

It has the names, constructor order, attributes and ``track()`` control flow of the real script at 4D-Humans
6ec7965 with PHALP 96f7e6c (see ``shared/reference/4d-humans.md``): ``Human4DConfig`` (a dataclass tree with the
fields the adapter sets, ``video.source`` MISSING), ``HMR2Predictor``, ``HMR2023TextureSampler``,
``HMR2_4dhuman`` whose ``__init__`` creates an ``io_manager``, calls ``cached_download_from_drive``,
``setup_hmr``, ``setup_predictor``, ``setup_detectron2`` (which loads the second, RPN detector),
``setup_visualizer`` and ``default_setup``; ``track()`` asks the io_manager for frames, rebuilds the tracker,
then inside one ``try`` calls ``get_list_of_shots``, and per frame ``read_frame``, ``get_detections``,
``run_additional_models``, ``get_human_features``, ``tracker.predict`` / ``update``, dumps the results pickle
and returns ``(results, pkl_path)``; an exception in that block is printed and ``None`` returned.

No models: the per-frame records come from ``SCRIPT["results"]`` (a PHALP results dict, e.g. from
``tests.phalp_factory.build_phalp_results``), taken in time order and re-keyed by the frame keys the io_manager
gave. ``SCRIPT["fail_at"] = t`` makes ``get_detections`` raise at frame t; ``SCRIPT["shots_global"]`` is what
the shot detector returns (frame numbers over the whole video). ``EVENTS`` counts constructions and loads;
``ENV_AT_IMPORT`` records the environment when the module was imported; ``FRAMES`` what ``read_frame`` gave.
"""

from __future__ import annotations

from pathlib import Path

STANDIN_SOURCE = r'''
import os
import pickle
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Optional, Tuple

from omegaconf import MISSING

warnings.filterwarnings("ignore")

ENV_KEYS = ("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "PYTHONBREAKPOINT", "PYOPENGL_PLATFORM", "HOME", "FVCORE_CACHE",
            "TORCH_HOME", "CUDA_VISIBLE_DEVICES")
ENV_AT_IMPORT = {k: os.environ.get(k) for k in ENV_KEYS}
EVENTS = {"construct": 0, "download": 0, "hmr": [], "rpn": 0, "visualizer": 0, "deepsort": 0, "track": 0}
SCRIPT = {"results": {}, "fail_at": None, "shots_global": []}
FRAMES = []
CFG_AT_TRACK = []


@dataclass
class VideoConfig:
    source: str = MISSING
    output_dir: str = "outputs/"
    extract_video: bool = True
    base_path: Optional[str] = None
    start_frame: int = -1
    end_frame: int = 1300


@dataclass
class PHALPConfig:
    detector: str = "vitdet"
    shot: int = 0
    start_frame: int = -1
    end_frame: int = 10
    n_init: int = 5
    low_th_c: float = 0.8
    small_w: int = 50
    small_h: int = 100


@dataclass
class RenderConfig:
    enable: bool = True
    fps: int = 30


@dataclass
class FullConfig:
    seed: int = 42
    track_dataset: str = "demo"
    device: str = "cuda"
    base_tracker: str = "PHALP"
    train: bool = False
    use_gt: bool = False
    overwrite: bool = True
    detect_shots: bool = False
    video_seq: Optional[str] = None
    video: VideoConfig = field(default_factory=VideoConfig)
    phalp: PHALPConfig = field(default_factory=PHALPConfig)
    render: RenderConfig = field(default_factory=RenderConfig)


@dataclass
class Human4DConfig(FullConfig):
    expand_bbox_shape: Optional[Tuple[int]] = (192, 256)


class HMR2018Predictor:
    def __init__(self, cfg):
        self.cfg = cfg


class HMR2Predictor(HMR2018Predictor):
    def __init__(self, cfg):
        super().__init__(cfg)
        EVENTS["hmr"].append("HMR2Predictor")


class HMR2023TextureSampler(HMR2Predictor):
    def __init__(self, cfg):
        super().__init__(cfg)
        EVENTS["hmr"].append("HMR2023TextureSampler")


class IO_Manager:
    def __init__(self, cfg):
        self.cfg = cfg

    def get_frames_from_source(self):
        raise AssertionError("the adapter must replace io_manager before track()")


class _DeepSort:
    def predict(self):
        pass

    def update(self, detections, t_, frame_name, shot):
        pass


class PHALP:
    def __init__(self, cfg):
        self.cfg = cfg
        self.io_manager = IO_Manager(cfg)
        self.cached_download_from_drive()
        self.setup_hmr()
        self.setup_predictor()
        self.setup_detectron2()
        self.setup_visualizer()
        self.default_setup()
        EVENTS["construct"] += 1

    def cached_download_from_drive(self, additional_urls=None):
        EVENTS["download"] += 1

    def setup_hmr(self):
        raise AssertionError("HMR2_4dhuman overrides setup_hmr")

    def setup_predictor(self):
        self.pose_predictor = object()

    def setup_detectron2(self):
        self.detector = object()
        self.setup_detectron2_with_RPN()

    def setup_detectron2_with_RPN(self):
        EVENTS["rpn"] += 1
        self.detector_x = object()

    def setup_visualizer(self):
        EVENTS["visualizer"] += 1
        self.visualizer = object()

    def setup_deepsort(self):
        EVENTS["deepsort"] += 1
        self.tracker = _DeepSort()

    def default_setup(self):
        for sub in ("results", "results_tracks", "_TMP", "_DEMO"):
            os.makedirs(self.cfg.video.output_dir + "/" + sub, exist_ok=True)

    def get_list_of_shots(self, list_of_frames):
        return list(SCRIPT["shots_global"]) if self.cfg.detect_shots else []

    def get_detections(self, image, frame_name, t_, additional_data=None, measurments=None):
        if SCRIPT["fail_at"] is not None and t_ == SCRIPT["fail_at"]:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return [], [], [], [], [], [], []

    def run_additional_models(self, *args):
        return []

    def get_human_features(self, *args):
        return []

    def track(self):
        EVENTS["track"] += 1
        io_data = self.io_manager.get_frames_from_source()
        list_of_frames, additional_data = io_data["list_of_frames"], io_data["additional_data"]
        self.cfg.video_seq = io_data["video_name"]
        pkl_path = self.cfg.video.output_dir + "/results/" + self.cfg.track_dataset + "_" + str(self.cfg.video_seq) + ".pkl"
        if not self.cfg.overwrite and os.path.isfile(pkl_path):
            return 0
        self.setup_deepsort()
        self.default_setup()
        CFG_AT_TRACK.append({"source": self.cfg.video.source, "output_dir": self.cfg.video.output_dir,
                             "end_frame": self.cfg.video.end_frame, "render": self.cfg.render.enable,
                             "detect_shots": self.cfg.detect_shots})
        try:
            list_of_frames = list_of_frames if self.cfg.phalp.start_frame == -1 else list_of_frames[self.cfg.phalp.start_frame:self.cfg.phalp.end_frame]
            list_of_shots = self.get_list_of_shots(list_of_frames)
            scripted = sorted(SCRIPT["results"].values(), key=lambda f: f["time"])
            final_visuals_dic = {}
            for t_, frame_name in enumerate(list_of_frames):
                image_frame = self.io_manager.read_frame(frame_name)
                FRAMES.append((frame_name, image_frame.shape, image_frame[0, 0].tolist()))
                shot = 1 if t_ in list_of_shots else 0
                det = self.get_detections(image_frame, frame_name, t_, additional_data, [])
                extra = self.run_additional_models(image_frame, det)
                detections = self.get_human_features(image_frame, det, extra)
                self.tracker.predict()
                self.tracker.update(detections, t_, frame_name, shot)
                record = dict(scripted[t_]) if t_ < len(scripted) else {"tid": [], "tracked_ids": [], "tracked_time": []}
                record.update(time=t_, shot=shot, frame_path=frame_name)
                final_visuals_dic[frame_name] = record
            with open(pkl_path, "wb") as fh:
                pickle.dump(final_visuals_dic, fh)
            self.io_manager.close_video()
            return final_visuals_dic, pkl_path
        except Exception as e:
            print(e)
            print(traceback.format_exc())


class HMR2_4dhuman(PHALP):
    def __init__(self, cfg):
        super().__init__(cfg)

    def setup_hmr(self):
        self.HMAR = HMR2023TextureSampler(self.cfg)
'''


def write_standin_checkout(root: Path) -> Path:
    """Create ``root/track.py`` (the stand-in) and return ``root`` (the "checkout")."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "track.py").write_text(STANDIN_SOURCE)
    return root
