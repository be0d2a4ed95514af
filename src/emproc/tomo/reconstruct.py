"""Tomogram reconstruction: weighted back-projection (R-weighting, optional SIRT-like
filter) or SIRT, slice block by slice block along the tilt axis so memory stays bounded.

The tomogram is written [z, y, x]: z along the beam at zero tilt (the thickness), y along
the tilt axis, x perpendicular to it, as IMOD's tomograms after `trimvol -rx`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np
import scipy.fft

from emproc.ctf.model import ctf_2d
from emproc.io.atomic import atomic_path
from emproc.tomo.geometry import align_image
from emproc.tomo.stack import fourier_bin


class ReconstructionError(ValueError):
    """Inconsistent inputs to the reconstruction."""


@dataclass(frozen=True)
class ReconstructionParams:
    binning: int = 4
    thickness_px: int = 256  # at the reconstruction binning
    method: str = "wbp"  # wbp | sirt
    sirt_iterations: int = 10
    sirt_like_iterations: int = 0  # > 0: WBP with a SIRT-equivalent filter of N iterations
    lowpass_cutoff: float = 0.35  # cycles/px, IMOD's radial filter default
    lowpass_falloff: float = 0.05  # Gaussian roll-off width beyond the cutoff, cycles/px
    phase_flip: bool = True  # CTF correction of each tilt before back-projection
    rows_per_block: int = 16
    workers: int = 1


def aligned_stack(
    images: np.ndarray,
    tilt_axis_angle_deg: float,
    shifts_px: np.ndarray,
    binning: int,
    *,
    pixel_size_angstrom: float,
    defocus_angstrom: list[float | None] | None = None,
    voltage_kv: float = 300.0,
    spherical_aberration_mm: float = 2.7,
    amplitude_contrast: float = 0.1,
    rotations_deg: np.ndarray | None = None,
    magnifications: np.ndarray | None = None,
) -> np.ndarray:
    """Binned, phase-flipped (when defoci are given) and aligned images [tilt, y, x];
    optional per-tilt in-plane rotations (added to the axis) and magnifications."""
    count = len(images)
    rotations = np.zeros(count) if rotations_deg is None else np.asarray(rotations_deg)
    mags = np.ones(count) if magnifications is None else np.asarray(magnifications)
    out = []
    for index, image in enumerate(images):
        binned = fourier_bin(image, binning)
        defocus = None if defocus_angstrom is None else defocus_angstrom[index]
        if defocus:
            sign = np.sign(
                ctf_2d(
                    binned.shape,
                    pixel_size_angstrom * binning,
                    defocus,
                    defocus,
                    0.0,
                    voltage_kv,
                    spherical_aberration_mm,
                    amplitude_contrast,
                    rfft=True,
                )
            )
            # CTF is negative at low frequency: flip so dense matter comes out positive
            binned = scipy.fft.irfft2(scipy.fft.rfft2(binned) * -sign, s=binned.shape)
        out.append(
            align_image(
                binned,
                tilt_axis_angle_deg + rotations[index],
                np.asarray(shifts_px[index]) / binning,
                magnification=float(mags[index]),
            )
        )
    return np.stack(out).astype(np.float32)


def weighting_filter(width_px: int, count: int, params: ReconstructionParams) -> np.ndarray:
    """R-weighting (|k|) along x on an rfft grid of `width_px`, optionally SIRT-like, with
    a Gaussian low-pass roll-off, scaled by pi/number of tilts (the angular step)."""
    k = np.fft.rfftfreq(width_px)
    ramp = np.abs(k)
    ramp[0] = 0.25 / width_px  # keep a little of the mean, as IMOD does
    if params.sirt_like_iterations > 0:
        # Landweber after N iterations in the Fourier-slice picture: the ramp saturates
        smallest = 1.0 / width_px
        ratio = np.clip(1.0 - smallest / np.maximum(ramp, smallest), 0.0, 1.0)
        ramp = ramp * (1.0 - ratio**params.sirt_like_iterations)
    beyond = np.maximum(k - params.lowpass_cutoff, 0.0)
    rolloff = np.exp(-(beyond**2) / (2 * params.lowpass_falloff**2))
    return ramp * rolloff * np.pi / count


def _interpolation(
    angles_deg: np.ndarray, thickness: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """For each tilt, the sinogram index (floor) and fraction of every (z, x) voxel."""
    beta = np.deg2rad(angles_deg)[:, None, None]
    z = (np.arange(thickness) - thickness / 2 + 0.5)[None, :, None]
    x = (np.arange(width) - width / 2)[None, None, :]
    position = x * np.cos(beta) + z * np.sin(beta) + width / 2
    floor = np.floor(position)
    return floor.astype(np.int64), (position - floor).astype(np.float32)


def _back_project(
    sinogram: np.ndarray, floor: np.ndarray, fraction: np.ndarray, pad: int
) -> np.ndarray:
    """sinogram [tilt, rows, width + 2 pad] (zero padded) -> slab [rows, z, x]."""
    tilts, rows, _ = sinogram.shape
    _, thickness, width = floor.shape
    slab = np.zeros((rows, thickness, width), dtype=np.float32)
    for t in range(tilts):
        index = np.clip(floor[t] + pad, 0, sinogram.shape[2] - 2)
        line = sinogram[t]
        slab += line[:, index] * (1.0 - fraction[t]) + line[:, index + 1] * fraction[t]
    return slab


def _forward_project(
    slab: np.ndarray, floor: np.ndarray, fraction: np.ndarray, pad: int, padded_width: int
) -> np.ndarray:
    """Exact adjoint of `_back_project`: slab [rows, z, x] -> sinogram [tilt, rows, padded]."""
    rows = slab.shape[0]
    tilts = floor.shape[0]
    out = np.zeros((tilts, rows, padded_width), dtype=np.float32)
    row_offset = (np.arange(rows) * padded_width)[:, None]
    flat = slab.reshape(rows, -1)
    for t in range(tilts):
        index = np.clip(floor[t] + pad, 0, padded_width - 2).ravel()[None, :] + row_offset
        weight = fraction[t].ravel()[None, :]
        total = np.bincount(
            index.ravel(), (flat * (1.0 - weight)).ravel(), minlength=rows * padded_width
        )
        total += np.bincount(
            (index + 1).ravel(), (flat * weight).ravel(), minlength=rows * padded_width
        )
        out[t] = total.reshape(rows, padded_width)
    return out


def reconstruct_block(
    aligned_rows: np.ndarray,
    angles_deg: np.ndarray,
    params: ReconstructionParams,
    interpolation: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Reconstruct rows of an aligned stack: [tilt, rows, x] -> [rows, z, x]."""
    tilts, rows, width = aligned_rows.shape
    floor, fraction = interpolation or _interpolation(angles_deg, params.thickness_px, width)
    pad = width  # zero padding: rays leaving the field contribute nothing
    padded_width = width + 2 * pad
    sinogram = np.zeros((tilts, rows, padded_width), dtype=np.float32)
    sinogram[:, :, pad : pad + width] = aligned_rows
    if params.method == "wbp":
        weights = weighting_filter(padded_width, tilts, params)
        spectrum = scipy.fft.rfft(sinogram, axis=-1, workers=params.workers)
        filtered = scipy.fft.irfft(
            spectrum * weights, n=padded_width, axis=-1, workers=params.workers
        )
        filtered[:, :, :pad] = 0.0  # outside the field there is no data to back-project
        filtered[:, :, pad + width :] = 0.0
        return _back_project(filtered.astype(np.float32), floor, fraction, pad)
    if params.method == "sirt":
        ones = np.ones((rows, params.thickness_px, width), dtype=np.float32)
        ray_sums = _forward_project(ones, floor, fraction, pad, padded_width)
        inverse_rays = np.where(ray_sums > 1e-3, 1.0 / np.maximum(ray_sums, 1e-3), 0.0)
        field = np.zeros_like(sinogram)
        field[:, :, pad : pad + width] = 1.0
        inverse_voxels = 1.0 / np.maximum(_back_project(field, floor, fraction, pad), 1e-3)
        slab = np.zeros((rows, params.thickness_px, width), dtype=np.float32)
        for _ in range(params.sirt_iterations):
            difference = sinogram - _forward_project(slab, floor, fraction, pad, padded_width)
            difference *= inverse_rays * field
            slab += inverse_voxels * _back_project(difference, floor, fraction, pad)
        return slab
    raise ReconstructionError(f"unknown reconstruction method {params.method!r} (wbp | sirt)")


