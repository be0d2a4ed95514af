"""Reading micrographs and writing picking outputs (coordinate STAR, summary JSON, snapshot)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from emproc.io.atomic import atomic_path
from emproc.io.micrograph import MicrographReadError
from emproc.io.micrograph import read_micrograph as read_micrograph_with_header
from emproc.picking.log_picker import PICK_COLUMNS, fourier_bin


class CoordinateFileError(ValueError):
    """A coordinate STAR file is missing, unreadable or lacks rlnCoordinateX/Y."""


def read_micrograph(path: str | os.PathLike[str]) -> tuple[np.ndarray, float]:
    """2D float32 image [y, x] and pixel size (Angstrom) from an MRC micrograph."""
    data, pixel_size = read_micrograph_with_header(path)
    if pixel_size is None:
        raise MicrographReadError(f"micrograph {path}: pixel size missing from the MRC header")
    return data, pixel_size


def write_coordinate_star(path: str | os.PathLike[str], picks: pd.DataFrame) -> None:
    """RELION coordinate STAR (rlnCoordinateX/Y in micrograph pixels, figure of merit)."""
    table = pd.DataFrame(
        {
            "rlnCoordinateX": picks["x_px"].to_numpy(dtype=float),
            "rlnCoordinateY": picks["y_px"].to_numpy(dtype=float),
            "rlnAutopickFigureOfMerit": picks["score_sigma"].to_numpy(dtype=float),
        }
    )
    with atomic_path(path) as temporary:
        starfile.write({"": table}, temporary)


def read_coordinate_star(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Picks from a RELION coordinate STAR (columns as `PICK_COLUMNS`, missing ones filled)."""
    path = Path(path)
    if not path.is_file():
        raise CoordinateFileError(f"{path}: coordinate file not found")
    try:
        table = starfile.read(path, always_dict=True)
    except Exception as error:  # starfile raises assorted parser errors
        raise CoordinateFileError(f"{path}: unreadable STAR file ({error})") from error
    blocks = [block for block in table.values() if isinstance(block, pd.DataFrame)]
    if not blocks:
        # an empty coordinate file is legitimate: no particles on this micrograph
        return pd.DataFrame({name: pd.Series(dtype=float) for name in PICK_COLUMNS})
    block = blocks[0]
    if not {"rlnCoordinateX", "rlnCoordinateY"} <= set(block.columns):
        raise CoordinateFileError(f"{path}: no rlnCoordinateX/rlnCoordinateY columns")
    return pd.DataFrame(
        {
            "x_px": block["rlnCoordinateX"].to_numpy(dtype=float),
            "y_px": block["rlnCoordinateY"].to_numpy(dtype=float),
            "score_sigma": block.get(
                "rlnAutopickFigureOfMerit", pd.Series(np.nan, index=block.index)
            ).to_numpy(dtype=float),
            "diameter_angstrom": np.nan,
        },
        columns=list(PICK_COLUMNS),
    )


def write_pick_snapshot(
    path: str | os.PathLike[str],
    micrograph: np.ndarray,
    picks: pd.DataFrame,
    diameter_px: float,
    max_size_px: int = 1024,
) -> None:
    """JPEG of the (binned, contrast-stretched) micrograph with a circle on every pick."""
    # imported here: extraction reads coordinates from this module and draws nothing
    from matplotlib.collections import EllipseCollection
    from matplotlib.figure import Figure

    factor = max(max(micrograph.shape) / max_size_px, 1.0)
    small, factor = fourier_bin(micrograph, factor)
    low, high = np.percentile(small, [1.0, 99.0])
    figure = Figure(figsize=(small.shape[1] / 100.0, small.shape[0] / 100.0), dpi=100)
    axes = figure.add_axes((0.0, 0.0, 1.0, 1.0))
    axes.imshow(small, cmap="gray", vmin=low, vmax=high, interpolation="nearest")
    if len(picks):
        size = diameter_px / factor
        axes.add_collection(
            EllipseCollection(
                size,
                size,
                0.0,
                units="xy",
                offsets=np.column_stack([picks["x_px"], picks["y_px"]]) / factor,
                offset_transform=axes.transData,
                facecolors="none",
                edgecolors="lime",
                linewidths=1.0,
            )
        )
    axes.set_xlim(-0.5, small.shape[1] - 0.5)
    axes.set_ylim(small.shape[0] - 0.5, -0.5)
    axes.set_axis_off()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="jpeg", pil_kwargs={"quality": 85})
