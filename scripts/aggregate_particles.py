"""Snakemake adapter: per-movie particle STARs -> particles.star; picks -> coordinates.csv."""

from emproc.extract.aggregate import aggregate_particles
from emproc.scripting import step_logging

with step_logging(snakemake.log[0], "aggregate_particles"):
    aggregate_particles(
        snakemake.input.particle_stars,
        snakemake.input.pick_summaries,
        particles_path=snakemake.output.particles,
        coordinates_path=snakemake.output.coordinates,
    )
