"""The aggregate `micrographs_ctf.star` (RELION 3.1+: optics block + micrographs block)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import starfile

from emproc.io.atomic import atomic_path
from emproc.io.relion import (
    OpticsGroupError,
    corrected_micrograph_row,
    micrograph_optics_table,
    relative_to,
)


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
    the movie's. rlnCtfImage names the diagnostic spectrum MRC as RELION does
    (`<path>.ctf:mrc`). rlnPhaseShift (degrees) is written when any micrograph has a non-zero
    phase shift (phase-plate data).
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

    try:
        optics = micrograph_optics_table(
            metadata,
            [motion["pixel_size_angstrom"] for motion in motion_summaries],
            table_path=path,
        )
    except OpticsGroupError as error:
        raise CtfStarError(str(error)) from error

    project_dir = Path(path).parent  # paths relative to it, as RELION's project directory
    with_phase = any(float(ctf["phase_shift_deg"]) != 0.0 for ctf in ctf_summaries)
    rows = []
    for ctf, motion, movie in zip(ctf_summaries, motion_summaries, metadata, strict=True):
        # as corrected_micrographs.star: the dose-weighted sum for later steps, the plain
        # sum (which the CTF was estimated on, as in RELION) as NoDW
        row = {
            **corrected_micrograph_row(motion, movie, project_dir),
            "rlnCtfImage": f"{relative_to(ctf['ctf_image_path'], project_dir)}:mrc",
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
