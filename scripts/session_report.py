"""Snakemake adapter: output directory -> report/index.html."""

from emproc.report import write_report
from emproc.scripting import step_logging

with step_logging(snakemake.log[0], "report"):
    write_report(snakemake.params.output_dir, snakemake.output.html, snakemake.params.title)
