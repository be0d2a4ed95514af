"""Snakemake adapter: the 2D batches' selected particles -> Select/particles_selected.star."""

from emproc.refine3d.selection import merge_selected_particles
from emproc.scripting import step_logging

with step_logging(snakemake.log[0], "select_particles_3d"):
    merge_selected_particles(
        snakemake.input.selected,
        snakemake.output.star,
        snakemake.output.summary,
        snakemake.params.min_particles,
    )
