"""The denoised tomogram of one tilt series: its half tomograms, the fitted filter, and the
files PATo shows (Diamond's names: `{stem}.denoised.mrc`, `{stem}.denoised_thumbnail.jpeg`,
`{stem}.denoised_movie.png` next to the tomogram `{stem}.mrc`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import mrcfile
import numpy as np
from PIL import Image

from emproc.io.atomic import atomic_path
from emproc.tomo.denoise import DenoiseParams, denoise_tomogram
from emproc.tomo.reconstruct import ReconstructionParams, reconstruct_tomogram

LOG = logging.getLogger(__name__)

HALVES = ("frames", "tilts")
THUMBNAIL_PX = 512  # PATo's images: at most 512 px on a side, as cryoemservices writes them


def denoised_paths(tomogram_path: str | Path) -> dict[str, Path]:
    """Where the denoised tomogram and its images go, by cryoemservices' convention (PATo
    finds the images by replacing `.mrc` of the ProcessedTomogram's filePath)."""
    path = Path(tomogram_path)
    stem = path.with_suffix("")
    return {
        "denoised_tomogram_path": Path(f"{stem}.denoised.mrc"),
        "denoised_thumbnail_path": Path(f"{stem}.denoised_thumbnail.jpeg"),
        "denoised_movie_path": Path(f"{stem}.denoised_movie.png"),
    }


def half_tomograms(
    halves: str,
    aligned: np.ndarray,
    angles_deg: np.ndarray,
    reconstruction: ReconstructionParams,
    align_frame_halves: Callable[[], tuple[np.ndarray, np.ndarray]] | None,
) -> tuple[np.ndarray, np.ndarray, str]:
    """Even and odd half tomograms [z, y, x] and which halves they are.

    `halves` "frames": the even-frame and odd-frame stacks, aligned by
    `align_frame_halves()` (None when the movies have no halves: single frames), else
    "tilts": every other tilt of the aligned full stack `aligned` [tilt, y, x]. Each half is
    on the full tomogram's scale (a contrast tomogram, the full one is their mean).
    """
    if halves not in HALVES:
        raise ValueError(f"unknown denoising halves {halves!r} ({' | '.join(HALVES)})")
    if halves == "frames" and align_frame_halves is not None:
        even_stack, odd_stack = align_frame_halves()
        angles = (angles_deg, angles_deg)
        used = "frames"
    else:
        even_stack, odd_stack = aligned[0::2], aligned[1::2]
        angles = (angles_deg[0::2], angles_deg[1::2])
        used = "tilts"
    even = reconstruct_tomogram(even_stack, angles[0], reconstruction)
    odd = reconstruct_tomogram(odd_stack, angles[1], reconstruction)
    return even, odd, used


def write_denoised_tomogram(
    tomogram_path: Path,
    even: np.ndarray,
    odd: np.ndarray,
    params: DenoiseParams,
    voxel_size_angstrom: float,
) -> dict:
    """Denoise the tomogram at `tomogram_path` with the filter fitted on its halves; write
    the denoised MRC, its central-slice thumbnail and its slice movie; return the summary
    keys (paths, method, fit report, seconds)."""
    start = time.perf_counter()
    paths = denoised_paths(tomogram_path)
    with mrcfile.open(tomogram_path, permissive=False) as mrc:
        tomogram = np.array(mrc.data, dtype=np.float32)
    denoised, report = denoise_tomogram(tomogram, even, odd, params)
    del tomogram
    with atomic_path(paths["denoised_tomogram_path"]) as temporary:
        with mrcfile.new(temporary, overwrite=True) as mrc:
            mrc.set_data(denoised)
            mrc.voxel_size = voxel_size_angstrom
    write_central_slice_thumbnail(denoised, paths["denoised_thumbnail_path"])
    write_slice_movie(denoised, paths["denoised_movie_path"])
    return {
        **{key: str(path) for key, path in paths.items()},
        **{f"denoise_{key}": value for key, value in asdict(report).items()},
        "denoise_spectral_smoothing_px": params.spectral_smoothing_px,
        "denoise_seconds": time.perf_counter() - start,
    }


def _to_8bit(image: np.ndarray) -> Image.Image:
    """+-3 SD of the image to 0-255, dense matter dark (the tomogram has it positive), at
    most `THUMBNAIL_PX` on a side, y up as the raw tomogram's snapshots (`outputs.py`, origin
    lower) so that PATo's raw/denoised switch shows the same orientation."""
    mean, sd = float(image.mean()), float(image.std()) or 1.0
    scaled = np.clip((mean + 3 * sd - image[::-1]) / (6 * sd), 0.0, 1.0)
    picture = Image.fromarray((scaled * 255).astype(np.uint8))
    picture.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    return picture


def write_central_slice_thumbnail(volume: np.ndarray, path: Path) -> None:
    """The central z slice of a [z, y, x] tomogram as JPEG (PATo's `_thumbnail.jpeg`)."""
    with atomic_path(path) as temporary:
        _to_8bit(volume[volume.shape[0] // 2]).save(temporary, format="JPEG")


def write_slice_movie(volume: np.ndarray, path: Path) -> None:
    """Every z slice of a [z, y, x] tomogram as an animated PNG (PATo's `_movie.png`)."""
    frames = [_to_8bit(plane) for plane in volume]
    with atomic_path(path) as temporary:
        frames[0].save(temporary, format="PNG", save_all=True, append_images=frames[1:])
