"""Snakemake adapter: MotionCorr/{movie}.mrc + Import JSON -> CtfFind/{movie}.txt, _ctf.json,
_ctf.png."""

from emproc.ctf import estimate_ctf_for_micrograph, load_json
from emproc.scripting import step_logging

with step_logging(snakemake.log[0], "ctf_estimate", snakemake.params.failure_record):
    estimate_ctf_for_micrograph(
        snakemake.input.micrograph,
        load_json(snakemake.input.metadata),
        dict(snakemake.params.ctf),
        {
            "ctffind_txt": snakemake.output.ctffind_txt,
            "summary": snakemake.output.summary,
            "diagnostic": snakemake.output.diagnostic,
        },
        threads=snakemake.threads,
    )
