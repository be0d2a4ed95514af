"""Projection matching (as AreTomo refines alignment) measured on `emproc.simulate.slab_series`
without beads: a prototype for the patch-tracking gap of issue 20, NOT used by the aligner.

Each iteration: every tilt is put into the aligned frame with the current shifts, a WBP
slab is reconstructed from all tilts, and each tilt is cross-correlated with the
reprojection of that slab minus its own contribution (leave one out); the correlation peak
updates the tilt's shift (the zero tilt stays fixed). Unlike patch tracks, the reference
holds the specimen's full 3D parallax, so a thick slab does not bias it.

    python benchmarks/bench_tomo_projection_matching.py [--seeds 1 3] [--start coarse|zero|truth]

Starts: `coarse` = the aligner's coarse shifts and measured axis; `zero` = no shifts, the
mdoc axis; `truth` = true shifts and axis (what the method does to a perfect alignment).
Shift error as in bench_tomo_alignment.py (gauge removed, unbinned px), per iteration.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.fft

from emproc.simulate.slab_series import SPECIMENS, SlabSeriesParams, simulate_slab_series
from emproc.tomo.align import AlignmentParams, _cross_correlate, _peak, coarse_alignment
from emproc.tomo.geometry import align_image, rotation_matrix, taper_mask
from emproc.tomo.projection_fit import remove_gauge
from emproc.tomo.reconstruct import (
    ReconstructionParams,
    _back_project,
    _forward_project,
    _interpolation,
    weighting_filter,
)


def leave_one_out_reprojections(
    aligned: np.ndarray, angles_deg: np.ndarray, thickness_px: int, params: ReconstructionParams
) -> np.ndarray:
    """[tilt, y, x]: each tilt's reprojection of the WBP slab of all *other* tilts."""
    tilts, rows, width = aligned.shape
    floor, fraction = _interpolation(angles_deg, thickness_px, width)
    pad = width
    padded = width + 2 * pad
    sinogram = np.zeros((tilts, rows, padded), np.float32)
    sinogram[:, :, pad : pad + width] = aligned
    weights = weighting_filter(padded, tilts, params)
    filtered = scipy.fft.irfft(scipy.fft.rfft(sinogram, axis=-1) * weights, n=padded, axis=-1)
    filtered = filtered.astype(np.float32)
    filtered[:, :, :pad] = 0.0
    filtered[:, :, pad + width :] = 0.0
    slab = _back_project(filtered, floor, fraction, pad)
    out = np.empty_like(aligned)
    for k in range(tilts):
        own = _back_project(filtered[k : k + 1], floor[k : k + 1], fraction[k : k + 1], pad)
        projection = _forward_project(
            slab - own, floor[k : k + 1], fraction[k : k + 1], pad, padded
        )
        out[k] = projection[0][:, pad : pad + width]
    return out


def shift_error(raw_unbinned: np.ndarray, series) -> float:
    error = remove_gauge(
        raw_unbinned - series.shifts_px, series.tilt_angles_deg, series.tilt_axis_angle_deg
    )
    return float(np.sqrt(np.mean(np.sum(error**2, axis=1))))


def run(specimen: str, seed: int, start: str, iterations: int, max_step_px: float) -> str:
    series = simulate_slab_series(
        SlabSeriesParams(specimen=specimen, pixel_size_angstrom=8.0), seed
    )
    began = time.perf_counter()
    params = AlignmentParams(binning=2)
    angles = series.tilt_angles_deg
    binned, axis, coarse = coarse_alignment(series.images, angles, series.axis_guess_deg, params)
    raw = coarse @ rotation_matrix(axis).T  # binned px, raw frame
    if start == "zero":
        axis, raw = series.axis_guess_deg, np.zeros_like(raw)
    elif start == "truth":
        axis, raw = series.tilt_axis_angle_deg, series.shifts_px / params.binning
    size = binned.shape[1]
    thickness = size // 2  # the slab's thickness is not known to an aligner: half the width
    reconstruction = ReconstructionParams(thickness_px=thickness, lowpass_cutoff=0.25)
    mask = taper_mask(binned.shape[1:], 0.2)
    zero = int(np.argmin(np.abs(angles)))
    errors = [shift_error(raw * params.binning, series)]
    for _ in range(iterations):
        aligned = np.stack(
            [align_image(image, axis, s) for image, s in zip(binned, raw, strict=True)]
        )
        references = leave_one_out_reprojections(aligned, angles, thickness, reconstruction)
        update = np.zeros((len(angles), 2))
        for k in range(len(angles)):
            correlation = _cross_correlate(references[k] * mask, aligned[k] * mask)
            update[k] = _peak(correlation, max_step_px)
        update[zero] = 0.0
        raw = raw + update @ rotation_matrix(axis).T
        errors.append(shift_error(raw * params.binning, series))
    seconds = time.perf_counter() - began
    trace = " / ".join(f"{e:.2f}" for e in errors)
    return (
        f"| {specimen} | {seed} | {start} | {axis - series.tilt_axis_angle_deg:+.2f} | {trace}"
        f" | {seconds:.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--specimens", nargs="+", default=list(SPECIMENS))
    parser.add_argument("--start", choices=["coarse", "zero", "truth"], default="coarse")
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--max-step", type=float, default=4.0, help="binned px per iteration")
    args = parser.parse_args()
    for specimen in args.specimens:
        for seed in args.seeds:
            print(run(specimen, seed, args.start, args.iterations, args.max_step), flush=True)


if __name__ == "__main__":
    main()
