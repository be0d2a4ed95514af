"""Snakemake adapter: extraction summaries -> Class2D/batches.json (frozen full batches kept)."""

from emproc.classify.batches import update_batch_manifest
from emproc.scripting import step_logging

with step_logging(snakemake.log[0], "class2d_batches"):
    update_batch_manifest(
        snakemake.input.summaries,
        snakemake.output.manifest,
        snakemake.params.history,
        int(snakemake.params.batch_size),
    )
