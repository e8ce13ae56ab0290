"""Frame-rate dependence of the smoothness metrics (``jitter_m_s3``, ``root_jerk_m_s3``, ``accel_mean_m_s2``).

Part 1, synthetic: the motions of ``tests/motion_factory.py`` (walking, standing, jumping; 6 s) sampled at 12, 24,
30, 50 and 60 fps, clean and with noise of one continuous-time process (Gaussian, band-limited to 5 Hz, below
the 6 Hz Nyquist frequency of 12 fps, 1 cm standard deviation per axis, generated once at 600 Hz and sampled
at each rate), read with the raw per-frame definition (third / second difference times fps^3 / fps^2, the
metrics before the fixed-bandwidth change) and with :func:`pipeline.quality.motion_metrics`. Spread =
(max - min) / min over the five rates.

Part 2, real (optional, ``--run DIR``): every human clip file (``*.npz`` but not ``*.g1.npz``) of a run folder,
read as stored, decimated to half and a third of its rate, and with i.i.d. per-frame noise of 1 and 2 cm added
(what a noisier estimator would give).

Usage: ``python bench/bench_smoothness_fps.py [--run /tmp/q13run ...]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from motion_factory import jumping_motion, standing_motion, walking_motion  # noqa: E402

from pipeline.quality import motion_metrics  # noqa: E402
from pipeline.skeleton import BODY_JOINTS  # noqa: E402

RATES = (12, 24, 30, 50, 60)
KEYS = ("jitter_m_s3", "root_jerk_m_s3", "accel_mean_m_s2")
PELVIS = BODY_JOINTS.index("pelvis")


def raw_metrics(x: np.ndarray, fps: float) -> dict[str, float]:
    """The per-frame definitions the metrics had before (no filter, the source's own grid)."""
    d3 = x[3:] - 3 * x[2:-1] + 3 * x[1:-2] - x[:-3]
    d2 = x[2:] - 2 * x[1:-1] + x[:-2]
    return {
        "jitter_m_s3": float(np.linalg.norm(d3, axis=-1).mean() * fps**3),
        "root_jerk_m_s3": float(np.linalg.norm(d3[:, PELVIS], axis=-1).mean() * fps**3),
        "accel_mean_m_s2": float(np.linalg.norm(d2, axis=-1).mean() * fps**2),
    }


def band_limited_noise(duration_s: float, sigma_m: float, band_hz: float, seed: int, rate_hz: int = 600,
                       shape: tuple[int, ...] = (len(BODY_JOINTS), 3)) -> np.ndarray:
    """Gaussian noise with a flat spectrum up to ``band_hz`` (ideal low-pass), std ``sigma_m``, at ``rate_hz``."""
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * rate_hz)) + 1
    spec = np.fft.rfft(rng.normal(size=(n, *shape)), axis=0)
    spec[np.fft.rfftfreq(n, 1.0 / rate_hz) > band_hz] = 0
    y = np.fft.irfft(spec, n=n, axis=0)
    return y / y.std() * sigma_m


def synthetic() -> None:
    duration_s = 6.0
    noise = band_limited_noise(duration_s, 0.01, 5.0, seed=0)
    makers = {"walk": walking_motion, "stand": standing_motion, "jump": jumping_motion}
    print(f"synthetic motions, {duration_s:.0f} s, at {RATES} fps; spread = (max - min) / min")
    for name, make in makers.items():
        for noisy in (False, True):
            old, new = {k: [] for k in KEYS}, {k: [] for k in KEYS}
            for fps in RATES:
                m = make(int(round(duration_s * fps)), float(fps))
                x = m.joints_world_m + (noise[:: 600 // fps][: m.num_frames] if noisy else 0.0)
                r = raw_metrics(x, fps)
                n = motion_metrics(x, fps, m.foot_contact)
                for k in KEYS:
                    old[k].append(r[k])
                    new[k].append(n[k])
            label = f"{name}{' + 1 cm 0-5 Hz noise' if noisy else ''}"
            for k in KEYS:
                o, w = np.array(old[k]), np.array(new[k])
                spread = lambda v: (v.max() - v.min()) / v.min() if v.min() > 1e-9 else float("nan")  # noqa: E731
                print(f"  {label:28s} {k:16s} before {np.array2string(o, precision=1):40s} spread {spread(o):6.1%}"
                      f"   after {np.array2string(w, precision=2):40s} spread {spread(w):6.1%}")


def real(run_dirs: list[str]) -> None:
    from pipeline.motion_io import load_clip

    rng = np.random.default_rng(0)
    print("\nreal clips (new definition): as stored | decimated 1/2 | 1/3 | + i.i.d. 1 cm | + 2 cm per frame")
    for run in run_dirs:
        for path in sorted(Path(run).rglob("*.npz")):
            if path.name.endswith(".g1.npz"):
                continue
            clip = load_clip(path)
            x = np.asarray(clip.joints_world_m, dtype=np.float64)
            if len(x) < 10:
                continue
            fps = float(clip.fps)
            variants = [(x, fps), (x[::2], fps / 2), (x[::3], fps / 3),
                        (x + rng.normal(0, 0.01, x.shape), fps), (x + rng.normal(0, 0.02, x.shape), fps)]
            cells = []
            for xv, f in variants:
                m = motion_metrics(xv, f, np.zeros((len(xv), 4), dtype=bool))
                cells.append(f"{m['jitter_m_s3']:6.1f} {m['root_jerk_m_s3']:6.1f}")
            r = raw_metrics(x, fps)
            print(f"  {clip.clip_id:42s} {fps:5.2f} fps {len(x):4d} fr  raw {r['jitter_m_s3']:7.0f} "
                  f"{r['root_jerk_m_s3']:7.0f} | " + " | ".join(cells))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="append", default=[], help="run folder(s) with human clip files")
    args = ap.parse_args()
    synthetic()
    if args.run:
        real(args.run)


if __name__ == "__main__":
    main()
