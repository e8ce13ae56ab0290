"""The per-clip human motion file (``.npz``): the documented, engine-neutral output of the human stage.

Arrays (T = frames, J = joints):

=======================  ===========  =====================================================================
key                      shape        meaning
=======================  ===========  =====================================================================
``format``               ()           ``"g1forge.human_clip"``; ``format_version`` () int
``clip_id`` ``video_id`` ()           ids (strings)
``track_id``             ()           int
``fps``                  ()           frames per second
``frame_idx``            (T,)         decode indices in the source video
``time_s``               (T,)         presentation times, seconds
``joint_names``          (J,)         names, :data:`pipeline.skeleton.BODY_JOINTS`
``joints_world_m``       (T, J, 3)    world frame: metres, z up, ground z = 0, facing +x at frame 0
``joint_conf``           (T, J)       confidence in [0, 1]
``foot_contact``         (T, 4)       contact of left_heel, left_toe, right_heel, right_toe
``T_world_from_camera``  (4, 4)       rigid transform from the camera frame (OpenCV axes) to the world frame
``smpl_global_orient``   (T, 3, 3)    optional: SMPL root rotation in the camera frame
``smpl_body_pose``       (T, 23, 3, 3) optional: SMPL joint rotations
``smpl_betas``           (T, 10)      optional
``smpl_transl_cam_m``    (T, 3)       optional: SMPL translation in the camera frame
``keypoints_px``         (T, J, 2)    optional: 2D keypoints (x, y), pixels of the source frame
``image_size_hw``        (2,)         optional: (H, W) of the frames ``keypoints_px`` refer to (upright)
=======================  ===========  =====================================================================

The optional keys are written when the clip has them; files without them (older runs, backends without 2D
keypoints) load with ``None`` in their place.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.motion import HumanClip, SMPLParams

FORMAT = "g1forge.human_clip"
FORMAT_VERSION = 1


def save_clip(clip: HumanClip, path: str | Path) -> None:
    """Write ``clip`` to ``path`` (an ``.npz``)."""
    arrays = dict(
        format=np.array(FORMAT),
        format_version=np.array(FORMAT_VERSION),
        clip_id=np.array(clip.clip_id),
        video_id=np.array(clip.video_id),
        track_id=np.array(clip.track_id),
        fps=np.array(clip.fps, dtype=np.float64),
        frame_idx=np.asarray(clip.frame_idx, dtype=np.int64),
        time_s=np.asarray(clip.time_s, dtype=np.float64),
        joint_names=np.array(clip.joint_names),
        joints_world_m=np.asarray(clip.joints_world_m, dtype=np.float32),
        joint_conf=np.asarray(clip.joint_conf, dtype=np.float32),
        foot_contact=np.asarray(clip.foot_contact, dtype=bool),
        T_world_from_camera=np.asarray(clip.T_world_from_camera, dtype=np.float64),
    )
    if clip.smpl is not None:
        arrays.update(
            smpl_global_orient=np.asarray(clip.smpl.global_orient_rotmat, dtype=np.float32),
            smpl_body_pose=np.asarray(clip.smpl.body_pose_rotmat, dtype=np.float32),
            smpl_betas=np.asarray(clip.smpl.betas, dtype=np.float32),
            smpl_transl_cam_m=np.asarray(clip.smpl.transl_cam_m, dtype=np.float32),
        )
    if clip.keypoints_px is not None:
        arrays["keypoints_px"] = np.asarray(clip.keypoints_px, dtype=np.float32)
    if clip.image_size_hw is not None:
        arrays["image_size_hw"] = np.asarray(clip.image_size_hw, dtype=np.int64)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def load_clip(path: str | Path) -> HumanClip:
    """Read a clip written by :func:`save_clip` (metrics are in the catalog, not in the file)."""
    with np.load(path, allow_pickle=False) as z:
        if str(z["format"]) != FORMAT:
            raise ValueError(f"{path} is not a g1forge human clip (format {z['format']!r})")
        smpl = None
        if "smpl_betas" in z:
            smpl = SMPLParams(z["smpl_global_orient"], z["smpl_body_pose"], z["smpl_betas"], z["smpl_transl_cam_m"])
        return HumanClip(
            clip_id=str(z["clip_id"]),
            video_id=str(z["video_id"]),
            track_id=int(z["track_id"]),
            frame_idx=z["frame_idx"],
            time_s=z["time_s"],
            fps=float(z["fps"]),
            joint_names=tuple(str(n) for n in z["joint_names"]),
            joints_world_m=z["joints_world_m"],
            joint_conf=z["joint_conf"],
            T_world_from_camera=z["T_world_from_camera"],
            foot_contact=z["foot_contact"],
            smpl=smpl,
            keypoints_px=z["keypoints_px"] if "keypoints_px" in z else None,
            image_size_hw=tuple(int(v) for v in z["image_size_hw"]) if "image_size_hw" in z else None,
        )
