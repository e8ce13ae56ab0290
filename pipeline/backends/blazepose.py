"""BlazePose run directly on a TFLite interpreter: person detection for many people, and per-person landmarks.

This is the building block of a multi-person CPU pose backend. MediaPipe's legacy ``mp.solutions.pose`` graph
keeps a single detection per frame; here the same two models are run by hand, so every person the detector
finds can get its own landmarks. The module is a pure library: no tracking, no identities, no state between
calls (apart from the loaded interpreters).

Models (both shipped in the ``mediapipe==0.10.21`` wheel, nothing is downloaded)::

    mediapipe/modules/pose_detection/pose_detection.tflite       input (1, 224, 224, 3) float32 RGB in [-1, 1]
        outputs: regressors (1, 2254, 12), raw scores (1, 2254, 1)
    mediapipe/modules/pose_landmark/pose_landmark_full.tflite    input (1, 256, 256, 3) float32 RGB in [0, 1]
        outputs: landmarks (1, 195) = 39 x (x, y, z, visibility, presence) in crop pixels / raw logits,
                 pose flag (1, 1) already a probability, segmentation (1, 256, 256, 1) logits (unused here),
                 heatmap (1, 64, 64, 39) logits, world landmarks (1, 117) = 39 x (x, y, z) in metres

They are run with ``ai_edge_litert.interpreter.Interpreter`` (package ``ai-edge-litert``; the XNNPACK CPU
delegate is applied by default).

Conventions
- Images are ``(H, W, 3)`` uint8 RGB arrays. Pixel coordinates are ``(x, y)`` floats, x right, y down, with
  the *corner* convention MediaPipe uses: the image spans ``[0, W] x [0, H]`` and pixel ``(i, j)`` covers
  ``[i, i+1] x [j, j+1]`` (a crop maps continuous corner coordinates linearly, see :class:`Roi`).
- Angles are radians in the image plane, positive clockwise on screen (because y points down), as
  MediaPipe's ``NormalizedRect.rotation``.
- All computation is in pixels of the image given. MediaPipe computes in coordinates normalised by the image
  width and height; for the square regions used here both give the same result.

Pipeline, mirroring MediaPipe's ``PoseDetectionCpu`` / ``PoseDetectionToRoi`` / ``PoseLandmarkByRoiCpu`` /
``PoseLandmarksToRoi`` graphs (read from the public graph configs and calculators of google-ai-edge/mediapipe):

1. :meth:`BlazePoseModels.detect_people`: letterbox the whole image into 224 x 224 (square region of side
   ``max(W, H)`` centred on the image, zero/black border, bilinear, no anti-aliasing), run the detector, decode
   the 2254 anchors, sigmoid scores, weighted non-max suppression. Unlike MediaPipe's pose graph (which keeps
   the first detection only) all surviving detections are returned.
2. :func:`roi_from_detection`: rotated square region from the detector's hip-centre and full-body keypoints.
3. :meth:`BlazePoseModels.estimate_landmarks`: crop the region to 256 x 256, run the landmark model, refine
   x, y from the heatmap, project back to image pixels, un-rotate the world landmarks, and derive the region
   for the next frame (:func:`roi_from_landmarks`) from the two auxiliary landmarks.

Landmark indices 0-32 are MediaPipe Pose's 33 landmarks (see
``pipeline.backends.mediapipe_backend.MP_LANDMARKS``); the model emits 39 points, of which 33 and 34 are the
auxiliary "hip centre" and "full-body scale/rotation" points used for the region, and 35-38 are unused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ingest.errors import MissingDependencyError

# --- model constants (from MediaPipe's pose_detection_cpu / pose_landmark_by_roi_cpu graph options) ----------

DETECTOR_INPUT_SIZE = 224
LANDMARK_INPUT_SIZE = 256
HEATMAP_SIZE = 64

#: SsdAnchorsCalculator options of the pose detector.
ANCHOR_STRIDES = (8, 16, 32, 32, 32)
ANCHOR_MIN_SCALE = 0.1484375
ANCHOR_MAX_SCALE = 0.75
ANCHOR_OFFSET = 0.5
NUM_ANCHORS = 2254

#: TensorsToDetectionsCalculator options: raw scores are clipped to +-100 before the sigmoid.
SCORE_CLIP = 100.0
#: NonMaxSuppressionCalculator options: weighted NMS with IoU threshold 0.3 on the detector boxes.
NMS_IOU_THRESHOLD = 0.3

#: Region expansion used by MediaPipe for both the detection and the landmark region (RectTransformation).
ROI_SCALE = 1.25

#: Number of values the landmark model emits per point (39 points).
NUM_MODEL_POINTS = 39
NUM_LANDMARKS = 33
AUX_HIP_CENTER = 33
AUX_SCALE_POINT = 34
#: RefineLandmarksFromHeatmapCalculator options of the pose landmark graph.
HEATMAP_KERNEL = 7
HEATMAP_MIN_CONFIDENCE = 0.5

#: Detector keypoint order (PoseDetectionCpu): 0 mid-hip centre, 1 full-body size/rotation point,
#: 2 mid-shoulder centre, 3 upper-body size/rotation point.
DET_HIP_CENTER, DET_FULL_BODY_SCALE, DET_SHOULDER_CENTER, DET_UPPER_BODY_SCALE = 0, 1, 2, 3

_DETECTOR_PATH = ("modules", "pose_detection", "pose_detection.tflite")
_LANDMARK_PATH = ("modules", "pose_landmark", "pose_landmark_full.tflite")


# --- data records -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Roi:
    """A rotated square region of interest in image pixels.

    center_x, center_y: centre in pixels (x right, y down). size: side length in pixels.
    rotation: radians, positive clockwise on screen (MediaPipe's ``NormalizedRect.rotation``).

    The region's own coordinates ``(u, v)`` in ``[0, 1]^2`` (``u`` along the region's "right" edge, ``v`` along
    its "down" edge; ``(0.5, 0.5)`` is the centre) map to image pixels by::

        [x, y] = [cx, cy] + size * R(rotation) @ [u - 0.5, v - 0.5],   R(a) = [[cos a, -sin a], [sin a, cos a]]

    A crop of ``n x n`` pixels samples pixel ``(i, j)`` of the crop at ``u = i / n``, ``v = j / n`` (corner
    convention, as MediaPipe's OpenCV image-to-tensor converter maps the region corners onto the crop corners).
    """

    center_x: float
    center_y: float
    size: float
    rotation: float

    @property
    def center(self) -> np.ndarray:
        """(2,) float64 centre in pixels."""
        return np.array([self.center_x, self.center_y])

    def to_image(self, uv: np.ndarray) -> np.ndarray:
        """Map (..., 2) region coordinates ``(u, v)`` in [0, 1] to (..., 2) image pixels (formula above)."""
        uv = np.asarray(uv, dtype=np.float64) - 0.5
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        x = c * uv[..., 0] - s * uv[..., 1]
        y = s * uv[..., 0] + c * uv[..., 1]
        return np.stack([x * self.size + self.center_x, y * self.size + self.center_y], axis=-1)

    def crop_matrix(self, out_size: int) -> np.ndarray:
        """(2, 3) affine matrix taking image pixels to pixels of an ``out_size`` x ``out_size`` crop.

        Inverse of :meth:`to_image` scaled by ``out_size``: ``[i, j] = out_size * (R(-a) @ ([x, y] - c) / size
        + 0.5)``. Suitable for ``cv2.warpAffine(img, M, (out_size, out_size))``.
        """
        k = out_size / self.size
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        rot = np.array([[c, s], [-s, c]]) * k  # R(-a) * k
        t = 0.5 * out_size - rot @ self.center
        return np.hstack([rot, t[:, None]])

    def corners(self) -> np.ndarray:
        """(4, 2) image pixels of the corners, in order top-left, top-right, bottom-right, bottom-left of the
        region's own frame (a rotated region's 'top' is the side its v = 0 edge lies on)."""
        return self.to_image(np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]))


@dataclass
class PersonDetection:
    """One person found by the BlazePose detector, in pixels of the image given to :meth:`detect_people`.

    score: detector confidence in [0, 1] (sigmoid of the raw score; after weighted NMS, the score of the
        strongest box of the cluster).
    box_xyxy: (4,) float32 ``x0, y0, x1, y1`` of the detector box. BlazePose's detector box is the *face*
        box, not the body box; the body is described by the keypoints.
    keypoints: (4, 2) float32 pixels: 0 mid-hip centre, 1 full-body size/rotation point (the distance to it is
        half the body's extent, the direction from 0 to it points to the head), 2 mid-shoulder centre,
        3 upper-body size/rotation point.
    """

    score: float
    box_xyxy: np.ndarray
    keypoints: np.ndarray

    @property
    def hip_center(self) -> np.ndarray:
        return self.keypoints[DET_HIP_CENTER]

    @property
    def full_body_point(self) -> np.ndarray:
        return self.keypoints[DET_FULL_BODY_SCALE]


@dataclass
class LandmarkResult:
    """Landmarks of one person from :meth:`BlazePoseModels.estimate_landmarks`.

    landmarks: (33, 3) float32: x, y in pixels of the full image; z relative depth in pixels (same scale as x,
        smaller = nearer the camera, roughly zero at the hips). MediaPipe's normalised landmark has
        ``x_norm = x / W``, ``y_norm = y / H`` and ``z_norm = z / W``.
    visibility: (33,) float32 in [0, 1], sigmoid of the raw visibility logit (likelihood of being visible).
    presence: (33,) float32 in [0, 1], sigmoid of the raw presence logit (likelihood of being in the image).
    world: (33, 3) float32 metres, origin between the hips, camera-aligned axes (x right, y down, z away from
        the camera), rotated back from the region's frame to the image frame (MediaPipe's world projection).
    pose_score: the model's pose presence ("pose flag") probability in [0, 1].
    aux: (2, 2) float32 pixels of the two auxiliary points (33: hip centre, 34: full-body scale point).
    roi: the region the landmarks were computed in.
    next_roi: the region for the next video frame from ``aux`` (:func:`roi_from_landmarks`), *unsmoothed*. In
        video mode MediaPipe first smooths the two auxiliary points with a one-euro filter (min cutoff 0.01,
        beta 10, derivative cutoff 1; always on, whatever ``smooth_landmarks`` says), so its next region is
        steadier; a tracker that wants the same behaviour filters ``aux`` per person before calling
        :func:`roi_from_landmarks`.
    """

    landmarks: np.ndarray
    visibility: np.ndarray
    presence: np.ndarray
    world: np.ndarray
    pose_score: float
    aux: np.ndarray
    roi: Roi
    next_roi: Roi


# --- anchors and detection decoding ------------------------------------------------------------------------


def _anchor_scale(index: int, num_strides: int) -> float:
    return ANCHOR_MIN_SCALE + (ANCHOR_MAX_SCALE - ANCHOR_MIN_SCALE) * index / (num_strides - 1.0)


def generate_anchors(
    input_size: int = DETECTOR_INPUT_SIZE, strides: tuple[int, ...] = ANCHOR_STRIDES
) -> np.ndarray:
    """SSD anchor centres of the pose detector: (2254, 2) float32 ``x_center, y_center`` in [0, 1].

    Follows MediaPipe's ``SsdAnchorsCalculator`` with the detector's options (5 layers, strides 8, 16, 32, 32,
    32, aspect ratio 1, ``interpolated_scale_aspect_ratio`` left at its default 1.0, ``fixed_anchor_size``):

    - consecutive layers with the same stride share one feature map of ``ceil(224 / stride)`` cells per side;
    - every layer contributes 2 anchors per cell (its aspect ratio 1, plus the interpolated-scale anchor);
    - anchor centre of cell ``(x, y)`` on an ``n x n`` map: ``((x + 0.5) / n, (y + 0.5) / n)``, anchors ordered
      by feature map, then row ``y``, then column ``x``, then anchor within the cell;
    - with ``fixed_anchor_size`` every anchor has width = height = 1, so only the centres matter.

    Counts: 28*28*2 (stride 8) + 14*14*2 (stride 16) + 7*7*6 (three stride-32 layers) = 1568 + 392 + 294 = 2254.
    The scales (``0.1484375 ... 0.75``) only set anchor sizes, which the fixed size discards.
    """
    centers = []
    layer = 0
    while layer < len(strides):
        last = layer
        per_cell = 0
        while last < len(strides) and strides[last] == strides[layer]:
            per_cell += 2  # aspect ratio 1.0 + interpolated scale (aspect 1.0)
            last += 1
        n = math.ceil(input_size / strides[layer])
        grid = (np.arange(n, dtype=np.float32) + ANCHOR_OFFSET) / n
        yy, xx = np.meshgrid(grid, grid, indexing="ij")
        cell = np.stack([xx.ravel(), yy.ravel()], axis=-1)  # row-major: y outer, x inner
        centers.append(np.repeat(cell, per_cell, axis=0))
        layer = last
    return np.concatenate(centers).astype(np.float32)


def decode_detections(
    raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray, min_score: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode the detector outputs into boxes, keypoints and scores in letterboxed-input coordinates [0, 1].

    raw_boxes: (2254, 12) float32: ``dx, dy, w, h`` then 4 keypoints ``(dx, dy)``, in input pixels (224 scale)
        relative to the anchor centre (MediaPipe's ``reverse_output_order`` = XYWH layout).
    raw_scores: (2254,) logits. anchors: (2254, 2) centres from :func:`generate_anchors`.

    Decoding (anchor width = height = 1): ``x = dx / 224 + anchor_x``, ``w = w / 224`` (same for y / h);
    keypoints likewise; ``score = sigmoid(clip(raw, -100, 100))``. Boxes with negative width/height and scores
    below ``min_score`` are dropped.

    Returns boxes (N, 4) ``x0, y0, x1, y1``, keypoints (N, 4, 2), scores (N,), float32, unsorted.
    """
    s = 1.0 / DETECTOR_INPUT_SIZE
    scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores.astype(np.float64), -SCORE_CLIP, SCORE_CLIP)))
    keep = scores >= min_score
    raw = raw_boxes[keep]
    anc = anchors[keep]
    cx = raw[:, 0] * s + anc[:, 0]
    cy = raw[:, 1] * s + anc[:, 1]
    w = raw[:, 2] * s
    h = raw[:, 3] * s
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)
    kps = raw[:, 4:12].reshape(-1, 4, 2) * s + anc[:, None, :]
    ok = (w >= 0) & (h >= 0)
    return boxes[ok].astype(np.float32), kps[ok].astype(np.float32), scores[keep][ok].astype(np.float32)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (4,) box against (N, 4) boxes, ``x0, y0, x1, y1``."""
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def weighted_nms(
    boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, iou_threshold: float = NMS_IOU_THRESHOLD,
    max_detections: int | None = None,
) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """Weighted non-max suppression (MediaPipe's ``WEIGHTED`` algorithm with IoU overlap).

    Repeatedly take the highest-scoring remaining box; every remaining box whose IoU with it exceeds
    ``iou_threshold`` (the top box included) forms its cluster; the output box and keypoints are the
    score-weighted means over the cluster, the output score is the top box's score; the cluster is removed.
    All clusters are kept (MediaPipe's pose graph then keeps only the first), up to ``max_detections``.

    boxes (N, 4), keypoints (N, K, 2), scores (N,). Returns a list of ``(score, box (4,), keypoints (K, 2))``
    by decreasing score.
    """
    order = np.argsort(-scores, kind="stable")
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    out = []
    remaining = np.arange(len(scores))
    while len(remaining) and (max_detections is None or len(out) < max_detections):
        top = remaining[0]
        sim = _iou(boxes[top], boxes[remaining])
        cluster = remaining[sim > iou_threshold]
        if len(cluster) == 0:  # degenerate top box (zero area): keep it alone
            cluster = remaining[:1]
        w = scores[cluster].astype(np.float64)
        wsum = w.sum()
        box = (boxes[cluster] * w[:, None]).sum(0) / wsum
        kps = (keypoints[cluster] * w[:, None, None]).sum(0) / wsum
        out.append((float(scores[top]), box.astype(np.float32), kps.astype(np.float32)))
        remaining = np.setdiff1d(remaining, cluster, assume_unique=True)
        remaining = remaining[np.argsort(-scores[remaining], kind="stable")]
    return out


# --- regions of interest -----------------------------------------------------------------------------------


def _normalize_radians(angle: float) -> float:
    """Wrap an angle to [-pi, pi)."""
    return angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))


def _alignment_roi(center_px, scale_point_px, scale: float = ROI_SCALE) -> Roi:
    """Rotated square region from a centre point and a size/rotation point (both (2,) pixels).

    MediaPipe's ``AlignmentPointsRectsCalculator`` + ``RectTransformationCalculator`` (target angle 90 deg,
    ``scale_x = scale_y = 1.25``, ``square_long``):

    - side ``d = 2 * |p1 - p0|`` (the scale point lies half a body-extent from the centre);
    - rotation ``a = wrap(pi/2 - atan2(-(y1 - y0), x1 - x0))``: zero when ``p1`` is straight above ``p0`` (an
      upright person), positive when the body leans clockwise on screen;
    - ``square_long`` makes the side ``max(width, height)`` in pixels, a no-op here since the rectangle is
      already a square in pixels; then the side is multiplied by ``scale`` (1.25), the centre stays.
    """
    x0, y0 = float(center_px[0]), float(center_px[1])
    x1, y1 = float(scale_point_px[0]), float(scale_point_px[1])
    width = height = 2.0 * math.hypot(x1 - x0, y1 - y0)
    rotation = _normalize_radians(math.pi / 2 - math.atan2(-(y1 - y0), x1 - x0))
    long_side = max(width, height)  # square_long
    return Roi(center_x=x0, center_y=y0, size=long_side * scale, rotation=rotation)


def roi_from_detection(det: PersonDetection, image_hw: tuple[int, int] | None = None) -> Roi:
    """Landmark region for a detection (MediaPipe's ``PoseDetectionToRoi``): centred on the hip-centre
    keypoint, side ``2.5 * |full-body point - hip centre|`` pixels, rotated so the body points up in the crop.

    image_hw is accepted for symmetry with MediaPipe (which works in normalised coordinates and needs the
    image size to make the region square in pixels); in pixel coordinates it is not needed.
    """
    return _alignment_roi(det.keypoints[DET_HIP_CENTER], det.keypoints[DET_FULL_BODY_SCALE])


def roi_from_landmarks(landmarks_px: np.ndarray, image_hw: tuple[int, int] | None = None) -> Roi:
    """Region for the next frame from landmarks (MediaPipe's ``PoseLandmarksToRoi``).

    landmarks_px: pixels, either (2, >=2) the two auxiliary points (hip centre, full-body scale point; e.g.
        :attr:`LandmarkResult.aux`), or (>=35, >=2) all model points, of which rows 33 and 34 are used.
    Same construction as :func:`roi_from_detection` (side ``2.5 * |p34 - p33|``, 1.25 expansion, rotation
    from the p33 -> p34 direction). image_hw is not needed in pixel coordinates (see there).
    """
    p = np.asarray(landmarks_px, dtype=np.float64)
    if p.shape[0] == 2:
        c, e = p[0, :2], p[1, :2]
    elif p.shape[0] > AUX_SCALE_POINT:
        c, e = p[AUX_HIP_CENTER, :2], p[AUX_SCALE_POINT, :2]
    else:
        raise ValueError(f"expected (2, 2) auxiliary points or (>=35, 2) landmarks, got shape {p.shape}")
    return _alignment_roi(c, e)


# --- heatmap refinement ------------------------------------------------------------------------------------


def refine_from_heatmap(
    xy_norm: np.ndarray, heatmap_logits: np.ndarray, kernel: int = HEATMAP_KERNEL,
    min_confidence: float = HEATMAP_MIN_CONFIDENCE,
) -> np.ndarray:
    """Refine crop-normalised landmark positions with the model's heatmaps (``RefineLandmarksFromHeatmap``).

    xy_norm: (P, 2) x, y in [0, 1] of the crop. heatmap_logits: (64, 64, P) logits (rows = y, cols = x).

    For each point, take the heatmap cell ``(col, row) = trunc(x * 64, y * 64)`` (points outside the heatmap are
    left as they are) and a ``kernel x kernel`` window around it, truncated at the heatmap edges. With
    ``c = sigmoid(logit)`` over that window, if ``max c >= min_confidence`` the point becomes
    ``(sum c * col / sum c / 64, sum c * row / sum c / 64)``. (Cell indices, not cell centres ``col + 0.5``, are
    averaged, as MediaPipe does: a peak in one cell lands on that cell's top-left corner, not its centre.)
    Returns a new (P, 2) float32 array.
    """
    hm_h, hm_w, n = heatmap_logits.shape
    out = np.asarray(xy_norm, dtype=np.float32).copy()
    col = np.trunc(out[:, 0] * hm_w).astype(np.int64)
    row = np.trunc(out[:, 1] * hm_h).astype(np.int64)
    inside = (col >= 0) & (col < hm_w) & (row >= 0) & (row < hm_h)
    half = (kernel - 1) // 2
    offs = np.arange(-half, half + 1)
    cols = col[:, None] + offs  # (P, k)
    rows = row[:, None] + offs
    col_ok = (cols >= 0) & (cols < hm_w)
    row_ok = (rows >= 0) & (rows < hm_h)
    cc = np.clip(cols, 0, hm_w - 1)
    rr = np.clip(rows, 0, hm_h - 1)
    idx = np.arange(n)
    logits = heatmap_logits[rr[:, :, None], cc[:, None, :], idx[:, None, None]]  # (P, k, k)
    conf = 1.0 / (1.0 + np.exp(-logits.astype(np.float32)))
    conf = conf * (row_ok[:, :, None] & col_ok[:, None, :])
    total = conf.sum((1, 2))
    peak = conf.max((1, 2))
    wcol = (conf * cols[:, None, :]).sum((1, 2))
    wrow = (conf * rows[:, :, None]).sum((1, 2))
    upd = inside & (peak >= min_confidence) & (total > 0)
    safe = np.where(total > 0, total, 1.0)
    out[upd, 0] = (wcol / safe / hm_w)[upd]
    out[upd, 1] = (wrow / safe / hm_h)[upd]
    return out


# --- models ------------------------------------------------------------------------------------------------


def _import_interpreter():
    try:
        from ai_edge_litert.interpreter import Interpreter  # noqa: PLC0415 - optional heavy import
    except ImportError as exc:
        raise MissingDependencyError(
            f"the BlazePose TFLite backend needs ai-edge-litert: pip install ai-edge-litert ({exc})"
        ) from None
    return Interpreter


def _import_cv2():
    try:
        import cv2  # noqa: PLC0415
    except ImportError as exc:
        raise MissingDependencyError(
            f"the BlazePose TFLite backend needs OpenCV: pip install opencv-contrib-python ({exc})"
        ) from None
    return cv2


def mediapipe_model_paths() -> tuple[Path, Path]:
    """Paths of ``pose_detection.tflite`` and ``pose_landmark_full.tflite`` inside the installed mediapipe
    package (found without importing mediapipe itself, which is slow and loads its own TFLite runtime).

    Raises :class:`MissingDependencyError` if mediapipe or either file is missing.
    """
    import importlib.util  # noqa: PLC0415

    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "the BlazePose TFLite backend reads its models from the mediapipe wheel: pip install 'mediapipe==0.10.21'"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    paths = (root.joinpath(*_DETECTOR_PATH), root.joinpath(*_LANDMARK_PATH))
    for p in paths:
        if not p.is_file():
            raise MissingDependencyError(
                f"{p} is missing from the installed mediapipe; pip install 'mediapipe==0.10.21' (its wheel ships "
                "pose_detection.tflite and pose_landmark_full.tflite)"
            )
    return paths


class BlazePoseModels:
    """The BlazePose detector and full landmark model on TFLite interpreters (CPU, XNNPACK).

    num_threads: interpreter threads per model (default 1, for one worker process per core).
    detector_path, landmark_path: override the model files (default: from the installed mediapipe wheel).

    Not thread-safe: an interpreter runs one call at a time; use one instance per worker thread/process.
    Raises :class:`MissingDependencyError` naming ``pip install ai-edge-litert`` if the runtime is missing.
    """

    def __init__(self, num_threads: int = 1, *, detector_path: str | Path | None = None,
                 landmark_path: str | Path | None = None):
        Interpreter = _import_interpreter()
        self._cv2 = _import_cv2()
        if detector_path is None or landmark_path is None:
            default_det, default_lm = mediapipe_model_paths()
            detector_path = detector_path or default_det
            landmark_path = landmark_path or default_lm
        self.num_threads = int(num_threads)
        self._det = Interpreter(model_path=str(detector_path), num_threads=self.num_threads)
        self._det.allocate_tensors()
        self._lm = Interpreter(model_path=str(landmark_path), num_threads=self.num_threads)
        self._lm.allocate_tensors()
        self.anchors = generate_anchors()

        det_in = self._det.get_input_details()[0]
        if tuple(det_in["shape"]) != (1, DETECTOR_INPUT_SIZE, DETECTOR_INPUT_SIZE, 3):
            raise ValueError(f"unexpected detector input shape {det_in['shape']}")
        self._det_in = det_in["index"]
        outs = {tuple(d["shape"]): d["index"] for d in self._det.get_output_details()}
        self._det_boxes = outs[(1, NUM_ANCHORS, 12)]
        self._det_scores = outs[(1, NUM_ANCHORS, 1)]

        lm_in = self._lm.get_input_details()[0]
        if tuple(lm_in["shape"]) != (1, LANDMARK_INPUT_SIZE, LANDMARK_INPUT_SIZE, 3):
            raise ValueError(f"unexpected landmark input shape {lm_in['shape']}")
        self._lm_in = lm_in["index"]
        outs = {tuple(d["shape"]): d["index"] for d in self._lm.get_output_details()}
        self._lm_points = outs[(1, NUM_MODEL_POINTS * 5)]
        self._lm_flag = outs[(1, 1)]
        self._lm_heatmap = outs[(1, HEATMAP_SIZE, HEATMAP_SIZE, NUM_MODEL_POINTS)]
        self._lm_world = outs[(1, NUM_MODEL_POINTS * 3)]

    # --- detector ------------------------------------------------------------------------------------------

    def detector_input(self, rgb: np.ndarray) -> tuple[np.ndarray, Roi]:
        """Letterboxed detector input: ((224, 224, 3) float32 in [-1, 1], the square region it shows).

        The region is the axis-aligned square of side ``max(W, H)`` centred on the image (MediaPipe's
        ``keep_aspect_ratio`` padding), resampled bilinearly; outside the image is black (-1 after scaling).
        """
        cv2 = self._cv2
        h, w = rgb.shape[:2]
        roi = Roi(center_x=w / 2.0, center_y=h / 2.0, size=float(max(w, h)), rotation=0.0)
        crop = cv2.warpAffine(
            rgb, roi.crop_matrix(DETECTOR_INPUT_SIZE), (DETECTOR_INPUT_SIZE, DETECTOR_INPUT_SIZE),
            flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0),
        )
        return crop.astype(np.float32) * (2.0 / 255.0) - 1.0, roi

    def _detect_raw(self, rgb: np.ndarray, min_score: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Decoded, not yet suppressed candidates in pixels of ``rgb``: boxes (N, 4), keypoints (N, 4, 2),
        scores (N,)."""
        tensor, roi = self.detector_input(rgb)
        self._det.set_tensor(self._det_in, tensor[None])
        self._det.invoke()
        raw_boxes = self._det.get_tensor(self._det_boxes)[0]
        raw_scores = self._det.get_tensor(self._det_scores)[0, :, 0]
        boxes, kps, scores = decode_detections(raw_boxes, raw_scores, self.anchors, min_score)
        boxes = roi.to_image(boxes.reshape(-1, 2, 2)).reshape(-1, 4)
        return boxes.astype(np.float32), roi.to_image(kps).astype(np.float32), scores

    def detect_people(
        self, rgb: np.ndarray, *, min_score: float = 0.5, iou_threshold: float = NMS_IOU_THRESHOLD,
        max_people: int | None = None,
    ) -> list[PersonDetection]:
        """Every person the BlazePose detector finds in ``rgb`` ((H, W, 3) uint8 RGB), by decreasing score.

        min_score: minimum detector probability (MediaPipe's ``min_detection_confidence``, default 0.5).
        iou_threshold: weighted-NMS overlap threshold on the (face) boxes. max_people: cap (None = all).
        Coordinates are pixels of ``rgb`` (letterbox removed: ``p_px = (p_224 - 0.5) * max(W, H) + (W, H)/2``).

        The detector sees the whole image at 224 px on the long side (upscaling a small frame changes nothing),
        so small people are often missed; :meth:`detect_people_tiled` looks at tiles for them.
        """
        _check_rgb(rgb)
        boxes, kps, scores = self._detect_raw(rgb, min_score)
        found = weighted_nms(boxes, kps, scores, iou_threshold, max_people)
        return [PersonDetection(score=score, box_xyxy=box, keypoints=kp) for score, box, kp in found]

    def detect_people_tiled(
        self, rgb: np.ndarray, *, tile_px: int | None = None, min_overlap: float = 0.25, full_frame: bool = True,
        min_score: float = 0.5, iou_threshold: float = NMS_IOU_THRESHOLD, max_people: int | None = None,
    ) -> list[PersonDetection]:
        """:meth:`detect_people` over overlapping square tiles (plus the whole frame), merged by one weighted
        NMS, for people that are small in the frame.

        The detector always sees its input at 224 px, so *upscaling* a frame changes nothing for it; what
        matters is the fraction of the detector's view a person fills. Square tiles of ``tile_px`` (default: the
        short side of the image) at 224 px give small people about ``max(W, H) / tile_px`` times more detector
        pixels. Tiles are placed evenly along each axis so that neighbours overlap by at least ``min_overlap``
        of a tile (a face cut by one tile border is whole in the neighbour). ``full_frame`` adds the plain
        letterboxed pass, which finds people too large for a tile. Cost: one detector call per tile (+1).
        Candidates from all passes are merged in image pixels with :func:`weighted_nms`.
        """
        _check_rgb(rgb)
        h, w = rgb.shape[:2]
        t = int(min(h, w) if tile_px is None else min(tile_px, h, w))
        parts = [self._detect_raw(rgb, min_score)] if full_frame else []
        for y0 in _tile_starts(h, t, min_overlap):
            for x0 in _tile_starts(w, t, min_overlap):
                if t == h and t == w and full_frame:
                    continue  # the tile is the whole (square) frame: already done
                boxes, kps, scores = self._detect_raw(np.ascontiguousarray(rgb[y0:y0 + t, x0:x0 + t]), min_score)
                off = np.array([x0, y0], dtype=np.float32)
                parts.append((boxes + np.tile(off, 2), kps + off, scores))
        if not parts:
            return []
        boxes, kps, scores = (np.concatenate(a) for a in zip(*parts))
        found = weighted_nms(boxes, kps, scores, iou_threshold, max_people)
        return [PersonDetection(score=score, box_xyxy=box, keypoints=kp) for score, box, kp in found]

    # --- landmarks -----------------------------------------------------------------------------------------

    def landmark_input(self, rgb: np.ndarray, roi: Roi) -> np.ndarray:
        """(256, 256, 3) float32 crop of ``roi`` in [0, 1]: bilinear, border pixels replicated (as MediaPipe)."""
        cv2 = self._cv2
        crop = cv2.warpAffine(
            rgb, roi.crop_matrix(LANDMARK_INPUT_SIZE), (LANDMARK_INPUT_SIZE, LANDMARK_INPUT_SIZE),
            flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE,
        )
        return crop.astype(np.float32) * (1.0 / 255.0)

    def estimate_landmarks(
        self, rgb: np.ndarray, roi: Roi, *, min_pose_score: float = 0.5, refine: bool = True
    ) -> LandmarkResult | None:
        """Landmarks of the person in ``roi`` of ``rgb`` ((H, W, 3) uint8 RGB), or None.

        None when the region is degenerate (side < 1 px) or the pose flag is below ``min_pose_score``
        (MediaPipe's ``min_tracking_confidence``, default 0.5; MediaPipe drops the landmarks then too).
        refine: heatmap refinement of x, y (MediaPipe does it; False only to measure its effect).

        Decoding of the raw (39, 5) output ``(x, y, z, vis, pres)`` (x, y, z in crop pixels of 256):
        ``u = x / 256``, ``v = y / 256`` (then heatmap refinement), image pixels from :meth:`Roi.to_image`,
        ``z_px = z / 256 * roi.size``, ``visibility = sigmoid(vis)``, ``presence = sigmoid(pres)``.
        World (39, 3) metres: x, y rotated by ``roi.rotation`` (``[x', y'] = R(a) [x, y]``), z unchanged.
        """
        _check_rgb(rgb)
        if not (roi.size >= 1.0 and np.isfinite([roi.center_x, roi.center_y, roi.size, roi.rotation]).all()):
            return None
        self._lm.set_tensor(self._lm_in, self.landmark_input(rgb, roi)[None])
        self._lm.invoke()
        pose_score = float(self._lm.get_tensor(self._lm_flag)[0, 0])
        if pose_score < min_pose_score:
            return None
        raw = self._lm.get_tensor(self._lm_points)[0].reshape(NUM_MODEL_POINTS, 5)
        uv = raw[:, :2] / LANDMARK_INPUT_SIZE
        if refine:
            uv = refine_from_heatmap(uv, self._lm.get_tensor(self._lm_heatmap)[0])
        xy = roi.to_image(uv)
        z = raw[:, 2] / LANDMARK_INPUT_SIZE * roi.size
        vis = _sigmoid(raw[:, 3])
        pres = _sigmoid(raw[:, 4])

        world_raw = self._lm.get_tensor(self._lm_world)[0].reshape(NUM_MODEL_POINTS, 3)[:NUM_LANDMARKS]
        c, s = math.cos(roi.rotation), math.sin(roi.rotation)
        world = np.stack(
            [c * world_raw[:, 0] - s * world_raw[:, 1], s * world_raw[:, 0] + c * world_raw[:, 1], world_raw[:, 2]],
            axis=-1,
        )
        aux = xy[AUX_HIP_CENTER:AUX_SCALE_POINT + 1].astype(np.float32)
        return LandmarkResult(
            landmarks=np.concatenate([xy[:NUM_LANDMARKS], z[:NUM_LANDMARKS, None]], axis=-1).astype(np.float32),
            visibility=vis[:NUM_LANDMARKS].astype(np.float32),
            presence=pres[:NUM_LANDMARKS].astype(np.float32),
            world=world.astype(np.float32),
            pose_score=pose_score,
            aux=aux,
            roi=roi,
            next_roi=roi_from_landmarks(aux, rgb.shape[:2]),
        )

    def detect_and_estimate(self, rgb: np.ndarray, *, min_score: float = 0.5, min_pose_score: float = 0.5,
                            max_people: int | None = None) -> list[tuple[PersonDetection, LandmarkResult]]:
        """Convenience for single images: detect everyone, then landmarks in each detection's region.
        People whose landmark model rejects the region (pose flag below ``min_pose_score``) are left out."""
        out = []
        for det in self.detect_people(rgb, min_score=min_score, max_people=max_people):
            res = self.estimate_landmarks(rgb, roi_from_detection(det, rgb.shape[:2]), min_pose_score=min_pose_score)
            if res is not None:
                out.append((det, res))
        return out


def _tile_starts(length: int, tile: int, min_overlap: float) -> list[int]:
    """Start offsets of tiles of ``tile`` px covering ``[0, length)`` evenly, neighbours overlapping by at
    least ``min_overlap * tile`` (first tile at 0, last ending at ``length``)."""
    if tile >= length:
        return [0]
    step = max(1.0, tile * (1.0 - min_overlap))
    n = math.ceil((length - tile) / step) + 1
    return [int(round(i * (length - tile) / (n - 1))) for i in range(n)]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float32)))


def _check_rgb(rgb: np.ndarray) -> None:
    if not (isinstance(rgb, np.ndarray) and rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8):
        raise ValueError(
            f"expected an (H, W, 3) uint8 RGB image, got {getattr(rgb, 'dtype', type(rgb))} "
            f"{getattr(rgb, 'shape', '')}"
        )
