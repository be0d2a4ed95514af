"""Feedback plots (matplotlib, Agg), returned as PNG bytes to embed in the page."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def _png(figure: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()


def _x_axis(micrographs: pd.DataFrame) -> tuple[pd.Series | np.ndarray, str]:
    if "timestamp" in micrographs and micrographs["timestamp"].notna().all():
        return micrographs["timestamp"], "acquisition time"
    return np.arange(1, len(micrographs) + 1), "movie number"


def over_time_and_histogram(
    micrographs: pd.DataFrame, column: str, label: str, *, invert: bool = False
) -> bytes | None:
    """A quantity per movie over the session, beside its histogram."""
    if column not in micrographs or micrographs[column].dropna().empty:
        return None
    values = micrographs[column].astype(float)
    x, x_label = _x_axis(micrographs)
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.2), width_ratios=[2, 1])
    left.plot(x, values, "o", markersize=3)
    left.set_xlabel(x_label)
    left.set_ylabel(label)
    if invert:  # smaller is better (resolution): better up
        left.invert_yaxis()
    figure.autofmt_xdate()
    right.hist(values.dropna(), bins=min(30, max(5, len(values) // 3)))
    right.set_xlabel(label)
    right.set_ylabel("movies")
    return _png(figure)


def drift_trajectories(shift_tables: list[Path], limit: int = 30) -> bytes | None:
    """Per-movie drift trajectories (from the shift CSVs), the last `limit` movies."""
    tables = []
    for path in shift_tables[-limit:]:
        try:
            tables.append(pd.read_csv(path))
        except (OSError, ValueError):
            continue
    if not tables:
        return None
    figure, axes = plt.subplots(figsize=(4.5, 4.5))
    for table in tables:
        x = table.filter(like="x_angstrom").iloc[:, 0]
        y = table.filter(like="y_angstrom").iloc[:, 0]
        axes.plot(x - x.iloc[0], y - y.iloc[0], "-", linewidth=0.8, alpha=0.7)
    axes.set_xlabel("drift x (A)")
    axes.set_ylabel("drift y (A)")
    axes.set_aspect("equal", adjustable="datalim")
    axes.set_title(f"drift, last {len(tables)} movies")
    return _png(figure)
