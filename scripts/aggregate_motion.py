"""Snakemake adapter: motion chunk manifests -> corrected_micrographs.star (movies that succeeded)."""

from pathlib import Path

from emproc.chunks import movie_files, succeeded_movies
from emproc.ctf import load_json
from emproc.motion import write_corrected_micrographs_star
from emproc.scripting import step_logging

with step_logging(snakemake.log[0], "aggregate_motion"):
    output_dir = Path(snakemake.output.star).parent
    movies = succeeded_movies(snakemake.input.manifests)
    write_corrected_micrographs_star(
        [load_json(path) for path in movie_files(output_dir, movies, "motion", "summary")],
        [load_json(path) for path in movie_files(output_dir, movies, "import", "metadata")],
        snakemake.output.star,
    )
