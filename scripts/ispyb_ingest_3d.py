"""Snakemake adapter: ingest the output directory into ISPyB again once the 3D steps are done."""

from pathlib import Path

from emproc.chunks import failures_by_stage, succeeded_movies
from emproc.io.atomic import write_text_atomic
from emproc.ispyb.ingest import ingest_output_dir
from emproc.scripting import script_step

with script_step(snakemake.log[0], "ispyb_ingest_3d"):
    manifests = [*snakemake.input.imports, *snakemake.input.motion, *snakemake.input.ctf]
    output_dir = Path(snakemake.output.marker).parents[1]  # OUTDIR/ISPyB/ingest_3d.json
    # the same call as ispyb_ingest: only the units whose files changed (the 3D ones) are written
    ingest_output_dir(
        output_dir,
        snakemake.params.config,
        movies=succeeded_movies(snakemake.input.ctf),
        failures=failures_by_stage(manifests),
    )
    state = output_dir / "ISPyB" / "ingest_state.json"
    write_text_atomic(snakemake.output.marker, state.read_text() if state.is_file() else "{}\n")
