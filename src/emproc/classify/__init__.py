"""emproc.classify: reference-free 2D classification of particle batches."""

from emproc.lazy import lazy_exports

_EXPORTS = {
    "Class2DParams": "class2d",
    "Class2DResult": "class2d",
    "ClassificationError": "class2d",
    "ParticleCtfs": "class2d",
    "build_batch_manifest": "batches",
    "classify_2d": "class2d",
    "classify_batch_files": "run",
    "update_batch_manifest": "batches",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
