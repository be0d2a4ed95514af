"""Snakemake adapter: CTF chunk manifests -> micrographs_ctf.star (movies that succeeded)."""

from pathlib import Path

from emproc.chunks import movie_files, succeeded_movies
from emproc.ctf import load_json, write_micrographs_ctf_star
from emproc.failures import require_movies
from emproc.scripting import script_step

with script_step(snakemake.log[0], "aggregate_ctf"):
    output_dir = Path(snakemake.output.star).parent
    movies = require_movies(
        succeeded_movies(snakemake.input.manifests), output_dir, "CTF estimation"
    )
    write_micrographs_ctf_star(
        [load_json(path) for path in movie_files(output_dir, movies, "ctf", "summary")],
        [load_json(path) for path in movie_files(output_dir, movies, "motion", "summary")],
        [load_json(path) for path in movie_files(output_dir, movies, "import", "metadata")],
        snakemake.output.star,
    )
