"""Benchmark (run by hand): picking + extraction per 4k micrograph, 2D classification speed.

    .venv/bin/python benchmarks/bench_particles.py [--quick]

Prints wall and CPU seconds and the accuracy reached against the simulator's truth.
Results go in docs/benchmarks.md, section "Particles".
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from emproc.classify.class2d import Class2DParams, ParticleCtfs, classify_2d
from emproc.classify.synthetic import SyntheticStackParams, simulate_particle_stack
from emproc.extract.boxes import CtfParameters, ExtractionParams, extract_boxes
from emproc.picking import LogPickerParams, pick_log
from emproc.picking.io import write_coordinate_star, write_pick_snapshot
from emproc.simulate.spa_movie import SpaMovieParams, simulate_micrograph


def timed(function, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def bench_picking_extraction(size: int) -> None:
    params = SpaMovieParams(shape_px=(size, size), number_of_particles=int(60 * (size / 1024) ** 2))
    image, truth = simulate_micrograph(params, 7)
    picks, pick_wall, pick_cpu = timed(pick_log, image, 1.0, LogPickerParams())
    ctf = CtfParameters(
        truth.defocus_u_angstrom, truth.defocus_v_angstrom, truth.astigmatism_angle_deg
    )
    xy = picks[["x_px", "y_px"]].to_numpy()
    (stack, kept), ext_wall, ext_cpu = timed(extract_boxes, image, xy, 1.0, ExtractionParams(), ctf)
    flip = ExtractionParams(phase_flip=True)
    (_, _), flip_wall, _ = timed(extract_boxes, image, xy, 1.0, flip, ctf)
    with tempfile.TemporaryDirectory() as directory:
        _, io_wall, _ = timed(write_coordinate_star, Path(directory) / "c.star", picks)
        _, jpg_wall, _ = timed(write_pick_snapshot, Path(directory) / "p.jpg", image, picks, 150.0)
    true_xy = truth.particles[["x_px", "y_px"]].to_numpy()
    to_truth, _ = cKDTree(true_xy).query(xy)
    to_pick, _ = cKDTree(xy).query(true_xy)
    tolerance = 0.3 * params.particle_diameter_angstrom
    print(f"micrograph {size}x{size} px, {len(true_xy)} particles, {len(picks)} picks")
    print(
        f"  precision {np.mean(to_truth < tolerance):.3f} recall {np.mean(to_pick < tolerance):.3f}"
        f" median pick error {np.median(to_truth):.1f} px"
    )
    print(f"  pick_log: {pick_wall:.2f} s wall, {pick_cpu:.2f} s CPU")
    print(
        f"  extract {len(kept)} boxes 256->64: {ext_wall:.2f} s wall, {ext_cpu:.2f} s CPU;"
        f" with phase flip {flip_wall:.2f} s"
    )
    print(f"  STAR {io_wall:.2f} s, JPEG snapshot {jpg_wall:.2f} s")


def bench_class2d(count: int, classes: int, iterations: int) -> None:
    stack, truth = simulate_particle_stack(
        SyntheticStackParams(number_of_particles=count, noise_std=0.3), 11
    )
    defocus = truth["defocus_angstrom"].to_numpy()
    ctfs = ParticleCtfs(
        defocus, defocus, np.zeros(count), np.full(count, 300.0), np.full(count, 2.7),
        np.full(count, 0.1), np.zeros(count),
    )  # fmt: skip
    params = Class2DParams(number_of_classes=classes, iterations=iterations)
    result, wall, cpu = timed(classify_2d, stack, 4.0, params, ctfs)
    table = pd.crosstab(result.class_number, truth["shape_id"])
    purity = table.max(axis=1).sum() / count
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"class2d {count} particles x 64 px, K={classes}, {iterations} iterations:"
        f" {wall:.1f} s wall, {cpu:.1f} s CPU, purity {purity:.3f},"
        f" dominant shapes {sorted(set(table.idxmax(axis=1)))}, peak RSS {peak_mb:.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1k micrograph, 1,000 particles")
    arguments = parser.parse_args()
    if arguments.quick:
        bench_picking_extraction(1024)
        bench_class2d(1000, 10, 10)
    else:
        bench_picking_extraction(4096)
        bench_class2d(5000, 10, 20)


if __name__ == "__main__":
    main()
