"""emproc.picking: template-free particle picking (LoG) and the optional crYOLO backend."""

from emproc.picking.log_picker import LogPickerParams, PickingError, pick_log
from emproc.picking.run import pick_micrograph_file

__all__ = ["LogPickerParams", "PickingError", "pick_log", "pick_micrograph_file"]
