"""The 3D steps as RELION 3.1 runs them, each parsed into a summary dict (its JSON).

Directory layout inside the project (= outputs) directory, RELION's names:
`InitialModel/run_itNNN_class001.mrc`, `Class3D/run_itNNN_class00K.mrc` and `_model.star`,
`Refine3D/run_class001.mrc`, `run_model.star`, `run_data.star`, `run_half{1,2}_class001_unfil.mrc`,
`PostProcess/postprocess.star`, `postprocess.mrc`, `postprocess_masked.mrc`, `mask.mrc`.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import starfile

from emproc.extract.star import read_particle_star, write_particle_star
from emproc.io.relion import relative_to
from emproc.refine3d.maps import read_map, solvent_mask, write_map
from emproc.refine3d.relion import (
    SERIAL,
    Compute,
    Relion3DError,
    last_iteration_file,
    run_relion,
)


@dataclass(frozen=True)
class Common3DParams:
    particle_diameter_angstrom: float
    symmetry: str = "C1"
    ctf: bool = True
    seed: int = 0
    pad: int = 2  # Fourier oversampling of the references (RELION's --pad)
    skip_gridding: bool = False  # RELION's --skip_gridding: no gridding correction in the M-step


def _common_arguments(params: Common3DParams) -> list[str]:
    arguments = [
        "--particle_diameter", f"{params.particle_diameter_angstrom:g}",
        "--flatten_solvent", "--zero_mask", "--oversampling", "1",
        "--dont_combine_weights_via_disc", "--pool", "30", "--pad", str(params.pad),
        "--random_seed", str(params.seed),
    ]  # fmt: skip
    if params.ctf:
        arguments.append("--ctf")
    if params.skip_gridding:
        arguments.append("--skip_gridding")
    return arguments


def _read_model(path: Path) -> tuple[dict[str, Any], pd.DataFrame]:
    try:
        blocks = starfile.read(path, always_dict=True)
        return dict(blocks["model_general"]), blocks["model_classes"]
    except (KeyError, ValueError, OSError) as error:
        raise Relion3DError(f"{path}: unreadable RELION model STAR ({error})") from error


def _finite(value: Any, fallback: float = 99.0) -> float:
    number = float(value)
    return number if np.isfinite(number) else fallback


# --- initial model -----------------------------------------------------------------------


@dataclass(frozen=True)
class InitialModelParams:
    iterations_initial: int = 25
    iterations_inbetween: int = 75
    iterations_final: int = 25
    initial_resolution_angstrom: float = 35.0
    final_resolution_angstrom: float = 15.0
    subset_initial: int = 100
    subset_final: int = 500
    healpix_order: int = 1
    offset_range_px: float = 6.0
    offset_step_px: float = 2.0


def run_initial_model(
    particles_star: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    project_dir: str | os.PathLike[str],
    common: Common3DParams,
    params: InitialModelParams,
    compute: Compute = SERIAL,
) -> dict[str, Any]:
    """De novo initial model by RELION's SGD (`--denovo_3dref --sgd`), one class, C1 (as
    RELION recommends: symmetry imposed later). Writes `initial_model.mrc` and returns the
    CryoemInitialModel numbers."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    _, particles = read_particle_star(particles_star)
    arguments = [
        "--i", relative_to(particles_star, project_dir),
        "--o", relative_to(output_dir / "run", project_dir),
        "--sgd", "--denovo_3dref", "--K", "1", "--sym", "C1",
        "--sgd_ini_iter", str(params.iterations_initial),
        "--sgd_inbetween_iter", str(params.iterations_inbetween),
        "--sgd_fin_iter", str(params.iterations_final),
        "--sgd_write_iter", "1000",
        "--sgd_ini_resol", f"{params.initial_resolution_angstrom:g}",
        "--sgd_fin_resol", f"{params.final_resolution_angstrom:g}",
        "--sgd_ini_subset", str(params.subset_initial),
        "--sgd_fin_subset", str(params.subset_final),
        "--healpix_order", str(params.healpix_order),
        "--offset_range", f"{params.offset_range_px:g}",
        "--offset_step", f"{params.offset_step_px:g}",
        *_common_arguments(common),
    ]  # fmt: skip
    run_relion("relion_refine", arguments, project_dir, compute, output_dir / "relion.log")
    model_star = last_iteration_file(output_dir, "run", "_model.star")
    general, classes = _read_model(model_star)
    class_map = model_star.with_name(model_star.name.replace("_model.star", "_class001.mrc"))
    final_map = output_dir / "initial_model.mrc"
    volume, pixel = read_map(class_map)
    write_map(final_map, volume, pixel)
    return {
        "step": "initial_model",
        "program": "relion_refine --sgd --denovo_3dref",
        "model_star": str(model_star.resolve()),
        "map_path": str(final_map.resolve()),
        "number_of_particles": int(len(particles)),
        "resolution_angstrom": _finite(classes["rlnEstimatedResolution"].iloc[0]),
        "symmetry": "C1",
        "pixel_size_angstrom": pixel,
        "box_size_px": int(volume.shape[0]),
    }


