"""Snakemake adapter: tilt-series mdoc + movies -> stack, alignment, tomogram, snapshots."""

from emproc.scripting import step_logging
from emproc.tomo.pipeline import process_tilt_series

with step_logging(snakemake.log[0], "tomo"):
    process_tilt_series(
        snakemake.input.mdoc,
        snakemake.params.output_dir,
        tomo=snakemake.params.tomo,
        microscope=snakemake.params.microscope,
        ctf=snakemake.params.ctf,
        motion=snakemake.params.motion,
    )
