"""RELION 3.1+ conventions shared by the STAR tables emproc writes."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd


def relative_to(path: str | os.PathLike[str], project_dir: str | os.PathLike[str]) -> str:
    """Path as RELION stores it: relative to the project directory (the output directory,
    where RELION programs run) when inside it, else absolute. Every STAR file of an output
    directory names files this way, so RELION joins particles to micrographs by
    rlnMicrographName."""
    absolute = Path(path).resolve()
    try:
        return str(absolute.relative_to(Path(project_dir).resolve()))
    except ValueError:
        return str(absolute)


class OpticsGroupError(ValueError):
    """Movies of one optics group disagree on their optics."""


def optics_group_of(metadata: Mapping[str, Any], summary: Mapping[str, Any] | None = None) -> int:
    """The movie's optics group number (Import JSON first, then a stage summary, else 1)."""
    return int(metadata.get("optics_group") or (summary or {}).get("optics_group") or 1)


def micrograph_optics_table(
    metadata: Sequence[Mapping[str, Any]],
    micrograph_pixel_sizes_angstrom: Sequence[float],
    *,
    table_path: object,
) -> pd.DataFrame:
    """The `optics` block of a micrographs STAR file: one row per optics group.

    `metadata` are Import JSON records; `micrograph_pixel_sizes_angstrom` the pixel size of
    each movie's micrograph (after any binning). Movies of one group must agree.
    """
    groups: dict[int, dict[str, Any]] = {}
    for movie, micrograph_pixel in zip(metadata, micrograph_pixel_sizes_angstrom, strict=True):
        group = optics_group_of(movie)
        row = {
            "rlnOpticsGroupName": movie.get("optics_group_name") or f"opticsGroup{group}",
            "rlnOpticsGroup": group,
            "rlnMicrographOriginalPixelSize": float(movie["pixel_size_angstrom"]),
            "rlnVoltage": float(movie["voltage_kv"]),
            "rlnSphericalAberration": float(movie["spherical_aberration_mm"]),
            "rlnAmplitudeContrast": float(movie["amplitude_contrast"]),
            "rlnMicrographPixelSize": float(micrograph_pixel),
        }
        if groups.setdefault(group, row) != row:
            raise OpticsGroupError(
                f"{table_path}: movie {movie.get('movie_name')} disagrees with optics group "
                f"{group}: {row} vs {groups[group]}"
            )
    return pd.DataFrame([groups[group] for group in sorted(groups)])


def corrected_micrograph_row(
    motion_summary: Mapping[str, Any],
    metadata: Mapping[str, Any],
    project_dir: str | os.PathLike[str],
) -> dict[str, Any]:
    """A micrograph's columns from motion correction, as RELION's motioncorr writes them:
    rlnMicrographName is the dose-weighted sum when there is one, the plain sum NoDW; paths
    relative to `project_dir` (relative_to)."""
    return {
        "rlnMicrographName": relative_to(
            motion_summary.get("micrograph_dw_path") or motion_summary["micrograph_path"],
            project_dir,
        ),
        "rlnMicrographNameNoDW": relative_to(motion_summary["micrograph_path"], project_dir),
        "rlnMicrographMetadata": relative_to(motion_summary["shifts_star_path"], project_dir),
        "rlnOpticsGroup": optics_group_of(metadata, motion_summary),
        "rlnAccumMotionTotal": float(motion_summary["total_motion_angstrom"]),
        "rlnAccumMotionEarly": float(motion_summary["early_motion_angstrom"]),
        "rlnAccumMotionLate": float(motion_summary["late_motion_angstrom"]),
    }
