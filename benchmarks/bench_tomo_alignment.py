"""Tilt-series alignment accuracy on `emproc.simulate.slab_series` (a generator apart from
`emproc.simulate.tomo` and the aligner), per seed, for docs/benchmarks.md.

    python benchmarks/bench_tomo_alignment.py [--seeds 1 2 3 4 5] [--pixel 8.0] [--signal]

Fiducial path: 25 gold beads of 10 nm; patch path: no beads (patch tracking, then
projection matching, `emproc.tomo.projection_matching`; with --patch-fiducials N then N
rounds of patches as pseudo-fiducials, `emproc.tomo.patch_fiducials`). Both specimens (crowded,
sparse_carbon), 256 px, +-60 deg in 3 deg steps, 4 px rms random shifts, the axis guess
2 deg off. Shift error: rms over tilts of |estimate - truth| after `remove_gauge` (a
translation of the specimen is no error), unbinned px; axis error in degrees.

--signal: how much correlatable signal a series without beads holds, whatever the aligner:
the zero tilt and its +3 deg neighbour, put into the aligned frame with the *true* axis and
shifts (the neighbour cosine-stretched), band-passed as the aligner does, cross-correlated;
the normalised peak and how far it lies from where truth puts it (binned px). A peak far
from 0 means noise beats the specimen even between adjacent tilts.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from emproc.simulate.slab_series import SPECIMENS, SlabSeriesParams, simulate_slab_series
from emproc.tomo.align import (
    AlignmentError,
    AlignmentParams,
    _bandpass,
    _cross_correlate,
    align_tilt_series,
)
from emproc.tomo.fiducial import FiducialParams
from emproc.tomo.geometry import align_image, taper_mask
from emproc.tomo.patch_fiducials import PatchFiducialParams
from emproc.tomo.peaks import correlation_peak
from emproc.tomo.projection_fit import remove_gauge
from emproc.tomo.stack import fourier_bin


def run(specimen: str, seed: int, beads: int, pixel: float, patch_fiducials: int = 0) -> dict:
    series = simulate_slab_series(
        SlabSeriesParams(specimen=specimen, beads=beads, pixel_size_angstrom=pixel), seed
    )
    start = time.perf_counter()
    try:
        result = align_tilt_series(
            series.images,
            series.tilt_angles_deg,
            series.axis_guess_deg,
            AlignmentParams(
                binning=2,
                patch_size_px=48,
                patch_fiducials=PatchFiducialParams(iterations=patch_fiducials),
            ),
            fiducial=FiducialParams(bead_diameter_nm=10.0) if beads else None,
            pixel_size_angstrom=pixel,
        )
    except AlignmentError as error:
        return {"specimen": specimen, "seed": seed, "error": str(error)}
    seconds = time.perf_counter() - start
    error = remove_gauge(
        result.shifts_px - series.shifts_px, series.tilt_angles_deg, series.tilt_axis_angle_deg
    )
    return {
        "specimen": specimen,
        "seed": seed,
        "method": result.method
        + (
            f"+matching x{result.projection_matching_iterations}"
            if result.projection_matching_iterations
            else ""
        )
        + (f"+pseudo-fiducials x{patch_fiducials}" if patch_fiducials and not beads else ""),
        "shift_rms_px": float(np.sqrt(np.mean(np.sum(error**2, axis=1)))),
        "axis_error_deg": float(result.tilt_axis_angle_deg - series.tilt_axis_angle_deg),
        "beads_used": result.fiducial.beads_used if result.fiducial else 0,
        "seconds": seconds,
    }


def adjacent_tilt_signal(specimen: str, seed: int, pixel: float, binning: int = 2) -> dict:
    """See --signal in the module docstring."""
    series = simulate_slab_series(
        SlabSeriesParams(specimen=specimen, beads=0, pixel_size_angstrom=pixel), seed
    )
    params = AlignmentParams(binning=binning)
    zero = int(np.argmin(np.abs(series.tilt_angles_deg)))
    aligned = []
    for k in (zero, zero + 1):
        image = _bandpass(fourier_bin(series.images[k], binning), params)
        stretch = 1.0 / np.cos(np.deg2rad(series.tilt_angles_deg[k]))
        aligned.append(
            align_image(image, series.tilt_axis_angle_deg, series.shifts_px[k] / binning, stretch)
        )
    mask = taper_mask(aligned[0].shape, 0.2)
    reference, moving = aligned[0] * mask, aligned[1] * mask
    correlation = _cross_correlate(reference, moving)
    dx, dy, _ = correlation_peak(correlation, 0.25 * min(correlation.shape))
    peak = float(correlation.max() / (np.linalg.norm(reference) * np.linalg.norm(moving)))
    return {"peak": peak, "offset_px": float(np.hypot(dx, dy))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--pixel", type=float, default=8.0, help="A/px")
    parser.add_argument("--paths", nargs="+", default=["fiducial", "patch"])
    parser.add_argument("--specimens", nargs="+", default=list(SPECIMENS))
    parser.add_argument("--signal", action="store_true", help="adjacent-tilt signal only")
    parser.add_argument(
        "--patch-fiducials", type=int, default=0, help="pseudo-fiducial rounds (patch path)"
    )
    args = parser.parse_args()
    if args.signal:
        for specimen in SPECIMENS:
            for seed in args.seeds:
                row = adjacent_tilt_signal(specimen, seed, args.pixel)
                print(
                    f"| {specimen} | {seed} | {row['peak']:.3f} | {row['offset_px']:.2f} |",
                    flush=True,
                )
        return
    for path in args.paths:
        for specimen in args.specimens:
            for seed in args.seeds:
                beads = 25 if path == "fiducial" else 0
                row = run(specimen, seed, beads, args.pixel, args.patch_fiducials)
                if "error" in row:
                    print(f"| {path} | {specimen} | {seed} | failed: {row['error']} |", flush=True)
                    continue
                print(
                    f"| {path} | {specimen} | {seed} | {row['method']} | {row['shift_rms_px']:.3f}"
                    f" | {row['axis_error_deg']:+.3f} | {row['beads_used']} |"
                    f" {row['seconds']:.1f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
