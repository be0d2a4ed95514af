"""Contrast transfer function: the model (shared with the simulator) and its estimation."""

from emproc.ctf.estimate import (
    CtfParameterError,
    CtfResult,
    MicrographReadError,
    estimate_ctf,
    estimate_ctf_for_micrograph,
    load_json,
    write_micrographs_ctf_star,
)

__all__ = [
    "CtfParameterError",
    "CtfResult",
    "MicrographReadError",
    "estimate_ctf",
    "estimate_ctf_for_micrograph",
    "load_json",
    "write_micrographs_ctf_star",
]
