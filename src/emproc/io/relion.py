"""RELION 3.1+ conventions shared by the STAR tables emproc writes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd


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
    motion_summary: Mapping[str, Any], metadata: Mapping[str, Any]
) -> dict[str, Any]:
    """A micrograph's columns from motion correction, as RELION's motioncorr writes them:
    rlnMicrographName is the dose-weighted sum when there is one, the plain sum NoDW."""
    return {
        "rlnMicrographName": str(
            motion_summary.get("micrograph_dw_path") or motion_summary["micrograph_path"]
        ),
        "rlnMicrographNameNoDW": str(motion_summary["micrograph_path"]),
        "rlnMicrographMetadata": str(motion_summary["shifts_star_path"]),
        "rlnOpticsGroup": optics_group_of(metadata, motion_summary),
        "rlnAccumMotionTotal": float(motion_summary["total_motion_angstrom"]),
        "rlnAccumMotionEarly": float(motion_summary["early_motion_angstrom"]),
        "rlnAccumMotionLate": float(motion_summary["late_motion_angstrom"]),
    }
