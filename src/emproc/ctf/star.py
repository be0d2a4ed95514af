"""The aggregate `micrographs_ctf.star` (RELION 3.1+: optics block + micrographs block)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import pandas as pd
import starfile

from emproc.io.atomic import atomic_path


class CtfStarError(ValueError):
    """The per-micrograph summaries do not line up or disagree about an optics group."""


def write_micrographs_ctf_star(
    ctf_summaries: Sequence[dict[str, Any]],
    motion_summaries: Sequence[dict[str, Any]],
    metadata: Sequence[dict[str, Any]],
    path: str | os.PathLike[str],
) -> None:
    """Write `micrographs_ctf.star` from the `_ctf.json`, `_motion.json` and Import JSON
    dicts of the same micrographs, in the same order.

    Optics groups come from the Import JSON (`optics_group`, `optics_group_name`; the
    fallbacks of corrected_micrographs.star apply); rlnMicrographName is the dose-weighted
    sum and rlnMicrographNameNoDW the plain sum the CTF was estimated on, as in RELION;
    rlnMicrographPixelSize is the motion-corrected sum's pixel size, rlnMicrographOriginalPixelSize
    the movie's. rlnCtfImage points at the diagnostic PNG. rlnPhaseShift (degrees) is written
    when any micrograph has a non-zero phase shift (phase-plate data).
    """
    if not len(ctf_summaries) == len(motion_summaries) == len(metadata):
        raise CtfStarError(
            f"{path}: got {len(ctf_summaries)} CTF summaries, {len(motion_summaries)} motion "
            f"summaries and {len(metadata)} Import records; they must match one to one"
        )
    if not ctf_summaries:
        raise CtfStarError(f"{path}: no micrographs to write")
    for ctf, motion, movie in zip(ctf_summaries, motion_summaries, metadata, strict=True):
        names = {ctf.get("movie_name"), motion.get("movie_name"), movie.get("movie_name")}
        if len(names) != 1:
            raise CtfStarError(
                f"{path}: summaries out of order, movie names {sorted(map(str, names))}"
            )

    optics_rows: dict[int, dict[str, Any]] = {}
    for motion, movie in zip(motion_summaries, metadata, strict=True):
        group = _optics_group(movie, motion)
        row = {
            "rlnOpticsGroup": group,
            "rlnOpticsGroupName": movie.get("optics_group_name") or f"opticsGroup{group}",
            "rlnMicrographOriginalPixelSize": float(movie["pixel_size_angstrom"]),
            "rlnVoltage": float(movie["voltage_kv"]),
            "rlnSphericalAberration": float(movie["spherical_aberration_mm"]),
            "rlnAmplitudeContrast": float(movie["amplitude_contrast"]),
            "rlnMicrographPixelSize": float(motion["pixel_size_angstrom"]),
        }
        if optics_rows.setdefault(group, row) != row:
            raise CtfStarError(
                f"{path}: movie {movie['movie_name']} disagrees with optics group {group}: "
                f"{row} vs {optics_rows[group]}"
            )
    optics = pd.DataFrame([optics_rows[group] for group in sorted(optics_rows)])

    with_phase = any(float(ctf["phase_shift_deg"]) != 0.0 for ctf in ctf_summaries)
    rows = []
    for ctf, motion, movie in zip(ctf_summaries, motion_summaries, metadata, strict=True):
        row = {
            # as corrected_micrographs.star: the dose-weighted sum for later steps, the plain
            # sum (which the CTF was estimated on, as in RELION) as NoDW
            "rlnMicrographName": str(motion.get("micrograph_dw_path") or ctf["micrograph_path"]),
            "rlnMicrographNameNoDW": str(ctf["micrograph_path"]),
            "rlnMicrographMetadata": str(motion["shifts_star_path"]),
            "rlnOpticsGroup": _optics_group(movie, motion),
            "rlnAccumMotionTotal": float(motion["total_motion_angstrom"]),
            "rlnAccumMotionEarly": float(motion["early_motion_angstrom"]),
            "rlnAccumMotionLate": float(motion["late_motion_angstrom"]),
            "rlnCtfImage": str(ctf["diagnostic_image_path"]),
            "rlnDefocusU": float(ctf["defocus_u_angstrom"]),
            "rlnDefocusV": float(ctf["defocus_v_angstrom"]),
            "rlnCtfAstigmatism": float(ctf["astigmatism_angstrom"]),
            "rlnDefocusAngle": float(ctf["astigmatism_angle_deg"]),
            "rlnCtfFigureOfMerit": float(ctf["cross_correlation"]),
            "rlnCtfMaxResolution": float(ctf["fit_resolution_angstrom"]),
        }
        if with_phase:
            row["rlnPhaseShift"] = float(ctf["phase_shift_deg"])
        rows.append(row)
    with atomic_path(path) as temporary:
        starfile.write(
            {"optics": optics, "micrographs": pd.DataFrame(rows)}, temporary, overwrite=True
        )


def _optics_group(movie: dict[str, Any], motion: dict[str, Any]) -> int:
    # the same fallbacks as corrected_micrographs.star, so both tables agree
    return int(movie.get("optics_group") or motion.get("optics_group") or 1)
