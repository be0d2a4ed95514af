"""Snakemake adapter: per-movie _motion.json + Import JSON -> corrected_micrographs.star."""

import json

from emproc.motion import write_corrected_micrographs_star
from emproc.scripting import step_logging


def _load(path):
    with open(path) as handle:
        return json.load(handle)


with step_logging(snakemake.log[0] if snakemake.log else None, "aggregate_motion"):
    write_corrected_micrographs_star(
        [_load(path) for path in snakemake.input.summaries],
        [_load(path) for path in snakemake.input.metadata],
        snakemake.output.star,
    )
