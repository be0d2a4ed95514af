"""Motion correction: global and patch alignment, dose weighting, per-movie outputs."""

from emproc.lazy import lazy_exports

_EXPORTS = {
    "MotionCorrectionError": "correct",
    "MotionResult": "correct",
    "NonFiniteFrameError": "correct",
    "motion_correct": "correct",
    "MotionOutputs": "outputs",
    "PixelSizeMismatchError": "outputs",
    "motion_correct_movie": "outputs",
    "write_corrected_micrographs_star": "outputs",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
