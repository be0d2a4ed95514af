"""Optional relion_refine backend for batch 2D classification (`class2d.backend: relion`).

The command is built here, RELION runs in the project directory (so the rlnImageName paths of
the batch STAR resolve), and the last iteration's `_model.star`, `_data.star` and
`_classes.mrcs` are parsed into the same `Class2DResult` the built-in method returns.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import starfile

from emproc.classify.class2d import Class2DResult


class RelionError(RuntimeError):
    """relion_refine is missing, failed, or wrote unreadable output."""


@dataclass(frozen=True)
class RelionRefineParams:
    number_of_classes: int
    iterations: int
    particle_diameter_angstrom: float
    tau2_fudge: float = 2.0  # RELION's 2D default
    psi_step_deg: float = 10.0
    offset_range_px: float = 5.0
    offset_step_px: float = 1.0
    ctf: bool = True
    phase_flipped: bool = False
    threads: int = 1
    seed: int = 0
    executable: str = "relion_refine"


def relion_available(executable: str = "relion_refine") -> bool:
    return shutil.which(executable) is not None


def build_relion_refine_command(
    particles_star: str, output_root: str, params: RelionRefineParams
) -> list[str]:
    """relion_refine 2D (no --ref: reference-free) with RELION's usual 2D options."""
    command = [
        params.executable,
        "--i", particles_star,
        "--o", output_root,
        "--K", str(params.number_of_classes),
        "--iter", str(params.iterations),
        "--tau2_fudge", f"{params.tau2_fudge:g}",
        "--particle_diameter", f"{params.particle_diameter_angstrom:g}",
        "--psi_step", f"{params.psi_step_deg:g}",
        "--offset_range", f"{params.offset_range_px:g}",
        "--offset_step", f"{params.offset_step_px:g}",
        "--oversampling", "1",
        "--zero_mask",
        "--flatten_solvent",
        "--norm",
        "--scale",
        "--dont_combine_weights_via_disc",
        "--pool", "30",
        "--j", str(params.threads),
        "--random_seed", str(params.seed),
    ]  # fmt: skip
    if params.ctf:
        command.append("--ctf")
        if params.phase_flipped:
            command.append("--ctf_phase_flipped")
    return command


def _iteration_files(output_root: Path, iteration: int) -> dict[str, Path]:
    stem = f"{output_root.name}_it{iteration:03d}"
    return {
        name: output_root.parent / f"{stem}_{name}"
        for name in ("model.star", "data.star", "classes.mrcs")
    }


def parse_relion_2d(
    output_root: str | os.PathLike[str],
    iteration: int,
    image_names: pd.Series,
    pixel_size_angstrom: float,
    mask_radius_px: float,
) -> Class2DResult:
    """The `Class2DResult` of RELION's iteration `iteration`, rows in `image_names` order."""
    files = _iteration_files(Path(output_root), iteration)
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        raise RelionError(f"relion_refine output missing: {missing}")
    try:
        model = starfile.read(files["model.star"], always_dict=True)["model_classes"]
        data = starfile.read(files["data.star"], always_dict=True)["particles"]
        with mrcfile.open(files["classes.mrcs"], permissive=True) as mrc:
            averages = np.asarray(mrc.data, dtype=np.float32).reshape(
                len(model), *mrc.data.shape[-2:]
            )
    except (KeyError, ValueError, OSError) as error:
        raise RelionError(
            f"unreadable relion_refine output {files['model.star']}: {error}"
        ) from error
    data = data.set_index("rlnImageName").reindex(list(image_names))
    if data["rlnClassNumber"].isna().any():
        raise RelionError(f"{files['data.star']}: particles missing from RELION's output")
    origin = data[["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy(dtype=float)
    return Class2DResult(
        class_averages=averages,
        class_number=data["rlnClassNumber"].to_numpy(dtype=int),
        psi_deg=np.mod(data["rlnAnglePsi"].to_numpy(dtype=float), 360.0),
        shift_xy_px=-origin / pixel_size_angstrom,
        max_probability=data["rlnMaxValueProbDistribution"].to_numpy(dtype=float),
        class_distribution=model["rlnClassDistribution"].to_numpy(dtype=float),
        estimated_resolution_angstrom=model["rlnEstimatedResolution"].to_numpy(dtype=float),
        accuracy_rotations_deg=model["rlnAccuracyRotations"].to_numpy(dtype=float),
        accuracy_translations_angstrom=model["rlnAccuracyTranslationsAngst"].to_numpy(dtype=float),
        frc=np.zeros((len(model), 1)),
        pixel_size_angstrom=pixel_size_angstrom,
        mask_radius_px=mask_radius_px,
        noise_variance=float("nan"),
    )


def run_relion_refine(
    particles_star: str | os.PathLike[str],
    output_root: str | os.PathLike[str],
    project_dir: str | os.PathLike[str],
    params: RelionRefineParams,
    image_names: pd.Series,
    pixel_size_angstrom: float,
) -> Class2DResult:
    """Run relion_refine (cwd = project_dir) and parse its last iteration."""
    if not relion_available(params.executable):
        raise RelionError(f"{params.executable} not found on PATH (class2d.backend: relion)")
    project_dir = Path(project_dir).resolve()
    star = os.path.relpath(Path(particles_star).resolve(), project_dir)
    root = Path(output_root).resolve()
    root.parent.mkdir(parents=True, exist_ok=True)
    command = build_relion_refine_command(star, os.path.relpath(root, project_dir), params)
    result = subprocess.run(command, cwd=project_dir, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RelionError(
            f"relion_refine failed (exit {result.returncode}) on {particles_star}: "
            f"{(result.stderr or result.stdout).strip()[-800:]}"
        )
    mask_radius = 0.5 * params.particle_diameter_angstrom / pixel_size_angstrom
    return parse_relion_2d(root, params.iterations, image_names, pixel_size_angstrom, mask_radius)
