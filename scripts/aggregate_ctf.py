"""Snakemake adapter: every _ctf.json, _motion.json and Import JSON -> micrographs_ctf.star."""

from emproc.ctf import load_json, write_micrographs_ctf_star
from emproc.scripting import step_logging

with step_logging(snakemake.log[0] if snakemake.log else None, "aggregate_ctf"):
    write_micrographs_ctf_star(
        [load_json(path) for path in snakemake.input.summaries],
        [load_json(path) for path in snakemake.input.motion_summaries],
        [load_json(path) for path in snakemake.input.metadata],
        snakemake.output.star,
    )
