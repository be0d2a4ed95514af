"""Snakemake adapter: ingest the output directory into ISPyB (new/changed units only)."""

from pathlib import Path

from emproc.chunks import failures_by_stage, succeeded_movies
from emproc.ispyb.ingest import ingest_output_dir
from emproc.ispyb.state import record_database_identity
from emproc.scripting import script_step

with script_step(snakemake.log[0], "ispyb_ingest"):
    manifests = [*snakemake.input.imports, *snakemake.input.motion, *snakemake.input.ctf]
    ingest_output_dir(
        Path(snakemake.output.state).parents[1],  # OUTDIR/ISPyB/ingest_state.json
        snakemake.params.config,
        # a movie reaches ISPyB with its motion correction and CTF; failures are noted per stage
        movies=succeeded_movies(snakemake.input.ctf),
        failures=failures_by_stage(manifests),
    )
    record_database_identity(snakemake.output.database)
