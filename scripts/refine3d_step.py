"""Snakemake adapter: one 3D step (emproc.refine3d.pipeline) -> its directory and summary."""

from pathlib import Path

from emproc.refine3d.pipeline import run_step
from emproc.scripting import step_logging

with step_logging(snakemake.log[0], snakemake.params.step):
    run_step(
        snakemake.params.step,
        {name: str(path) for name, path in snakemake.input.items()},
        Path(snakemake.output.summary).parent,
        snakemake.output.summary,
        snakemake.params.project_dir,
        snakemake.params.spa3d,
        default_diameter_angstrom=float(snakemake.params.diameter),
        threads=snakemake.threads,
    )
