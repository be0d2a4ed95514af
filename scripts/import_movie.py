"""Snakemake adapter: movie + EPU metadata -> Import/{movie}.json."""

from emproc.io.atomic import write_json_atomic
from emproc.metadata import build_movie_metadata
from emproc.scripting import step_logging

with step_logging(snakemake.log[0], "import", snakemake.params.failure_record):
    metadata = build_movie_metadata(
        snakemake.input.movie,
        session_dir=snakemake.params.session_dir,
        microscope=snakemake.params.microscope,
        movie_name=snakemake.wildcards.movie,
        epu_xml=snakemake.input.epu_xml[0] if snakemake.input.epu_xml else None,
    )
    write_json_atomic(snakemake.output.metadata, metadata)
