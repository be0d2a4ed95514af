"""The session report: one self-contained HTML page with the feedback plots."""

from emproc.report.page import write_report

__all__ = ["write_report"]
