"""Snakemake adapter: movie + Import JSON -> MotionCorr/{movie} sums, shifts, summary, plots."""

import json

from emproc.motion import motion_correct_movie
from emproc.scripting import step_logging

with step_logging(
    snakemake.log[0] if snakemake.log else None,
    "motion",
    getattr(snakemake.params, "failure_record", None),
):
    with open(snakemake.input.metadata) as handle:
        metadata = json.load(handle)
    # the staged copies (remote storage) of the detector references, where configured
    for key, role in (("gain_reference", "gain"), ("defect_map", "defects")):
        if role in snakemake.input.keys():
            metadata[key] = snakemake.input[role]
    motion_correct_movie(
        snakemake.input.movie,
        metadata,
        dict(snakemake.params.motion),
        {
            "micrograph": snakemake.output.micrograph,
            "micrograph_dw": snakemake.output.micrograph_dw,
            "shifts_star": snakemake.output.shifts_star,
            "shifts_csv": snakemake.output.shifts_csv,
            "summary": snakemake.output.summary,
            "snapshot": snakemake.output.snapshot,
            "drift_plot": snakemake.output.drift_plot,
        },
        threads=snakemake.threads,
    )
