"""Snakemake adapter: extraction chunk manifests -> Class2D/batches.json (full batches frozen)."""

from pathlib import Path

from emproc.chunks import movie_files, succeeded_movies
from emproc.classify.batches import update_batch_manifest
from emproc.scripting import step_logging

with step_logging(snakemake.log[0], "class2d_batches"):
    movies = succeeded_movies(snakemake.input.manifests)
    update_batch_manifest(
        movie_files(Path(snakemake.output.manifest).parents[1], movies, "extract", "summary"),
        snakemake.output.manifest,
        snakemake.params.history,
        int(snakemake.params.batch_size),
    )
