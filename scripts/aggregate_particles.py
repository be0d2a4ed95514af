"""Snakemake adapter: extraction chunk manifests -> particles.star; picks -> coordinates.csv."""

from pathlib import Path

from emproc.chunks import movie_files, succeeded_movies
from emproc.extract.aggregate import aggregate_particles
from emproc.scripting import step_logging

with step_logging(snakemake.log[0], "aggregate_particles"):
    output_dir = Path(snakemake.output.particles).parent
    movies = succeeded_movies(snakemake.input.manifests)
    aggregate_particles(
        movie_files(output_dir, movies, "extract", "star"),
        movie_files(output_dir, movies, "pick", "summary"),
        particles_path=snakemake.output.particles,
        coordinates_path=snakemake.output.coordinates,
    )
