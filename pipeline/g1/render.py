"""Pictures of the G1: MuJoCo offscreen rendering, or a stick figure drawn with Pillow when MuJoCo cannot render.

Both renderers look through the same :class:`OrbitCamera` (MuJoCo's free camera: azimuth, elevation, distance
and vertical field of view around a look-at point), so a preview looks alike whichever one drew it, and the
stick figure is also a projection helper for any world-frame points (:func:`draw_stick_figure`).

- :class:`MujocoG1Renderer`: the G1 MJCF plus a checker floor, a sky and a light, drawn by ``mjr_render`` into an
  offscreen buffer. It makes its own OpenGL context: ``$MUJOCO_GL`` when set (``egl``, ``osmesa``, ``glfw``),
  otherwise EGL, then OSMesa (headless machines have no display for GLFW). Robot capsules are drawn opaque,
  left-side links orange and right-side links blue, like the stick figure.
- :class:`StickG1Renderer`: body origins (from the G1 motion's stored forward kinematics) joined parent to child.
- :func:`open_g1_renderer`: ``"auto"`` tries MuJoCo and falls back to the stick figure with a note saying why.

World frame: metres, z up, ground at z = 0 (the G1 motion's frame). Images are (H, W, 3) uint8 RGB.
"""

from __future__ import annotations

import importlib
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ingest.errors import ConfigError, G1ForgeError, require_module
from pipeline.g1.model import BODY_NAMES, BODY_PARENT_INDEX, load_g1

RENDERERS = ("auto", "mujoco", "stick")

#: Colours (RGB) of the left side, the right side and the middle of a body, shared with the human overlay.
LEFT_RGB = (255, 140, 0)
RIGHT_RGB = (0, 150, 255)
CENTRE_RGB = (240, 240, 60)
BACKGROUND_TOP_RGB = (232, 237, 245)
BACKGROUND_BOTTOM_RGB = (196, 203, 214)
GRID_RGB = (150, 156, 166)


class RenderError(G1ForgeError):
    """The requested renderer cannot draw here (e.g. no offscreen OpenGL); the message names the fix."""

    reason = "render"


def side_rgb(name: str) -> tuple[int, int, int]:
    """The colour of a body or joint by its name: ``left_*`` orange, ``right_*`` blue, others yellow."""
    if name.startswith("left_"):
        return LEFT_RGB
    if name.startswith("right_"):
        return RIGHT_RGB
    return CENTRE_RGB


