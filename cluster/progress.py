"""The run's progress: videos done/failed, frames/s, ETA and each stage's queued/running counts (tqdm on a
terminal, a line every ``log_every_s`` otherwise)."""

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
        self.stage_text = ""

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

    def show_stages(self, counts: dict) -> None:
        """Show each stage's queued/running counts (``{stage: StageCounts}``) next to the bar."""
        self.stage_text = " ".join(f"{name}:{c.queued}q/{c.running}r" for name, c in counts.items())
        if self._bar is not None and not self._bar.disable:
            self._bar.set_postfix_str(self._postfix(), refresh=True)
        else:
            self._maybe_log()

    def _postfix(self) -> str:
        c = self.counts
        return (f"ok={c['ok']} filtered={c['filtered']} failed={c['failed']} fps={self.frames_per_s:.1f} "
                f"{self.stage_text}")

    def _maybe_log(self) -> None:
        now = time.perf_counter()
        if self.enabled and now - self._last_log >= self._log_every_s:
            self._last_log = now
            print(f"[g1forge] {self.done}/{self.total} videos, ok {self.counts['ok']}, "
                  f"failed {self.counts['failed']}, {self.frames_per_s:.1f} frames/s  {self.stage_text}",
                  file=sys.stderr, flush=True)

    def update(self, summary: dict) -> None:
        self.done += 1
        self.counts[summary["status"]] = self.counts.get(summary["status"], 0) + 1
        self.frames += int(summary.get("frames", 0))
        if self._bar is None:
            return
        self._bar.set_postfix_str(self._postfix(), refresh=False)
        self._bar.update(1)
        if self._bar.disable:
            self._maybe_log()
