"""Snakemake adapter: one SPA stage for one chunk of movies -> Chunks/{chunk}/{stage}.json.

Import works on the chunk's members; later stages on the movies that succeeded upstream.
"""

import logging
from pathlib import Path

from emproc.chunks import run_chunk_stage, stage_members
from emproc.movie_stages import StageContext, stage_step

logging.basicConfig(
    filename=snakemake.log[0],
    level=logging.INFO,
    format="%(asctime)s %(levelname)s %(name)s: %(message)s",
)
stage = snakemake.params.stage
chunk_movies = list(getattr(snakemake.params, "members", []))
movie_inputs = list(snakemake.input.movies) if "movies" in snakemake.input.keys() else []
epu_inputs = list(snakemake.input.epu_xml) if "epu_xml" in snakemake.input.keys() else []
context = StageContext(
    # OUTDIR/Chunks/<chunk>/<stage>.json: per-movie files go under the same OUTDIR
    output_dir=Path(snakemake.output.manifest).parents[2],
    config=snakemake.config,
    # the (possibly staged) input paths, paired with the members they were listed for
    movie_files=dict(zip(chunk_movies, movie_inputs, strict=True)),
    epu_files=dict(zip(getattr(snakemake.params, "epu_members", []), epu_inputs, strict=True)),
    detector_files={
        role: snakemake.input[role]
        for role in ("gain", "defects")
        if role in snakemake.input.keys()
    },
    threads=snakemake.threads,
)
members = chunk_movies if stage == "import" else stage_members(list(snakemake.input.upstream))
run_chunk_stage(
    stage,
    snakemake.wildcards.chunk,
    members,
    context.output_dir,
    stage_step(stage, context),
    snakemake.output.manifest,
)
