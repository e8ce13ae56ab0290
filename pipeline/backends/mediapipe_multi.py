"""The default CPU pose backend: BlazePose for every person in the frame, one identity each.

Models: BlazePose's person detector and full landmark model from the mediapipe wheel, run directly on a TFLite
interpreter (:mod:`pipeline.backends.blazepose`). The legacy ``mp.solutions.pose`` graph keeps one person per
frame; this backend runs the same models per person.

Per decoded frame (RGB, upright, downsized to ``max_side_px``):

1. **Detection, amortised.** The detector runs on the first frame and every ``detect_every_s`` seconds; after a
   person is lost, on the next frame and then every :data:`REDETECT_EVERY` frames for ``track_memory_s`` (so
   that a person hidden for a moment is found again while the tracker still holds their id); never while
   ``max_people`` people are tracked. It looks at the whole frame and
   at overlapping square tiles (:meth:`BlazePoseModels.detect_people_tiled`), so that small people far away are
   found too. A detection whose region overlaps a person already tracked (IoU of the regions' bounding boxes
   above ``same_person_iou``) is that person, not a new one.
2. **Landmarks per person.** Each person is followed by a *region of interest* carried from frame to frame, as
   MediaPipe does: the region for frame t+1 is computed from the landmarks of frame t. The landmark model runs
   once per person per frame; a person whose pose flag drops below ``min_tracking_confidence`` is lost
   (and re-detection runs on the next frame). Two regions that converge onto one body (landmark boxes with IoU
   above ``same_person_iou``) are merged, keeping the more confident one.
3. **Size floor.** A person whose landmarks span less than ``min_person_height_px`` pixels (at the source
   resolution, top of the head to the lowest foot point) is not kept: too small for usable 3D.
4. **Backtracking.** The detector often finds a person late (turned away, partly hidden), while the landmark
   model follows them once it has a region: a person found after the first frame is followed back through the
   last ``backtrack_s`` seconds of frames (kept decoded) from their first region, until the model loses them or
   someone already tracked stands there.
5. **Identities** come from a maintained multi-object tracker, Norfair (Kalman filter on the landmark box,
   matched each frame by :func:`_box_distance`: box overlap, or centre distance in body heights). A person who
   leaves and re-enters gets a **new** track, unless they re-appear within ``track_memory_s`` near the place the
   tracker predicts (then the same id). The identity-jump guard (:mod:`pipeline.identity`) still checks every track
   afterwards.

Outputs per person are those of the legacy backend (:mod:`pipeline.backends.mediapipe_backend`): 2D landmarks
in source pixels, metric 3D landmarks (hip-centred, camera-aligned) moved into the camera frame by the root
translation solved from the 2D keypoints with the focal length of :func:`pipeline.camera.default_focal_px`,
visibility as joint confidence, the landmark box, and the pose flag as detection confidence. Like the legacy
graph, each person's landmarks go through one-euro filters (``smooth_landmarks``; :data:`LANDMARK_FILTER`,
:data:`WORLD_FILTER`), and the points placing the next region through :data:`AUX_FILTER`.
"""

from __future__ import annotations

import time
from collections import deque
from contextlib import closing
from dataclasses import dataclass, field

import numpy as np

from ingest.decode import iter_frames, prefetch
from ingest.errors import BackendError, ConfigError, MissingDependencyError
from ingest.items import VideoItem
from pipeline.backends.base import PoseBackend, options_from_dict, register_backend
from pipeline.backends.blazepose import BlazePoseModels, Roi, roi_from_detection, roi_from_landmarks
from pipeline.backends.mediapipe_backend import _build_track, shared_option_problems
from pipeline.camera import default_focal_px
from pipeline.camera_motion import CameraMotionAccumulator
from pipeline.filtering import OneEuroFilter
from pipeline.frame_signals import FrameSignalAccumulator
from pipeline.motion import PoseResult


