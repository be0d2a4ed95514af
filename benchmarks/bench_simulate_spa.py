"""Time and peak memory of the SPA simulator (run by hand; results in docs/benchmarks.md).

.venv/bin/python benchmarks/bench_simulate_spa.py [--large]
"""

from __future__ import annotations

import argparse
import resource
import time

from emproc.simulate.spa import (
    SpaMovieParams,
    make_gain_reference,
    simulate_micrograph,
    simulate_movie,
)


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def run(label: str, params: SpaMovieParams, workers: int) -> None:
    gain = make_gain_reference(params.shape_px, seed=0)
    start = time.perf_counter()
    frames, truth = simulate_movie(params, seed=1, gain_reference=gain, workers=workers)
    movie_s = time.perf_counter() - start
    start = time.perf_counter()
    simulate_micrograph(params, seed=1, workers=workers)
    micrograph_s = time.perf_counter() - start
    print(
        f"{label}: movie {movie_s:.1f} s ({frames.dtype}, {len(truth.particles)} particles), "
        f"micrograph {micrograph_s:.1f} s, peak RSS so far {_peak_rss_gib():.2f} GiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--large", action="store_true", help="also run 4096x4096x40")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    run("1024x1024x16 default", SpaMovieParams(), args.workers)
    run(
        "1024x1024x16 local+damage",
        SpaMovieParams(local_deformation_px=3.0, dose_damage=True),
        args.workers,
    )
    if args.large:
        run(
            "4096x4096x40",
            SpaMovieParams(shape_px=(4096, 4096), number_of_frames=40, number_of_particles=400),
            args.workers,
        )


if __name__ == "__main__":
    main()
