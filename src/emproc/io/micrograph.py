"""Reading a motion-corrected micrograph (MRC), with errors that name the file."""

from __future__ import annotations

import os
from pathlib import Path

import mrcfile
import numpy as np


class MicrographReadError(OSError):
    """A micrograph file is missing, truncated, corrupt, not 2D, or not finite."""


def read_micrograph(path: str | os.PathLike[str]) -> tuple[np.ndarray, float | None]:
    """(image [y, x] float32, pixel size in Angstrom from the MRC header, or None if unset)."""
    path = Path(path)
    if not path.is_file():
        raise MicrographReadError(f"micrograph {path}: file not found")
    try:
        with mrcfile.open(path, permissive=False) as mrc:
            data = np.asarray(mrc.data, dtype=np.float32)
            voxel_x = float(mrc.voxel_size.x)
    except (ValueError, OSError, EOFError) as error:
        raise MicrographReadError(
            f"micrograph {path}: not a readable MRC file ({error})"
        ) from error
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 2:
        raise MicrographReadError(f"micrograph {path}: expected a 2D image, got shape {data.shape}")
    if not np.all(np.isfinite(data)):
        raise MicrographReadError(f"micrograph {path}: contains NaN or infinite values")
    return data, (voxel_x if voxel_x > 0 else None)