@dataclass
class MultiPersonOptions:
    """Options of the ``mediapipe`` backend.

    max_people: most people tracked at once (1 = one person, the cheapest mode).
    min_person_height_px: people whose landmarks span fewer source pixels than this (head to feet) are ignored.
    detect_every_s: seconds between detector runs while every person is tracked (new people are found within
        this time).
    detect_tiles: also run the detector on overlapping tiles (finds small people; ~2-3x the detector's cost).
    min_detection_confidence: the detector's score threshold (0-1).
    min_tracking_confidence: the landmark model's pose-flag threshold below which a person is lost (0-1).
    same_person_iou: box overlap above which two detections/regions are one person.
    track_memory_s: how long the tracker keeps a person that is not seen, to give the same id on re-appearance.
    smooth_landmarks: one-euro filter of each person's landmarks over time, as MediaPipe's own graph does.
    camera_motion: estimate the camera's motion from the background (:mod:`pipeline.camera_motion`, ~2.5 ms per
        frame); off, every clip assumes a static camera.
    backtrack_s: a person found after the first frame is followed back through up to this many seconds of the
        frames before (kept decoded, ~0.7 MB each at 640 px): the detector often finds people late (turned away,
        partly hidden), while the landmark model follows them from a region. 0 turns it off.
    max_side_px: downsize frames so the long side is at most this (None = full resolution).
    focal_px / fov_deg: the source camera (see :func:`pipeline.camera.default_focal_px`).
    num_threads: TFLite interpreter threads; thread_count: decoder threads (0 = one per core);
    prefetch_frames: frames decoded ahead in a background thread.
    """

    max_people: int = 10
    min_person_height_px: float = 48.0
    detect_every_s: float = 0.5
    detect_tiles: bool = True
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    same_person_iou: float = 0.5
    track_memory_s: float = 0.5
    smooth_landmarks: bool = True
    camera_motion: bool = True
    backtrack_s: float = 2.0
    max_side_px: int | None = 640
    focal_px: float | None = None
    fov_deg: float | None = None
    num_threads: int = 1
    thread_count: int = 0
    prefetch_frames: int = 4

    @classmethod
    def from_dict(cls, options: dict) -> MultiPersonOptions:
        opts = options_from_dict(cls, options, "mediapipe")
        # Types first: a value of the wrong type (e.g. a string from --backend-option) would make the range
        # checks below raise TypeError instead of naming the option.
        def is_num(v):
            return isinstance(v, (int, float)) and not isinstance(v, bool)

        def is_int(v):
            return isinstance(v, int) and not isinstance(v, bool)

        problems = []
        for name in ("min_person_height_px", "detect_every_s", "min_detection_confidence", "min_tracking_confidence",
                     "same_person_iou", "track_memory_s", "backtrack_s"):
            if not is_num(getattr(opts, name)):
                problems.append(f"{name} must be a number, got {getattr(opts, name)!r}")
        for name in ("focal_px", "fov_deg"):
            if getattr(opts, name) is not None and not is_num(getattr(opts, name)):
                problems.append(f"{name} must be a number or None, got {getattr(opts, name)!r}")
        for name in ("num_threads", "thread_count", "prefetch_frames"):
            if not is_int(getattr(opts, name)):
                problems.append(f"{name} must be an integer, got {getattr(opts, name)!r}")
        if opts.max_side_px is not None and not is_int(opts.max_side_px):
            problems.append(f"max_side_px must be an integer or None, got {opts.max_side_px!r}")
        for name in ("detect_tiles", "smooth_landmarks", "camera_motion"):
            if not isinstance(getattr(opts, name), bool):
                problems.append(f"{name} must be true or false, got {getattr(opts, name)!r}")
        if problems:
            raise ConfigError("; ".join(problems))
        if not (is_int(opts.max_people) and opts.max_people >= 1):
            problems.append(f"max_people must be an integer >= 1, got {opts.max_people!r}")
        if not opts.min_person_height_px >= 0:
            problems.append(f"min_person_height_px must be >= 0, got {opts.min_person_height_px}")
        if not 0 < opts.detect_every_s < float("inf"):
            problems.append(f"detect_every_s must be > 0 and finite, got {opts.detect_every_s}")
        if not 0.0 <= opts.same_person_iou <= 1.0:
            problems.append(f"same_person_iou must be in [0, 1], got {opts.same_person_iou}")
        if not 0 <= opts.track_memory_s < float("inf"):
            problems.append(f"track_memory_s must be >= 0 and finite, got {opts.track_memory_s}")
        if not 0 <= opts.backtrack_s <= 10:
            problems.append(f"backtrack_s must be in [0, 10] seconds, got {opts.backtrack_s}")
        problems += shared_option_problems(opts)
        if opts.num_threads < 1:
            problems.append(f"num_threads must be >= 1, got {opts.num_threads}")
        if opts.thread_count < 0:
            problems.append(f"thread_count must be >= 0 (0 = one per core), got {opts.thread_count}")
        if problems:
            raise ConfigError("; ".join(problems))
        return opts