def reconstruct_tomogram(
    aligned: np.ndarray,
    angles_deg: np.ndarray,
    params: ReconstructionParams,
    output_path: Path | None = None,
    voxel_size_angstrom: float = 1.0,
) -> np.ndarray | None:
    """Reconstruct an aligned, binned stack [tilt, y, x] into [z, y, x].

    With `output_path` the volume is written block by block into a memory-mapped MRC
    (then renamed into place) and None is returned; otherwise the array is returned.
    """
    angles_deg = np.asarray(angles_deg, dtype=float)
    tilts, height, width = aligned.shape
    if tilts != len(angles_deg):
        raise ReconstructionError(f"{tilts} images but {len(angles_deg)} tilt angles")
    shape = (params.thickness_px, height, width)
    interpolation = _interpolation(angles_deg, params.thickness_px, width)

    def fill(volume: np.ndarray) -> None:
        for start in range(0, height, params.rows_per_block):
            stop = min(start + params.rows_per_block, height)
            block = reconstruct_block(aligned[:, start:stop], angles_deg, params, interpolation)
            volume[:, start:stop, :] = np.transpose(block, (1, 0, 2))

    if output_path is None:
        volume = np.empty(shape, dtype=np.float32)
        fill(volume)
        return volume
    with atomic_path(output_path) as temporary:
        with mrcfile.new_mmap(temporary, shape=shape, mrc_mode=2, overwrite=True) as mrc:
            fill(mrc.data)
            mrc.voxel_size = voxel_size_angstrom
            mrc.update_header_stats()
    return None
