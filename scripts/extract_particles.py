"""Snakemake adapter: micrograph + picks + CTF -> Extract/{movie}.mrcs, .star, _extract.json."""

from emproc.extract.run import extract_micrograph_file
from emproc.scripting import step_logging

with step_logging(snakemake.log[0], "extract"):
    extract_micrograph_file(
        snakemake.input.micrograph,
        snakemake.input.coordinates,
        snakemake.input.ctf,
        snakemake.input.metadata,
        stack_path=snakemake.output.stack,
        star_path=snakemake.output.star,
        summary_path=snakemake.output.summary,
        movie_name=snakemake.wildcards.movie,
        project_dir=snakemake.params.project_dir,
        extraction=snakemake.params.extraction,
        workers=snakemake.threads,
    )
