"""One tilt series from mdoc to tomogram, discovery, completeness and the session table."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd

from emproc.io.atomic import atomic_path, write_json_atomic
from emproc.io.mdoc import TiltSeriesMetadata, read_tilt_series_mdoc
from emproc.io.plot_json import write_xy_json
from emproc.tomo.align import AlignmentParams, align_tilt_series
from emproc.tomo.alignment_report import alignment_summary
from emproc.tomo.denoise import DenoiseParams
from emproc.tomo.denoised_tomogram import half_tomograms, write_denoised_tomogram
from emproc.tomo.fiducial import FiducialParams
from emproc.tomo.imod_model import write_fiducial_model
from emproc.tomo.outputs import (
    write_aln,
    write_imod_alignment,
    write_residual_plot,
    write_snapshots,
)
from emproc.tomo.reconstruct import ReconstructionParams, aligned_stack, reconstruct_tomogram
from emproc.tomo.stack import ExclusionParams, TiltStack, assemble_tilt_stack, write_stack

LOG = logging.getLogger(__name__)


def discover_tilt_series(session_dir: str | Path, mdoc_glob: str) -> dict[str, Path]:
    """{tilt series name: mdoc path} for every mdoc matching `mdoc_glob` under the session."""
    if not mdoc_glob:
        return {}
    found = {}
    for path in sorted(Path(session_dir).glob(mdoc_glob)):
        name = path.name
        for suffix in (".mdoc", ".mrc", ".st"):
            name = name.removesuffix(suffix)
        found[name] = path
    return found


def missing_movies(metadata: TiltSeriesMetadata, frames_dir: Path | None = None) -> list[Path]:
    paths = [metadata.movie_path(t, frames_dir) for t in metadata.tilts]
    return [p for p in paths if p is not None and not p.is_file()]


def tilt_series_ready(
    metadata: TiltSeriesMetadata,
    timeout_s: float,
    frames_dir: Path | None = None,
    now: float | None = None,
) -> bool:
    """Complete (every listed movie present), or nothing new for `timeout_s` seconds."""
    if not missing_movies(metadata, frames_dir):
        return True
    present = [metadata.movie_path(t, frames_dir) for t in metadata.tilts]
    times = [p.stat().st_mtime for p in present if p is not None and p.is_file()]
    newest = max([metadata.mdoc_path.stat().st_mtime, *times])
    return (now if now is not None else time.time()) - newest >= timeout_s


def output_paths(output_dir: str | Path, name: str) -> dict[str, Path]:
    base = Path(output_dir) / "Tomograms" / name
    return {
        "stack_path": base / f"{name}.st",
        "rawtlt_path": base / f"{name}.rawtlt",
        "tlt_path": base / f"{name}.tlt",
        "xf_path": base / f"{name}.xf",
        "xtilt_path": base / f"{name}.xtilt",
        "aln_path": base / f"{name}.aln",
        "tomogram_path": base / f"{name}_rec.mrc",
        "xy_snapshot_path": base / f"{name}_xy.jpg",
        "xz_snapshot_path": base / f"{name}_xz.jpg",
        "slab_snapshot_path": base / f"{name}_slab.jpg",
        "residual_plot_path": base / f"{name}_residuals.png",
        "xy_shift_plot_path": base / f"{name}_xy_shifts.json",
        "summary_path": base / f"{name}_tomo.json",
    }


def process_tilt_series(
    mdoc_path: str | Path,
    output_dir: str | Path,
    *,
    tomo: dict,
    microscope: dict,
    ctf: dict | None = None,
    motion: dict | None = None,
    frames_dir: str | Path | None = None,
) -> dict:
    """Stack, align, reconstruct and snapshot one tilt series; return (and write) the summary.

    `tomo` / `microscope` / `ctf` / `motion` are the config sections of the same names; `ctf`
    given means per-tilt CTF estimation (joint tilt-series fit, `emproc.tomo.ctf`), else the
    mdoc's defocus; `motion` is passed to per-tilt motion correction.
    """
    metadata = read_tilt_series_mdoc(mdoc_path)
    frames = Path(frames_dir) if frames_dir else None
    paths = output_paths(output_dir, metadata.name)
    voltage = float(microscope.get("voltage_kv", 300.0))
    ctf_settings = None if ctf is None else {k: ctf[k] for k in _CTF_KEYS if k in ctf}
    exclusion = ExclusionParams(**{k: tomo[k] for k in asdict(ExclusionParams()) if k in tomo})
    binning = int(tomo.get("binning", 4))
    denoise = tomo.get("denoise") or {}
    frame_halves = bool(denoise.get("enabled")) and denoise.get("halves", "frames") == "frames"
    stack = assemble_tilt_stack(
        metadata,
        frames_dir=frames,
        exclusion=exclusion,
        voltage_kv=voltage,
        ctf_settings=ctf_settings,
        dose_weighting=bool(tomo.get("dose_weighting", True)),
        motion_settings=motion,
        microscope=microscope,
        frame_halves_binning=binning if frame_halves else None,
    )
    write_stack(stack, paths["stack_path"], paths["rawtlt_path"])
    alignment_params = AlignmentParams(
        binning=int(tomo.get("alignment_binning", tomo.get("binning", 4))),
        patch_size_px=int(tomo.get("patch_size_px", 48)),
        refine_axis=bool(tomo.get("refine_tilt_axis", True)),
    )
    # the mdoc's calibrated axis unless the config overrides it for this session
    axis_override = tomo.get("tilt_axis_guess_deg")
    alignment = align_tilt_series(
        stack.images,
        stack.tilt_angles_deg,
        float(metadata.tilt_axis_angle_deg if axis_override is None else axis_override),
        alignment_params,
        fiducial=fiducial_params(tomo),
        pixel_size_angstrom=stack.pixel_size_angstrom,
    )
    if alignment.fallback_reason:
        LOG.warning(
            "%s: patch tracking instead of fiducials: %s", metadata.name, alignment.fallback_reason
        )
    fiducial_model_path = None
    if alignment.fiducial is not None:
        fiducial_model_path = paths["stack_path"].with_suffix(".fid")
        write_fiducial_model(
            fiducial_model_path,
            alignment.fiducial.observed_px,
            alignment.fiducial.fit.used,
            stack.images.shape[1:],
        )
        LOG.info(
            "%s: fiducial alignment, %d of %d beads, residual %.2f px",
            metadata.name,
            alignment.fiducial.beads_used,
            alignment.fiducial.seeds_found,
            alignment.residual_rms_px,
        )
    write_imod_alignment(alignment, paths["xf_path"], paths["tlt_path"], paths["xtilt_path"])
    ny, nx = stack.images.shape[1:]
    write_aln(alignment, paths["aln_path"], (nx, ny))
    write_residual_plot(alignment, paths["residual_plot_path"])
    shifts_angstrom = np.asarray(alignment.shifts_px) * stack.pixel_size_angstrom
    write_xy_json(
        shifts_angstrom[:, 0],
        shifts_angstrom[:, 1],
        paths["xy_shift_plot_path"],
        x_label="shift x (A)",
        y_label="shift y (A)",
    )
    reconstruction = ReconstructionParams(
        binning=binning,
        thickness_px=int(tomo.get("thickness_px", 256)),
        method=str(tomo.get("reconstruction_method", "wbp")),
        sirt_iterations=int(tomo.get("sirt_iterations", 10)),
        sirt_like_iterations=int(tomo.get("sirt_like_iterations", 10)),
        phase_flip=bool(tomo.get("phase_flip", True)),
    )
    used = stack.used
    defoci = [r.defocus_angstrom for r in used] if reconstruction.phase_flip else None

    def align(images: np.ndarray, images_binning: int = 1) -> np.ndarray:
        """Binned, phase-flipped, aligned stack from images already binned by
        `images_binning` (the frame halves are)."""
        return aligned_stack(
            images,
            alignment.tilt_axis_angle_deg,
            np.asarray(alignment.shifts_px) / images_binning,
            binning // images_binning,
            pixel_size_angstrom=stack.pixel_size_angstrom * images_binning,
            defocus_angstrom=defoci,
            voltage_kv=voltage,
            spherical_aberration_mm=float(microscope.get("spherical_aberration_mm", 2.7)),
            amplitude_contrast=float(microscope.get("amplitude_contrast", 0.1)),
            rotations_deg=alignment.rotations_deg,
            magnifications=alignment.magnifications,
        )

    aligned = align(stack.images)
    voxel = stack.pixel_size_angstrom * binning
    reconstruct_tomogram(
        aligned, stack.tilt_angles_deg, reconstruction, paths["tomogram_path"], voxel
    )
    with mrcfile.mmap(paths["tomogram_path"], permissive=False) as mrc:
        write_snapshots(
            mrc.data,
            paths["xy_snapshot_path"],
            paths["xz_snapshot_path"],
            paths["slab_snapshot_path"],
        )
    denoised = {}
    if denoise.get("enabled"):
        denoised = _write_denoised(stack, aligned, align, reconstruction, denoise, paths, voxel)
        LOG.info(
            "%s: denoised (%s halves, half-map correlation %.2f) in %.1f s",
            metadata.name,
            denoised["denoise_halves"],
            denoised["denoise_half_map_correlation"],
            denoised["denoise_seconds"],
        )
    excluded = [r for r in stack.records if r.status != "used"]
    summary = {
        "tilt_series_name": metadata.name,
        "mdoc_path": str(metadata.mdoc_path),
        **{k: str(v) for k, v in paths.items()},
        "number_of_tilts_listed": len(stack.records),
        "number_of_tilts_used": len(used),
        "number_of_tilts_excluded": len(excluded),
        "excluded_tilts": [
            {"tilt_angle_deg": r.tilt_angle_deg, "movie_name": r.movie_name, "reason": r.status}
            for r in excluded
        ],
        "min_tilt_deg": float(stack.tilt_angles_deg.min()),
        "max_tilt_deg": float(stack.tilt_angles_deg.max()),
        "tilt_axis_angle_deg": alignment.tilt_axis_angle_deg,
        "alignment_binning": alignment.binning,
        "alignment_residual_px": alignment.residual_rms_px,
        "alignment_residual_angstrom": alignment.residual_rms_px
        * alignment.binning
        * stack.pixel_size_angstrom,
        "patches_used": alignment.patches_used,
        "fiducial_model_path": None if fiducial_model_path is None else str(fiducial_model_path),
        **alignment_summary(alignment, stack.pixel_size_angstrom),
        "pixel_size_angstrom": stack.pixel_size_angstrom,
        "binning": binning,
        "voxel_size_angstrom": voxel,
        "tomogram_shape_zyx": [reconstruction.thickness_px, *aligned.shape[1:]],
        "reconstruction_method": reconstruction.method,
        "motion_corrected": all(r.motion_corrected for r in used),
        "ctf_estimated": all(r.ctf_estimated for r in used),
        "tilts": [asdict(r) for r in stack.records],
        **denoised,
    }
    write_json_atomic(paths["summary_path"], summary)
    return summary


def _write_denoised(
    stack: TiltStack,
    aligned: np.ndarray,
    align: Callable[[np.ndarray, int], np.ndarray],
    reconstruction: ReconstructionParams,
    denoise: dict,
    paths: dict[str, Path],
    voxel: float,
) -> dict:
    """Half tomograms (frames, or tilts when the movies have single frames), the fitted
    filter applied to the written tomogram, and its files; the summary's `denoise_*` keys."""
    start = time.perf_counter()
    requested = str(denoise.get("halves", "frames"))
    frame_halves = None
    if stack.even_images is not None:

        def frame_halves() -> tuple[np.ndarray, np.ndarray]:
            binned = stack.halves_binning
            return align(stack.even_images, binned), align(stack.odd_images, binned)

    even, odd, halves = half_tomograms(
        requested, aligned, stack.tilt_angles_deg, reconstruction, frame_halves
    )
    if halves != requested:
        LOG.warning("denoising: single-frame tilt movies have no frame halves; even/odd tilts")
    params = DenoiseParams(
        method=str(denoise.get("method", DenoiseParams.method)),
        spectral_smoothing_px=float(
            denoise.get("spectral_smoothing_px", DenoiseParams.spectral_smoothing_px)
        ),
    )
    written = write_denoised_tomogram(paths["tomogram_path"], even, odd, params, voxel)
    # the whole cost: half stacks' alignment and reconstruction, the fit, the files
    return {**written, "denoise_halves": halves, "denoise_seconds": time.perf_counter() - start}


