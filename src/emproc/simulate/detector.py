"""Counting-detector model: per-pixel sensitivity (gain), Poisson counting, stored dtype.

Gain convention (MotionCor2 / RELION): a pixel of sensitivity s records Poisson(expected * s)
counts; the gain reference is g = 1/s with mean 1, so `raw * g` is the corrected frame.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage

GAIN_FLIPS = ("none", "x", "y")


def make_gain_reference(shape_px: tuple[int, int], seed: int, spread: float = 0.1) -> np.ndarray:
    """Gain reference (float32, mean 1; multiply raw frames by it) of a counting camera.

    Per-pixel variation (relative std `spread`), a mottled component a few pixels wide (std
    spread/2), weaker column-wise readout structure and a smooth fall-off towards the corners,
    as in K3/Falcon gain references. A 10 % spread is a
    fixed pattern strong enough to dominate frame-to-frame correlation at ~1 count/pixel, so
    skipping gain correction pins alignment to zero shift.
    """
    if spread < 0 or spread >= 0.5:
        raise ValueError(f"gain spread must be in [0, 0.5), got {spread}")
    rng = np.random.default_rng([seed, 0x6A1])
    ny, nx = shape_px
    pixel = 1.0 + spread * rng.standard_normal((ny, nx))
    mottle = scipy.ndimage.gaussian_filter(rng.standard_normal((ny, nx)), 3.0, mode="wrap")
    mottle *= 0.5 * spread / max(float(mottle.std()), 1e-12)
    columns = 1.0 + 0.3 * spread * rng.standard_normal(nx)[None, :]
    y, x = np.meshgrid(np.linspace(-1, 1, ny), np.linspace(-1, 1, nx), indexing="ij")
    vignette = 1.0 - 0.3 * spread * (x**2 + y**2)
    sensitivity = np.clip(pixel * (1.0 + mottle) * columns * vignette, 0.2, None)
    gain = 1.0 / sensitivity
    return (gain / gain.mean()).astype(np.float32)


def gain_file_image(gain: np.ndarray, rotation_deg: int, flip: str) -> np.ndarray:
    """The array a gain file must hold so that orienting it gives `gain` in movie orientation.

    Inverse of `emproc.io.gain.orient_to_movie` (MotionCor2 -RotGain/-FlipGain: rotate
    counter-clockwise with y up, i.e. np.rot90(k=-rotation/90), then flip "x" = reverse x,
    "y" = reverse y), so the config's gain_rotation_deg / gain_flip must be set to these
    values to recover the movie-oriented gain.
    """
    if rotation_deg not in (0, 90, 180, 270) or flip not in GAIN_FLIPS:
        raise ValueError(f"unsupported gain transform: rotation {rotation_deg}, flip {flip!r}")
    unflipped = gain[:, ::-1] if flip == "x" else gain[::-1, :] if flip == "y" else gain
    return np.ascontiguousarray(np.rot90(unflipped, k=rotation_deg // 90))


def count_electrons(
    rng: np.random.Generator, expected_counts: np.ndarray, sensitivity: np.ndarray | None
) -> np.ndarray:
    """Poisson counts (int64) of a frame with the given expectation and pixel sensitivity."""
    rate = np.clip(expected_counts, 0.0, None)
    if sensitivity is not None:
        rate = rate * sensitivity
    return rng.poisson(rate)
