"""Snakemake adapter: extraction chunk manifests -> particles.star; picks -> coordinates.csv."""

from pathlib import Path

from emproc.chunks import movie_files, succeeded_movies
from emproc.extract.aggregate import aggregate_particles
from emproc.failures import require_movies
from emproc.scripting import script_step

with script_step(snakemake.log[0], "aggregate_particles"):
    output_dir = Path(snakemake.output.particles).parent
    movies = require_movies(
        succeeded_movies(snakemake.input.manifests), output_dir, "particle extraction"
    )
    aggregate_particles(
        movie_files(output_dir, movies, "extract", "star"),
        movie_files(output_dir, movies, "pick", "summary"),
        particles_path=snakemake.output.particles,
        coordinates_path=snakemake.output.coordinates,
    )
