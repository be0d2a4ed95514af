"""RELION 3.1+ particle STAR tables (optics block + particles block), read and written."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import starfile

from emproc.io.atomic import atomic_path

OPTICS_COLUMNS = (
    "rlnOpticsGroup",
    "rlnOpticsGroupName",
    "rlnAmplitudeContrast",
    "rlnSphericalAberration",
    "rlnVoltage",
    "rlnImagePixelSize",
    "rlnMicrographOriginalPixelSize",
    "rlnImageSize",
    "rlnImageDimensionality",
)
PARTICLE_COLUMNS = (
    "rlnCoordinateX",
    "rlnCoordinateY",
    "rlnImageName",
    "rlnMicrographName",
    "rlnOpticsGroup",
    "rlnDefocusU",
    "rlnDefocusV",
    "rlnDefocusAngle",
    "rlnPhaseShift",
    "rlnCtfBfactor",
    "rlnAutopickFigureOfMerit",
)


class ParticleStarError(ValueError):
    """A particle STAR file is missing, unreadable or not RELION 3.1 (optics + particles)."""


def write_particle_star(
    path: str | os.PathLike[str], optics: pd.DataFrame, particles: pd.DataFrame
) -> None:
    with atomic_path(path) as temporary:
        starfile.write({"optics": optics, "particles": particles}, temporary)


def read_particle_star(path: str | os.PathLike[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(optics, particles) tables of a RELION 3.1+ particle STAR file."""
    path = Path(path)
    if not path.is_file():
        raise ParticleStarError(f"{path}: particle STAR file not found")
    try:
        blocks = starfile.read(path, always_dict=True)
    except Exception as error:  # starfile raises assorted parser errors
        raise ParticleStarError(f"{path}: unreadable STAR file ({error})") from error
    if "optics" not in blocks or "particles" not in blocks:
        raise ParticleStarError(f"{path}: needs data_optics and data_particles blocks")
    optics, particles = blocks["optics"], blocks["particles"]
    if not isinstance(particles, pd.DataFrame) or not isinstance(optics, pd.DataFrame):
        raise ParticleStarError(f"{path}: optics/particles blocks are not loops")
    if len(particles) and "rlnImageName" not in particles.columns:
        raise ParticleStarError(f"{path}: particles block has no rlnImageName")
    return optics, particles


def merge_particle_stars(
    paths: Sequence[str | os.PathLike[str]],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Concatenate per-micrograph STARs in the given order; optics groups de-duplicated."""
    optics_tables = []
    particle_tables = []
    for path in paths:
        optics, particles = read_particle_star(path)
        optics_tables.append(optics)
        if len(particles):
            particle_tables.append(particles)
    if not optics_tables:
        raise ParticleStarError("no particle STAR files to merge")
    optics = (
        pd.concat(optics_tables, ignore_index=True)
        .drop_duplicates(subset="rlnOpticsGroup")
        .sort_values("rlnOpticsGroup")
        .reset_index(drop=True)
    )
    if particle_tables:
        particles = pd.concat(particle_tables, ignore_index=True)
    else:
        particles = pd.DataFrame({name: pd.Series(dtype=object) for name in PARTICLE_COLUMNS})
    return optics, particles


def parse_image_name(image_name: str) -> tuple[int, str]:
    """`000012@Extract/x.mrcs` -> (12, 'Extract/x.mrcs'); the index is 1-based."""
    index, _, stack = str(image_name).partition("@")
    if not stack or not index.strip().isdigit():
        raise ParticleStarError(f"bad rlnImageName {image_name!r} (expected N@stack.mrcs)")
    return int(index), stack
