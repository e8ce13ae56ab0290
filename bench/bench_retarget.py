"""Benchmark: whole-clip retargeting (``pipeline.retarget``) against per-frame differential IK with mink.

Clips. Synthetic human clips generated from the G1 itself (``tests/g1_motion_factory.py``), so the true robot
motion is known: a straight walk, a turning walk, squats and random arm/waist motions, 300 frames at 30 fps,
human = 1.3 x robot; each clean and with i.i.d. Gaussian noise (``--noise-m``, 1.5 cm) on every human joint
coordinate (a stand-in for monocular pose noise). Both methods get the SAME rescaled key-point targets
(:func:`pipeline.retarget.build_targets`: the clip's own bone lengths, no assumed height); building them is
timed for ours and not for the baseline.

Baseline, built the way GMR (YanjieZe/GMR) drives mink, per frame, warm-started from the previous frame:

- ``mink.FrameTask`` on every key point (a site at the key point on its body; the pelvis and neck key points,
  means of two hip / shoulder points, become sites at their zero-pose position on the pelvis / torso), position
  cost 100 for the pelvis, 50 for ankles, heels and toes, 10 for the rest, 3 for the head (GMR's G1 table: 100
  pelvis and feet, 10 others), orientation cost 0 (the clips have no orientation targets), ``lm_damping=1``
  (GMR's value);
- ``mink.PostureTask`` towards the zero pose, cost 0.1 (low);
- limits: ``ConfigurationLimit`` and ``VelocityLimit`` with the G1 motor limits, integration step
  ``dt = 1 / (fps * max_iters)`` so that a frame's iterations together cannot exceed the motor speed (GMR means
  to apply velocity limits but passes them where mink reads ``safety_break``);
- ``mink.solve_ik(..., solver="daqp", damping=0.5)`` (GMR's solver and damping); iterate while the summed
  key-point error drops by more than 1 mm, at most 10 iterations per frame (GMR's rule); frame 0 gets up to 100
  iterations from the same initial pose as ours (root at the pelvis target, heading from the hips, joints 0);
- one stage with all tasks, where GMR runs two (a subset of tasks first): this favours the baseline's speed.

Both run on one core (``torch.set_num_threads(1)``; set ``OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1`` in the
environment for the BLAS calls). Reported per method: frames/s (frames / wall time of the solve), error of the
14 tracked bodies and of the key points against the true robot motion, joint jerk, foot sliding and penetration
during the clip's contacts, joint-limit violations, self-collision frames and peak joint speed (see
:mod:`pipeline.robot_metrics`). Results go to ``bench/results/retarget.json`` and a table is printed.

Measured on this project's 2-core dev box (shared, so +-15 % run to run), 8 clips x 300 frames: ours ~2000
frames/s, mink ~340 frames/s (about 6x); tracked-body error vs truth 4.2 vs 9.9 mm; joint jerk 29 vs 3200 rad/s^3
(noise passes straight through per-frame IK); foot sliding 0.23 vs 7.9 mm/frame; sole penetration 0.3 vs 11 mm;
joint-limit violations 0 vs 16; self-collision frames 0 vs 5. On the clean clips alone the key-body errors are
equal within 0.1 mm on the walks and lower for ours on squats and arm motions.

Usage: ``OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python bench/bench_retarget.py [--frames 300] [--noise-m 0.015]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import g1_motion_factory as factory  # noqa: E402

from pipeline.g1.model import TRACKED_BODIES, load_g1  # noqa: E402
from pipeline.g1_motion import G1Motion  # noqa: E402
from pipeline.retarget import (  # noqa: E402
    RetargetConfig,
    initial_root_pose,
    keypoint_positions,
    retarget_clip,
)
from pipeline.rotations import matrix_to_quat  # noqa: E402
from pipeline.robot_metrics import robot_metrics  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "retarget.json"


# ---------------------------------------------------------------------- clips


def make_clips(model, frames: int, noise_m: float) -> list[tuple[str, factory.G1Truth]]:
    base = [
        factory.g1_walk(model, frames, clip_id="walk"),
        factory.g1_walk(model, frames, turn_rate_rad_s=0.5, clip_id="walk_turn"),
        factory.g1_crouch(model, frames, clip_id="crouch"),
        factory.g1_arms(model, frames, seed=1, clip_id="arms"),
    ]
    out = [(t.clip.clip_id, t) for t in base]
    if noise_m > 0:
        rng = np.random.default_rng(7)
        for t in base:
            noisy = factory.G1Truth(**{**t.__dict__})
            clip = t.clip
            joints = clip.joints_world_m + rng.normal(0.0, noise_m, clip.joints_world_m.shape).astype(np.float32)
            noisy.clip = type(clip)(**{**clip.__dict__, "joints_world_m": joints,
                                       "clip_id": clip.clip_id + "_noisy"})
            out.append((noisy.clip.clip_id, noisy))
    return out


# ---------------------------------------------------------------------- baseline


def _site_offsets(model, config: RetargetConfig) -> list[tuple[str, str, np.ndarray]]:
    """(site name, body, offset in the body frame) for every key point, at its zero-pose place."""
    from pipeline.g1.model import quat_wxyz_to_rotmat

    zero = np.zeros(3), np.array([1.0, 0, 0, 0]), np.zeros(29)
    rest = keypoint_positions(model, *zero, tuple(kp.robot for kp in config.keypoints))
    body_pos, body_quat = model.fk(*zero)
    parent = np.asarray(model.parent_index)
    sites = []
    for k, kp in enumerate(config.keypoints):
        bodies = [model.body_index(p.body) for p in kp.robot]
        chains = []
        for b in bodies:
            chain = []
            while b >= 0:
                chain.append(b)
                b = int(parent[b])
            chains.append(chain)
        common = next(b for b in chains[0] if all(b in c for c in chains))
        rot = quat_wxyz_to_rotmat(body_quat[common])
        offset = rot.T @ (rest[k] - body_pos[common])
        sites.append((f"kp_{kp.human}", model.body_names[common], offset))
    return sites


def _baseline_cost(name: str) -> float:
    if name == "pelvis":
        return 100.0
    if name.endswith(("_ankle", "_heel", "_toe")):
        return 50.0
    if name == "head":
        return 3.0
    return 10.0


class MinkBaseline:
    """Per-frame differential IK with mink, GMR style (see the module docstring)."""

    def __init__(self, model, config: RetargetConfig, max_iters: int = 10, first_iters: int = 100):
        import mink
        import mujoco

        self.mink, self.mujoco = mink, mujoco
        spec = mujoco.MjSpec.from_file(str(model.mjcf_path))
        self.sites = _site_offsets(model, config)
        for name, body, offset in self.sites:
            spec.body(body).add_site(name=name, pos=offset.tolist())
        self.m = spec.compile()
        self.model = model
        self.max_iters, self.first_iters = max_iters, first_iters
        self.tasks = [
            mink.FrameTask(name, "site", position_cost=_baseline_cost(name[3:]), orientation_cost=0.0,
                           lm_damping=1.0)
            for name, _, _ in self.sites
        ]
        self.posture = mink.PostureTask(self.m, cost=0.1)
        self.site_ids = [mujoco.mj_name2id(self.m, mujoco.mjtObj.mjOBJ_SITE, n) for n, _, _ in self.sites]
        self.vel = {n + "_joint": float(v) for n, v in zip(model.joint_names, model.joint_vel_limit_rad_s)}

    def run(self, targets_m: np.ndarray, fps: float, init_root_pos: np.ndarray, init_root_rot: np.ndarray):
        """Solve every frame; returns root_pos (T, 3), root_quat_wxyz (T, 4), joint_pos (T, 29), seconds."""
        mink = self.mink
        cfg = mink.Configuration(self.m)
        q0 = self.model.qpos(init_root_pos, matrix_to_quat(init_root_rot), np.zeros(29))
        cfg.update(q0)
        self.posture.set_target(q0)
        dt = 1.0 / (fps * self.max_iters)
        limits = [mink.ConfigurationLimit(self.m), mink.VelocityLimit(self.m, self.vel)]
        tasks = self.tasks + [self.posture]
        T = len(targets_m)
        qpos = np.zeros((T, self.m.nq))
        t0 = time.perf_counter()
        for t in range(T):
            for task, pos in zip(self.tasks, targets_m[t]):
                task.set_target(mink.SE3.from_translation(pos))
            err = self._error(cfg, targets_m[t])
            cap = self.first_iters if t == 0 else self.max_iters
            for _ in range(cap):
                v = mink.solve_ik(cfg, tasks, dt, "daqp", damping=0.5, limits=limits)
                cfg.integrate_inplace(v, dt)
                new = self._error(cfg, targets_m[t])
                done = err - new <= 1e-3
                err = new
                if done:
                    break
            qpos[t] = cfg.q
        seconds = time.perf_counter() - t0
        joints = qpos[:, np.asarray(self.model.joint_qpos_index)]
        quat = qpos[:, 3:7] / np.linalg.norm(qpos[:, 3:7], axis=1, keepdims=True)
        return qpos[:, :3], quat, joints, seconds

    def _error(self, cfg, targets: np.ndarray) -> float:
        return float(np.linalg.norm(cfg.data.site_xpos[self.site_ids] - targets, axis=-1).sum())


# ---------------------------------------------------------------------- evaluation


def _motion(model, clip_id, fps, root_pos, root_quat, q) -> G1Motion:
    bp, bq = model.fk(root_pos, root_quat, q)
    return G1Motion(clip_id, fps, root_pos, root_quat, tuple(model.joint_names), q, tuple(model.body_names), bp, bq)


def evaluate(model, motion: G1Motion, truth: factory.G1Truth, targets) -> dict[str, float]:
    tb = [model.body_index(b) for b in TRACKED_BODIES]
    true_bp, _ = model.fk(truth.root_pos_m, truth.root_quat_wxyz, truth.joint_pos_rad)
    body_err = np.linalg.norm(motion.body_pos_m[:, tb] - true_bp[:, tb], axis=-1)
    kp = keypoint_positions(model, motion.root_pos_m, motion.root_quat_wxyz, motion.joint_pos_rad,
                            targets.robot_points)
    kp_err = np.linalg.norm(kp - truth.keypoints_m, axis=-1)
    m = robot_metrics(motion, model, targets, truth.clip.foot_contact)
    m.update({
        "tracked_body_err_vs_truth_mean_m": float(body_err.mean()),
        "tracked_body_err_vs_truth_max_m": float(body_err.max()),
        "keypoint_err_vs_truth_mean_m": float(kp_err.mean()),
    })  # fmt: skip
    return m


def run(frames: int, noise_m: float) -> dict:
    import torch

    torch.set_num_threads(1)
    model = load_g1()
    config = RetargetConfig()
    baseline = MinkBaseline(model, config)
    clips = make_clips(model, frames, noise_m)
    retarget_clip(clips[0][1].clip, model, config)  # warm-up (imports, caches)
    rows = []
    for name, truth in clips:
        clip = truth.clip
        t0 = time.perf_counter()
        ours = retarget_clip(clip, model, config)
        ours_s = time.perf_counter() - t0
        targets = ours.targets
        init_pos, init_rot = initial_root_pose(model, targets, config)
        root_pos, root_quat, q, base_s = baseline.run(targets.pos_m, clip.fps, init_pos[0], init_rot[0])
        base = _motion(model, name, clip.fps, root_pos, root_quat, q)
        row = {
            "clip": name,
            "frames": clip.num_frames,
            "ours": {"seconds": ours_s, "frames_per_s": clip.num_frames / ours_s,
                     "iterations": ours.stats.iterations, **evaluate(model, ours.motion, truth, targets)},
            "mink": {"seconds": base_s, "frames_per_s": clip.num_frames / base_s,
                     **evaluate(model, base, truth, targets)},
        }  # fmt: skip
        rows.append(row)
        _print_row(row)
    summary = _summary(rows)
    return {"frames_per_clip": frames, "noise_m": noise_m, "clips": rows, "summary": summary,
            "torch_threads": torch.get_num_threads()}


KEYS = ("frames_per_s", "tracked_body_err_vs_truth_mean_m", "keybody_err_mean_m", "jerk_mean_rad_s3",
        "robot_foot_sliding_mm_per_frame", "robot_foot_penetration_max_m", "joint_limit_violations",
        "self_collision_frames", "joint_speed_peak_frac")  # fmt: skip


def _summary(rows: list[dict]) -> dict:
    out = {}
    for method in ("ours", "mink"):
        frames = sum(r["frames"] for r in rows)
        seconds = sum(r[method]["seconds"] for r in rows)
        s = {"frames_per_s": frames / seconds}
        for k in KEYS[1:]:
            vals = [r[method][k] for r in rows]
            s[k] = float(np.sum(vals)) if k in ("joint_limit_violations", "self_collision_frames") else float(
                np.mean(vals))
        out[method] = s
    out["speedup"] = out["ours"]["frames_per_s"] / out["mink"]["frames_per_s"]
    return out


def _print_row(row: dict) -> None:
    o, m = row["ours"], row["mink"]
    print(f"{row['clip']:<16} fps {o['frames_per_s']:7.0f} vs {m['frames_per_s']:6.0f}  "
          f"body err {o['tracked_body_err_vs_truth_mean_m'] * 1000:5.1f} vs "
          f"{m['tracked_body_err_vs_truth_mean_m'] * 1000:5.1f} mm  "
          f"jerk {o['jerk_mean_rad_s3']:7.1f} vs {m['jerk_mean_rad_s3']:7.1f}  "
          f"slide {o['robot_foot_sliding_mm_per_frame']:5.2f} vs {m['robot_foot_sliding_mm_per_frame']:5.2f} mm/fr  "
          f"viol {o['joint_limit_violations']:.0f} vs {m['joint_limit_violations']:.0f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--noise-m", type=float, default=0.015)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    result = run(args.frames, args.noise_m)
    s = result["summary"]
    print()
    print(f"{'':<34}{'ours':>12}{'mink':>12}")
    for k in KEYS:
        print(f"{k:<34}{s['ours'][k]:>12.4g}{s['mink'][k]:>12.4g}")
    print(f"speedup (frames/s ratio): {s['speedup']:.1f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