# --- 3D classification -------------------------------------------------------------------


@dataclass(frozen=True)
class Class3DParams:
    number_of_classes: int = 3
    iterations: int = 25
    initial_lowpass_angstrom: float = 40.0
    tau2_fudge: float = 4.0
    healpix_order: int = 2
    offset_range_px: float = 5.0
    offset_step_px: float = 2.0
    min_class_fraction: float = 0.1  # a smaller class is never chosen for refinement


def best_class(classes: pd.DataFrame, min_class_fraction: float) -> int:
    """1-based class to refine: among classes holding at least `min_class_fraction` of the
    particles, the best estimated resolution, then the largest (cryoemservices' order)."""
    table = pd.DataFrame(
        {
            "number": np.arange(1, len(classes) + 1),
            "resolution": [_finite(v) for v in classes["rlnEstimatedResolution"]],
            "fraction": classes["rlnClassDistribution"].to_numpy(dtype=float),
        }
    )
    eligible = table[table["fraction"] >= min_class_fraction]
    if eligible.empty:
        eligible = table
    ranked = eligible.sort_values(["resolution", "fraction"], ascending=[True, False])
    return int(ranked["number"].iloc[0])


def run_class3d(
    particles_star: str | os.PathLike[str],
    reference_map: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    project_dir: str | os.PathLike[str],
    common: Common3DParams,
    params: Class3DParams,
    compute: Compute = SERIAL,
) -> dict[str, Any]:
    """RELION 3D classification into K classes from a low-passed reference; writes the best
    class's particles (`best_class_particles.star`) and map (`best_class.mrc`)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    arguments = [
        "--i", relative_to(particles_star, project_dir),
        "--o", relative_to(output_dir / "run", project_dir),
        "--ref", relative_to(reference_map, project_dir),
        "--ini_high", f"{params.initial_lowpass_angstrom:g}",
        "--K", str(params.number_of_classes),
        "--iter", str(params.iterations),
        "--tau2_fudge", f"{params.tau2_fudge:g}",
        "--healpix_order", str(params.healpix_order),
        "--offset_range", f"{params.offset_range_px:g}",
        "--offset_step", f"{params.offset_step_px:g}",
        "--sym", common.symmetry, "--norm", "--scale",
        *_common_arguments(common),
    ]  # fmt: skip
    run_relion("relion_refine", arguments, project_dir, compute, output_dir / "relion.log")
    model_star = last_iteration_file(output_dir, "run", "_model.star")
    data_star = model_star.with_name(model_star.name.replace("_model.star", "_data.star"))
    general, classes = _read_model(model_star)
    optics, particles = read_particle_star(data_star)
    chosen = best_class(classes, params.min_class_fraction)
    counts = np.bincount(
        particles["rlnClassNumber"].to_numpy(dtype=int), minlength=len(classes) + 1
    )
    maps = [
        model_star.with_name(model_star.name.replace("_model.star", f"_class{k:03d}.mrc"))
        for k in range(1, len(classes) + 1)
    ]
    write_particle_star(
        output_dir / "best_class_particles.star",
        optics,
        particles[particles["rlnClassNumber"] == chosen].reset_index(drop=True),
    )
    shutil.copyfile(maps[chosen - 1], output_dir / "best_class.mrc")
    completeness = classes.get("rlnOverallFourierCompleteness", pd.Series([np.nan] * len(classes)))
    return {
        "step": "class3d",
        "program": "relion_refine",
        "model_star": str(model_star.resolve()),
        "data_star": str(data_star.resolve()),
        "number_of_particles": int(len(particles)),
        "number_of_classes": int(len(classes)),
        "symmetry": common.symmetry,
        "pixel_size_angstrom": float(general["rlnPixelSize"]),
        "best_class": chosen,
        "best_class_map": str((output_dir / "best_class.mrc").resolve()),
        "best_class_particles_star": str((output_dir / "best_class_particles.star").resolve()),
        "classes": [
            {
                "class_number": k,
                "class_map_path": str(maps[k - 1].resolve()),
                "particles_per_class": int(counts[k]),
                "class_distribution": float(classes["rlnClassDistribution"].iloc[k - 1]),
                "rotation_accuracy_deg": _finite(classes["rlnAccuracyRotations"].iloc[k - 1]),
                "translation_accuracy_angstrom": _finite(
                    classes["rlnAccuracyTranslationsAngst"].iloc[k - 1]
                ),
                "estimated_resolution_angstrom": _finite(
                    classes["rlnEstimatedResolution"].iloc[k - 1]
                ),
                "overall_fourier_completeness": _finite(completeness.iloc[k - 1], 0.0),
                "selected": k == chosen,
            }
            for k in range(1, len(classes) + 1)
        ],
    }


# --- auto-refine -------------------------------------------------------------------------


@dataclass(frozen=True)
class RefineParams:
    initial_lowpass_angstrom: float = 30.0
    healpix_order: int = 2
    local_healpix_order: int = 4
    offset_range_px: float = 5.0
    offset_step_px: float = 2.0


def run_refine(
    particles_star: str | os.PathLike[str],
    reference_map: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    project_dir: str | os.PathLike[str],
    common: Common3DParams,
    params: RefineParams,
    compute: Compute = SERIAL,
) -> dict[str, Any]:
    """RELION auto-refine (gold standard: independent half sets) to convergence. RELION 3.1
    refines the half sets only under MPI, a leader plus one follower per half: at least 3
    ranks (the leader mostly waits)."""
    compute = Compute(compute.threads, max(3, compute.mpi_ranks), compute.nice)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    arguments = [
        "--i", relative_to(particles_star, project_dir),
        "--o", relative_to(output_dir / "run", project_dir),
        "--ref", relative_to(reference_map, project_dir),
        "--ini_high", f"{params.initial_lowpass_angstrom:g}",
        "--auto_refine", "--split_random_halves", "--low_resol_join_halves", "40",
        "--healpix_order", str(params.healpix_order),
        "--auto_local_healpix_order", str(params.local_healpix_order),
        "--offset_range", f"{params.offset_range_px:g}",
        "--offset_step", f"{params.offset_step_px:g}",
        "--sym", common.symmetry, "--norm", "--scale",
        *_common_arguments(common),
    ]  # fmt: skip
    run_relion("relion_refine", arguments, project_dir, compute, output_dir / "relion.log")
    files = {
        "map_path": output_dir / "run_class001.mrc",
        "model_star": output_dir / "run_model.star",
        "data_star": output_dir / "run_data.star",
        "half1_map_path": output_dir / "run_half1_class001_unfil.mrc",
        "half2_map_path": output_dir / "run_half2_class001_unfil.mrc",
    }
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        raise Relion3DError(f"auto-refine did not finish: missing {missing}")
    general, classes = _read_model(files["model_star"])
    _, particles = read_particle_star(files["data_star"])
    return {
        "step": "refine",
        "program": "relion_refine --auto_refine",
        **{key: str(path.resolve()) for key, path in files.items()},
        "number_of_particles": int(len(particles)),
        "symmetry": common.symmetry,
        "pixel_size_angstrom": float(general["rlnPixelSize"]),
        "resolution_angstrom": _finite(general["rlnCurrentResolution"]),
        "rotation_accuracy_deg": _finite(classes["rlnAccuracyRotations"].iloc[0]),
        "translation_accuracy_angstrom": _finite(classes["rlnAccuracyTranslationsAngst"].iloc[0]),
    }


# --- post-processing ---------------------------------------------------------------------


@dataclass(frozen=True)
class PostprocessParams:
    mask_lowpass_angstrom: float = 15.0
    mask_threshold_fraction: float = 0.1  # of the low-passed map's maximum
    mask_extend_px: int = 2
    mask_soft_edge_px: int = 3
    autob_lowres_angstrom: float = 10.0  # Guinier fit from here to the FSC resolution


def make_mask(
    map_path: str | os.PathLike[str], mask_path: str | os.PathLike[str], params: PostprocessParams
) -> None:
    volume, pixel = read_map(map_path)
    mask = solvent_mask(
        volume,
        pixel,
        lowpass_angstrom=params.mask_lowpass_angstrom,
        threshold_fraction=params.mask_threshold_fraction,
        extend_px=params.mask_extend_px,
        soft_edge_px=params.mask_soft_edge_px,
    )
    write_map(mask_path, mask, pixel)


def run_postprocess(
    half1_map: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    project_dir: str | os.PathLike[str],
    params: PostprocessParams,
    *,
    mask_path: str | os.PathLike[str] | None = None,
    mask_from_map: str | os.PathLike[str] | None = None,
    compute: Compute = SERIAL,
) -> dict[str, Any]:
    """relion_postprocess: masked, phase-randomisation-corrected FSC of the half maps and
    sharpening by the Guinier-fitted B-factor. The mask is `mask_path`, else made from
    `mask_from_map` into `<output_dir>/mask.mrc`."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if mask_path is None:
        mask_path = output_dir / "mask.mrc"
        make_mask(mask_from_map or half1_map, mask_path, params)
    _, pixel = read_map(half1_map)
    arguments = [
        "--i", relative_to(half1_map, project_dir),
        "--o", relative_to(output_dir / "postprocess", project_dir),
        "--mask", relative_to(mask_path, project_dir),
        "--angpix", f"{pixel:g}",
        "--auto_bfac", "--autob_lowres", f"{params.autob_lowres_angstrom:g}",
    ]  # fmt: skip
    run_relion("relion_postprocess", arguments, project_dir, Compute(nice=compute.nice),
               output_dir / "relion.log")  # fmt: skip
    star = output_dir / "postprocess.star"
    try:
        blocks = starfile.read(star, always_dict=True)
        general, curve = dict(blocks["general"]), blocks["fsc"]
    except (KeyError, ValueError, OSError) as error:
        raise Relion3DError(f"{star}: unreadable postprocess STAR ({error})") from error
    return {
        "step": "postprocess",
        "program": "relion_postprocess",
        "postprocess_star": str(star.resolve()),
        "map_path": str((output_dir / "postprocess.mrc").resolve()),
        "masked_map_path": str((output_dir / "postprocess_masked.mrc").resolve()),
        "mask_path": str(Path(mask_path).resolve()),
        "pixel_size_angstrom": pixel,
        "resolution_angstrom": float(general["rlnFinalResolution"]),
        "sharpening_bfactor_angstrom2": float(general.get("rlnBfactorUsedForSharpening", np.nan)),
        "fsc": {
            "resolution_angstrom": curve["rlnAngstromResolution"].astype(float).tolist(),
            "fsc_corrected": curve["rlnFourierShellCorrelationCorrected"].astype(float).tolist(),
            "fsc_unmasked": curve["rlnFourierShellCorrelationUnmaskedMaps"].astype(float).tolist(),
        },
    }
