"""emproc.picking: template-free particle picking (LoG) and the optional crYOLO backend."""

from emproc.lazy import lazy_exports

_EXPORTS = {
    "LogPickerParams": "log_picker",
    "PickingError": "log_picker",
    "pick_log": "log_picker",
    "pick_micrograph_file": "run",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
