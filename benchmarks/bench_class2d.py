"""Benchmark (run by hand): 2D classification purity on stacks the classifier was not tuned on.

    .venv/bin/python benchmarks/bench_class2d.py [--particles 5000] [--classes 20]
        [--seeds 0 1 2] [--cells standard low_snr ...] [--relion N]

Particles come from `emproc.simulate.particle_stacks` (own shapes, CTF, noise at a stated
SNR); purity as in `emproc.classify.evaluation`. One line per (cell, seed) with purity, the
worst shape's purity, wall and CPU seconds; then the worst cell and the spread over seeds.
`--relion N` also runs relion_refine on the first N particles of each stack (same K and
iterations) and prints its purity and its agreement with emproc on those particles.
Results go in docs/benchmarks.md, section "2D classification".
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from emproc.classify.class2d import Class2DParams, ParticleCtfs, classify_2d
from emproc.classify.evaluation import class_purity, shape_agreement
from emproc.simulate.particle_stacks import (
    ParticleStackConditions,
    simulate_particle_stack,
    write_extracted_stack,
)

STANDARD = ParticleStackConditions(snr=0.1)
CELLS = {
    "standard": STANDARD,  # 64 px at 3 A/px, 4 shapes, SNR 0.1, defocus 0.8-2.8 um
    "low_snr": replace(STANDARD, snr=0.05),
    "small_box": replace(STANDARD, box_size_px=48, pixel_size_angstrom=4.2),
    "large_box": replace(STANDARD, box_size_px=96, pixel_size_angstrom=2.0, max_shift_px=4.5),
    "preferred_view": replace(STANDARD, preferred_view_spread_deg=25.0),
    "three_shapes": replace(STANDARD, shapes=("dumbbell", "open_barrel", "trefoil")),
    "high_snr": replace(STANDARD, snr=0.3),
}


def truth_ctfs(truth: pd.DataFrame, conditions: ParticleStackConditions) -> ParticleCtfs:
    n = len(truth)
    return ParticleCtfs(
        truth["defocus_u_angstrom"].to_numpy(),
        truth["defocus_v_angstrom"].to_numpy(),
        truth["astigmatism_angle_deg"].to_numpy(),
        np.full(n, conditions.voltage_kv),
        np.full(n, conditions.spherical_aberration_mm),
        np.full(n, conditions.amplitude_contrast),
        np.zeros(n),
    )


def run_relion(stack, truth, conditions, classes, iterations, seed) -> tuple[np.ndarray, float]:
    from emproc.classify.relion import RelionRefineParams, run_relion_refine

    pixel, box = conditions.pixel_size_angstrom, conditions.box_size_px
    with tempfile.TemporaryDirectory() as directory:
        project = Path(directory)
        star = write_extracted_stack(project, "p", stack, truth, conditions)
        image_names = pd.Series([f"{i:06d}@Extract/p.mrcs" for i in range(1, len(stack) + 1)])
        params = RelionRefineParams(
            classes, iterations, 0.8 * box * pixel, threads=2, seed=seed + 1
        )
        start = time.perf_counter()
        result = run_relion_refine(
            star, project / "Class2D" / "run", project, params, image_names, pixel,
        )  # fmt: skip
        return result.class_number, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--particles", type=int, default=5000)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cells", nargs="+", default=["standard"], choices=sorted(CELLS))
    parser.add_argument("--relion", type=int, default=0, help="particles for relion_refine")
    arguments = parser.parse_args()
    rows = []
    for cell in arguments.cells:
        conditions = replace(CELLS[cell], number_of_particles=arguments.particles)
        for seed in arguments.seeds:
            stack, truth = simulate_particle_stack(conditions, 1000 + seed)
            params = Class2DParams(
                number_of_classes=arguments.classes, iterations=arguments.iterations, seed=seed
            )
            wall, cpu = time.perf_counter(), time.process_time()
            result = classify_2d(
                stack, conditions.pixel_size_angstrom, params, truth_ctfs(truth, conditions)
            )
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            shapes = truth["shape"].to_numpy()
            score = class_purity(result.class_number, shapes)
            row = {
                "cell": cell,
                "seed": seed,
                "purity": score.purity,
                "worst_shape": score.worst_shape_purity,
                "shapes_dominant": f"{len(score.dominant_shapes)}/{len(set(shapes))}",
                "wall_s": wall,
                "cpu_s": cpu,
            }
            if arguments.relion:
                n = arguments.relion
                relion_classes, relion_wall = run_relion(
                    stack[:n], truth[:n], conditions, arguments.classes, arguments.iterations, seed
                )
                row["relion_purity"] = class_purity(relion_classes, shapes[:n]).purity
                row["emproc_purity_same"] = class_purity(result.class_number[:n], shapes[:n]).purity
                row["agreement"] = shape_agreement(
                    result.class_number[:n], relion_classes, shapes[:n]
                )
                row["relion_wall_s"] = relion_wall
            rows.append(row)
            print(
                " ".join(
                    f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
                ),
                flush=True,
            )
    table = pd.DataFrame(rows)
    summary = table.groupby("cell")["purity"].agg(["min", "mean", "max"])
    print(summary.round(3).to_string())
    print(f"worst cell, worst seed: {table['purity'].min():.3f}; peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
