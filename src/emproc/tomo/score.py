"""Scoring a tomogram against a ground-truth volume (simulations, benchmarks)."""

from __future__ import annotations

import numpy as np

from emproc.tomo.stack import fourier_bin


def bin_volume(volume: np.ndarray, binning: int) -> np.ndarray:
    """Bin [z, y, x] to the reconstruction grid: Fourier binning in x, y (samples at
    multiples of `binning`, like the binned tilt images) and block averaging in z."""
    if binning == 1:
        return volume.astype(np.float32)
    planes = np.stack([fourier_bin(plane, binning) for plane in volume])
    nz = planes.shape[0] // binning * binning
    return planes[:nz].reshape(nz // binning, binning, *planes.shape[1:]).mean(axis=1)


def normalised_cross_correlation(
    volume: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None
) -> float:
    """Pearson correlation of two volumes over `mask` (all voxels by default)."""
    if volume.shape != reference.shape:
        raise ValueError(f"shapes differ: {volume.shape} vs {reference.shape}")
    a = volume[mask] if mask is not None else volume.ravel()
    b = reference[mask] if mask is not None else reference.ravel()
    a = a - a.mean()
    b = b - b.mean()
    return float(np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b)))


def central_mask(shape: tuple[int, int, int], margin_fraction: float = 0.1) -> np.ndarray:
    """All z (the slab), x and y without a margin where tilted views leave the field."""
    mask = np.zeros(shape, dtype=bool)
    _, ny, nx = shape
    my, mx = int(ny * margin_fraction), int(nx * margin_fraction)
    mask[:, my : ny - my, mx : nx - mx] = True
    return mask
