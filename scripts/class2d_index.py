"""Snakemake adapter: per-batch summaries -> Class2D/class2d_batches.json (list of summaries)."""

from emproc.classify.batches import write_summary_index
from emproc.scripting import step_logging

with step_logging(snakemake.log[0], "class2d_index"):
    write_summary_index(snakemake.input.summaries, snakemake.output.index)
