"""File-level entry points of the 3D steps: the `spa3d` config section in, a summary JSON out.

Each function is what one Snakemake job runs (scripts/refine3d_step.py); `threads` is the
job's core count, split over the step's MPI ranks.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from emproc.io.atomic import write_json_atomic
from emproc.refine3d.bfactor import BFactorParams, run_bfactor
from emproc.refine3d.relion import Compute
from emproc.refine3d.steps import (
    Class3DParams,
    Common3DParams,
    InitialModelParams,
    PostprocessParams,
    RefineParams,
    run_class3d,
    run_initial_model,
    run_postprocess,
    run_refine,
)

STEPS = ("initial_model", "class3d", "refine", "postprocess", "bfactor")


def common_params(spa3d: Mapping[str, Any], default_diameter_angstrom: float) -> Common3DParams:
    return Common3DParams(
        particle_diameter_angstrom=float(
            spa3d.get("particle_diameter_angstrom") or default_diameter_angstrom
        ),
        symmetry=str(spa3d.get("symmetry", "C1")),
        seed=int(spa3d.get("seed", 0)),
        pad=int(spa3d.get("pad", 2)),
        skip_gridding=bool(spa3d.get("skip_gridding", False)),
    )


def compute_for(spa3d: Mapping[str, Any], step: str, threads: int) -> Compute:
    """Threads per rank and ranks for `step` from the job's `threads` cores."""
    ranks = int(spa3d.get(step, {}).get("mpi_ranks", 1))
    if step == "refine":
        ranks = max(ranks, 3)
        # the leader rank mostly waits: the two half-set ranks share the cores
        per_rank = max(1, threads // 2)
    else:
        per_rank = max(1, threads // ranks)
    return Compute(threads=per_rank, mpi_ranks=ranks, nice=int(spa3d.get("nice", 0)))


def _section(spa3d: Mapping[str, Any], step: str, keys: tuple[str, ...]) -> dict[str, Any]:
    section = spa3d.get(step, {})
    return {key: section[key] for key in keys if key in section}


def run_step(
    step: str,
    inputs: Mapping[str, str],
    output_dir: str | os.PathLike[str],
    summary_path: str | os.PathLike[str],
    project_dir: str | os.PathLike[str],
    spa3d: Mapping[str, Any],
    *,
    default_diameter_angstrom: float,
    threads: int = 1,
) -> dict[str, Any]:
    """Run one 3D step and write its summary JSON. `inputs` by step:
    initial_model: particles; class3d: particles, reference; refine: particles, reference;
    postprocess: refine_summary; bfactor: refine_summary, postprocess_summary."""
    common = common_params(spa3d, default_diameter_angstrom)
    compute = compute_for(spa3d, step, threads)
    postprocess = PostprocessParams(
        **_section(spa3d, "postprocess", tuple(PostprocessParams.__dataclass_fields__))
    )
    refine = RefineParams(**_section(spa3d, "refine", tuple(RefineParams.__dataclass_fields__)))
    if step == "initial_model":
        params = InitialModelParams(
            **_section(spa3d, step, tuple(InitialModelParams.__dataclass_fields__))
        )
        summary = run_initial_model(
            inputs["particles"], output_dir, project_dir, common, params, compute
        )
    elif step == "class3d":
        params3d = Class3DParams(**_section(spa3d, step, tuple(Class3DParams.__dataclass_fields__)))
        summary = run_class3d(
            inputs["particles"], inputs["reference"], output_dir, project_dir, common, params3d,
            compute,
        )  # fmt: skip
    elif step == "refine":
        summary = run_refine(
            inputs["particles"], inputs["reference"], output_dir, project_dir, common, refine,
            compute,
        )  # fmt: skip
    elif step == "postprocess":
        refined = _read(inputs["refine_summary"])
        summary = run_postprocess(
            refined["half1_map_path"], output_dir, project_dir, postprocess,
            mask_from_map=refined["map_path"], compute=compute,
        )  # fmt: skip
        summary["number_of_particles"] = refined["number_of_particles"]
        summary["symmetry"] = refined["symmetry"]
    elif step == "bfactor":
        refined = _read(inputs["refine_summary"])
        post = _read(inputs["postprocess_summary"])
        params_b = BFactorParams(
            **_section(spa3d, step, ("method", "number_of_subsets", "min_particles")),
            seed=common.seed,
        )
        summary = run_bfactor(
            refined["data_star"], refined["map_path"], post["mask_path"], output_dir,
            project_dir, common, params_b, refine, postprocess, compute,
        )  # fmt: skip
    else:
        raise ValueError(f"unknown 3D step {step!r}: one of {', '.join(STEPS)}")
    write_json_atomic(summary_path, summary)
    return summary


def _read(path: str | os.PathLike[str]) -> dict[str, Any]:
    import json

    return json.loads(Path(path).read_text())
