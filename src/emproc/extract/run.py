"""File-level extraction: dose-weighted micrograph + picks + CTF -> particle stack and STAR."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np
import pandas as pd

from emproc.extract.boxes import CtfParameters, ExtractionParams, extract_boxes
from emproc.extract.star import OPTICS_COLUMNS, PARTICLE_COLUMNS, write_particle_star
from emproc.io.atomic import atomic_path, write_json_atomic
from emproc.io.relion import relative_to
from emproc.picking.io import read_coordinate_star, read_micrograph

logger = logging.getLogger(__name__)


class ExtractionInputError(ValueError):
    """A JSON input (CTF or import metadata) is missing or lacks a needed key."""


def _read_json(path: str | os.PathLike[str], keys: tuple[str, ...]) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise ExtractionInputError(f"{path}: not found") from error
    except json.JSONDecodeError as error:
        raise ExtractionInputError(f"{path}: not valid JSON ({error})") from error
    missing = [key for key in keys if key not in data]
    if missing:
        raise ExtractionInputError(f"{path}: missing keys {missing}")
    return data


def extraction_params_from_config(extraction: Mapping[str, Any]) -> ExtractionParams:
    defaults = ExtractionParams()
    return ExtractionParams(
        box_size_px=int(extraction.get("box_size_px", defaults.box_size_px)),
        downscale_size_px=int(extraction.get("downscale_size_px", defaults.downscale_size_px)),
        bg_radius_px=float(extraction.get("bg_radius_px", defaults.bg_radius_px)),
        phase_flip=bool(extraction.get("phase_flip", defaults.phase_flip)),
    )


def write_stack(
    path: str | os.PathLike[str], stack: np.ndarray, pixel_size_angstrom: float
) -> None:
    with atomic_path(path) as temporary:
        with mrcfile.new(temporary, overwrite=True) as mrc:
            mrc.set_data(np.ascontiguousarray(stack, dtype=np.float32))
            mrc.set_image_stack()
            mrc.voxel_size = pixel_size_angstrom


def extract_micrograph_file(
    micrograph_path: str | os.PathLike[str],
    coordinates_star_path: str | os.PathLike[str],
    ctf_json_path: str | os.PathLike[str],
    import_json_path: str | os.PathLike[str],
    *,
    stack_path: str | os.PathLike[str],
    star_path: str | os.PathLike[str],
    summary_path: str | os.PathLike[str],
    movie_name: str,
    project_dir: str | os.PathLike[str],
    extraction: Mapping[str, Any],
    workers: int = 1,
) -> dict[str, Any]:
    """Extract one micrograph's picks; write the `.mrcs` stack, a RELION 3.1 STAR and a summary.

    Picks whose box leaves the micrograph are dropped. Paths in the STAR are relative to
    `project_dir` (the output directory). The summary JSON (returned) carries what the
    class2d batch manifest needs: movie_name, timestamp (acquisition, from the import
    metadata), number_of_particles, star_path, stack_path, image_pixel_size_angstrom,
    image_size_px, number_of_picks.
    """
    micrograph, pixel_size = read_micrograph(micrograph_path)
    picks = read_coordinate_star(coordinates_star_path)
    ctf_summary = _read_json(
        ctf_json_path,
        ("defocus_u_angstrom", "defocus_v_angstrom", "astigmatism_angle_deg"),
    )
    metadata = _read_json(
        import_json_path, ("voltage_kv", "spherical_aberration_mm", "amplitude_contrast")
    )
    ctf = CtfParameters(
        defocus_u_angstrom=float(ctf_summary["defocus_u_angstrom"]),
        defocus_v_angstrom=float(ctf_summary["defocus_v_angstrom"]),
        astigmatism_angle_deg=float(ctf_summary["astigmatism_angle_deg"]),
        voltage_kv=float(metadata["voltage_kv"]),
        spherical_aberration_mm=float(metadata["spherical_aberration_mm"]),
        amplitude_contrast=float(metadata["amplitude_contrast"]),
        phase_shift_deg=float(ctf_summary.get("phase_shift_deg") or 0.0),
    )
    params = extraction_params_from_config(extraction)
    coordinates = picks[["x_px", "y_px"]].to_numpy(dtype=float)
    stack, kept = extract_boxes(micrograph, coordinates, pixel_size, params, ctf, workers)
    image_pixel_size = pixel_size * params.box_size_px / params.downscale_size_px
    write_stack(stack_path, stack, image_pixel_size)

    optics_group = int(metadata.get("optics_group") or 1)
    optics = pd.DataFrame(
        [
            [
                optics_group,
                str(metadata.get("optics_group_name") or f"opticsGroup{optics_group}"),
                ctf.amplitude_contrast,
                ctf.spherical_aberration_mm,
                ctf.voltage_kv,
                image_pixel_size,
                pixel_size,
                params.downscale_size_px,
                2,
            ]
        ],
        columns=list(OPTICS_COLUMNS),
    )
    stack_name = relative_to(stack_path, project_dir)
    count = len(kept)
    particles = pd.DataFrame(
        {
            "rlnCoordinateX": coordinates[kept, 0],
            "rlnCoordinateY": coordinates[kept, 1],
            "rlnImageName": [f"{index:06d}@{stack_name}" for index in range(1, count + 1)],
            "rlnMicrographName": [relative_to(micrograph_path, project_dir)] * count,
            "rlnOpticsGroup": [optics_group] * count,
            "rlnDefocusU": [ctf.defocus_u_angstrom] * count,
            "rlnDefocusV": [ctf.defocus_v_angstrom] * count,
            "rlnDefocusAngle": [ctf.astigmatism_angle_deg] * count,
            "rlnPhaseShift": [ctf.phase_shift_deg] * count,
            "rlnCtfBfactor": [0.0] * count,
            "rlnAutopickFigureOfMerit": picks["score_sigma"].to_numpy(dtype=float)[kept],
        },
        columns=list(PARTICLE_COLUMNS),
    )
    write_particle_star(star_path, optics, particles)
    summary = {
        "movie_name": movie_name,
        "timestamp": metadata.get("timestamp"),
        "number_of_particles": count,
        "number_of_picks": int(len(picks)),
        "star_path": str(Path(star_path).resolve()),
        "stack_path": str(Path(stack_path).resolve()),
        "image_pixel_size_angstrom": image_pixel_size,
        "image_size_px": params.downscale_size_px,
    }
    write_json_atomic(summary_path, summary)
    logger.info(
        "%s: %d of %d picks extracted (%d dropped at the edges)",
        micrograph_path,
        count,
        len(picks),
        len(picks) - count,
    )
    return summary
