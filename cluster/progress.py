"""The run's progress bar: videos done/failed, frames/s and ETA (tqdm on a terminal, periodic lines otherwise)."""

from __future__ import annotations

import sys
import time


class Progress:
    """Context manager; call :meth:`update` with each finished video's summary dict."""

    def __init__(self, total: int, enabled: bool = True, log_every_s: float = 30.0):
        self.total = total
        self.enabled = enabled
        self.done = 0
        self.counts = {"ok": 0, "filtered": 0, "failed": 0}
        self.frames = 0
        self.t0 = time.perf_counter()
        self._bar = None
        self._last_log = self.t0
        self._log_every_s = log_every_s

    def __enter__(self) -> "Progress":
        if self.enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, unit="video", dynamic_ncols=True, file=sys.stderr,
                             disable=None)  # disable=None: no bar when stderr is not a terminal
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.close()

    @property
    def frames_per_s(self) -> float:
        dt = time.perf_counter() - self.t0
        return self.frames / dt if dt > 0 else 0.0

    def update(self, summary: dict) -> None:
        self.done += 1
        self.counts[summary["status"]] = self.counts.get(summary["status"], 0) + 1
        self.frames += int(summary.get("frames", 0))
        if self._bar is None:
            return
        self._bar.set_postfix(ok=self.counts["ok"], filtered=self.counts["filtered"], failed=self.counts["failed"],
                              fps=f"{self.frames_per_s:.1f}", refresh=False)
        self._bar.update(1)
        now = time.perf_counter()
        if self._bar.disable and self.enabled and now - self._last_log >= self._log_every_s:
            self._last_log = now
            print(f"[g1forge] {self.done}/{self.total} videos, ok {self.counts['ok']}, "
                  f"failed {self.counts['failed']}, {self.frames_per_s:.1f} frames/s", file=sys.stderr)
