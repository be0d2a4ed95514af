"""Map utilities: reading/writing MRC volumes, FSC, a solvent mask, low-pass filtering."""

from __future__ import annotations

import os

import mrcfile
import numpy as np
from scipy import ndimage

from emproc.io.atomic import atomic_path


def read_map(path: str | os.PathLike[str]) -> tuple[np.ndarray, float]:
    """(volume [z, y, x] float32, pixel size in Angstrom)."""
    with mrcfile.open(path, permissive=True) as mrc:
        return np.asarray(mrc.data, dtype=np.float32).copy(), float(mrc.voxel_size.x)


def write_map(path: str | os.PathLike[str], volume: np.ndarray, pixel_size_angstrom: float) -> None:
    with atomic_path(path) as temporary:
        with mrcfile.new(temporary, overwrite=True) as mrc:
            mrc.set_data(np.ascontiguousarray(volume, dtype=np.float32))
            mrc.voxel_size = pixel_size_angstrom


def _shell_index(shape: tuple[int, ...]) -> np.ndarray:
    """Integer Fourier shell of each rfftn coefficient (0 = DC)."""
    axes = [np.fft.fftfreq(n) * n for n in shape[:-1]] + [np.fft.rfftfreq(shape[-1]) * shape[-1]]
    grids = np.meshgrid(*axes, indexing="ij")
    return np.rint(np.sqrt(sum(g**2 for g in grids))).astype(int)


def fsc(
    map1: np.ndarray, map2: np.ndarray, pixel_size_angstrom: float
) -> tuple[np.ndarray, np.ndarray]:
    """(resolution in Angstrom per shell 1 .. N/2, FSC per shell) of two cubic maps."""
    f1, f2 = np.fft.rfftn(map1), np.fft.rfftn(map2)
    shells = _shell_index(map1.shape).ravel()
    size = map1.shape[0] // 2 + 1
    cross = np.bincount(shells, (f1 * np.conj(f2)).real.ravel(), minlength=size)[:size]
    power1 = np.bincount(shells, (np.abs(f1) ** 2).ravel(), minlength=size)[:size]
    power2 = np.bincount(shells, (np.abs(f2) ** 2).ravel(), minlength=size)[:size]
    curve = cross / np.sqrt(np.maximum(power1 * power2, 1e-30))
    shell = np.arange(1, size)
    return map1.shape[0] * pixel_size_angstrom / shell, curve[1:]


def resolution_at(
    resolution_angstrom: np.ndarray, curve: np.ndarray, threshold: float = 0.143
) -> float:
    """Resolution where the FSC first drops below `threshold` (linear in 1/resolution)."""
    below = np.flatnonzero(curve < threshold)
    if len(below) == 0:
        return float(resolution_angstrom[-1])
    i = below[0]
    if i == 0:
        return float(resolution_angstrom[0])
    s0, s1 = 1 / resolution_angstrom[i - 1], 1 / resolution_angstrom[i]
    t = (curve[i - 1] - threshold) / (curve[i - 1] - curve[i])
    return float(1.0 / (s0 + t * (s1 - s0)))


def lowpass(
    volume: np.ndarray, pixel_size_angstrom: float, resolution_angstrom: float
) -> np.ndarray:
    """Gaussian low-pass whose amplitude is 0.5 at `resolution_angstrom`."""
    spectrum = np.fft.rfftn(volume)
    axes = [np.fft.fftfreq(n, pixel_size_angstrom) for n in volume.shape[:-1]]
    axes.append(np.fft.rfftfreq(volume.shape[-1], pixel_size_angstrom))
    grids = np.meshgrid(*axes, indexing="ij")
    squared = sum(g**2 for g in grids)
    spectrum *= np.exp(-np.log(2.0) * squared * resolution_angstrom**2)
    return np.fft.irfftn(spectrum, s=volume.shape, axes=tuple(range(volume.ndim))).astype(
        np.float32
    )


def solvent_mask(
    volume: np.ndarray,
    pixel_size_angstrom: float,
    *,
    lowpass_angstrom: float = 15.0,
    threshold_fraction: float = 0.1,
    extend_px: int = 2,
    soft_edge_px: int = 3,
) -> np.ndarray:
    """Soft solvent mask as relion_mask_create makes one: low-pass, threshold at a fraction
    of the maximum, keep the largest connected part, extend, cosine soft edge. In [0, 1]."""
    smooth = lowpass(volume, pixel_size_angstrom, lowpass_angstrom)
    binary = smooth > threshold_fraction * smooth.max()
    labels, count = ndimage.label(binary)
    if count > 1:
        sizes = ndimage.sum(binary, labels, range(1, count + 1))
        binary = labels == 1 + int(np.argmax(sizes))
    if extend_px > 0:
        binary = ndimage.binary_dilation(binary, iterations=extend_px)
    distance = ndimage.distance_transform_edt(~binary)
    return np.where(
        distance >= soft_edge_px, 0.0, 0.5 + 0.5 * np.cos(np.pi * distance / soft_edge_px)
    ).astype(np.float32)
