"""Zero-phase low-pass filtering of motion signals along time.

PHUMA filters root translation at 3 Hz and pose at 6 Hz with a Butterworth filter before judging a clip
(see ``shared/reference/quality.md``). :func:`lowpass` is that filter run forward and backward (no phase lag),
so a contact or a jump is not shifted in time by smoothing.
"""

from __future__ import annotations

import numpy as np


def lowpass(x: np.ndarray, fps: float, cutoff_hz: float, *, order: int = 4, axis: int = 0) -> np.ndarray:
    """Butterworth low-pass of ``x`` along ``axis`` (time), applied forward and backward.

    x: array of any shape with time along ``axis`` (e.g. (T, J, 3) joint positions in metres).
    fps: sampling rate in frames per second; cutoff_hz: -3 dB frequency in Hz (after the two passes the
    attenuation at the cutoff is about -6 dB).

    Returns a float64 array of the same shape. The input is returned unchanged (as a float64 copy) when the
    filter cannot apply: ``cutoff_hz <= 0``, a cutoff at or above the Nyquist frequency ``fps / 2``, or fewer
    than 4 samples. Short signals get a reduced edge padding instead of an error.
    """
    y = np.array(x, dtype=np.float64, copy=True)
    n = y.shape[axis] if y.ndim else 0
    if cutoff_hz <= 0 or fps <= 0 or n < 4 or cutoff_hz >= 0.5 * fps * 0.999:
        return y
    from scipy.signal import butter, sosfiltfilt

    sos = butter(order, cutoff_hz, btype="low", fs=fps, output="sos")
    default_padlen = 3 * (2 * len(sos) + 1)
    return sosfiltfilt(sos, y, axis=axis, padlen=min(default_padlen, n - 1))


class OneEuroFilter:
    """Causal adaptive low-pass for a signal seen one sample at a time (Casiez et al., CHI 2012, "1 euro filter").

    Each sample ``x_t`` (an array of any fixed shape) arriving ``dt`` seconds after the previous one is smoothed
    exponentially, ``y_t = y_{t-1} + a (x_t - y_{t-1})`` with ``a = 1 / (1 + 1 / (2 pi f_c dt))``, where the cutoff
    grows with the signal's speed: ``f_c = min_cutoff_hz + beta * |dx/dt|`` (``dx/dt`` itself smoothed with the
    cutoff ``derivative_cutoff_hz``). Slow motion is smoothed hard (no jitter), fast motion barely (little lag).
    Units: the speed is measured in units of ``value_scale`` (per call; e.g. the object's size, so that one
    ``beta`` serves people near and far), ``beta`` in 1 / those units.
    """

    def __init__(self, min_cutoff_hz: float, beta: float, derivative_cutoff_hz: float = 1.0):
        self.min_cutoff_hz = float(min_cutoff_hz)
        self.beta = float(beta)
        self.derivative_cutoff_hz = float(derivative_cutoff_hz)
        self._y: np.ndarray | None = None
        self._dy: np.ndarray | None = None

    @staticmethod
    def _alpha(cutoff_hz, dt_s: float):
        return 1.0 / (1.0 + 1.0 / (2.0 * np.pi * cutoff_hz * dt_s))

    def __call__(self, x: np.ndarray, dt_s: float, value_scale: float = 1.0) -> np.ndarray:
        """The smoothed value of sample ``x``, ``dt_s`` seconds after the previous sample (> 0); the speed
        ``dx/dt`` is divided by ``value_scale`` before it sets the cutoff."""
        x = np.asarray(x, dtype=np.float64)
        if self._y is None or not dt_s > 0:
            self._y, self._dy = x.copy(), np.zeros_like(x)
            return self._y.copy()
        dx = (x - self._y) / (dt_s * value_scale)
        self._dy = self._dy + self._alpha(self.derivative_cutoff_hz, dt_s) * (dx - self._dy)
        cutoff = self.min_cutoff_hz + self.beta * np.abs(self._dy)
        self._y = self._y + self._alpha(cutoff, dt_s) * (x - self._y)
        return self._y.copy()