#: One-euro filter of the two auxiliary points that place a person's next region: MediaPipe's pose graph smooths
#: them so in video mode (min cutoff 0.01 Hz, beta 10 per object size, derivative cutoff 1 Hz); without it the
#: region, and so the landmarks, jitter from frame to frame.
AUX_FILTER = (0.01, 10.0, 1.0)
#: One-euro filters of the output landmarks with ``smooth_landmarks`` (MediaPipe's pose graph settings): image
#: landmarks (min cutoff 0.05 Hz, beta 80 per object size) and world landmarks (0.1 Hz, beta 40 per metre).
LANDMARK_FILTER = (0.05, 80.0, 1.0)
WORLD_FILTER = (0.1, 40.0, 1.0)


@dataclass
class _Person:
    """One person being followed: the region for the next frame and the filter of the points that place it."""

    roi: Roi
    aux_filter: OneEuroFilter = field(default_factory=lambda: OneEuroFilter(*AUX_FILTER))
    landmark_filter: OneEuroFilter = field(default_factory=lambda: OneEuroFilter(*LANDMARK_FILTER))
    world_filter: OneEuroFilter = field(default_factory=lambda: OneEuroFilter(*WORLD_FILTER))


@dataclass
class _Observation:
    """Landmarks of one person in one frame (pixels of the decoded frame)."""

    landmarks: np.ndarray  # (33, 3) x, y px, z
    visibility: np.ndarray  # (33,)
    world: np.ndarray  # (33, 3) metres
    pose_score: float
    box_xyxy: np.ndarray  # (4,) landmark extent
    aux: np.ndarray  # (2, 2) the two points that place the person's region (hip centre, full-body scale point)

    @property
    def height_px(self) -> float:
        return float(self.box_xyxy[3] - self.box_xyxy[1])


def _import_norfair():
    try:
        import norfair  # noqa: PLC0415 - imported where used
    except ImportError as exc:
        raise MissingDependencyError("the mediapipe backend needs norfair for identities: pip install norfair") from exc
    return norfair


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two ``x0, y0, x1, y1`` boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


#: Frames between detector runs after a person was lost, while the tracker still remembers them (so that a
#: person hidden for a moment comes back under the same id).
REDETECT_EVERY = 3

#: Largest :func:`_box_distance` at which the tracker matches a person to a track.
MATCH_DISTANCE = 0.6


def _box_distance(detection, tracked_object) -> float:
    """Distance between a person's landmark box and a track's predicted box (Norfair's distance function):
    ``min(1 - IoU, |centre difference| / height)``, the height being the larger of the two boxes'. The centre
    term keeps a person whose box changed shape (an arm raised, legs hidden behind a table) on their track."""
    a = np.asarray(detection.points, dtype=np.float64).ravel()
    b = np.asarray(tracked_object.estimate, dtype=np.float64).ravel()
    height = max(a[3] - a[1], b[3] - b[1], 1e-6)
    centre = np.hypot((a[0] + a[2] - b[0] - b[2]) / 2, (a[1] + a[3] - b[1] - b[3]) / 2)
    return float(min(1.0 - box_iou(a, b), centre / height))


def _roi_box(roi) -> np.ndarray:
    corners = roi.corners()
    return np.concatenate([corners.min(0), corners.max(0)])


