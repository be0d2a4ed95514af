"""emproc.extract: particle boxes from micrographs and RELION 3.1 particle STAR files."""

from emproc.lazy import lazy_exports

_EXPORTS = {
    "CtfParameters": "boxes",
    "ExtractionError": "boxes",
    "ExtractionParams": "boxes",
    "extract_boxes": "boxes",
    "extract_micrograph_file": "run",
    "merge_particle_stars": "star",
    "read_particle_star": "star",
    "write_particle_star": "star",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
