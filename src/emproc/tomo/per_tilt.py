"""Per-tilt motion correction: the one place that calls the SPA motion code.

(The CTF of a tilt series is fitted jointly in `emproc.tomo.ctf`.)
"""

from __future__ import annotations

import numpy as np

from emproc.motion import MotionResult, motion_correct
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
