"""Snakemake adapter: ingest the output directory into ISPyB (new/changed units only)."""

import logging
from pathlib import Path

from emproc.chunks import failures_by_stage, succeeded_movies
from emproc.ispyb.ingest import ingest_output_dir

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)
manifests = [*snakemake.input.imports, *snakemake.input.motion, *snakemake.input.ctf]
ingest_output_dir(
    Path(snakemake.output.state).parents[1],  # OUTDIR/ISPyB/ingest_state.json
    snakemake.params.config,
    # a movie reaches ISPyB with its motion correction and CTF; failures are noted per stage
    movies=succeeded_movies(snakemake.input.ctf),
    failures=failures_by_stage(manifests),
)
