"""Motion correction: global and patch alignment, dose weighting, per-movie outputs."""

from emproc.motion.correct import (
    MotionCorrectionError,
    MotionResult,
    NonFiniteFrameError,
    motion_correct,
)
from emproc.motion.outputs import (
    MotionOutputs,
    PixelSizeMismatchError,
    motion_correct_movie,
    write_corrected_micrographs_star,
)

__all__ = [
    "MotionCorrectionError",
    "MotionOutputs",
    "MotionResult",
    "NonFiniteFrameError",
    "PixelSizeMismatchError",
    "motion_correct",
    "motion_correct_movie",
    "write_corrected_micrographs_star",
]
