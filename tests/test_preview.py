"""`g1forge preview`: a real small run (synthetic video + PHALP pickle beside it, clips, G1 retargeting, catalog)
previewed with both G1 renderers; frames, sizes, source-frame order, keypoint pixels, fallbacks and errors."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from catalog import db, writer
from catalog.layout import RunLayout
from catalog.preview import PreviewError, clip_keypoints_px, preview
from ingest.errors import ConfigError, G1ForgeError, InputNotFound
from ingest.ids import file_id
from ingest.items import VideoItem
from phalp_factory import make_phalp_pickle, synthetic_track
from pipeline.motion_io import load_clip
from pipeline.skeleton import joint_index
from video_factory import frame_rgb, make_video

W, H, FPS, N = 160, 120, 30.0, 100
OK_FRAMES = np.arange(20, 95)  # one 2.5 s clip starting at frame 20
SHORT_FRAMES = np.arange(0, 30)  # 1 s: a filtered (too_short) clip


@dataclasses.dataclass
class Run:
    out: Path
    inputs: Path
    video_id: str
    ok_clip: str
    short_clip: str
    expected_kp_px: np.ndarray  # (75, 20, 2) the importer's keypoints of the ok clip's frames
    focal_px: float


def _publish_run(root: Path) -> Run:
    """Pose (phalp-pkl importer), clips, retargeting and robot metrics in process, published with the catalog
    writer exactly as a run publishes a video."""
    from pipeline.backends.base import create_backend
    from pipeline.clips import build_clips
    from pipeline.g1.model import load_g1
    from pipeline.g1_motion import save_g1_motion
    from pipeline.motion_io import save_clip
    from pipeline.process import clip_row
    from pipeline.retarget import retarget_clip
    from pipeline.robot_metrics import robot_metrics

    inputs = root / "in"
    inputs.mkdir(parents=True)
    # people ~85 px tall at 60 m with PHALP's focal length (3125 px for 160 px wide frames), inside the frame
    walker = synthetic_track(1, OK_FRAMES, start_xyz_m=(-0.4, -0.1, 60.0), velocity_m_s=(0.3, 0.0, 0.0), seed=3)
    stander = synthetic_track(2, SHORT_FRAMES, start_xyz_m=(0.6, -0.1, 60.0), velocity_m_s=(0.0, 0.0, 0.0), seed=4)
    pkl = inputs / "walk.pkl"
    fake = make_phalp_pickle(pkl, [walker, stander], size_hw=(H, W), num_frames=N, ghosts=False, backfill=False)
    make_video(inputs / "walk.mp4", width=W, height=H, num_frames=N, fps=FPS)

    video_id = file_id(pkl)
    result = create_backend("phalp-pkl").process(VideoItem(video_id=video_id, uri=str(pkl), kind="file"), None)
    clips = build_clips(result, video_id)
    model = load_g1()
    rows, motions = [], []
    for clip in clips:
        row = clip_row(clip, video_id)
        if clip.status == "ok":
            rt = retarget_clip(clip, model)
            row.update(robot_metrics(rt.motion, model, rt.targets, rt.contact))
            row["g1_motion_path"] = RunLayout.g1_motion_relpath(video_id, clip.clip_id)
            motions.append(rt.motion)
        rows.append(row)
    assert [c.status for c in clips] == ["ok", "filtered"]

    layout = RunLayout.at(root / "out")
    layout.root.mkdir()
    layout.info_path.write_text(json.dumps({"format_version": 1}))
    from catalog.schema import CLIP_BASE

    metrics = sorted({k for r in rows for k in r} - set(CLIP_BASE.names))
    writer.write_schema_fragments(layout, metrics)
    db.write_views(layout)
    video_row = {"video_id": video_id, "uri": str(pkl), "source_kind": "file", "status": "ok", "reason": "",
                 "backend": "phalp-pkl", "config_hash": "cfg", "focal_px": float(result.focal_px),
                 "fps": float(result.fps), "width_px": W, "height_px": H}

    def write_motions(folder: Path) -> None:
        for clip in clips:
            if clip.status == "ok":
                save_clip(clip, folder / f"{clip.clip_id}.npz")
        for motion in motions:
            save_g1_motion(motion, folder / f"{motion.clip_id}.g1.npz")

    writer.publish_video(layout, video_id, "cfg", video_row, [], rows, metrics, write_motions)
    return Run(out=layout.root, inputs=inputs, video_id=video_id, ok_clip=clips[0].clip_id,
               short_clip=clips[1].clip_id, expected_kp_px=fake.expected[1].keypoints_px,
               focal_px=float(result.focal_px))


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    return _publish_run(tmp_path_factory.mktemp("preview"))


@pytest.fixture(scope="module")
def stick(run, tmp_path_factory):
    """The ok clip previewed with the stick-figure G1 at 320 px (two 160 px panels: the source's own size)."""
    report = preview(run.out, run.ok_clip, renderer="stick", width_px=320,
                     dest=tmp_path_factory.mktemp("stick") / "ok.mp4")
    return report, _decode(report.dest)


def _decode(path: Path):
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        info = {"codec": stream.codec_context.name, "pix_fmt": stream.codec_context.pix_fmt,
                "rate": float(stream.average_rate)}
        frames = [f.to_ndarray(format="rgb24").astype(int) for f in container.decode(stream)]
    return info, frames


def _copy_run(run: Run, tmp_path: Path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(run.out, out)
    return out


def _stripe_bits(rgb_row: np.ndarray) -> tuple[int, ...]:
    """The 3 colour bits of video_factory's top stripe, read from the middle of a pixel row (W, 3)."""
    mid = rgb_row[len(rgb_row) // 4 : 3 * len(rgb_row) // 4].mean(axis=0)
    return tuple(int(c > 128) for c in mid)


# --- the clip file's 2D keypoints ------------------------------------------------------------------------


def test_clip_files_keep_2d_keypoints_and_older_files_still_load(run, tmp_path):
    path = run.out / RunLayout.clip_motion_relpath(run.video_id, run.ok_clip)
    clip = load_clip(path)
    assert clip.keypoints_px.shape == (75, 20, 2) and clip.image_size_hw == (H, W)
    np.testing.assert_allclose(clip.keypoints_px, run.expected_kp_px, atol=1e-3)
    with np.load(path) as z:  # a file from before keypoints were stored
        old = {k: z[k] for k in z.files if k not in ("keypoints_px", "image_size_hw")}
    np.savez(tmp_path / "old.npz", **old)
    old_clip = load_clip(tmp_path / "old.npz")
    assert old_clip.keypoints_px is None and old_clip.image_size_hw is None
    np.testing.assert_array_equal(old_clip.joints_world_m, clip.joints_world_m)


def test_projected_keypoints_match_the_stored_ones(run):
    clip = load_clip(run.out / RunLayout.clip_motion_relpath(run.video_id, run.ok_clip))
    kp, source = clip_keypoints_px(dataclasses.replace(clip, keypoints_px=None), run.focal_px, (H, W))
    assert source == "projected"
    np.testing.assert_allclose(kp, clip.keypoints_px, atol=0.05)
    assert clip_keypoints_px(dataclasses.replace(clip, keypoints_px=None), None, (H, W)) == (None, "none")


# --- the video ---------------------------------------------------------------------------------------------


def test_preview_has_every_clip_frame_in_order_at_the_clip_rate(run, stick):
    report, (info, frames) = stick
    assert (report.left, report.keypoints, report.renderer, report.notes) == ("video", "stored", "stick", [])
    assert report.num_frames == len(frames) == len(OK_FRAMES)
    assert frames[0].shape == (report.height_px, 320, 3) and report.panel_wh == (160, H)
    assert report.height_px % 2 == 0 and report.header_px > 0
    assert (frames[0][: report.header_px].mean(axis=-1) > 100).sum() > 100  # the text band's labels
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p" and info["rate"] == pytest.approx(FPS)
    # video_factory colours its top stripe by frame index: each output frame shows the clip's own source frame
    row = report.header_px + 3
    got = [_stripe_bits(f[row, :160]) for f in frames]
    want = [_stripe_bits(frame_rgb(int(i), width=W, height=H)[3]) for i in OK_FRAMES]
    assert got == want


def test_keypoints_are_drawn_where_they_are(run, stick):
    report, (_, frames) = stick
    lw, rw, pelvis = joint_index("left_wrist", "right_wrist", "pelvis")
    for i in (0, 37, 74):
        frame = frames[i]
        kp = run.expected_kp_px[i]  # panel = source size: keypoint pixels map 1:1 below the header
        x, y = np.round(kp[lw]).astype(int)
        r, g, b = frame[report.header_px + y, x]
        assert r > 170 and 60 < g < 200 and b < 90, (i, "left wrist", (r, g, b))  # orange
        x, y = np.round(kp[rw]).astype(int)
        r, g, b = frame[report.header_px + y, x]
        assert b > 170 and r < 90, (i, "right wrist", (r, g, b))  # blue
        x, y = np.round(kp[pelvis]).astype(int)
        r, g, b = frame[report.header_px + y, x]
        assert r > 170 and g > 170 and b < min(r, g) - 50, (i, "pelvis", (r, g, b))  # yellow
        # far from the person and the white box: the video's dark background is untouched
        assert frame[report.header_px + H - 4, 4].max() < 70


def test_the_stick_figure_g1_is_drawn_in_the_right_panel(stick):
    report, (_, frames) = stick
    right = frames[10][report.header_px :, 160:]
    orange = (right[..., 0] > 190) & (right[..., 2] < 90)
    blue = (right[..., 2] > 190) & (right[..., 0] < 90)
    assert orange.sum() > 20 and blue.sum() > 20
    ys, xs = np.nonzero(orange | blue)
    assert 40 < xs.mean() < 120 and 20 < ys.mean() < 100  # the tracked robot stays near the middle


@pytest.mark.slow  # software OpenGL on a CPU-only machine: ~0.1 s a frame
def test_mujoco_preview_renders_the_robot(run, tmp_path):
    from pipeline.g1.render import open_g1_renderer

    try:
        probe, _ = open_g1_renderer("mujoco", 32, 32)
        probe.close()
    except G1ForgeError as exc:
        pytest.skip(f"MuJoCo offscreen rendering is unavailable here: {exc}")
    report = preview(run.out, run.ok_clip, renderer="mujoco", width_px=192, dest=tmp_path / "mj.mp4")
    info, frames = _decode(report.dest)
    assert report.renderer == "mujoco" and len(frames) == len(OK_FRAMES) and frames[0].shape[1] == 192
    pw = report.panel_wh[0]
    panels = [f[report.header_px :, pw:] for f in (frames[0], frames[-1])]
    for right in panels:
        assert ((right[..., 0] > 170) & (right[..., 2] < 100)).sum() > 5  # orange left-side links
        assert ((right[..., 2] > 170) & (right[..., 0] < 100)).sum() > 5  # blue right-side links
    assert np.abs(panels[0] - panels[1]).mean() > 0.5  # the robot moves


def test_mujoco_and_stick_views_agree(run):
    """Both renderers look through the same camera: MuJoCo's robot pixels cover the projected body origins."""
    from pipeline.g1.model import STANDING_PELVIS_HEIGHT_M, load_g1
    from pipeline.g1.render import MujocoG1Renderer, OrbitCamera

    model = load_g1()
    try:
        renderer = MujocoG1Renderer(model, 160, 120)
    except G1ForgeError as exc:
        pytest.skip(f"MuJoCo offscreen rendering is unavailable here: {exc}")
    try:
        root, quat, q = np.array([0.4, -0.3, STANDING_PELVIS_HEIGHT_M]), np.array([1.0, 0, 0, 0]), np.zeros(29)
        q[model.joint_index("left_shoulder_roll")] = 1.2
        lookat = np.array([0.4, -0.3, 0.65])
        robot = renderer.render(root, quat, q, lookat).astype(int)
        empty = renderer.render(root + [0, 0, -5.0], quat, q, lookat).astype(int)  # under the floor: not seen
    finally:
        renderer.close()
    mask = np.abs(robot - empty).sum(axis=-1) > 60
    ys, xs = np.nonzero(mask)
    body_pos, _ = model.fk(root, quat, q)
    px, _ = OrbitCamera().project(body_pos, lookat, 160, 120)
    assert xs.min() - 3 <= px[:, 0].min() and px[:, 0].max() <= xs.max() + 3
    assert ys.min() - 3 <= px[:, 1].min() and px[:, 1].max() <= ys.max() + 3
    # and not much wider than the bodies (capsules add a few centimetres, ~5 px at this distance)
    assert xs.max() - xs.min() < px[:, 0].max() - px[:, 0].min() + 20


def test_auto_falls_back_to_the_stick_figure(monkeypatch):
    import pipeline.g1.render as render

    def no_gl(width, height):
        raise render.RenderError("no OpenGL here (test)")

    monkeypatch.setattr(render, "_gl_context", no_gl)
    renderer, note = render.open_g1_renderer("auto", 64, 48)
    assert renderer.kind == "stick" and "no OpenGL here" in note and "stick figure" in note
    with pytest.raises(render.RenderError, match="no OpenGL here"):
        render.open_g1_renderer("mujoco", 64, 48)


# --- fallbacks ----------------------------------------------------------------------------------------------


def test_missing_source_video_shows_the_3d_skeleton(run, tmp_path):
    video = run.inputs / "walk.mp4"
    moved = tmp_path / "walk.mp4"
    shutil.move(video, moved)
    try:
        report = preview(run.out, run.ok_clip, renderer="stick", width_px=320, dest=tmp_path / "skel.mp4")
    finally:
        shutil.move(moved, video)
    assert report.left == "skeleton" and report.keypoints == "none"
    assert any("no video named walk.*" in n and "3D skeleton" in n for n in report.notes)
    _, frames = _decode(report.dest)
    assert len(frames) == len(OK_FRAMES)
    left = frames[20][report.header_px :, :160]
    assert ((left[..., 0] > 190) & (left[..., 2] < 90)).sum() > 10  # the person's left side, orange
    assert left.mean() > 150  # the light 3D backdrop, not the dark source video


def test_older_clip_files_get_projected_keypoints(run, tmp_path):
    out = _copy_run(run, tmp_path)
    path = out / RunLayout.clip_motion_relpath(run.video_id, run.ok_clip)
    with np.load(path) as z:
        old = {k: z[k] for k in z.files if k not in ("keypoints_px", "image_size_hw")}
    with open(path, "wb") as f:
        np.savez(f, **old)
    report = preview(out, run.ok_clip, renderer="stick", width_px=320, dest=tmp_path / "old.mp4")
    assert report.keypoints == "projected" and any("projecting" in n for n in report.notes)
    _, frames = _decode(report.dest)
    x, y = np.round(run.expected_kp_px[5, joint_index("left_wrist")[0]]).astype(int)
    r, g, b = frames[5][report.header_px + y, x]
    assert r > 170 and b < 90


def test_filtered_clip_shows_its_source_frames_without_a_g1(run, tmp_path):
    report = preview(run.out, run.short_clip, width_px=320, dest=tmp_path / "short.mp4")
    assert (report.left, report.keypoints, report.renderer) == ("video", "none", "none")
    assert any("no G1 motion" in n and "too_short" in n for n in report.notes)
    _, frames = _decode(report.dest)
    assert len(frames) == len(SHORT_FRAMES)
    row = report.header_px + 3
    assert [_stripe_bits(f[row, :160]) for f in frames] == [
        _stripe_bits(frame_rgb(int(i), width=W, height=H)[3]) for i in SHORT_FRAMES]


def test_ok_clip_without_a_g1_motion_previews_the_human_side(run, tmp_path):
    out = _copy_run(run, tmp_path)
    (fragment,) = RunLayout.at(out).data_dir.glob(f"*/{run.video_id}/clips.parquet")
    table = pq.read_table(fragment)
    rows = table.to_pylist()
    for r in rows:
        r["g1_motion_path"] = None
    pq.write_table(type(table).from_pylist(rows, schema=table.schema), fragment)
    report = preview(out, run.ok_clip, renderer="stick", width_px=320, dest=tmp_path / "human.mp4")
    assert (report.left, report.keypoints, report.renderer) == ("video", "stored", "none")
    assert any("no G1 motion" in n for n in report.notes)
    assert len(_decode(report.dest)[1]) == len(OK_FRAMES)


def test_source_video_lookup(run, tmp_path):
    from catalog.preview import source_video_path

    layout = RunLayout.at(run.out)
    mp4 = run.inputs / "walk.mp4"
    assert source_video_path(layout, {"source_kind": "file", "uri": str(mp4), "video_id": file_id(mp4)}) == (mp4, "")
    path, why = source_video_path(layout, {"source_kind": "file", "uri": str(mp4), "video_id": "file-0123"})
    assert path is None and "changed since the run" in why
    path, why = source_video_path(layout, {"source_kind": "file", "uri": str(tmp_path / "gone.mp4"),
                                           "video_id": "file-0123"})
    assert path is None and "not found" in why
    row = {"source_kind": "youtube", "uri": "https://youtu.be/abc", "video_id": "yt-abc"}
    assert source_video_path(layout, row)[0] is None and "no download" in source_video_path(layout, row)[1]
    layout.download_dir.mkdir(parents=True)
    shutil.copy(mp4, layout.download_dir / "yt-abc.mp4")
    try:
        assert source_video_path(layout, row) == (layout.download_dir / "yt-abc.mp4", "")
    finally:
        shutil.rmtree(layout.root / "cache")


# --- errors and the command line ----------------------------------------------------------------------------


def test_unknown_clip_id_says_how_to_list_clips(run):
    with pytest.raises(InputNotFound) as err:
        preview(run.out, "file-0000-t1-f000000-000010")
    assert "g1forge query" in str(err.value) and "SELECT clip_id FROM clips WHERE status='ok'" in str(err.value)
    with pytest.raises(InputNotFound):
        preview(run.out, "x' OR '1'='1")  # a parameter, never SQL


def test_missing_or_corrupt_motion_files_are_clear_errors(run, tmp_path):
    out = _copy_run(run, tmp_path)
    g1_path = out / RunLayout.g1_motion_relpath(run.video_id, run.ok_clip)
    g1_path.write_bytes(b"not an npz")
    with pytest.raises(PreviewError, match="cannot read the G1 motion file"):
        preview(out, run.ok_clip, renderer="stick", dest=tmp_path / "a.mp4")
    g1_path.unlink()
    with pytest.raises(InputNotFound, match="missing.*--force"):
        preview(out, run.ok_clip, renderer="stick", dest=tmp_path / "a.mp4")
    assert not (tmp_path / "a.mp4").exists() and not (tmp_path / "a.mp4.part").exists()


def test_bad_options(run, tmp_path):
    with pytest.raises(ConfigError, match="renderer"):
        preview(run.out, run.ok_clip, renderer="vulkan")
    with pytest.raises(ConfigError, match="--width"):
        preview(run.out, run.ok_clip, width_px=10)
    with pytest.raises(ConfigError, match="not a g1forge run folder"):
        preview(tmp_path, run.ok_clip)


def test_cli_writes_the_default_destination(run, capsys):
    from cluster.cli import main

    assert main(["preview", str(run.out), run.ok_clip, "--renderer", "stick", "--width", "160"]) == 0
    dest = run.out / "previews" / f"{run.ok_clip}.mp4"
    assert dest.is_file() and str(dest) in capsys.readouterr().out
    assert len(_decode(dest)[1]) == len(OK_FRAMES)
    assert main(["preview", str(run.out), "nope"]) == 2
    err = capsys.readouterr().err
    assert "g1forge preview: not_found:" in err and "g1forge query" in err
