"""Tomogram denoising: accuracy on simulated cells and cost per tomogram (docs/benchmarks.md).

Accuracy: per cell (emproc.simulate.tomo_denoise_cases), the Pearson correlation inside the
central mask of each volume with the noise-free tomogram and with the true density: raw,
noise2noise Wiener from frame halves and from tilt halves, the Gaussian low-pass whose width
the frame halves choose (noise2noise loss), and the best Gaussian chosen with each reference
(an oracle no pipeline has).

Cost: one simulated series through `process_tilt_series` with denoising off and on, each in
its own process (wall, CPU, peak RSS), plus the summary's `denoise_seconds`.

    nice -n 10 .venv/bin/python benchmarks/bench_tomo_denoise.py accuracy --size 128
    nice -n 10 .venv/bin/python benchmarks/bench_tomo_denoise.py cost --size 512 --thickness 100
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.ndimage

from emproc.simulate.tomo_denoise_cases import DenoiseCase, denoise_bench
from emproc.tomo.denoise import denoise_tomogram, noise2noise_gaussian_sigma
from emproc.tomo.score import normalised_cross_correlation

CELLS = (("vesicles", 3.0), ("crowded", 3.0), ("vesicles", 1.0), ("crowded", 0.5))
SIGMAS_PX = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0)


def accuracy(size: int, seed: int) -> None:
    print(
        "| cell | reference | raw | n2n frames | n2n tilts | Gaussian (halves' width) "
        "| best Gaussian (oracle) |"
    )
    print("|---|---|---|---|---|---|---|")
    for specimen, dose in CELLS:
        case = DenoiseCase(specimen, size, dose, seed=seed)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as directory:
            bench = denoise_bench(case, directory)
        seconds = time.perf_counter() - start
        frames, _ = denoise_tomogram(bench.tomogram, bench.even_frames, bench.odd_frames)
        tilts, _ = denoise_tomogram(bench.tomogram, bench.even_tilts, bench.odd_tilts)
        sigma = noise2noise_gaussian_sigma(bench.even_frames, bench.odd_frames, SIGMAS_PX)
        blurred = {s: scipy.ndimage.gaussian_filter(bench.tomogram, s) for s in SIGMAS_PX}
        for name, reference in (("noise-free", bench.noise_free), ("truth", bench.truth)):

            def score(
                volume: np.ndarray, reference: np.ndarray = reference, mask: np.ndarray = bench.mask
            ) -> float:
                return normalised_cross_correlation(volume, reference, mask)

            best = max((score(v), s) for s, v in blurred.items())
            print(
                f"| {specimen} {dose:g} e/A2 ({seconds:.0f} s) | {name} | {score(bench.tomogram):.3f}"
                f" | {score(frames):.3f} | {score(tilts):.3f} | {score(blurred[sigma]):.3f}"
                f" (sigma {sigma:g}) | {best[0]:.3f} (sigma {best[1]:g}) |",
                flush=True,
            )


def _one_run(size: int, thickness: int, denoise: bool, directory: Path) -> None:
    """Child process: simulate (outside the timing), process, print the measurements."""
    from emproc.simulate.tomo import TiltSeriesParams, simulate_tomo_session
    from emproc.tomo.pipeline import process_tilt_series

    session = directory / "session"
    if not (session / "Position_1.mdoc").exists():
        simulate_tomo_session(session, params=TiltSeriesParams(image_size_px=size), seed=5)
    tomo = {
        "binning": 2,
        "alignment_binning": 4,
        "thickness_px": thickness,
        "bead_diameter_nm": 0,
        "denoise": {"enabled": denoise, "halves": "frames"},
    }
    microscope = {"voltage_kv": 300.0}
    wall, cpu = time.perf_counter(), time.process_time()
    summary = process_tilt_series(
        session / "Position_1.mdoc", directory / f"out_{denoise}", tomo=tomo, microscope=microscope
    )
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "wall_s": wall,
                "cpu_s": cpu,
                "peak_rss_mb": peak_mb,
                "shape_zyx": summary["tomogram_shape_zyx"],
                "denoise_seconds": summary.get("denoise_seconds"),
                "denoise_halves": summary.get("denoise_halves"),
            }
        )
    )


def cost(size: int, thickness: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        results = {}
        # the first run also simulates the session (its time is not counted)
        for denoise in (False, True, False, True):
            output = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "_one",
                    str(size),
                    str(thickness),
                    str(denoise),
                    directory,
                ],
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, "OMP_NUM_THREADS": "1"},
            ).stdout
            results.setdefault(denoise, []).append(json.loads(output.strip().splitlines()[-1]))
    for denoise, runs in results.items():
        for run in runs:
            print(f"denoise={denoise}: {json.dumps(run)}")


def main() -> None:
    if sys.argv[1:2] == ["_one"]:
        size, thickness, denoise, directory = sys.argv[2:6]
        _one_run(int(size), int(thickness), denoise == "True", Path(directory))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["accuracy", "cost"])
    parser.add_argument("--size", type=int, default=128, help="image size, px")
    parser.add_argument("--thickness", type=int, default=100, help="tomogram z, px (cost)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()}")
    if args.what == "accuracy":
        accuracy(args.size, args.seed)
    else:
        cost(args.size, args.thickness)
    print(f"# load after {os.getloadavg()}")


if __name__ == "__main__":
    main()
