"""Gain references and defect maps: load, orient to the movie, repair defective pixels.

Orientation convention (MotionCor2's -RotGain/-FlipGain): the file is rotated by
`rotation_deg` counter-clockwise *as displayed with the origin at the lower left*
(IMOD/MRC view, y up), then flipped. In array terms, 90 deg CCW with y up is
`numpy.rot90(gain, k=-1)`. `flip="x"` mirrors left-right (reverses x), `flip="y"`
mirrors up-down (reverses y). The gain multiplies the raw frame: corrected = raw * gain.
"""

from __future__ import annotations

import os
from pathlib import Path

import mrcfile
import numpy as np
import tifffile

from emproc.io.movie import MRC_SUFFIXES, TIFF_SUFFIXES


class GainError(ValueError):
    """A gain reference or defect map is unusable; the message names the file."""


def _read_image(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} does not exist")
    if path.stat().st_size == 0:
        raise GainError(f"{path}: {what} file is empty")
    suffix = path.suffix.lower()
    try:
        if suffix in MRC_SUFFIXES:
            with mrcfile.open(path, mode="r", permissive=False) as mrc:
                image = np.array(mrc.data)
        elif suffix in TIFF_SUFFIXES:
            image = tifffile.imread(path)
        else:
            raise GainError(f"{path}: unknown {what} format {suffix!r} (expected MRC or TIFF)")
    except GainError:
        raise
    except (ValueError, OSError, RuntimeError) as error:
        raise GainError(f"{path}: corrupt {what} ({error})") from error
    image = np.squeeze(image)
    if image.ndim != 2:
        raise GainError(f"{path}: {what} must be a single 2D image, got shape {image.shape}")
    return image


def orient_to_movie(image: np.ndarray, rotation_deg: int = 0, flip: str = "none") -> np.ndarray:
    """Rotate (CCW, y up) then flip a detector-sized image into movie orientation."""
    if rotation_deg not in (0, 90, 180, 270):
        raise GainError(f"gain rotation must be 0, 90, 180 or 270 degrees, got {rotation_deg}")
    if flip not in ("none", "x", "y"):
        raise GainError(f"gain flip must be 'none', 'x' or 'y', got {flip!r}")
    oriented = np.rot90(image, k=-(rotation_deg // 90))
    if flip == "x":
        oriented = oriented[:, ::-1]
    elif flip == "y":
        oriented = oriented[::-1, :]
    return np.ascontiguousarray(oriented)


def _check_shape(path: Path, what: str, shape: tuple[int, ...], expected) -> None:
    if expected is not None and tuple(shape) != tuple(expected):
        raise GainError(
            f"{path}: {what} has shape {tuple(shape)} after rotation/flip, "
            f"the movie frames are {tuple(expected)}"
        )


def load_gain_reference(
    path: str | os.PathLike[str],
    *,
    rotation_deg: int = 0,
    flip: str = "none",
    expected_shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """The multiplicative gain (float32) in movie orientation; raw * gain = corrected."""
    path = Path(path)
    gain = orient_to_movie(_read_image(path, "gain reference"), rotation_deg, flip)
    _check_shape(path, "gain reference", gain.shape, expected_shape)
    gain = gain.astype(np.float32)
    if not np.isfinite(gain).all():
        raise GainError(f"{path}: gain reference contains NaN or infinite values")
    if not (gain > 0).any():
        raise GainError(f"{path}: gain reference has no positive value")
    return gain


def load_defect_map(
    path: str | os.PathLike[str],
    *,
    rotation_deg: int = 0,
    flip: str = "none",
    expected_shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """Boolean defect mask in movie orientation (non-zero in the file = defective)."""
    path = Path(path)
    defects = orient_to_movie(_read_image(path, "defect map"), rotation_deg, flip) != 0
    _check_shape(path, "defect map", defects.shape, expected_shape)
    return defects


class DefectRepair:
    """Replaces defective pixels by the mean of good pixels in a small neighbourhood.

    The neighbour indices are worked out once per movie; each frame then costs one
    gather over the defective pixels only. Pixels with no good neighbour within
    `radius` get the frame mean.
    """

    def __init__(self, defect_mask: np.ndarray, radius: int = 2) -> None:
        mask = np.asarray(defect_mask, dtype=bool)
        ny, nx = mask.shape
        self.defect_index = np.flatnonzero(mask)
        ys, xs = np.divmod(self.defect_index, nx)
        offsets = np.arange(-radius, radius + 1)
        dy, dx = np.meshgrid(offsets, offsets, indexing="ij")
        keep = (dy != 0) | (dx != 0)
        ny_idx = np.clip(ys[:, None] + dy[keep][None, :], 0, ny - 1)
        nx_idx = np.clip(xs[:, None] + dx[keep][None, :], 0, nx - 1)
        self.neighbour_index = ny_idx * nx + nx_idx
        self.neighbour_weight = (~mask.ravel()[self.neighbour_index]).astype(np.float32)
        self.weight_sum = self.neighbour_weight.sum(axis=1)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """Repair `frame` (float, modified in place) and return it."""
        if self.defect_index.size == 0:
            return frame
        flat = frame.reshape(-1)
        values = flat[self.neighbour_index] * self.neighbour_weight
        with np.errstate(invalid="ignore", divide="ignore"):
            local_mean = values.sum(axis=1) / self.weight_sum
        isolated = self.weight_sum == 0
        if isolated.any():
            good = np.ones(flat.size, dtype=bool)
            good[self.defect_index] = False
            local_mean[isolated] = flat[good].mean() if good.any() else 0.0
        flat[self.defect_index] = local_mean
        return frame