@register_backend("mediapipe")
class MultiPersonBackend(PoseBackend):
    """BlazePose on every person; see the module docstring. Options: :class:`MultiPersonOptions`."""

    needs_video = True
    cpus_per_worker = 1

    def __init__(self, **options):
        self.options = MultiPersonOptions.from_dict(options)
        self._models = BlazePoseModels(num_threads=self.options.num_threads)
        self._norfair = _import_norfair()
        import mediapipe

        self.version = f"blazepose-tflite-multi/mediapipe-{mediapipe.__version__}/pose_full"
        #: seconds inside the models and frames processed in the last video (throughput stats)
        self.last_inference_s = 0.0
        self.last_num_frames = 0
        #: detector and landmark calls in the last video
        self.last_detector_calls = 0
        self.last_landmark_calls = 0

    def _new_tracker(self, fps: float):
        import logging

        memory_frames = max(1, int(round(self.options.track_memory_s * fps)))
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # Norfair logs a speed hint for every Python distance function; a few boxes
        try:  # per frame cost nothing
            return self._norfair.Tracker(distance_function=_box_distance, distance_threshold=MATCH_DISTANCE,
                                         hit_counter_max=memory_frames, initialization_delay=0)
        finally:
            root.setLevel(level)

    def process(self, item: VideoItem, video_path: str | None) -> PoseResult:
        if video_path is None:
            raise ConfigError("the mediapipe backend needs a video file; it got none (was the download skipped?)")
        o = self.options
        frames = iter_frames(video_path, start_s=item.start_s, end_s=item.end_s, max_side_px=o.max_side_px,
                             thread_count=o.thread_count)
        h_src, w_src = frames.source_hw
        fps_guess = frames.average_fps if frames.average_fps > 0 else 30.0
        detect_every = max(1, int(round(o.detect_every_s * fps_guess)))
        tracker = self._new_tracker(fps_guess)
        signals = FrameSignalAccumulator()
        camera = CameraMotionAccumulator(fps=fps_guess) if o.camera_motion else None
        times: list[float] = []
        first_idx = None
        people: list[_Person] = []
        by_id: dict[int, list[tuple[int, _Observation]]] = {}
        last_detect = -detect_every
        memory_frames = max(1, int(round(o.track_memory_s * fps_guess)))
        redetect_until = -1  # after a loss, the detector looks every REDETECT_EVERY frames until then
        history: deque = deque(maxlen=int(round(o.backtrack_s * fps_guess)))  # the last frames, for backtracking
        taken: dict[int, list[np.ndarray]] = {}  # frame -> boxes of the people recorded in it
        infer_s = 0.0
        n_det = n_lm = 0
        small_hw = None
        with frames, closing(prefetch(frames, depth=o.prefetch_frames)) as stream:
            for k, fr in enumerate(stream):
                if first_idx is None:
                    first_idx = fr.frame_idx
                rgb = fr.rgb
                small_hw = rgb.shape[:2]
                scale = fr.source_hw[1] / rgb.shape[1] if rgb.shape[1] else 1.0
                t0 = time.perf_counter()
                try:
                    due = k - last_detect >= (REDETECT_EVERY if k <= redetect_until else detect_every)
                    if len(people) < o.max_people and due:
                        last_detect = k
                        n_det += 1
                        people.extend(self._new_people(rgb, people))
                    dt_s = fr.time_s - times[-1] if times else 0.0
                    tried = len(people)
                    observations, people, lost = self._landmarks(rgb, people, scale, dt_s)
                    n_lm += tried
                    if lost:  # look for them again at once, then every few frames while the tracker remembers
                        redetect_until, last_detect = k + memory_frames, k - REDETECT_EVERY
                except Exception as exc:  # the interpreter raises RuntimeError/ValueError
                    raise BackendError(f"pose failed on frame {fr.frame_idx}: {type(exc).__name__}: {exc}") from exc
                infer_s += time.perf_counter() - t0
                times.append(fr.time_s)
                for new_id in self._associate(tracker, observations, fr.frame_idx, by_id):
                    if history:
                        self._backtrack(by_id[new_id], history, taken, scale)
                taken[fr.frame_idx] = [ob.box_xyxy for ob in observations]
                if history.maxlen:
                    history.append((fr.frame_idx, rgb, fr.time_s))
                boxes = np.array([[b[0], b[1], b[2] - b[0], b[3] - b[1]] for b in (ob.box_xyxy for ob in observations)],
                                 np.float32).reshape(-1, 4)
                signals.update(rgb, boxes if len(boxes) else None)
                if camera is not None:
                    camera.update(rgb, boxes if len(boxes) else None, time_s=fr.time_s)
        self.last_inference_s, self.last_num_frames = infer_s, len(times)
        self.last_detector_calls, self.last_landmark_calls = n_det, n_lm

        lead = frames.leading_times_s
        n_lead = len(lead) if first_idx is not None else 0
        frame_time_s = np.concatenate([lead[:n_lead], np.asarray(times, dtype=np.float64)])
        shot, motion = signals.result()
        shot_boundary = np.concatenate([np.zeros(n_lead, bool), shot])
        if len(shot_boundary):
            shot_boundary[0] = False
        background_motion = np.concatenate([np.full(n_lead, np.nan, np.float32), motion]).astype(np.float32)
        focal = default_focal_px(w_src, h_src, o.fov_deg, focal_px=o.focal_px)
        fps = frames.average_fps
        if not fps > 0 and len(times) > 1:
            fps = (len(times) - 1) / (times[-1] - times[0])
        tracks = []
        if small_hw is not None:
            size_small = np.array([small_hw[1], small_hw[0]], np.float32)
            scale_xy = np.array([w_src, h_src], dtype=np.float32)
            for new_id, (_, seen) in enumerate(sorted(by_id.items(), key=lambda kv: kv[1][0][0])):
                idx = np.array([f for f, _ in seen], dtype=np.int64)
                lm2d = np.stack([np.concatenate([ob.landmarks[:, :2] / size_small, ob.visibility[:, None]], 1)
                                 for _, ob in seen]).astype(np.float32)
                world = np.stack([ob.world for _, ob in seen]).astype(np.float32)
                track = _build_track(idx, frame_time_s, lm2d, world, scale_xy, focal, (h_src, w_src),
                                     track_id=new_id, det_conf=np.array([ob.pose_score for _, ob in seen]))
                if track is not None:
                    tracks.append(track)
        return PoseResult(
            tracks=tracks, num_frames=len(frame_time_s), fps=float(fps), image_size_hw=(int(h_src), int(w_src)),
            focal_px=float(focal), frame_time_s=frame_time_s, shot_boundary=shot_boundary,
            background_motion=background_motion, backend=self.name, backend_version=self.version,
            camera_motion=camera.result() if camera is not None and camera.num_frames else None,
            extra={"first_frame_idx": int(first_idx) if first_idx is not None else n_lead, "inference_s": infer_s,
                   "frames_with_person": len({f for seen in by_id.values() for f, _ in seen}),
                   "detector_calls": n_det, "landmark_calls": n_lm, "rotation_ccw_deg": frames.rotation_ccw_deg},
        )

    def _new_people(self, rgb: np.ndarray, people: list[_Person]) -> list[_Person]:
        """People the detector finds in ``rgb`` that no current region already covers."""
        o = self.options
        if o.detect_tiles:
            found = self._models.detect_people_tiled(rgb, min_score=o.min_detection_confidence)
        else:
            found = self._models.detect_people(rgb, min_score=o.min_detection_confidence)
        taken = [_roi_box(p.roi) for p in people]
        new = []
        for det in found:
            roi = roi_from_detection(det, rgb.shape[:2])
            box = _roi_box(roi)
            if any(box_iou(box, t) > o.same_person_iou for t in taken):
                continue
            taken.append(box)
            new.append(_Person(roi=roi))
            if len(people) + len(new) >= o.max_people:
                break
        return new

    def _landmarks(self, rgb: np.ndarray, people: list[_Person], scale: float, dt_s: float
                   ) -> tuple[list[_Observation], list[_Person], bool]:
        """Run the landmark model in every person's region; returns this frame's observations, the people still
        followed (regions moved to the next frame, ``dt_s`` after the previous one) and whether anyone was
        lost."""
        o = self.options
        kept: list[tuple[_Person, _Observation]] = []
        lost = False
        for person in people:
            res = self._models.estimate_landmarks(rgb, person.roi, min_pose_score=o.min_tracking_confidence)
            if res is None:
                lost = True
                continue
            xy = res.landmarks[:, :2]
            ob = _Observation(landmarks=res.landmarks, visibility=res.visibility, world=res.world,
                              pose_score=float(res.pose_score),
                              box_xyxy=np.concatenate([xy.min(0), xy.max(0)]).astype(np.float32), aux=res.aux)
            if ob.height_px * scale < o.min_person_height_px:
                lost = True
                continue
            size_px = max(1.0, 0.5 * float(ob.box_xyxy[2] - ob.box_xyxy[0] + ob.box_xyxy[3] - ob.box_xyxy[1]))
            person.roi = roi_from_landmarks(person.aux_filter(res.aux, dt_s, value_scale=size_px))
            if o.smooth_landmarks:
                ob.landmarks = ob.landmarks.copy()
                ob.landmarks[:, :2] = person.landmark_filter(ob.landmarks[:, :2], dt_s, value_scale=size_px)
                ob.world = person.world_filter(ob.world, dt_s).astype(np.float32)
            kept.append((person, ob))
        kept.sort(key=lambda po: -po[1].pose_score)
        unique: list[tuple[_Person, _Observation]] = []
        for person, ob in kept:  # two regions that converged onto one body: keep the more confident
            if all(box_iou(ob.box_xyxy, other.box_xyxy) <= o.same_person_iou for _, other in unique):
                unique.append((person, ob))
        unique = unique[: o.max_people]
        return [ob for _, ob in unique], [p for p, _ in unique], lost

    def _associate(self, tracker, observations: list[_Observation], frame_idx: int,
                   by_id: dict[int, list[tuple[int, _Observation]]]) -> list[int]:
        """Give this frame's observations their identities (Norfair) and record them under the id; returns the
        ids seen for the first time."""
        nf = self._norfair
        detections = [nf.Detection(points=ob.box_xyxy.reshape(2, 2).astype(np.float64),
                                   scores=np.full(2, ob.pose_score), data=ob) for ob in observations]
        new = []
        for obj in tracker.update(detections=detections):
            det = obj.last_detection
            if obj.id is None or det is None or not any(det is d for d in detections):
                continue  # not seen in this frame (predicted only)
            if int(obj.id) not in by_id:
                new.append(int(obj.id))
            by_id.setdefault(int(obj.id), []).append((frame_idx, det.data))
        return new

    def _backtrack(self, seen: list[tuple[int, _Observation]], history, taken: dict[int, list[np.ndarray]],
                   scale: float) -> None:
        """Follow a person found late back through the frames before (``history``: (frame_idx, rgb, time_s),
        oldest first), from the region of their first observation, while the landmark model keeps them and
        nobody already tracked stands there (``taken``: frame -> boxes); prepends to ``seen``."""
        first_idx, first = seen[0]
        person = _Person(roi=roi_from_landmarks(first.aux))
        later_time_s = None
        found = []
        for frame_idx, rgb, time_s in reversed(history):
            if frame_idx >= first_idx:
                continue
            dt_s = later_time_s - time_s if later_time_s is not None else 0.0
            observations, kept, _ = self._landmarks(rgb, [person], scale, dt_s)
            if not observations or any(box_iou(observations[0].box_xyxy, b) > self.options.same_person_iou
                                       for b in taken.get(frame_idx, ())):
                break
            found.append((frame_idx, observations[0]))
            taken.setdefault(frame_idx, []).append(observations[0].box_xyxy)
            person, later_time_s = kept[0], time_s
        seen[:0] = found[::-1]