def fiducial_params(tomo: dict) -> FiducialParams | None:
    """Fiducial settings from the `tomo:` config section; None when `bead_diameter_nm` is
    0 or absent (patch tracking only)."""
    diameter = float(tomo.get("bead_diameter_nm") or 0.0)
    if diameter <= 0:
        return None
    return FiducialParams(
        bead_diameter_nm=diameter,
        min_beads=int(tomo.get("fiducial_min_beads", FiducialParams.min_beads)),
        solve_magnification=bool(tomo.get("fiducial_solve_magnification", False)),
        solve_rotation=bool(tomo.get("fiducial_solve_rotation", False)),
    )


_CTF_KEYS = (
    "box_size_px",
    "min_resolution_angstrom",
    "max_resolution_angstrom",
    "min_defocus_angstrom",
    "max_defocus_angstrom",
    "defocus_step_angstrom",
    "expected_astigmatism_angstrom",
)

TABLE_COLUMNS = [
    "tilt_series_name",
    "number_of_tilts_used",
    "number_of_tilts_excluded",
    "min_tilt_deg",
    "max_tilt_deg",
    "tilt_axis_angle_deg",
    "alignment_residual_px",
    "alignment_residual_angstrom",
    "voxel_size_angstrom",
    "tomogram_path",
    "xy_snapshot_path",
    "xz_snapshot_path",
    "slab_snapshot_path",
    "residual_plot_path",
]


