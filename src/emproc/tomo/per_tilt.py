"""Per-tilt motion correction and CTF: the one place that calls the SPA code.

Until `emproc.motion.motion_correct` and `emproc.ctf.estimate_ctf` exist, a plain frame sum
stands in for motion correction and the mdoc's recorded defocus for CTF estimation.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile


class TiltMovieError(OSError):
    """A tilt movie cannot be read or has the wrong shape."""


@dataclass(frozen=True)
class TiltCtf:
    defocus_angstrom: float | None  # mean of U and V, positive = underfocus
    fit_resolution_angstrom: float | None
    cross_correlation: float | None
    estimated: bool  # False: taken from the mdoc (no estimator available)


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


def motion_corrected_sum(
    frames: np.ndarray, *, pixel_size_angstrom: float, dose_per_frame_e_per_angstrom2: float
) -> tuple[np.ndarray, bool]:
    """Aligned (not dose-weighted) frame sum and whether real motion correction ran.

    The tilt series is dose-weighted later by accumulated dose, so the plain aligned sum
    is wanted here rather than the per-frame dose-weighted one.
    """
    motion_correct = _optional("emproc.motion", "motion_correct")
    if motion_correct is None:
        return frames.astype(np.float32).sum(axis=0), False
    result = motion_correct(
        frames,
        pixel_size_angstrom=pixel_size_angstrom,
        dose_per_frame_e_per_angstrom2=dose_per_frame_e_per_angstrom2,
    )
    return np.asarray(result.aligned_sum, dtype=np.float32), True


def tilt_ctf(
    image: np.ndarray,
    *,
    pixel_size_angstrom: float,
    nominal_defocus_angstrom: float | None,
    ctf_settings: dict | None,
) -> TiltCtf:
    """CTF of one tilt via the SPA estimator when present, else the mdoc's defocus.

    `ctf_settings` holds the estimator's keyword arguments (voltage_kv, box_size_px,
    resolution and defocus search range, ...) as in the `ctf:` config section.
    """
    estimate_ctf = _optional("emproc.ctf", "estimate_ctf")
    if estimate_ctf is None or ctf_settings is None:
        return TiltCtf(nominal_defocus_angstrom, None, None, estimated=False)
    box = min(int(ctf_settings.get("box_size_px", 512)), min(image.shape) // 2 * 2)
    result = estimate_ctf(
        image, pixel_size_angstrom=pixel_size_angstrom, **{**ctf_settings, "box_size_px": box}
    )
    return TiltCtf(
        0.5 * (result.defocus_u_angstrom + result.defocus_v_angstrom),
        result.fit_resolution_angstrom,
        result.cross_correlation,
        estimated=True,
    )
