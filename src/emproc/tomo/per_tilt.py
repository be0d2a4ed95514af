"""Per-tilt motion correction: the one place that calls the SPA motion code.

(The CTF of a tilt series is fitted jointly in `emproc.tomo.ctf`.)
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from emproc.motion import MotionResult, motion_correct
from emproc.motion.align import remove_drift
from emproc.motion.outputs import MOTION_PARAMETERS


def motion_corrected_tilt(
    frames: np.ndarray,
    *,
    pixel_size_angstrom: float,
    dose_per_frame_e_per_angstrom2: float,
    motion_settings: dict | None = None,
) -> tuple[np.ndarray, MotionResult]:
    """Aligned (not dose-weighted) frame sum, and the motion result (its totals per tilt go
    to the tilt series' summary and ISPyB).

    The tilt series is dose-weighted later by accumulated dose, so the plain aligned sum
    is wanted here rather than the per-frame dose-weighted one. `motion_settings` is the
    config's `motion:` section (its `MOTION_PARAMETERS` are passed on; others are ignored).
    """
    settings = {k: v for k, v in (motion_settings or {}).items() if k in MOTION_PARAMETERS}
    result = motion_correct(
        frames,
        pixel_size_angstrom=pixel_size_angstrom,
        dose_per_frame_e_per_angstrom2=dose_per_frame_e_per_angstrom2,
        **settings,
    )
    return np.asarray(result.aligned_sum, dtype=np.float32), result


def frame_half_sums(frames: np.ndarray, shifts_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Even-frame and odd-frame sums (frames 0, 2, 4... and 1, 3, 5...), each aligned by the
    movie's global drift `shifts_px` (n, 2): two exposures of the same specimen with
    independent shot noise, the training pair of noise2noise denoising (cryoCARE's halves).

    Local (patch) motion is not applied to the halves; they train the denoiser, which is
    then applied to the full, locally corrected tomogram. Needs at least 2 frames.
    """
    count, ny, nx = frames.shape
    if count < 2:
        raise ValueError(f"{count} frame(s): even/odd halves need at least 2")
    halves = [np.zeros((ny, nx // 2 + 1), dtype=np.complex64) for _ in range(2)]
    for k in range(count):
        spectrum = scipy.fft.rfft2(np.asarray(frames[k], dtype=np.float32))
        halves[k % 2] += remove_drift(spectrum, (ny, nx), tuple(shifts_px[k]))
    even, odd = (scipy.fft.irfft2(h, s=(ny, nx)).astype(np.float32) for h in halves)
    return even, odd
