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