def aggregate_tomograms(summary_paths: list[str | Path], table_path: str | Path) -> pd.DataFrame:
    """Per-session tomogram table (CSV), one row per tilt series, sorted by name."""
    import json

    rows = []
    for path in summary_paths:
        with open(path) as handle:
            summary = json.load(handle)
        rows.append({column: summary[column] for column in TABLE_COLUMNS})
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS).sort_values("tilt_series_name")
    with atomic_path(table_path) as temporary:
        table.to_csv(temporary, index=False, float_format="%.4g")
    return table


def ready_tilt_series(
    session_dir: str | Path, mdoc_glob: str, timeout_s: float, now: float | None = None
) -> dict[str, dict]:
    """{name: {"mdoc": path, "movies": [present movie paths]}} for tilt series ready to run
    (complete, or idle past `timeout_s`); the workflow's discovery function."""
    ready = {}
    for name, mdoc_path in discover_tilt_series(session_dir, mdoc_glob).items():
        metadata = read_tilt_series_mdoc(mdoc_path)
        if tilt_series_ready(metadata, timeout_s, now=now):
            movies = [metadata.movie_path(t) for t in metadata.tilts]
            ready[name] = {
                "mdoc": str(mdoc_path),
                "movies": [str(p) for p in movies if p is not None and p.is_file()],
            }
    return ready
