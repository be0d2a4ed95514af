"""CTF estimation: speed, peak memory and accuracy against the simulator (run by hand).

    .venv/bin/python benchmarks/bench_ctf.py [--seeds 10]

Speed uses CTF-only synthetic micrographs (`emproc.ctf.synthetic`; run time does not depend
on the content); accuracy uses `emproc.simulate.spa.simulate_micrograph` ground truth.
Results go in docs/benchmarks.md, section "CTF estimation".
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import numpy as np

from emproc.ctf import estimate_ctf
from emproc.ctf.synthetic import synthetic_ctf_micrograph
from emproc.simulate.spa import SpaMovieParams, simulate_micrograph


def time_one(size_px: int, threads: int, repeats: int) -> tuple[float, float]:
    """(median seconds, peak traced MiB) of estimate_ctf on a size x size micrograph."""
    image = synthetic_ctf_micrograph((size_px, size_px), 1.0, 15000.0, 14500.0, 30.0, seed=1)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        estimate_ctf(image, pixel_size_angstrom=1.0, threads=threads)
        seconds.append(time.perf_counter() - start)
    tracemalloc.start()
    estimate_ctf(image, pixel_size_angstrom=1.0, threads=threads)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return float(np.median(seconds)), peak / 2**20


def accuracy(seeds: int, dose_per_frame: float, phase_shift_deg: float) -> dict[str, float]:
    defocus_errors, angle_errors, phase_errors, resolutions = [], [], [], []
    for seed in range(seeds):
        params = SpaMovieParams(
            shape_px=(1024, 1024),
            number_of_frames=40,
            dose_per_frame_e_per_angstrom2=dose_per_frame,
            defocus_range_angstrom=(8000.0, 35000.0),
            max_astigmatism_angstrom=1000.0,
            phase_shift_deg=phase_shift_deg,
        )
        image, truth = simulate_micrograph(params, seed)
        result = estimate_ctf(image, pixel_size_angstrom=1.0, phase_plate=phase_shift_deg > 0)
        true_mean = 0.5 * (truth.defocus_u_angstrom + truth.defocus_v_angstrom)
        mean = 0.5 * (result.defocus_u_angstrom + result.defocus_v_angstrom)
        defocus_errors.append(100.0 * abs(mean - true_mean) / true_mean)
        if truth.defocus_u_angstrom - truth.defocus_v_angstrom > 300.0:
            difference = result.astigmatism_angle_deg - truth.astigmatism_angle_deg
            angle_errors.append(abs((difference + 90.0) % 180.0 - 90.0))
        if phase_shift_deg:
            difference = result.phase_shift_deg - truth.phase_shift_deg
            phase_errors.append(abs((difference + 90.0) % 180.0 - 90.0))
        resolutions.append(result.fit_resolution_angstrom)
    return {
        "defocus_error_percent_mean": float(np.mean(defocus_errors)),
        "defocus_error_percent_max": float(np.max(defocus_errors)),
        "angle_error_deg_max": float(np.max(angle_errors)) if angle_errors else float("nan"),
        "phase_error_deg_max": float(np.max(phase_errors)) if phase_errors else float("nan"),
        "fit_resolution_angstrom_median": float(np.median(resolutions)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args()
    print("| micrograph | threads | seconds (median) | peak traced MiB |")
    print("|---|---|---|---|")
    for size, threads in ((1024, 1), (4096, 2)):
        seconds, peak = time_one(size, threads, arguments.repeats)
        print(f"| {size}x{size} | {threads} | {seconds:.2f} | {peak:.0f} |")
    print(f"process max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    print()
    print(
        "| dose (e/A^2) | phase shift | mean / max defocus error % | max angle error deg "
        "| max phase error deg | median fit resolution A |"
    )
    print("|---|---|---|---|---|---|")
    for dose_per_frame, phase in ((1.0, 0.0), (0.25, 0.0), (0.1, 0.0), (1.0, 60.0)):
        stats = accuracy(arguments.seeds, dose_per_frame, phase)
        print(
            f"| {40 * dose_per_frame:g} | {phase:g} | {stats['defocus_error_percent_mean']:.2f} / "
            f"{stats['defocus_error_percent_max']:.2f} | {stats['angle_error_deg_max']:.1f} | "
            f"{stats['phase_error_deg_max']:.1f} | {stats['fit_resolution_angstrom_median']:.2f} |"
        )


if __name__ == "__main__":
    main()
