"""Projection matching (`emproc.tomo.projection_matching`) iteration by iteration on
`emproc.simulate.slab_series` without beads: how the shift error moves from a given start.

    python benchmarks/bench_tomo_projection_matching.py [--seeds 1 3] [--start patch|coarse|truth]

Starts: `patch` = the aligner's patch-tracking shifts and measured axis (what the pipeline
refines); `coarse` = the chained cross-correlation shifts; `truth` = true shifts and axis
(the first iteration's error is the method's floor: the scatter of one tilt's match against
the reprojection of the others at the true alignment). Shift error as in
bench_tomo_alignment.py (gauge removed, unbinned px), after each iteration.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from emproc.simulate.slab_series import SPECIMENS, SlabSeriesParams, simulate_slab_series
from emproc.tomo.align import AlignmentParams, align_tilt_series, coarse_alignment
from emproc.tomo.geometry import rotation_matrix
from emproc.tomo.projection_fit import remove_gauge
from emproc.tomo.projection_matching import ProjectionMatchingParams, refine_shifts


def shift_error(raw_unbinned: np.ndarray, series) -> float:
    error = remove_gauge(
        raw_unbinned - series.shifts_px, series.tilt_angles_deg, series.tilt_axis_angle_deg
    )
    return float(np.sqrt(np.mean(np.sum(error**2, axis=1))))


def run(specimen: str, seed: int, start: str, iterations: int) -> str:
    series = simulate_slab_series(
        SlabSeriesParams(specimen=specimen, pixel_size_angstrom=8.0), seed
    )
    angles = series.tilt_angles_deg
    params = AlignmentParams(binning=2, patch_size_px=48)
    binned, axis, coarse = coarse_alignment(series.images, angles, series.axis_guess_deg, params)
    raw = coarse @ rotation_matrix(axis).T  # binned px, raw frame
    if start == "truth":
        axis, raw = series.tilt_axis_angle_deg, series.shifts_px / params.binning
    elif start == "patch":
        no_matching = AlignmentParams(
            binning=2, patch_size_px=48, projection_matching=ProjectionMatchingParams(iterations=0)
        )
        result = align_tilt_series(series.images, angles, series.axis_guess_deg, no_matching)
        axis, raw = result.tilt_axis_angle_deg, result.shifts_px / params.binning
    began = time.perf_counter()
    errors = [shift_error(raw * params.binning, series)]
    one = ProjectionMatchingParams(iterations=1, tolerance_px=0.0)
    for _ in range(iterations):
        raw = refine_shifts(binned, angles, axis, raw, one).raw_shifts_px
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
    parser.add_argument("--start", choices=["patch", "coarse", "truth"], default="patch")
    parser.add_argument("--iterations", type=int, default=6)
    args = parser.parse_args()
    for specimen in args.specimens:
        for seed in args.seeds:
            print(run(specimen, seed, args.start, args.iterations), flush=True)


if __name__ == "__main__":
    main()
