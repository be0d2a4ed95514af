"""Snakemake adapter: ingest the output directory into ISPyB (new/changed units only)."""

import logging
from pathlib import Path

from emproc.ispyb.ingest import ingest_output_dir

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)
ingest_output_dir(
    Path(snakemake.output.state).parents[1],  # OUTDIR/ISPyB/ingest_state.json
    snakemake.params.config,
    movies=snakemake.params.movies,
)
