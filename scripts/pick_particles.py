"""Snakemake adapter: dose-weighted micrograph -> Picking/{movie}.star, _picks.json, _picks.jpg."""

from emproc.picking.run import pick_micrograph_file
from emproc.scripting import step_logging

with step_logging(snakemake.log[0], "pick"):
    pick_micrograph_file(
        snakemake.input.micrograph,
        movie_name=snakemake.wildcards.movie,
        star_path=snakemake.output.star,
        summary_path=snakemake.output.summary,
        snapshot_path=snakemake.output.snapshot,
        picking=snakemake.params.picking,
        workers=snakemake.threads,
    )
