"""emproc.extract: particle boxes from micrographs and RELION 3.1 particle STAR files."""

from emproc.extract.boxes import CtfParameters, ExtractionError, ExtractionParams, extract_boxes
from emproc.extract.run import extract_micrograph_file
from emproc.extract.star import merge_particle_stars, read_particle_star, write_particle_star

__all__ = [
    "CtfParameters",
    "ExtractionError",
    "ExtractionParams",
    "extract_boxes",
    "extract_micrograph_file",
    "merge_particle_stars",
    "read_particle_star",
    "write_particle_star",
]
