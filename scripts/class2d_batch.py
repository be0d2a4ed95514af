"""Snakemake adapter: one batch of particles -> Class2D/batch_{n}/ outputs."""

from pathlib import Path

from emproc.classify.run import classify_batch_files
from emproc.scripting import step_logging

with step_logging(snakemake.log[0], "class2d"):
    classify_batch_files(
        snakemake.params.members,
        batch_number=int(snakemake.wildcards.batch),
        output_dir=Path(snakemake.output.summary).parent,
        project_dir=snakemake.params.project_dir,
        class2d=snakemake.params.class2d,
        phase_flipped=bool(snakemake.params.phase_flipped),
        workers=snakemake.threads,
    )
