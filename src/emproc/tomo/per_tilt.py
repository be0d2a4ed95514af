"""Per-tilt motion correction: the one place that calls the SPA motion code.

Until `emproc.motion.motion_correct` exists, a plain frame sum stands in for it. (The CTF
of a tilt series is fitted jointly in `emproc.tomo.ctf`.)
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import tifffile


class TiltMovieError(OSError):
    """A tilt movie cannot be read or has the wrong shape."""


def read_tilt_movie(path: Path) -> np.ndarray:
    """Frames [frame, y, x] of one tilt movie (TIFF; a single image counts as one frame)."""
    try:
        frames = tifffile.imread(path)
    except FileNotFoundError as error:
        raise TiltMovieError(f"{path}: tilt movie not found") from error
    except Exception as error:  # tifffile raises several types for truncated files
        raise TiltMovieError(f"{path}: cannot read tilt movie: {error}") from error
    if frames.ndim == 2:
        frames = frames[None]
    if frames.ndim != 3:
        raise TiltMovieError(f"{path}: expected [frame, y, x] data, got shape {frames.shape}")
    return frames


def _optional(module: str, name: str):
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


MOTION_KEYS = (
    "patches_x",
    "patches_y",
    "bin_for_alignment",
    "bfactor_angstrom2",
    "iterations",
    "early_frames",
    "dose_weighting",
)


def motion_corrected_sum(
    frames: np.ndarray,
    *,
    pixel_size_angstrom: float,
    dose_per_frame_e_per_angstrom2: float,
    motion_settings: dict | None = None,
) -> tuple[np.ndarray, bool]:
    """Aligned (not dose-weighted) frame sum and whether real motion correction ran.

    The tilt series is dose-weighted later by accumulated dose, so the plain aligned sum
    is wanted here rather than the per-frame dose-weighted one. `motion_settings` is the
    config's `motion:` section (its `MOTION_KEYS` are passed on; others are ignored).
    """
    motion_correct = _optional("emproc.motion", "motion_correct")
    if motion_correct is None:
        return frames.astype(np.float32).sum(axis=0), False
    settings = {k: v for k, v in (motion_settings or {}).items() if k in MOTION_KEYS}
    result = motion_correct(
        frames,
        pixel_size_angstrom=pixel_size_angstrom,
        dose_per_frame_e_per_angstrom2=dose_per_frame_e_per_angstrom2,
        **settings,
    )
    return np.asarray(result.aligned_sum, dtype=np.float32), True
