"""File-level 2D classification of one batch: per-movie STARs/stacks -> batch outputs."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emproc.classify.batches import load_batch
from emproc.classify.class2d import (
    Class2DParams,
    Class2DResult,
    ClassificationError,
    ParticleCtfs,
    classify_2d,
)
from emproc.classify.outputs import BatchOutputPaths, write_batch_outputs
from emproc.classify.relion import RelionRefineParams, run_relion_refine
from emproc.classify.selection import SelectionParams, select_classes
from emproc.extract.star import write_particle_star

logger = logging.getLogger(__name__)


def class2d_params_from_config(class2d: Mapping[str, Any], phase_flipped: bool) -> Class2DParams:
    defaults = Class2DParams()
    return Class2DParams(
        number_of_classes=int(class2d.get("number_of_classes", defaults.number_of_classes)),
        iterations=int(class2d.get("iterations", defaults.iterations)),
        mask_diameter_angstrom=class2d.get("mask_diameter_angstrom"),
        angular_step_deg=float(class2d.get("angular_step_deg", defaults.angular_step_deg)),
        assignment=str(class2d.get("assignment", defaults.assignment)),
        ctf_correction=str(class2d.get("ctf_correction", defaults.ctf_correction)),
        images_phase_flipped=phase_flipped,
        split_ratio=class2d.get("split_ratio", defaults.split_ratio),
        score_lowpass_angstrom=class2d.get(
            "score_lowpass_angstrom", defaults.score_lowpass_angstrom
        ),
        seed=int(class2d.get("seed", defaults.seed)),
    )


def particle_ctfs(optics: pd.DataFrame, particles: pd.DataFrame) -> ParticleCtfs:
    """Per-particle CTF from the particles' defocus columns and their optics groups."""
    merged = particles[["rlnOpticsGroup"]].merge(
        optics[["rlnOpticsGroup", "rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast"]],
        on="rlnOpticsGroup",
        how="left",
    )
    if merged[["rlnVoltage"]].isna().any().any():
        raise ClassificationError("a particle's rlnOpticsGroup is missing from the optics block")
    phase = (
        particles["rlnPhaseShift"].to_numpy(dtype=float)
        if "rlnPhaseShift" in particles
        else np.zeros(len(particles))
    )
    return ParticleCtfs(
        defocus_u_angstrom=particles["rlnDefocusU"].to_numpy(dtype=float),
        defocus_v_angstrom=particles["rlnDefocusV"].to_numpy(dtype=float),
        astigmatism_angle_deg=particles["rlnDefocusAngle"].to_numpy(dtype=float),
        voltage_kv=merged["rlnVoltage"].to_numpy(dtype=float),
        spherical_aberration_mm=merged["rlnSphericalAberration"].to_numpy(dtype=float),
        amplitude_contrast=merged["rlnAmplitudeContrast"].to_numpy(dtype=float),
        phase_shift_deg=phase,
    )


def _classify_with_relion(
    optics: pd.DataFrame,
    particles: pd.DataFrame,
    params: Class2DParams,
    pixel: float,
    size: int,
    output_dir: str | os.PathLike[str],
    project_dir: str | os.PathLike[str],
    workers: int,
) -> Class2DResult:
    relion_dir = Path(output_dir) / "relion"
    batch_star = relion_dir / "particles.star"
    write_particle_star(batch_star, optics, particles)
    diameter = params.mask_diameter_angstrom or 0.8 * size * pixel
    relion_params = RelionRefineParams(
        number_of_classes=params.number_of_classes,
        iterations=params.iterations,
        particle_diameter_angstrom=float(diameter),
        ctf=params.ctf_correction != "none",
        phase_flipped=params.images_phase_flipped,
        threads=workers,
        seed=params.seed,
    )
    return run_relion_refine(
        batch_star, relion_dir / "run", project_dir, relion_params, particles["rlnImageName"], pixel
    )


def classify_batch_files(
    members: Sequence[Mapping[str, Any]],
    *,
    batch_number: int,
    output_dir: str | os.PathLike[str],
    project_dir: str | os.PathLike[str],
    class2d: Mapping[str, Any],
    phase_flipped: bool = False,
    workers: int = 1,
) -> dict[str, Any]:
    """Classify one batch (members as in the manifest) and write its outputs to output_dir."""
    optics, particles, stack = load_batch(members, project_dir)
    if len(particles) < 2:
        raise ClassificationError(f"batch {batch_number} has {len(particles)} particles (< 2)")
    pixel_sizes = optics["rlnImagePixelSize"].to_numpy(dtype=float)
    if not np.allclose(pixel_sizes, pixel_sizes[0], rtol=1e-3):
        raise ClassificationError(
            f"batch {batch_number} mixes particle pixel sizes {sorted(set(pixel_sizes))}"
        )
    params = class2d_params_from_config(class2d, phase_flipped)
    pixel = float(pixel_sizes[0])
    backend = class2d.get("backend", "emproc")
    if backend == "emproc":
        result = classify_2d(
            stack, pixel, params, particle_ctfs(optics, particles), workers=workers
        )
    elif backend == "relion":
        result = _classify_with_relion(
            optics, particles, params, pixel, stack.shape[-1], output_dir, project_dir, workers
        )
    else:
        raise ClassificationError(f"unknown class2d.backend {backend!r} (emproc or relion)")
    selection = SelectionParams(
        min_score=float(class2d.get("selection_min_score", SelectionParams.min_score)),
        min_class_fraction=class2d.get("selection_min_class_fraction"),
    )
    scores, selected = select_classes(
        result.class_averages, result.mask_radius_px, result.class_distribution, selection
    )
    summary = write_batch_outputs(
        result,
        optics,
        particles,
        batch_number=batch_number,
        scores=scores,
        selected=selected,
        paths=BatchOutputPaths.in_directory(output_dir),
        project_dir=project_dir,
    )
    logger.info(
        "batch %d: %d particles, %d classes, %d selected",
        batch_number,
        len(particles),
        len(selected),
        int(selected.sum()),
    )
    return summary
