"""Snakemake adapter: per-tilt-series summaries -> session tomogram table (CSV)."""

from emproc.scripting import step_logging
from emproc.tomo.pipeline import aggregate_tomograms

with step_logging(snakemake.log[0], "tomo_table"):
    aggregate_tomograms(list(snakemake.input.summaries), snakemake.output.table)
