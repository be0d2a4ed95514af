"""Regenerate tests/ispyb/data/spa3d (run by hand, needs RELION 3.1 with MPI; minutes).

Runs the workflow's own 3D entry point (`emproc.refine3d.pipeline.run_step`, as the spa3d
rules call it) through every step on particles of `emproc.simulate.particles3d` (a 70:30
mixture of two densities, 24 px at 6 A/px, 300 particles: tiny, so it finishes on a loaded
2-core machine), then keeps only the five summaries, the output directory written as
{outputs}.

    .venv/bin/python tests/ispyb/data/make_spa3d_summaries.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from emproc.refine3d.pipeline import run_step
from emproc.simulate.particles3d import Particles3DParams, make_atom_density, write_particles

BOX_PX, PIXEL_ANGSTROM, PARTICLES = 24, 6.0, 300
SPA3D = {
    "symmetry": "C1",
    "seed": 0,
    "nice": 0,
    "initial_model": {
        "iterations_initial": 4, "iterations_inbetween": 8, "iterations_final": 4,
        "initial_resolution_angstrom": 40.0, "final_resolution_angstrom": 20.0,
        "subset_initial": 50, "subset_final": 100,
    },
    "class3d": {"number_of_classes": 2, "iterations": 4, "healpix_order": 1,
                "offset_range_px": 2.0, "offset_step_px": 1.0},
    "refine": {"healpix_order": 1, "local_healpix_order": 3, "offset_range_px": 2.0,
               "offset_step_px": 1.0},
    "bfactor": {"method": "reconstruct", "number_of_subsets": 3, "min_particles": 60},
}  # fmt: skip
STEPS = ("InitialModel", "Class3D", "Refine3D", "PostProcess", "BFactor")


def main() -> int:
    target = Path(__file__).parent / "spa3d"
    with tempfile.TemporaryDirectory(prefix="spa3d_") as scratch:
        d = Path(scratch)
        densities = [
            make_atom_density("ellipsoid", 0.6 * BOX_PX * PIXEL_ANGSTROM, 200, seed=1),
            make_atom_density("dumbbell", 0.6 * BOX_PX * PIXEL_ANGSTROM, 200, seed=2),
        ]
        params = Particles3DParams(
            box_px=BOX_PX, pixel_size_angstrom=PIXEL_ANGSTROM, number_of_particles=PARTICLES,
            bfactor_angstrom2=150.0, snr=0.2, class_fractions=(0.7, 0.3),
        )  # fmt: skip
        write_particles(d, densities, params)
        diameter = 0.75 * BOX_PX * PIXEL_ANGSTROM

        def step(name: str, directory: str, **inputs: str) -> dict:
            summary = run_step(
                name, inputs, d / directory, d / directory / "summary.json", d, SPA3D,
                default_diameter_angstrom=diameter, threads=2,
            )  # fmt: skip
            print(name, "done", flush=True)
            return summary

        model = step("initial_model", "InitialModel", particles=str(d / "particles.star"))
        classes = step(
            "class3d", "Class3D", particles=str(d / "particles.star"), reference=model["map_path"]
        )
        step(
            "refine", "Refine3D",
            particles=classes["best_class_particles_star"], reference=classes["best_class_map"],
        )  # fmt: skip
        refined = str(d / "Refine3D" / "summary.json")
        step("postprocess", "PostProcess", refine_summary=refined)
        step(
            "bfactor", "BFactor",
            refine_summary=refined, postprocess_summary=str(d / "PostProcess" / "summary.json"),
        )  # fmt: skip
        for name in STEPS:
            text = (d / name / "summary.json").read_text().replace(str(d), "{outputs}")
            (target / name).mkdir(parents=True, exist_ok=True)
            (target / name / "summary.json").write_text(json.dumps(json.loads(text), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
