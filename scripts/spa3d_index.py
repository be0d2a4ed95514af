"""Snakemake adapter: the 3D steps' summaries -> spa3d.json (what ran, where its JSON is)."""

from emproc.refine3d.index import write_spa3d_index
from emproc.scripting import step_logging

with step_logging(snakemake.log[0], "spa3d_index"):
    summaries = {name: path for name, path in snakemake.input.items() if name != "selection"}
    write_spa3d_index(snakemake.input.selection, summaries, snakemake.output.index)
