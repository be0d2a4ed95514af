"""Particles of the good 2D classes, across batches: the input of the 3D steps.

Each 2D batch writes the particles of its automatically selected classes
(`Class2D/batch_<n>/particles_selected.star`, emproc.classify). Their union is
`Select/particles_selected.star`, rewritten whenever a batch is added, so it grows with the
session. Columns that belong to the 2D alignment (class, in-plane angle) are dropped: a 3D
step searches orientations afresh; the 2D origin offsets are kept (they centre the particles).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from emproc.extract.star import read_particle_star, write_particle_star
from emproc.io.atomic import write_json_atomic, write_text_atomic

DROPPED_2D_COLUMNS = ("rlnClassNumber", "rlnAnglePsi", "rlnMaxValueProbDistribution")


def merge_selected_particles(
    selected_stars: Sequence[str | os.PathLike[str]],
    output_star: str | os.PathLike[str],
    summary_path: str | os.PathLike[str],
    min_particles_for_3d: int,
) -> dict[str, Any]:
    """Concatenate the batches' selected particles (batch order); summary with the count and
    whether 3D may start (`ready_for_3d`: at least `min_particles_for_3d`)."""
    optics_tables, particle_tables, per_batch = [], [], []
    for path in selected_stars:
        optics, particles = read_particle_star(path)
        optics_tables.append(optics)
        particle_tables.append(particles.drop(columns=list(DROPPED_2D_COLUMNS), errors="ignore"))
        per_batch.append({"star": str(Path(path).resolve()), "number_of_particles": len(particles)})
    if optics_tables:
        optics = pd.concat(optics_tables).drop_duplicates("rlnOpticsGroup").reset_index(drop=True)
        particles = pd.concat(particle_tables, ignore_index=True)
        write_particle_star(output_star, optics, particles)
    else:  # no 2D batch classified yet: an empty selection, 3D waits
        particles = pd.DataFrame()
        write_text_atomic(output_star, "# no 2D batch classified yet\n")
    summary = {
        "particles_star": str(Path(output_star).resolve()),
        "number_of_particles": int(len(particles)),
        "batches": per_batch,
        "min_particles_for_3d": int(min_particles_for_3d),
        "ready_for_3d": bool(len(particles) >= min_particles_for_3d),
    }
    write_json_atomic(summary_path, summary)
    return summary
