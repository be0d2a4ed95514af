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
from scipy.spatial import cKDTree

from emproc.classify.class2d import ParticleCtfs, classify_2d
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


def bench_class2d(count: int) -> None:
    """One live-workflow batch: the config's class2d defaults on independent particles."""
    import yaml

    from emproc.classify.evaluation import class_purity
    from emproc.classify.run import class2d_params_from_config
    from emproc.simulate.particle_stacks import ParticleStackConditions
    from emproc.simulate.particle_stacks import simulate_particle_stack as simulate_stack

    config = yaml.safe_load((Path(__file__).parents[1] / "config" / "config.yaml").read_text())
    params = class2d_params_from_config(config["class2d"], phase_flipped=False)
    conditions = ParticleStackConditions(number_of_particles=count, snr=0.1)
    stack, truth = simulate_stack(conditions, 11)
    n = len(truth)
    ctfs = ParticleCtfs(
        truth["defocus_u_angstrom"].to_numpy(), truth["defocus_v_angstrom"].to_numpy(),
        truth["astigmatism_angle_deg"].to_numpy(), np.full(n, conditions.voltage_kv),
        np.full(n, conditions.spherical_aberration_mm), np.full(n, conditions.amplitude_contrast),
        np.zeros(n),
    )  # fmt: skip
    result, wall, cpu = timed(classify_2d, stack, conditions.pixel_size_angstrom, params, ctfs)
    score = class_purity(result.class_number, truth["shape"].to_numpy())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"class2d batch: {count} particles x {conditions.box_size_px} px (SNR {conditions.snr},"
        f" 4 shapes), config defaults K={params.number_of_classes},"
        f" {params.iterations} iterations: {wall:.1f} s wall, {cpu:.1f} s CPU,"
        f" purity {score.purity:.3f} (worst shape {score.worst_shape_purity:.3f}),"
        f" peak RSS {peak_mb:.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1k micrograph, 1,000 particles")
    parser.add_argument("--class2d-only", action="store_true", help="skip picking/extraction")
    arguments = parser.parse_args()
    if arguments.class2d_only:
        bench_class2d(1000 if arguments.quick else 5000)
    elif arguments.quick:
        bench_picking_extraction(1024)
        bench_class2d(1000)
    else:
        bench_picking_extraction(4096)
        bench_class2d(5000)


if __name__ == "__main__":
    main()
