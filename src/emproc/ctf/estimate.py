"""CTFFIND4-style CTF estimation of one micrograph, and its pipeline wrapper.

Steps: averaged amplitude spectrum of overlapping tiles (`spectrum`), background
subtraction, search and refinement of defocus U/V, astigmatism angle and optional phase
shift against CTF^2 (`fit`), and the fit resolution from the equiphase average (`resolution`).

Conventions (CTFFIND4/RELION): defocus_u_angstrom >= defocus_v_angstrom, both positive for
underfocus; astigmatism_angle_deg is the direction of defocus U, counter-clockwise from +X,
in (-90, 90].
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emproc.ctf.errors import CtfParameterError, load_json
from emproc.ctf.fit import fit_ctf, fit_points, is_significant
from emproc.ctf.outputs import write_ctf_image_mrc, write_ctffind_txt, write_diagnostic_png
from emproc.ctf.resolution import ring_fit
from emproc.ctf.spectrum import (
    average_power_spectrum,
    background_box_size_px,
    fitting_tile_size_px,
    subtract_background,
)
from emproc.io.atomic import write_json_atomic
from emproc.io.micrograph import MicrographReadError, read_micrograph

__all__ = [
    "CtfParameterError",
    "CtfResult",
    "MicrographReadError",
    "estimate_ctf",
    "estimate_ctf_for_micrograph",
    "load_json",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CtfResult:
    """Estimated CTF of one micrograph; the array fields feed the diagnostic image."""

    defocus_u_angstrom: float
    defocus_v_angstrom: float
    astigmatism_angle_deg: float  # of defocus U, counter-clockwise from +X, in (-90, 90]
    astigmatism_angstrom: float  # defocus U - defocus V (>= 0)
    phase_shift_deg: float
    cross_correlation: float  # spectrum vs CTF^2 over [max_resolution, min_resolution]
    fit_resolution_angstrom: float
    # for the diagnostic image: the microscope parameters, the background-subtracted
    # centred spectrum (its own pixel size: small pixels are binned) and the 1D ring fit
    voltage_kv: float = field(repr=False, compare=False)
    spherical_aberration_mm: float = field(repr=False, compare=False)
    amplitude_contrast: float = field(repr=False, compare=False)
    spectrum: np.ndarray = field(repr=False, compare=False)
    spectrum_pixel_size_angstrom: float = field(repr=False, compare=False)
    profile_frequency_per_angstrom: np.ndarray = field(repr=False, compare=False)
    profile_equiphase_average: np.ndarray = field(repr=False, compare=False)
    profile_ctf_squared: np.ndarray = field(repr=False, compare=False)
    profile_local_correlation: np.ndarray = field(repr=False, compare=False)


def estimate_ctf(
    micrograph: np.ndarray,
    *,
    pixel_size_angstrom: float,
    voltage_kv: float = 300.0,
    spherical_aberration_mm: float = 2.7,
    amplitude_contrast: float = 0.1,
    box_size_px: int = 512,
    min_resolution_angstrom: float = 30.0,
    max_resolution_angstrom: float = 5.0,
    min_defocus_angstrom: float = 5000.0,
    max_defocus_angstrom: float = 50000.0,
    defocus_step_angstrom: float = 500.0,
    expected_astigmatism_angstrom: float = 200.0,
    phase_plate: bool = False,
    min_phase_shift_deg: float = 0.0,
    max_phase_shift_deg: float = 180.0,
    threads: int = 1,
) -> CtfResult:
    """Estimate defocus, astigmatism, phase shift and fit resolution of a micrograph ([y, x])."""
    if pixel_size_angstrom <= 0:
        raise CtfParameterError(f"pixel_size_angstrom must be > 0, got {pixel_size_angstrom}")
    if not max_resolution_angstrom < min_resolution_angstrom:
        raise CtfParameterError(
            f"max_resolution_angstrom ({max_resolution_angstrom}) must be finer (smaller) than "
            f"min_resolution_angstrom ({min_resolution_angstrom})"
        )
    nyquist = 2.0 * pixel_size_angstrom
    if max_resolution_angstrom < nyquist:
        raise CtfParameterError(
            f"max_resolution_angstrom ({max_resolution_angstrom}) is beyond Nyquist ({nyquist} A)"
        )
    micrograph = np.asarray(micrograph)
    if micrograph.ndim != 2:
        raise CtfParameterError(f"expected a 2D micrograph, got shape {micrograph.shape}")
    if min(micrograph.shape) < box_size_px:
        raise CtfParameterError(
            f"micrograph {micrograph.shape[1]}x{micrograph.shape[0]} px is smaller than "
            f"box_size_px {box_size_px}"
        )
    tile_size, spectrum_pixel = fitting_tile_size_px(
        box_size_px, pixel_size_angstrom, max_resolution_angstrom, micrograph.shape
    )
    power = average_power_spectrum(micrograph, box_size_px, threads, tile_size_px=tile_size)
    spectrum = subtract_background(
        np.sqrt(power),
        background_box_size_px(box_size_px, spectrum_pixel, min_resolution_angstrom),
    )
    points = fit_points(
        spectrum,
        spectrum_pixel,
        min_resolution_angstrom,
        max_resolution_angstrom,
        voltage_kv,
        spherical_aberration_mm,
        amplitude_contrast,
    )
    fitted = fit_ctf(
        points,
        min_defocus_angstrom=min_defocus_angstrom,
        max_defocus_angstrom=max_defocus_angstrom,
        defocus_step_angstrom=defocus_step_angstrom,
        expected_astigmatism_angstrom=expected_astigmatism_angstrom,
        phase_plate=phase_plate,
        min_phase_shift_deg=min_phase_shift_deg,
        max_phase_shift_deg=max_phase_shift_deg,
    )
    rings = ring_fit(
        spectrum,
        spectrum_pixel,
        fitted.defocus_u_angstrom,
        fitted.defocus_v_angstrom,
        fitted.astigmatism_angle_deg,
        voltage_kv,
        spherical_aberration_mm,
        amplitude_contrast,
        fitted.phase_shift_deg,
        min_resolution_angstrom,
        rings_detected=is_significant(points, fitted.cross_correlation),
    )
    return CtfResult(
        defocus_u_angstrom=float(fitted.defocus_u_angstrom),
        defocus_v_angstrom=float(fitted.defocus_v_angstrom),
        astigmatism_angle_deg=float(fitted.astigmatism_angle_deg),
        astigmatism_angstrom=float(fitted.defocus_u_angstrom - fitted.defocus_v_angstrom),
        phase_shift_deg=float(fitted.phase_shift_deg),
        cross_correlation=float(fitted.cross_correlation),
        fit_resolution_angstrom=float(rings.fit_resolution_angstrom),
        voltage_kv=float(voltage_kv),
        spherical_aberration_mm=float(spherical_aberration_mm),
        amplitude_contrast=float(amplitude_contrast),
        spectrum=spectrum,
        spectrum_pixel_size_angstrom=float(spectrum_pixel),
        profile_frequency_per_angstrom=rings.frequency_per_angstrom,
        profile_equiphase_average=rings.equiphase_average,
        profile_ctf_squared=rings.ctf_squared,
        profile_local_correlation=rings.local_correlation,
    )


CTF_PARAMETER_DEFAULTS: dict[str, Any] = {
    "box_size_px": 512,
    "min_resolution_angstrom": 30.0,
    "max_resolution_angstrom": 5.0,
    "min_defocus_angstrom": 5000.0,
    "max_defocus_angstrom": 50000.0,
    "defocus_step_angstrom": 500.0,
    "expected_astigmatism_angstrom": 200.0,
    "phase_plate": False,
    "min_phase_shift_deg": 0.0,
    "max_phase_shift_deg": 180.0,
}


def estimate_ctf_for_micrograph(
    micrograph_path: str | os.PathLike[str],
    metadata: dict[str, Any],
    ctf_params: dict[str, Any],
    outputs: dict[str, str | os.PathLike[str]],
    threads: int = 1,
) -> dict[str, Any]:
    """Estimate the CTF of one motion-corrected sum and write its outputs.

    `metadata` is the Import JSON (microscope parameters, `movie_name`), `ctf_params` the
    config `ctf` section (missing keys take the schema defaults), `outputs` maps
    `ctffind_txt`, `summary`, `diagnostic` (PNG) and `ctf_image` (`.ctf` MRC) to paths. The
    pixel size comes from the MRC header (the sum may be binned) and falls back to the
    Import JSON if the header has none.
    Returns the `_ctf.json` summary.
    """
    unknown = set(ctf_params) - set(CTF_PARAMETER_DEFAULTS)
    if unknown:
        raise CtfParameterError(f"unknown ctf parameters: {sorted(unknown)}")
    missing = {"ctffind_txt", "summary", "diagnostic", "ctf_image"} - set(outputs)
    if missing:
        raise CtfParameterError(f"outputs lacks paths for {sorted(missing)}")
    params = {**CTF_PARAMETER_DEFAULTS, **ctf_params}
    micrograph, header_pixel_size = read_micrograph(micrograph_path)
    pixel_size = header_pixel_size or float(metadata["pixel_size_angstrom"])
    microscope = {
        "voltage_kv": float(metadata["voltage_kv"]),
        "spherical_aberration_mm": float(metadata["spherical_aberration_mm"]),
        "amplitude_contrast": float(metadata["amplitude_contrast"]),
    }
    try:
        result = estimate_ctf(
            micrograph, pixel_size_angstrom=pixel_size, **microscope, **params, threads=threads
        )
    except ValueError as error:  # name the micrograph in parameter / content errors
        raise type(error)(f"micrograph {micrograph_path}: {error}") from error
    write_ctffind_txt(
        outputs["ctffind_txt"],
        result,
        micrograph_path=micrograph_path,
        pixel_size_angstrom=pixel_size,
        **microscope,
        box_size_px=params["box_size_px"],
        min_resolution_angstrom=params["min_resolution_angstrom"],
        max_resolution_angstrom=params["max_resolution_angstrom"],
        min_defocus_angstrom=params["min_defocus_angstrom"],
        max_defocus_angstrom=params["max_defocus_angstrom"],
    )
    write_diagnostic_png(
        outputs["diagnostic"], result, title=str(metadata.get("movie_name", micrograph_path))
    )
    write_ctf_image_mrc(outputs["ctf_image"], result)
    summary = {
        "movie_name": metadata.get("movie_name"),
        "micrograph_path": os.fspath(micrograph_path),
        "defocus_u_angstrom": result.defocus_u_angstrom,
        "defocus_v_angstrom": result.defocus_v_angstrom,
        "astigmatism_angle_deg": result.astigmatism_angle_deg,
        "astigmatism_angstrom": result.astigmatism_angstrom,
        "phase_shift_deg": result.phase_shift_deg,
        "cross_correlation": result.cross_correlation,
        "fit_resolution_angstrom": result.fit_resolution_angstrom,
        "diagnostic_image_path": os.fspath(outputs["diagnostic"]),
        "ctf_image_path": os.fspath(outputs["ctf_image"]),
        "ctffind_txt_path": os.fspath(outputs["ctffind_txt"]),
        "box_size_px": int(params["box_size_px"]),
        "min_resolution_angstrom": float(params["min_resolution_angstrom"]),
        "max_resolution_angstrom": float(params["max_resolution_angstrom"]),
    }
    write_json_atomic(outputs["summary"], summary)
    logger.info(
        "%s: defocus U %.0f A, V %.0f A, angle %.1f deg, phase %.1f deg, CC %.3f, fit to %.2f A",
        micrograph_path,
        result.defocus_u_angstrom,
        result.defocus_v_angstrom,
        result.astigmatism_angle_deg,
        result.phase_shift_deg,
        result.cross_correlation,
        result.fit_resolution_angstrom,
    )
    return summary
