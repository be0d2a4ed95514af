"""Quick-look images of a motion-corrected movie: JPEG snapshot and drift trajectory PNG.

Uses matplotlib's object API with the Agg canvas (no pyplot state, safe in workers).
"""

from __future__ import annotations

import os

import matplotlib.image
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from emproc.io.atomic import atomic_path


def bin_image(image: np.ndarray, max_size_px: int = 1024) -> np.ndarray:
    """Block-average by the smallest integer factor that fits `max_size_px`."""
    factor = max(1, int(np.ceil(max(image.shape) / max_size_px)))
    ny, nx = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    trimmed = image[:ny, :nx].astype(np.float32, copy=False)
    return trimmed.reshape(ny // factor, factor, nx // factor, factor).mean(axis=(1, 3))


def write_snapshot(
    image: np.ndarray, path: str | os.PathLike[str], max_size_px: int = 1024
) -> None:
    """Grey-scale JPEG of the binned image, contrast from the 0.5-99.5 percentiles."""
    binned = bin_image(image, max_size_px)
    low, high = np.percentile(binned, [0.5, 99.5])
    if high <= low:
        high = low + 1.0
    with atomic_path(path) as temporary:
        matplotlib.image.imsave(
            temporary, binned, cmap="gray", vmin=low, vmax=high, pil_kwargs={"quality": 90}
        )


def write_drift_plot(
    shifts_px: np.ndarray,
    pixel_size_angstrom: float,
    path: str | os.PathLike[str],
    title: str = "",
) -> None:
    """PNG of the global drift trajectory (Angstrom), frame 1 marked."""
    drift = np.asarray(shifts_px) * pixel_size_angstrom
    figure = Figure(figsize=(4.5, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(drift[:, 0], drift[:, 1], "-o", markersize=3, color="tab:blue")
    axes.plot(drift[0, 0], drift[0, 1], "s", color="tab:red", label="frame 1")
    axes.set_xlabel("drift x (Å)")
    axes.set_ylabel("drift y (Å)")
    axes.set_aspect("equal", adjustable="datalim")
    axes.grid(True, alpha=0.3)
    axes.legend(loc="best", fontsize="small")
    if title:
        axes.set_title(title, fontsize="small")
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")
