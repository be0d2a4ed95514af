"""Session aggregates: one RELION 3.1 particles.star and one coordinate list for all movies."""

from __future__ import annotations

import os
from collections.abc import Sequence

import pandas as pd

from emproc.classify.batches import read_json
from emproc.extract.star import merge_particle_stars, write_particle_star
from emproc.io.atomic import atomic_path
from emproc.picking.io import read_coordinate_star


def aggregate_particles(
    particle_stars: Sequence[str | os.PathLike[str]],
    pick_summaries: Sequence[str | os.PathLike[str]],
    *,
    particles_path: str | os.PathLike[str],
    coordinates_path: str | os.PathLike[str],
) -> int:
    """Write particles.star (all movies, in the given order) and a CSV of every pick.

    The CSV columns: movie_name, x_px, y_px, score_sigma (micrograph pixels). Returns the
    number of particles in particles.star.
    """
    optics, particles = merge_particle_stars(particle_stars)
    write_particle_star(particles_path, optics, particles)
    tables = []
    for summary_path in pick_summaries:
        summary = read_json(summary_path)
        picks = read_coordinate_star(summary["coordinates_star_path"])
        picks.insert(0, "movie_name", summary["movie_name"])
        tables.append(picks[["movie_name", "x_px", "y_px", "score_sigma"]])
    coordinates = (
        pd.concat(tables, ignore_index=True)
        if tables
        else pd.DataFrame(columns=["movie_name", "x_px", "y_px", "score_sigma"])
    )
    with atomic_path(coordinates_path) as temporary:
        coordinates.to_csv(temporary, index=False, float_format="%.2f")
    return len(particles)
