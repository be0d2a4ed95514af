"""Alignment + reconstruction time and peak memory: 41 tilts of 1024x1024 -> 512x512x256.

Run by hand: .venv/bin/python benchmarks/bench_tomo.py [--threads N]
Images are smoothed noise (the cost does not depend on content); results go to
docs/benchmarks.md under "Tomography".
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from emproc.tomo.align import AlignmentParams, align_tilt_series
from emproc.tomo.reconstruct import ReconstructionParams, aligned_stack, reconstruct_tomogram


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--tilts", type=int, default=41)
    parser.add_argument("--method", default="wbp")
    arguments = parser.parse_args()
    rng = np.random.default_rng(0)
    angles = np.linspace(-60, 60, arguments.tilts)
    images = np.stack(
        [
            ndimage.gaussian_filter(rng.normal(size=(arguments.size,) * 2), 3).astype(np.float32)
            for _ in angles
        ]
    )
    start = time.perf_counter()
    alignment = align_tilt_series(images, angles, 85.0, AlignmentParams(binning=4))
    aligned_time = time.perf_counter()
    aligned = aligned_stack(
        images, alignment.tilt_axis_angle_deg, alignment.shifts_px, 2, pixel_size_angstrom=2.0
    )
    params = ReconstructionParams(
        binning=2, thickness_px=256, method=arguments.method, sirt_like_iterations=10
    )
    with tempfile.TemporaryDirectory() as directory:
        reconstruct_tomogram(aligned, angles, params, Path(directory) / "rec.mrc", 4.0)
    end = time.perf_counter()
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{arguments.tilts} tilts {arguments.size}px -> {arguments.size // 2}x"
        f"{arguments.size // 2}x256 ({arguments.method}): alignment {aligned_time - start:.1f} s, "
        f"reconstruction {end - aligned_time:.1f} s, total {end - start:.1f} s, "
        f"peak RSS {peak_mib:.0f} MiB (input stack {images.nbytes / 2**20:.0f} MiB)"
    )


if __name__ == "__main__":
    main()
