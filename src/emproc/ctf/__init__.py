"""Contrast transfer function: the model (shared with the simulator) and its estimation."""

from emproc.lazy import lazy_exports

_EXPORTS = {
    "CtfParameterError": "errors",
    "CtfResult": "estimate",
    "MicrographReadError": "errors",
    "estimate_ctf": "estimate",
    "estimate_ctf_for_micrograph": "estimate",
    "load_json": "errors",
    "write_micrographs_ctf_star": "star",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
