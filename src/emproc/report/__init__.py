"""The session report: one self-contained HTML page with the feedback plots, and the live
latest-movies page `emproc watch` updates per movie (emproc.report.live)."""

from emproc.lazy import lazy_exports

# lazy: the live page must not import pandas and matplotlib with the full report
_EXPORTS = {"write_report": "page", "update_live_page": "live"}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
