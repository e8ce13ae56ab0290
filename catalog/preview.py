"""``g1forge preview``: an mp4 of one clip for eyeballing, the source video beside the retargeted G1.

Layout of every frame (``width_px`` wide, even sizes, the clip's frame rate, H.264 / yuv420p)::

    +----------------------------+----------------------------+
    | clip id, frame, time       | G1 renderer, key metrics   |   header band
    +----------------------------+----------------------------+
    | source frame with the      | the G1 at the same frame   |
    | detected 2D keypoints      | (MuJoCo or stick figure)   |
    +----------------------------+----------------------------+

What is drawn where, and what stands in when something is missing:

- Left: the clip's frames of the source video (the local file, the video beside a ``phalp-pkl`` pickle, or
  the download under ``OUT/cache/downloads/``), decoded by :mod:`ingest.decode` from just before the clip, with
  the track's 2D keypoints and bones. Keypoints come from the clip file (``keypoints_px``); clip files written
  before they were stored get the world joints projected back through ``T_world_from_camera`` with the run's
  focal length (pinhole, principal point at the image centre). Only detected keypoints are drawn (confidence
  > 0: frames inside tracking gaps show none). Without the source video the left panel shows the 3D human
  skeleton in the world frame instead, with a note.
- Right: the G1 motion of the clip (:mod:`pipeline.g1.render`); a clip without one (not retargeted, or
  retargeting failed) gets a panel saying why, with a note. A clip without a human motion file (a filtered
  window) shows its source frames only.
- Colours: the person's left side orange, right side blue, the middle yellow, on both panels.

Errors (:class:`ingest.errors.G1ForgeError` subclasses): an unknown clip id, a catalogued motion file missing
from the run folder, a clip with nothing to show. The output is written next to its destination and renamed
into place, so an interrupted preview leaves no truncated file.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from catalog import db
from catalog.layout import RunLayout
from ingest.errors import ConfigError, G1ForgeError, InputNotFound, require_module
from ingest.ids import ID_PATTERN
from pipeline.skeleton import BODY_JOINTS, BONES

PREVIEW_DIR = "previews"
DEFAULT_WIDTH_PX = 1280
MIN_WIDTH_PX = 64

#: Bones drawn on the person: the constant-length :data:`pipeline.skeleton.BONES` plus head and feet.
DRAW_BONES: tuple[tuple[str, str], ...] = BONES + (
    ("neck", "head"),
    ("left_ankle", "left_heel"), ("left_ankle", "left_toe"), ("left_heel", "left_toe"),
    ("right_ankle", "right_heel"), ("right_ankle", "right_toe"), ("right_heel", "right_toe"),
)  # fmt: skip

_HEADER_RGB = (24, 26, 30)
_TEXT_RGB = (235, 235, 235)
_PLACEHOLDER_RGB = (70, 72, 78)

QUERY_HINT = "g1forge query {out} \"SELECT clip_id FROM clips WHERE status='ok' LIMIT 5\""


class PreviewError(G1ForgeError):
    """A clip that cannot be previewed (nothing to show, an unreadable motion file); the message says why."""

    reason = "preview"


@dataclass
class ClipSources:
    """What the catalog knows about one clip and where its pieces are on disk.

    clip / video: the catalog rows (column -> value). motion_path / g1_motion_path: the clip's human and G1
    motion files (None when the catalog lists none). video_path: the source video on this machine, or None.
    """

    clip: dict
    video: dict
    motion_path: Path | None
    g1_motion_path: Path | None
    video_path: Path | None
    video_missing_why: str = ""


@dataclass
class PreviewReport:
    """What :func:`preview` wrote.

    left: ``"video"`` or ``"skeleton"`` (3D human skeleton, source video missing). keypoints: ``"stored"``,
    ``"projected"`` or ``"none"``. renderer: ``"mujoco"``, ``"stick"`` or ``"none"`` (no G1 motion).
    panel_wh: size of each panel in pixels; header_px: height of the text band above them.
    """

    dest: Path
    clip_id: str
    num_frames: int
    fps: float
    width_px: int
    height_px: int
    left: str
    keypoints: str
    renderer: str
    panel_wh: tuple[int, int]
    header_px: int
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"wrote {self.dest} ({self.num_frames} frames at {self.fps:.3g} fps, {self.width_px}x"
                f"{self.height_px}; left: {self.left}, keypoints: {self.keypoints}, G1: {self.renderer})")


# ---------------------------------------------------------------------- finding the clip


def find_clip(run_dir: str | Path, clip_id: str) -> ClipSources:
    """The catalog rows and files of ``clip_id`` in the run folder ``run_dir`` (read-only catalog).

    Raises :class:`InputNotFound` for an unknown clip id and for motion files the catalog lists but the run
    folder lacks.
    """
    layout = RunLayout.at(run_dir)
    con = db.connect(layout.root)
    try:
        clip = _one_row(con, "SELECT * FROM clips WHERE clip_id = ? LIMIT 1", clip_id)
        if clip is None:
            raise InputNotFound(f"no clip {clip_id!r} in {layout.root}; list some clip ids with: "
                                + QUERY_HINT.format(out=layout.root))
        video = _one_row(con, "SELECT * FROM videos WHERE video_id = ? LIMIT 1", clip["video_id"]) or {}
    finally:
        con.close()
    video_id = clip["video_id"]
    motion = _catalogued_file(layout, clip, "motion_path", RunLayout.clip_motion_relpath(video_id, clip_id))
    g1 = _catalogued_file(layout, clip, "g1_motion_path", RunLayout.g1_motion_relpath(video_id, clip_id))
    video_path, why = source_video_path(layout, video) if video else (None, "the catalog has no row of its video")
    return ClipSources(clip=clip, video=video, motion_path=motion, g1_motion_path=g1, video_path=video_path,
                       video_missing_why=why)


def _one_row(con, sql: str, value) -> dict | None:
    cur = con.execute(sql, [value])
    row = cur.fetchone()
    if row is None:
        return None
    return dict(zip([d[0] for d in cur.description], row))


def _catalogued_file(layout: RunLayout, row: dict, column: str, relpath: str) -> Path | None:
    """The file a clip row lists in ``column`` (at its id-derived path), None when it lists none."""
    if not row.get(column):
        return None
    path = layout.root / relpath
    if not path.is_file():
        raise InputNotFound(
            f"{relpath} is listed in the catalog of {layout.root} but missing; run `g1forge run` again with "
            f"--force on video {row['video_id']} to rebuild it")
    return path


def source_video_path(layout: RunLayout, video_row: dict) -> tuple[Path | None, str]:
    """The source video of a catalog video row on this machine, or None and why it is not usable.

    Local files are used where the catalog says they were, if their content still has the row's ``video_id``
    (:func:`ingest.ids.file_id`); a ``phalp-pkl`` input (``.pkl``) points to the video with the same stem beside
    it; remote videos to their download in ``OUT/cache/downloads/``.
    """
    from ingest.sources import VIDEO_EXTENSIONS

    uri = video_row.get("uri") or ""
    video_id = video_row.get("video_id") or ""
    if video_row.get("source_kind") == "file":
        path = Path(uri)
        if path.suffix.lower() == ".pkl":
            siblings = sorted(p for p in path.parent.glob(_glob_escape(path.stem) + ".*")
                              if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
            if siblings:
                return siblings[0], ""
            return None, f"no video named {path.stem}.* beside {uri}"
        if not path.is_file():
            return None, f"{uri} not found"
        from ingest.ids import file_id

        if file_id(path) != video_id:
            return None, f"{uri} has changed since the run (its content is not video {video_id})"
        return path, ""
    if not ID_PATTERN.match(video_id):
        return None, f"video id {video_id!r} is not a file name"
    from ingest.download import cached_file

    path = cached_file(layout.download_dir, video_id)
    return (path, "") if path is not None else (None, f"no download of {uri} in {layout.download_dir}")


def _glob_escape(text: str) -> str:
    """``text`` with glob metacharacters escaped."""
    return "".join(f"[{c}]" if c in "*?[]" else c for c in text)


# ---------------------------------------------------------------------- keypoints


def clip_keypoints_px(clip, focal_px: float | None, image_size_hw: tuple[int, int] | None):
    """2D keypoints (T, J, 2) in source pixels of a :class:`pipeline.motion.HumanClip`, and where they came from.

    ``"stored"``: the clip file's ``keypoints_px``. ``"projected"``: the world joints moved back to the camera
    frame (inverse of ``T_world_from_camera``) and projected with ``focal_px`` and the principal point at the
    centre of ``image_size_hw`` (H, W). ``(None, "none")`` when neither is possible.
    """
    if clip.keypoints_px is not None:
        return np.asarray(clip.keypoints_px, dtype=np.float64), "stored"
    if not focal_px or not image_size_hw or not all(image_size_hw):
        return None, "none"
    from pipeline.camera import principal_point_px, project

    T = np.asarray(clip.T_world_from_camera, dtype=np.float64)
    R, t = T[:3, :3], T[:3, 3]
    joints_cam = (np.asarray(clip.joints_world_m, dtype=np.float64) - t) @ R  # R^T (p - t), row vectors
    h, w = image_size_hw
    return project(joints_cam, float(focal_px), principal_point_px(w, h)), "projected"


# ---------------------------------------------------------------------- source frames


def _decode(path: Path, start_s: float | None, max_side_px: int):
    from ingest.decode import iter_frames, prefetch

    return prefetch(iter_frames(path, start_s=start_s, max_side_px=max_side_px))


def frames_at(path: Path, wanted: np.ndarray, start_s: float | None, fps: float,
              max_side_px: int | None = None) -> Iterator[object]:
    """For each decode index in ``wanted`` (increasing), the :class:`ingest.decode.DecodedFrame` of ``path``, or
    None where the video has no such frame. Seeks to two frames before ``start_s`` (the time of the first wanted
    frame) and decodes from the beginning if that seek lands past it. Close the generator when done early."""
    margin_s = 2.0 / fps if fps > 0 else 0.1
    seek_s = start_s - margin_s if start_s is not None and start_s - margin_s > 0 else None
    stream = _decode(path, seek_s, max_side_px)
    try:
        frame = next(stream, None)
        if seek_s is not None and frame is not None and len(wanted) and frame.frame_idx > wanted[0]:
            stream.close()
            stream = _decode(path, None, max_side_px)
            frame = next(stream, None)
        for idx in wanted:
            while frame is not None and frame.frame_idx < idx:
                frame = next(stream, None)
            yield frame if frame is not None and frame.frame_idx == idx else None
    finally:
        stream.close()


# ---------------------------------------------------------------------- drawing


def _even(x: float) -> int:
    return max(2, int(round(x / 2.0)) * 2)


def _font(size_px: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size_px)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: the small bitmap font
        return ImageFont.load_default()


def _fit_frame(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """``rgb`` resized to exactly (height, width)."""
    if rgb.shape[0] == height and rgb.shape[1] == width:
        return rgb
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.BILINEAR))


def _placeholder(width: int, height: int, lines: list[str], font) -> np.ndarray:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), _PLACEHOLDER_RGB)
    draw = ImageDraw.Draw(image)
    y = height // 3
    for line in lines:
        for chunk in _wrap(line, max(8, int(width / max(_font_size(font), 1) * 1.8))):
            draw.text((8, y), chunk, fill=_TEXT_RGB, font=font)
            y += int(_font_size(font) * 1.3) + 1
    return np.asarray(image)


def _font_size(font) -> int:
    return int(getattr(font, "size", 10))


def _wrap(text: str, width: int) -> list[str]:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + ([line] if line else [])


def _metric(row: dict, name: str, fmt: str, unit: str) -> str | None:
    value = row.get(name)
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return f"{value:{fmt}} {unit}"


# ---------------------------------------------------------------------- encoding


class _Mp4Writer:
    """H.264 / yuv420p frames into an MP4 at a constant rate (PyAV)."""

    def __init__(self, path: Path, fps: float, width: int, height: int):
        av = require_module("av", "writing the preview video", "pip install av")
        rate = Fraction(fps).limit_denominator(1001) if fps > 0 else Fraction(30)
        self._av = av
        self._container = av.open(str(path), mode="w", format="mp4")
        try:
            try:
                stream = self._container.add_stream("libx264", rate=rate)
                stream.options = {"crf": "20", "preset": "veryfast"}
            except Exception:  # a PyAV build without libx264: FFmpeg's default H.264 encoder
                stream = self._container.add_stream("h264", rate=rate)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.time_base = 1 / rate
            stream.codec_context.time_base = 1 / rate
        except BaseException:
            self._container.close()
            raise
        self._stream = stream
        self._time_base = 1 / rate
        self._count = 0

    def write(self, rgb: np.ndarray) -> None:
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = self._count
        frame.time_base = self._time_base
        self._count += 1
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
        finally:
            self._container.close()


# ---------------------------------------------------------------------- the preview


def default_dest(run_dir: str | Path, clip_id: str) -> Path:
    """``OUT/previews/<clip_id>.mp4`` (the clip id must be a safe file name, as the catalog's are)."""
    if not ID_PATTERN.match(clip_id or ""):
        raise ConfigError(f"clip id {clip_id!r} is not a file name; pass --dest")
    return RunLayout.at(run_dir).root / PREVIEW_DIR / f"{clip_id}.mp4"


def _run_g1_model(layout: RunLayout, notes: list[str]):
    """The run's G1 model (its ``--g1-mjcf`` when the file is still there, else the bundled one)."""
    from pipeline.g1.model import load_g1

    mjcf = None
    try:
        info = json.loads(layout.info_path.read_text())
        mjcf = (info.get("config") or {}).get("g1_mjcf")
    except (OSError, ValueError):
        pass
    if mjcf and not Path(mjcf).is_file():
        notes.append(f"the run's G1 MJCF {mjcf} is missing: rendering the bundled G1")
        mjcf = None
    return load_g1(mjcf)


@dataclass
class _Layout:
    """Pixel sizes of one preview frame."""

    panel_w: int
    panel_h: int
    header_px: int
    line_px: int
    dot_px: int

    @classmethod
    def for_source(cls, width_px: int, source_hw: tuple[int, int]) -> _Layout:
        panel_w = _even(width_px / 2)
        aspect = source_hw[0] / max(source_hw[1], 1)
        panel_h = _even(panel_w * min(2.0, max(0.4, aspect)))
        return cls(panel_w, panel_h, header_px=_even(max(24, panel_w * 0.085)), line_px=max(1, panel_w // 240) + 1,
                   dot_px=max(3, panel_w // 140))


class _HumanSide:
    """The left panel: source frames with keypoints, or the 3D skeleton when the video is missing."""

    def __init__(self, src: ClipSources, human, frame_idx: np.ndarray, fps: float, source_hw, lay: _Layout,
                 notes: list[str]):
        from pipeline.g1.render import OrbitCamera, side_rgb, smoothed_lookat

        self.lay, self.human = lay, human
        names = tuple(human.joint_names) if human is not None else BODY_JOINTS
        index = {n: i for i, n in enumerate(names)}
        self.bones = [(index[a], index[b]) for a, b in DRAW_BONES if a in index and b in index]
        self.colours = [side_rgb(n) for n in names]
        self.keypoints, self.keypoints_source = None, "none"
        self.frames = None
        self.last_rgb = None
        self.missing = 0
        if src.video_path is not None:
            self.kind = "video"
            kp_hw = (human.image_size_hw if human is not None and human.image_size_hw else None) or tuple(source_hw)
            self.scale_xy = (lay.panel_w / kp_hw[1], lay.panel_h / kp_hw[0])
            if human is not None:
                self.keypoints, self.keypoints_source = clip_keypoints_px(human, src.video.get("focal_px"), kp_hw)
                if self.keypoints_source == "projected":
                    notes.append("the clip file has no 2D keypoints (written by an older version): projecting its "
                                 "3D joints with the run's focal length")
            self.frames = frames_at(src.video_path, frame_idx, src.clip.get("start_s"), fps,
                                    max_side_px=int(max(lay.panel_w, lay.panel_h) * 1.25))
        else:
            self.kind = "skeleton"
            self.camera = OrbitCamera()
            joints = np.asarray(human.joints_world_m, dtype=np.float64)
            pelvis = joints[:, index["pelvis"]] if "pelvis" in index else joints.mean(axis=1)
            self.lookat = smoothed_lookat(pelvis, fps)

    def panel(self, i: int) -> np.ndarray:
        from PIL import Image

        from pipeline.g1.render import background, draw_stick_figure

        lay, human = self.lay, self.human
        j = None if human is None else min(i, human.num_frames - 1)
        conf = None if human is None else np.asarray(human.joint_conf[j]) > 0
        if self.kind == "skeleton":
            image = background(lay.panel_w, lay.panel_h, self.camera, self.lookat[j])
            px, _ = self.camera.project(human.joints_world_m[j], self.lookat[j], lay.panel_w, lay.panel_h)
            draw_stick_figure(image, px, self.bones, self.colours, line_px=lay.line_px, dot_px=lay.dot_px,
                              visible=conf)
            return np.asarray(image)
        decoded = next(self.frames, None)
        if decoded is None:
            self.missing += 1
            rgb = self.last_rgb if self.last_rgb is not None else np.zeros((lay.panel_h, lay.panel_w, 3), np.uint8)
        else:
            rgb = self.last_rgb = _fit_frame(decoded.rgb, lay.panel_w, lay.panel_h)
        image = Image.fromarray(rgb)
        if self.keypoints is not None:
            px = self.keypoints[j] * np.asarray(self.scale_xy)
            draw_stick_figure(image, px, self.bones, self.colours, line_px=lay.line_px, dot_px=lay.dot_px,
                              visible=conf)
        return np.asarray(image)

    def close(self) -> None:
        if self.frames is not None:
            self.frames.close()


class _RobotSide:
    """The right panel: the G1 motion rendered frame by frame, or a panel saying why there is none."""

    def __init__(self, g1, renderer: str, model_fn, fps: float, num_frames: int, lay: _Layout, clip_row: dict,
                 font, notes: list[str]):
        from pipeline.g1.render import open_g1_renderer, smoothed_lookat

        self.g1, self.renderer, self.kind = g1, None, "none"
        if g1 is None:
            self.placeholder = _no_g1_panel(lay.panel_w, lay.panel_h, clip_row, font)
            return
        model = None
        if renderer != "stick":
            try:
                model = model_fn()
            except G1ForgeError as exc:  # e.g. mujoco missing: the stored body positions still draw a stick figure
                if renderer == "mujoco":
                    raise
                renderer = "stick"
                notes.append(f"cannot load the G1 model for MuJoCo, drawing a stick figure: {exc}")
        self.renderer, note = open_g1_renderer(renderer, lay.panel_w, lay.panel_h, model=model)
        self.kind = self.renderer.kind
        if note:
            notes.append(note)
        self.lookat = smoothed_lookat(g1.root_pos_m, g1.fps or fps)
        if g1.num_frames != num_frames:
            notes.append(f"the G1 motion has {g1.num_frames} frames and the clip {num_frames}: showing the nearest")

    def panel(self, i: int) -> np.ndarray:
        g1 = self.g1
        if g1 is None:
            return self.placeholder
        k = min(i, g1.num_frames - 1)
        if self.kind == "mujoco":
            return self.renderer.render(g1.root_pos_m[k], g1.root_quat_wxyz[k], g1.joint_pos_rad[k], self.lookat[k])
        return self.renderer.render(g1.body_pos_m[k], g1.body_names, self.lookat[k])

    def close(self) -> None:
        if self.renderer is not None:
            self.renderer.close()


def preview(run_dir: str | Path, clip_id: str, *, dest: str | Path | None = None, renderer: str = "auto",
            width_px: int = DEFAULT_WIDTH_PX, model=None) -> PreviewReport:
    """Write the preview mp4 of ``clip_id`` from the run folder ``run_dir``; see the module docstring.

    dest: output file (default ``OUT/previews/<clip_id>.mp4``); renderer: ``auto`` / ``mujoco`` / ``stick``
    for the G1 panel; width_px: width of the whole frame (two panels; the height follows the source video's
    aspect ratio). model: the :class:`pipeline.g1.model.G1Model` for MuJoCo (default: the run's).
    """
    from pipeline.g1.render import RENDERERS

    if renderer not in RENDERERS:
        raise ConfigError(f"unknown renderer {renderer!r}; choose one of {', '.join(RENDERERS)}")
    if isinstance(width_px, bool) or int(width_px) != width_px or width_px < MIN_WIDTH_PX:
        raise ConfigError(f"--width must be a whole number of pixels >= {MIN_WIDTH_PX} (got {width_px!r})")
    layout = RunLayout.at(run_dir)
    src = find_clip(layout.root, clip_id)
    dest = Path(dest).expanduser() if dest is not None else default_dest(layout.root, clip_id)
    notes: list[str] = []

    human = _load(src.motion_path, "human motion", "pipeline.motion_io", "load_clip")
    g1 = _load(src.g1_motion_path, "G1 motion", "pipeline.g1_motion", "load_g1_motion")
    frame_idx = _frame_indices(src.clip, human)
    fps = float(src.clip.get("fps") or (human.fps if human is not None else 0.0) or 30.0)
    if human is not None and len(human.time_s) == len(frame_idx):
        time_s = np.asarray(human.time_s, dtype=np.float64)  # presentation times (variable frame rate kept)
    else:
        time_s = float(src.clip.get("start_s") or 0.0) + (frame_idx - frame_idx[0]) / fps
    source_hw = _source_hw(src, human, notes)
    status, reason = src.clip.get("status"), src.clip.get("reason") or ""
    if src.video_path is None and human is None:
        raise PreviewError(
            f"clip {clip_id} has no motion file (status {status}{': ' + reason if reason else ''}) and its source "
            f"video is not usable here ({src.video_missing_why}): nothing to preview")
    if src.video_path is None:
        notes.append(f"source video unavailable ({src.video_missing_why}): the left panel shows the 3D skeleton")
    if human is None:
        notes.append(f"clip {clip_id} has no human motion file (status {status}): source frames without keypoints")
    if g1 is None:
        notes.append(f"clip {clip_id} has no G1 motion (status {status}{': ' + reason if reason else ''}): the "
                     "right panel says so")

    lay = _Layout.for_source(int(width_px), source_hw)
    font = _font(max(8, int(lay.header_px * 0.36)))
    left = right = None
    try:
        left = _HumanSide(src, human, frame_idx, fps, source_hw, lay, notes)
        right = _RobotSide(g1, renderer, lambda: model or _run_g1_model(layout, notes), fps, len(frame_idx), lay,
                           src.clip, font, notes)
        _write_video(dest, fps, len(frame_idx), lay,
                     lambda i: _compose(i, left.panel(i), right.panel(i), frame_idx, time_s, src.clip, right.kind,
                                        lay, font))
    finally:
        for side in (left, right):
            if side is not None:
                side.close()
    if left.missing:
        notes.append(f"{left.missing} of the clip's frames are not in the source video: repeated the last one")
    return PreviewReport(dest=dest, clip_id=clip_id, num_frames=len(frame_idx), fps=fps,
                         width_px=2 * lay.panel_w, height_px=lay.header_px + lay.panel_h, left=left.kind,
                         keypoints=left.keypoints_source, renderer=right.kind,
                         panel_wh=(lay.panel_w, lay.panel_h), header_px=lay.header_px, notes=notes)


def _source_hw(src: ClipSources, human, notes: list[str]) -> tuple[int, int]:
    """Upright (H, W) of the source frames; a source video that cannot be opened counts as missing."""
    if src.video_path is not None:
        from ingest.decode import iter_frames

        try:
            with iter_frames(src.video_path) as frames:  # opens the file and decodes one frame only
                return tuple(frames.source_hw)
        except G1ForgeError as exc:
            if human is None:
                raise
            src.video_path, src.video_missing_why = None, f"cannot read {src.video_path}: {exc}"
    return (human.image_size_hw if human is not None and human.image_size_hw else None) or _row_hw(src.video) \
        or (3, 4)


def _write_video(dest: Path, fps: float, num_frames: int, lay: _Layout, frame_at) -> None:
    """Encode ``frame_at(i)`` for every frame into ``dest`` through a ``.part`` file renamed into place."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {dest.parent}: {exc}; choose a writable --dest") from None
    part = dest.with_name(dest.name + ".part")
    writer = _Mp4Writer(part, fps, 2 * lay.panel_w, lay.header_px + lay.panel_h)
    try:
        for i in range(num_frames):
            writer.write(frame_at(i))
        writer.close()
        os.replace(part, dest)
    except BaseException:
        with contextlib.suppress(Exception):
            writer.close()
        with contextlib.suppress(OSError):
            part.unlink()
        raise


def _compose(i: int, left: np.ndarray, right: np.ndarray, frame_idx: np.ndarray, time_s: np.ndarray,
             clip_row: dict, kind: str, lay: _Layout, font) -> np.ndarray:
    canvas = np.empty((lay.header_px + lay.panel_h, 2 * lay.panel_w, 3), np.uint8)
    canvas[: lay.header_px] = _HEADER_RGB
    canvas[lay.header_px :, : lay.panel_w] = left
    canvas[lay.header_px :, lay.panel_w :] = right
    _draw_header(canvas, i, frame_idx, time_s, clip_row, kind, lay.panel_w, lay.header_px, font)
    return canvas


def _load(path: Path | None, what: str, module: str, function: str):
    if path is None:
        return None
    import importlib
    import zipfile

    loader = getattr(importlib.import_module(module), function)
    try:
        return loader(path)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise PreviewError(f"cannot read the {what} file {path}: {type(exc).__name__}: {exc}; run `g1forge run` "
                           "again with --force on its video to rebuild it") from None


def _frame_indices(clip_row: dict, human) -> np.ndarray:
    if human is not None and human.num_frames:
        return np.asarray(human.frame_idx, dtype=np.int64)
    start, end = clip_row.get("start_frame"), clip_row.get("end_frame")
    if start is None or end is None or end < start:
        raise PreviewError(f"clip {clip_row.get('clip_id')} has no frame span in the catalog: nothing to preview")
    return np.arange(int(start), int(end) + 1, dtype=np.int64)


def _row_hw(video_row: dict) -> tuple[int, int] | None:
    h, w = video_row.get("height_px"), video_row.get("width_px")
    if not h or not w:
        return None
    if video_row.get("rotation_deg") in (90, 270):
        h, w = w, h
    return int(h), int(w)


def _no_g1_panel(width: int, height: int, clip_row: dict, font) -> np.ndarray:
    status = clip_row.get("status") or "?"
    reason = clip_row.get("reason") or ("not retargeted in this run" if status == "ok" else "")
    return _placeholder(width, height, ["no G1 motion", f"status: {status}", reason], font)


def _draw_header(canvas: np.ndarray, i: int, frame_idx: np.ndarray, time_s: np.ndarray, clip_row: dict, kind: str,
                 panel_w: int, header_px: int, font) -> None:
    """Two lines of text over each panel (each clipped to its panel): the clip, frame and times (in the clip,
    in the video) on the left; the G1 renderer and the clip's duration, jitter and G1 key-body residual on the
    right."""
    from PIL import Image, ImageDraw

    left = [str(clip_row.get("clip_id")),
            f"frame {int(frame_idx[i])}  t {time_s[i] - time_s[0]:.2f} s  video {time_s[i]:.2f} s  "
            f"[{i + 1}/{len(frame_idx)}]"]
    metrics = [m for m in (_metric(clip_row, "duration_s", ".2f", "s"),
                           _metric(clip_row, "jitter_m_s3", ".1f", "m/s^3 jitter"),
                           _metric(clip_row, "keybody_err_mean_m", ".3f", "m G1 residual")) if m]
    right = [f"G1 ({kind})" if kind != "none" else "G1: none", "  ".join(metrics)]
    line_h = header_px // 2
    pad = max(2, header_px // 12)
    for x0, lines in ((0, left), (panel_w, right)):
        band = Image.new("RGB", (panel_w, header_px), _HEADER_RGB)
        draw = ImageDraw.Draw(band)
        for k, text in enumerate(lines):
            draw.text((pad, pad // 2 + k * line_h), text, fill=_TEXT_RGB, font=font)
        canvas[:header_px, x0 : x0 + panel_w] = np.asarray(band)
