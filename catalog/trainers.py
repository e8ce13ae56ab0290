"""How each trainer takes an export: the exact commands the dataset card prints, per format.

Checked against the trainers' public code (``../shared/reference/trainers.md``; mjlab 1.6.0 from PyPI):

- **mjlab** (``mjlab-npz``): ``train Mjlab-Tracking-Flat-Unitree-G1`` loads one motion per run, a local
  ``motion.npz`` given as ``--env.commands.motion.motion-file``, or ``--registry-name`` naming a W&B artifact that
  holds ``motion.npz``; ``play`` takes ``--motion-file``. Its CSV converter (``python -m mjlab.scripts.csv_to_npz``)
  reads ``--input-fps`` (default 30).
- **BeyondMimic** (``isaaclab-npz``; ``whole_body_tracking``): ``scripts/rsl_rl/train.py --task=Tracking-Flat-G1-v0
  --registry_name ENTITY/wandb-registry-motions/NAME`` (W&B only: ``g1forge publish``); ``scripts/rsl_rl/play.py``
  takes ``--motion_file``. Its ``scripts/csv_to_npz.py`` reads ``--input_fps`` (default 30).
- **unitree_rl_lab** (``unitree-csv``): ``scripts/mimic/csv_to_npz.py -f motion.csv --input_fps F --robot_model
  g1_29dof`` writes ``motion.npz`` beside the CSV (its defaults, 60 fps and the 23-DoF robot, are wrong for our
  files: always pass both); the tracking task's config names that file as ``motion_file``.
- **GMR** (``gmr-pkl``): ``scripts/vis_robot_motion.py --robot unitree_g1 --robot_motion_path motion.pkl``.

No maintained trainer among these loads many motions in one run (mjlab 1.6's ``MotionCommand`` and BeyondMimic's
take one ``motion_file``); forks that do read their own layouts, so none is written here.
"""

from __future__ import annotations

MJLAB_TASK = "Mjlab-Tracking-Flat-Unitree-G1"
BEYONDMIMIC_TASK = "Tracking-Flat-G1-v0"
#: The W&B artifact type and registry the mjlab and BeyondMimic trainers fetch motions from.
WANDB_ARTIFACT_TYPE = "motions"
WANDB_REGISTRY = "wandb-registry-motions"


def _fps(fps: float) -> str:
    """The rate as the converters' integer arguments take it (unitree_rl_lab and BeyondMimic parse ``int``)."""
    return f"{fps:g}" if float(fps).is_integer() else f"{fps:g} (not whole: re-export with --fps 30)"


def training_steps(fmt: str, fps: float, example: str, collection: str) -> list[str]:
    """Markdown lines telling how each trainer that reads ``fmt`` takes the export.

    fmt: export format name; fps: the files' rate; example: one motion file's path relative to the export
    folder (``train/<clip_id>/motion.npz``); collection: the W&B artifact name ``g1forge publish`` gives that
    clip (its clip id).
    """
    rate = _fps(fps)
    if fmt == "mjlab-npz":
        return [
            "**mjlab** (one motion per run):",
            "",
            "```",
            f"train {MJLAB_TASK} --env.commands.motion.motion-file {example}",
            f"play {MJLAB_TASK} --motion-file {example} --checkpoint-file CHECKPOINT",
            "```",
            "",
            "or from the W&B registry, after `g1forge publish DEST --entity ENTITY`:",
            "",
            "```",
            f"train {MJLAB_TASK} --registry-name ENTITY/{WANDB_REGISTRY}/{collection}",
            "```",
        ]
    if fmt in ("isaaclab-npz", "isaaclab-npz-all-links"):
        bodies = "30" if fmt == "isaaclab-npz" else "39"
        other = "isaaclab-npz-all-links" if fmt == "isaaclab-npz" else "isaaclab-npz"
        return [
            f"These files hold **{bodies} bodies** in Isaac Lab's breadth-first order. The tracking task finds its "
            "bodies by index in the robot's own list, so check `len(robot.body_names)` in the trainer: "
            f"{bodies} is right; otherwise export `{other}` (BeyondMimic's URDF import merges the fixed links: 30).",
            "",
            "**BeyondMimic** (`whole_body_tracking`; training reads motions from the W&B registry only): publish, "
            "then train on one clip:",
            "",
            "```",
            "g1forge publish DEST --entity ENTITY",
            f"python scripts/rsl_rl/train.py --task={BEYONDMIMIC_TASK} "
            f"--registry_name ENTITY/{WANDB_REGISTRY}/{collection} --headless --logger wandb",
            f"python scripts/rsl_rl/play.py --task={BEYONDMIMIC_TASK} --motion_file {example} "
            "--wandb_path RUN_PATH",
            "```",
            "",
            f"**unitree_rl_lab**: set the tracking task's `motion_file` to `{example}`.",
        ]
    if fmt == "unitree-csv":
        npz = example.rsplit(".", 1)[0] + ".npz"  # unitree_rl_lab's converter writes it beside the CSV
        return [
            f"The CSV files hold no frame rate: they are **{rate} fps**. Every converter must be told.",
            "",
            "**unitree_rl_lab** (its defaults, 60 fps and the 23-DoF G1, would play the motion twice as fast on "
            "the wrong robot):",
            "",
            "```",
            f"python scripts/mimic/csv_to_npz.py -f {example} --input_fps {rate} --robot_model g1_29dof --headless",
            "```",
            "",
            f"then set the tracking task's `motion_file` to `{npz}`.",
            "",
            "**BeyondMimic** (uploads the converted motion to the W&B registry, then trains on it):",
            "",
            "```",
            f"python scripts/csv_to_npz.py --input_file {example} --input_fps {rate} --output_name {collection} "
            "--headless",
            f"python scripts/rsl_rl/train.py --task={BEYONDMIMIC_TASK} "
            f"--registry_name ENTITY/{WANDB_REGISTRY}/{collection} --headless --logger wandb",
            "```",
            "",
            "**mjlab**:",
            "",
            "```",
            f"python -m mjlab.scripts.csv_to_npz --input-file {example} --input-fps {rate} "
            f"--output-name {collection}",
            "```",
        ]
    if fmt == "gmr-pkl":
        return [
            "**GMR** (view or post-process a clip):",
            "",
            "```",
            f"python scripts/vis_robot_motion.py --robot unitree_g1 --robot_motion_path {example}",
            "```",
        ]
    return []
