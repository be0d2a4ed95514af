"""Snakemake adapter: motion chunk manifests -> corrected_micrographs.star (movies that succeeded)."""

from pathlib import Path

from emproc.chunks import movie_files, succeeded_movies
from emproc.ctf import load_json
from emproc.failures import require_movies
from emproc.motion import write_corrected_micrographs_star
from emproc.scripting import script_step

with script_step(snakemake.log[0], "aggregate_motion"):
    output_dir = Path(snakemake.output.star).parent
    movies = require_movies(
        succeeded_movies(snakemake.input.manifests), output_dir, "motion correction"
    )
    write_corrected_micrographs_star(
        [load_json(path) for path in movie_files(output_dir, movies, "motion", "summary")],
        [load_json(path) for path in movie_files(output_dir, movies, "import", "metadata")],
        snakemake.output.star,
    )
