"""B-factor estimation from resolution against particle count (Rosenthal & Henderson 2003).

As cryoemservices does (bfactor_setup + postprocess: one BFactorFit row per subset), random
subsets of the refined particles of sizes N, N/2, N/4, ... each give a resolution d from a
masked half-map FSC (relion_postprocess, the refinement's mask). For a signal falling off
as exp(-B s^2 / 4), the particles needed for a resolution d grow as exp(B / (2 d^2)), so
1/d^2 = (2 / B) ln N + c: the B-factor is twice the inverse slope.

Two ways to get d for a subset:
- "refine": a full auto-refine of the subset from the refined map (cryoemservices' way;
  costs one refinement a subset);
- "reconstruct": the subset's half maps are reconstructed (relion_reconstruct) at the
  orientations the full refinement found (seconds a subset; orientations of a small subset
  are then better than a refinement of it alone would find, so d is slightly optimistic at
  the smallest sizes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emproc.extract.star import read_particle_star, write_particle_star
from emproc.io.relion import relative_to
from emproc.refine3d.maps import resolution_at
from emproc.refine3d.relion import (
    SERIAL,
    Compute,
    Relion3DError,
    run_relion,
)
from emproc.refine3d.steps import (
    Common3DParams,
    PostprocessParams,
    RefineParams,
    run_postprocess,
    run_refine,
)

DEFAULT_REFINE = RefineParams()
DEFAULT_POSTPROCESS = PostprocessParams()


@dataclass(frozen=True)
class BFactorParams:
    method: str = "reconstruct"  # reconstruct | refine
    number_of_subsets: int = 5  # sizes spaced geometrically from min_particles to all
    min_particles: int = 100
    seed: int = 0


def subset_sizes(number_of_particles: int, params: BFactorParams) -> list[int]:
    """Geometrically spaced from `min_particles` to every particle (cryoemservices halves;
    more, closer sizes average out the noise of each FSC crossing)."""
    if number_of_particles < params.min_particles:
        return []
    sizes = np.geomspace(params.min_particles, number_of_particles, params.number_of_subsets)
    return sorted({int(round(size)) for size in sizes})


def fit_bfactor(
    number_of_particles: np.ndarray, resolution_angstrom: np.ndarray
) -> dict[str, float | None]:
    """Least-squares lines through (ln N, 1/d^2); a B is None when resolution did not
    improve with particles (slope <= 0: JSON has no infinity).

    `bfactor_rosenthal_henderson_angstrom2`: 2 / slope of 1/d^2 = slope ln N + intercept, the
    plain fit cryoemservices reports (`slope_per_angstrom2`, `intercept_per_angstrom2`).
    `bfactor_angstrom2`: the same with ln N + ln d as abscissa: a projection fills a share
    ~1/s of the Fourier shell at s = 1/d, so N ~ s exp(B s^2 / 2) and the plain fit reads
    about B + d^2 (measured: +15-23 % at B = 500-2000 A^2; this one +10-14 %).
    """
    counts = np.asarray(number_of_particles, dtype=float)
    resolution = np.asarray(resolution_angstrom, dtype=float)
    if len(counts) < 2:
        raise ValueError("a B-factor fit needs at least two subsets")
    y = 1.0 / resolution**2
    slope, intercept = np.polyfit(np.log(counts), y, 1)
    shell_slope, _ = np.polyfit(np.log(counts) + np.log(resolution), y, 1)
    return {
        "bfactor_angstrom2": float(2.0 / shell_slope) if shell_slope > 0 else None,
        "bfactor_rosenthal_henderson_angstrom2": float(2.0 / slope) if slope > 0 else None,
        "slope_per_angstrom2": float(slope),
        "intercept_per_angstrom2": float(intercept),
    }


def _reconstruct_half_maps(
    data_star: Path, root: Path, project_dir: str | os.PathLike[str], symmetry: str,
    compute: Compute,
) -> Path:  # fmt: skip
    half1 = root.with_name(f"{root.name}_half1_class001_unfil.mrc")
    for half in (1, 2):
        arguments = [
            "--i", relative_to(data_star, project_dir),
            "--o", relative_to(root.with_name(f"{root.name}_half{half}_class001_unfil.mrc"), project_dir),
            "--ctf", "--sym", symmetry, "--subset", str(half),
        ]  # fmt: skip
        run_relion(
            "relion_reconstruct", arguments, project_dir, compute, root.parent / "relion.log"
        )
    return half1


def run_bfactor(
    refined_data_star: str | os.PathLike[str],
    refined_map: str | os.PathLike[str],
    mask_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    project_dir: str | os.PathLike[str],
    common: Common3DParams,
    params: BFactorParams,
    refine_params: RefineParams = DEFAULT_REFINE,
    postprocess_params: PostprocessParams = DEFAULT_POSTPROCESS,
    compute: Compute = SERIAL,
) -> dict[str, Any]:
    """Resolution per random subset and the fitted B-factor (BFactorFit rows + the fit)."""
    if params.method not in ("reconstruct", "refine"):
        raise ValueError(f"bfactor method {params.method!r}: reconstruct or refine")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    optics, particles = read_particle_star(refined_data_star)
    rng = np.random.default_rng(params.seed)
    sizes = subset_sizes(len(particles), params)
    if len(sizes) < 2:
        raise Relion3DError(
            f"{refined_data_star}: {len(particles)} particles give fewer than two subsets of "
            f">= {params.min_particles} for a B-factor fit"
        )
    rows = []
    for size in sizes:
        subset_dir = output_dir / f"subset_{size:07d}"
        subset_dir.mkdir(parents=True, exist_ok=True)
        chosen = particles.iloc[np.sort(rng.choice(len(particles), size, replace=False))].copy()
        star = subset_dir / "particles.star"
        if params.method == "reconstruct":
            # keep the refinement's orientations; re-deal the half sets evenly
            chosen["rlnRandomSubset"] = 1 + np.arange(size) % 2
            write_particle_star(star, optics, chosen.reset_index(drop=True))
            half1 = _reconstruct_half_maps(
                star, subset_dir / "run", project_dir, common.symmetry, compute
            )
        else:
            columns = [c for c in chosen.columns if not c.startswith(("rlnAngle", "rlnOrigin"))]
            write_particle_star(star, optics, chosen[columns].reset_index(drop=True))
            refined = run_refine(star, refined_map, subset_dir / "Refine3D", project_dir, common,
                                 refine_params, compute)  # fmt: skip
            half1 = Path(refined["half1_map_path"])
        post = run_postprocess(
            half1, subset_dir / "PostProcess", project_dir, postprocess_params,
            mask_path=mask_path, compute=compute,
        )  # fmt: skip
        curve = post["fsc"]
        rows.append(
            {
                "number_of_particles": size,
                "particle_batch_size": int(len(particles)),
                # RELION reports the shell edge; the crossing interpolated between shells
                # resolves the small steps of a doubling (2 ln 2 / B in 1/d^2)
                "resolution_angstrom": resolution_at(
                    np.asarray(curve["resolution_angstrom"][1:], dtype=float),
                    np.asarray(curve["fsc_corrected"][1:], dtype=float),
                ),
                "relion_resolution_angstrom": post["resolution_angstrom"],
                "postprocess_star": post["postprocess_star"],
            }
        )
    fit = fit_bfactor(
        np.array([row["number_of_particles"] for row in rows]),
        np.array([row["resolution_angstrom"] for row in rows]),
    )
    return {
        "step": "bfactor",
        "method": params.method,
        "number_of_particles": int(len(particles)),
        "subsets": rows,
        **fit,
    }
