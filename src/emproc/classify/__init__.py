"""emproc.classify: reference-free 2D classification of particle batches."""

from emproc.classify.batches import build_batch_manifest, update_batch_manifest
from emproc.classify.class2d import (
    Class2DParams,
    Class2DResult,
    ClassificationError,
    ParticleCtfs,
    classify_2d,
)
from emproc.classify.run import classify_batch_files

__all__ = [
    "Class2DParams",
    "Class2DResult",
    "ClassificationError",
    "ParticleCtfs",
    "build_batch_manifest",
    "classify_2d",
    "classify_batch_files",
    "update_batch_manifest",
]