@dataclass(frozen=True)
class OrbitCamera:
    """A perspective camera orbiting a look-at point, with MuJoCo's free-camera conventions.

    azimuth_deg: direction of view about z (0 looks along +x, 90 along +y); elevation_deg: below zero looks down;
    distance_m: from the camera to the look-at point; fovy_deg: vertical field of view.
    The default looks at the person's front-left from slightly above (clips face +x at their first frame).
    """

    azimuth_deg: float = -150.0
    elevation_deg: float = -12.0
    distance_m: float = 3.4
    fovy_deg: float = 45.0

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(forward, up, right) unit vectors (3,) of the camera in the world frame."""
        az, el = math.radians(self.azimuth_deg), math.radians(self.elevation_deg)
        forward = np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
        up = np.array([-math.sin(el) * math.cos(az), -math.sin(el) * math.sin(az), math.cos(el)])
        return forward, up, np.cross(forward, up)

    def position_m(self, lookat_m) -> np.ndarray:
        """(3,) camera centre for a look-at point (3,)."""
        return np.asarray(lookat_m, dtype=np.float64) - self.distance_m * self.axes()[0]

    def project(self, points_m, lookat_m, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (..., 2) (x right, y down, origin at the top-left corner) and depth (...) in metres
        along the view direction of world points (..., 3); points behind the camera get NaN pixels."""
        forward, up, right = self.axes()
        rel = np.asarray(points_m, dtype=np.float64) - self.position_m(lookat_m)
        depth = rel @ forward
        focal_px = 0.5 * height / math.tan(math.radians(self.fovy_deg) / 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            x = 0.5 * width + focal_px * (rel @ right) / depth
            y = 0.5 * height - focal_px * (rel @ up) / depth
        px = np.stack([x, y], axis=-1)
        px[depth <= 1e-6] = np.nan
        return px, depth


def smoothed_lookat(root_pos_m: np.ndarray, fps: float, *, height_m: float = 0.65, window_s: float = 0.5) -> np.ndarray:
    """Look-at points (T, 3) that follow the pelvis (T, 3) on the ground plane, averaged over ``window_s``
    (a steadier view than the raw pelvis), at a fixed height ``height_m`` (about the middle of the G1)."""
    root = np.asarray(root_pos_m, dtype=np.float64)
    t = len(root)
    out = np.full((t, 3), height_m)
    if t == 0:
        return out
    half = max(0, int(round(window_s * max(fps, 1e-9) / 2)))
    padded = np.concatenate([np.repeat(root[:1, :2], half, 0), root[:, :2], np.repeat(root[-1:, :2], half, 0)])
    kernel = np.ones(2 * half + 1) / (2 * half + 1)
    for k in range(2):
        out[:, k] = np.convolve(padded[:, k], kernel, mode="valid")
    return out


# ---------------------------------------------------------------------- stick figures


def background(width: int, height: int, camera: OrbitCamera, lookat_m, *, grid_step_m: float = 0.5,
               grid_half_m: float = 4.0):
    """A Pillow image (RGB) with a vertical gradient and the ground grid (z = 0) around the look-at point."""
    from PIL import Image, ImageDraw

    ramp = np.linspace(0.0, 1.0, height)[:, None]
    top, bottom = np.array(BACKGROUND_TOP_RGB), np.array(BACKGROUND_BOTTOM_RGB)
    rows = (top * (1 - ramp) + bottom * ramp).astype(np.uint8)
    image = Image.fromarray(np.ascontiguousarray(np.broadcast_to(rows[:, None, :], (height, width, 3))))
    draw = ImageDraw.Draw(image)
    cx = math.floor(float(lookat_m[0]) / grid_step_m) * grid_step_m
    cy = math.floor(float(lookat_m[1]) / grid_step_m) * grid_step_m
    ticks = np.arange(-grid_half_m, grid_half_m + 1e-9, grid_step_m)
    samples = np.linspace(-grid_half_m, grid_half_m, 33)
    tt, ss = np.meshgrid(ticks, samples, indexing="ij")  # (L, S)
    zeros = np.zeros_like(tt)
    lines = np.concatenate([np.stack([cx + tt, cy + ss, zeros], -1), np.stack([cx + ss, cy + tt, zeros], -1)])
    px, _ = camera.project(lines, lookat_m, width, height)  # (2L, S, 2)
    for line_px in px:
        _polyline(draw, line_px, GRID_RGB, 1)
    return image


def _polyline(draw, px: np.ndarray, rgb, width: int) -> None:
    """Draw the finite stretches of a (N, 2) pixel polyline."""
    ok = np.isfinite(px).all(axis=1)
    start = None
    for i in range(len(px) + 1):
        if i < len(px) and ok[i]:
            start = i if start is None else start
            continue
        if start is not None and i - start >= 2:
            draw.line([tuple(p) for p in px[start:i]], fill=rgb, width=width)
        start = None


def draw_stick_figure(image, points_px: np.ndarray, edges: Sequence[tuple[int, int]],
                      colours: Sequence[tuple[int, int, int]], *, line_px: int = 3, dot_px: int = 3,
                      visible: np.ndarray | None = None) -> None:
    """Draw points (N, 2) in pixels joined by ``edges`` (index pairs) on a Pillow image, in place.

    colours: (N,) RGB per point; an edge takes its child's (second index's) colour. visible: (N,) bool, points
    and edges touching hidden points are skipped (non-finite points always are).
    """
    from PIL import ImageDraw

    draw = ImageDraw.Draw(image)
    pts = np.asarray(points_px, dtype=np.float64)
    ok = np.isfinite(pts).all(axis=1)
    if visible is not None:
        ok &= np.asarray(visible, dtype=bool)
    for a, b in edges:
        if ok[a] and ok[b]:
            draw.line([tuple(pts[a]), tuple(pts[b])], fill=tuple(colours[b]), width=line_px)
    for i in np.flatnonzero(ok):
        x, y = pts[i]
        draw.ellipse([x - dot_px, y - dot_px, x + dot_px, y + dot_px], fill=tuple(colours[i]),
                     outline=(20, 20, 20))


class StickG1Renderer:
    """The G1 as a stick figure: the body origins of a frame joined parent to child, over a ground grid."""

    kind = "stick"

    def __init__(self, width: int, height: int, camera: OrbitCamera | None = None):
        self.width, self.height = int(width), int(height)
        self.camera = camera or OrbitCamera()

    def render(self, body_pos_m: np.ndarray, body_names: Sequence[str], lookat_m) -> np.ndarray:
        """(H, W, 3) uint8 image of one frame; body_pos_m (B, 3) world positions in ``body_names`` order."""
        image = background(self.width, self.height, self.camera, lookat_m)
        names = tuple(body_names)
        pos = np.asarray(body_pos_m, dtype=np.float64)
        # the far side first, so that the near side's links are drawn over it
        px, depth = self.camera.project(pos, lookat_m, self.width, self.height)
        edges = _body_edges(names)
        edges.sort(key=lambda e: -float(np.nan_to_num(depth[e[0]] + depth[e[1]], nan=0.0)))
        scale = max(1, round(self.height / 120))
        draw_stick_figure(image, px, edges, [side_rgb(n) for n in names], line_px=2 * scale + 1, dot_px=scale + 1)
        return np.asarray(image)

    def close(self) -> None:
        pass


def _body_edges(names: tuple[str, ...]) -> list[tuple[int, int]]:
    """(parent, child) index pairs of G1 bodies (the bundled tree; bodies it does not know are left alone)."""
    index = {n: i for i, n in enumerate(names)}
    edges = []
    for child, parent_i in zip(BODY_NAMES, BODY_PARENT_INDEX):
        if parent_i >= 0 and child in index and BODY_NAMES[parent_i] in index:
            edges.append((index[BODY_NAMES[parent_i]], index[child]))
    return edges


# ---------------------------------------------------------------------- MuJoCo


def _gl_context(width: int, height: int):
    """(backend name, an OpenGL context made current) for offscreen rendering; raises :class:`RenderError`."""
    wanted = os.environ.get("MUJOCO_GL", "").strip().lower()
    order = [wanted] if wanted in ("egl", "osmesa", "glfw") else ["egl", "osmesa"]
    problems = []
    for name in order:
        platform_before = os.environ.get("PYOPENGL_PLATFORM")
        try:
            module = importlib.import_module(f"mujoco.{name}")
            context = module.GLContext(width, height)
            context.make_current()
            return name, context
        except Exception as exc:  # ImportError, EGL/OSMesa errors, RuntimeError: try the next backend
            problems.append(f"{name}: {type(exc).__name__}: {str(exc).strip() or 'failed'}")
            if platform_before is None and "OpenGL" not in sys.modules:
                os.environ.pop("PYOPENGL_PLATFORM", None)  # let the next backend choose its PyOpenGL platform
    raise RenderError(
        "MuJoCo cannot render offscreen here (" + "; ".join(problems) + "). Install EGL (apt install libegl1) or "
        "OSMesa (apt install libosmesa6) and set MUJOCO_GL=egl or MUJOCO_GL=osmesa, or use --renderer stick"
    )


class MujocoG1Renderer:
    """The G1 drawn by MuJoCo into an offscreen buffer: the MJCF of ``model`` plus floor, sky and light."""

    kind = "mujoco"

    def __init__(self, model, width: int, height: int, camera: OrbitCamera | None = None):
        """model: a :class:`pipeline.g1.model.G1Model` (its MJCF is compiled again with the scenery added)."""
        mujoco = require_module("mujoco", "MuJoCo rendering of the G1", "pip install mujoco")
        self._mujoco = mujoco
        self.width, self.height = int(width), int(height)
        self.camera = camera or OrbitCamera()
        self._g1 = model
        self._gl_backend, self._gl = _gl_context(self.width, self.height)
        try:
            self._m = self._compile_scene(model)
            self._d = mujoco.MjData(self._m)
            self._scene = mujoco.MjvScene(self._m, maxgeom=1000)
            self._option = mujoco.MjvOption()
            self._option.geomgroup[:] = 1  # the G1's capsules are in group 3, hidden by default
            self._context = mujoco.MjrContext(self._m, mujoco.mjtFontScale.mjFONTSCALE_100)
            mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._context)
            self._viewport = mujoco.MjrRect(0, 0, self.width, self.height)
            self._cam = mujoco.MjvCamera()
            self._cam.type = mujoco.mjtCamera.mjCAMERA_FREE
            self._rgb = np.empty((self.height, self.width, 3), dtype=np.uint8)
        except Exception as exc:
            self.close()
            if isinstance(exc, G1ForgeError):
                raise
            raise RenderError(f"MuJoCo rendering could not start ({type(exc).__name__}: {exc}); "
                              "use --renderer stick") from exc

    @property
    def gl_backend(self) -> str:
        return self._gl_backend

    def _compile_scene(self, model):
        mujoco = self._mujoco
        spec = mujoco.MjSpec.from_file(str(model.mjcf_path))
        spec.add_texture(name="g1forge_floor", type=mujoco.mjtTexture.mjTEXTURE_2D,
                         builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER, rgb1=[0.86, 0.87, 0.89],
                         rgb2=[0.74, 0.75, 0.78], width=256, height=256)
        floor = spec.add_material(name="g1forge_floor", texrepeat=[1, 1], texuniform=True, reflectance=0.0)
        floor.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = "g1forge_floor"
        spec.add_texture(name="g1forge_sky", type=mujoco.mjtTexture.mjTEXTURE_SKYBOX,
                         builtin=mujoco.mjtBuiltin.mjBUILTIN_GRADIENT, rgb1=[0.92, 0.94, 0.97],
                         rgb2=[0.6, 0.66, 0.75], width=64, height=64)
        spec.worldbody.add_geom(name="g1forge_floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[0, 0, 0.05],
                                material="g1forge_floor", contype=0, conaffinity=0)
        spec.worldbody.add_light(name="g1forge_key", pos=[1.5, 1.0, 4.0], dir=[-0.3, -0.2, -1.0],
                                 mode=mujoco.mjtCamLight.mjCAMLIGHT_TRACKCOM, diffuse=[0.6, 0.6, 0.6],
                                 castshadow=True)
        spec.visual.global_.offwidth = max(int(spec.visual.global_.offwidth), self.width)
        spec.visual.global_.offheight = max(int(spec.visual.global_.offheight), self.height)
        spec.visual.global_.fovy = float(self.camera.fovy_deg)
        spec.visual.quality.shadowsize = 1024  # smaller than MuJoCo's 4096: cheaper on software OpenGL
        m = spec.compile()
        m.vis.headlight.ambient[:] = 0.35
        m.vis.headlight.diffuse[:] = 0.45
        floor_id = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "g1forge_floor")
        for g in range(m.ngeom):
            if g == floor_id:
                continue
            body = mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_BODY, int(m.geom_bodyid[g])) or ""
            rgb = np.array(side_rgb(body)) / 255.0 if body.startswith(("left_", "right_")) else (0.55, 0.6, 0.68)
            m.geom_rgba[g] = (*rgb, 1.0)
        return m

    def render(self, root_pos_m, root_quat_wxyz, joint_pos_rad, lookat_m) -> np.ndarray:
        """(H, W, 3) uint8 image of one frame: root position (3,), root quaternion wxyz (4,), 29 joint angles
        in :data:`pipeline.g1.model.JOINT_NAMES` order, camera look-at point (3,)."""
        mujoco = self._mujoco
        self._gl.make_current()
        self._d.qpos[:] = self._g1.qpos(root_pos_m, root_quat_wxyz, joint_pos_rad)
        mujoco.mj_kinematics(self._m, self._d)
        mujoco.mj_camlight(self._m, self._d)
        cam = self._cam
        cam.lookat[:] = np.asarray(lookat_m, dtype=np.float64)
        cam.distance = self.camera.distance_m
        cam.azimuth = self.camera.azimuth_deg
        cam.elevation = self.camera.elevation_deg
        mujoco.mjv_updateScene(self._m, self._d, self._option, None, cam, mujoco.mjtCatBit.mjCAT_ALL, self._scene)
        mujoco.mjr_render(self._viewport, self._scene, self._context)
        mujoco.mjr_readPixels(self._rgb, None, self._viewport, self._context)
        return np.ascontiguousarray(self._rgb[::-1])

    def close(self) -> None:
        context = getattr(self, "_context", None)
        if context is not None:
            try:
                context.free()
            except Exception:
                pass
            self._context = None
        gl = getattr(self, "_gl", None)
        if gl is not None:
            try:
                gl.free()
            except Exception:
                pass
            self._gl = None


def open_g1_renderer(kind: str, width: int, height: int, *, model=None, camera: OrbitCamera | None = None):
    """A G1 renderer and a note (``""`` when the requested one opened).

    kind: ``"mujoco"`` (raises :class:`RenderError` / :class:`MissingDependencyError` when it cannot render),
    ``"stick"``, or ``"auto"`` (MuJoCo when it renders here, else the stick figure, with the reason as the note).
    model: the :class:`pipeline.g1.model.G1Model` for MuJoCo (default: the bundled G1).
    """
    if kind not in RENDERERS:
        raise ConfigError(f"unknown renderer {kind!r}; choose one of {', '.join(RENDERERS)}")
    if kind == "stick":
        return StickG1Renderer(width, height, camera), ""
    try:
        if model is None:
            model = load_g1()
        return MujocoG1Renderer(model, width, height, camera), ""
    except G1ForgeError as exc:
        if kind == "mujoco":
            raise
        return StickG1Renderer(width, height, camera), f"MuJoCo rendering unavailable, drawing a stick figure: {exc}"
