"""File-level picking entry point: dose-weighted micrograph -> STAR, summary JSON, snapshot."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from emproc.io.atomic import write_json_atomic
from emproc.picking.cryolo import CryoloParams, run_cryolo
from emproc.picking.ctf_weight import MicrographCtf
from emproc.picking.io import read_micrograph, write_coordinate_star, write_pick_snapshot
from emproc.picking.log_picker import LogPickerParams, PickingError, pick_log

logger = logging.getLogger(__name__)


def log_params_from_config(picking: Mapping[str, Any]) -> LogPickerParams:
    """LoG settings from the config's `picking` section (defaults for keys not set)."""
    defaults = LogPickerParams()
    threshold = picking.get("threshold_sigma", defaults.threshold_sigma)
    return LogPickerParams(
        min_diameter_angstrom=float(
            picking.get("min_diameter_angstrom", defaults.min_diameter_angstrom)
        ),
        max_diameter_angstrom=float(
            picking.get("max_diameter_angstrom", defaults.max_diameter_angstrom)
        ),
        threshold_sigma=None if threshold is None else float(threshold),
        false_discovery_rate=float(
            picking.get("false_discovery_rate", defaults.false_discovery_rate)
        ),
        contamination_intensity_change=float(
            picking.get("contamination_intensity_change", defaults.contamination_intensity_change)
        ),
    )


def _read_json(path: str | os.PathLike[str], keys: tuple[str, ...]) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError as error:
        raise PickingError(f"{path}: not found") from error
    except json.JSONDecodeError as error:
        raise PickingError(f"{path}: not valid JSON ({error})") from error
    missing = [key for key in keys if key not in data]
    if missing:
        raise PickingError(f"{path}: missing keys {missing}")
    return data


def micrograph_ctf_from_files(
    ctf_json_path: str | os.PathLike[str], import_json_path: str | os.PathLike[str]
) -> MicrographCtf:
    """The CTF estimate (`CtfFind/{movie}_ctf.json`) with the microscope's voltage, Cs and
    amplitude contrast (`Import/{movie}.json`)."""
    estimate = _read_json(
        ctf_json_path, ("defocus_u_angstrom", "defocus_v_angstrom", "astigmatism_angle_deg")
    )
    metadata = _read_json(
        import_json_path, ("voltage_kv", "spherical_aberration_mm", "amplitude_contrast")
    )
    try:
        return MicrographCtf(
            defocus_u_angstrom=float(estimate["defocus_u_angstrom"]),
            defocus_v_angstrom=float(estimate["defocus_v_angstrom"]),
            astigmatism_angle_deg=float(estimate["astigmatism_angle_deg"]),
            voltage_kv=float(metadata["voltage_kv"]),
            spherical_aberration_mm=float(metadata["spherical_aberration_mm"]),
            amplitude_contrast=float(metadata["amplitude_contrast"]),
            phase_shift_deg=float(estimate.get("phase_shift_deg") or 0.0),
        )
    except ValueError as error:
        raise PickingError(f"{ctf_json_path}: {error}") from error


def pick_micrograph_file(
    micrograph_path: str | os.PathLike[str],
    *,
    movie_name: str,
    star_path: str | os.PathLike[str],
    summary_path: str | os.PathLike[str],
    snapshot_path: str | os.PathLike[str],
    picking: Mapping[str, Any],
    workers: int = 1,
    ctf_json_path: str | os.PathLike[str] | None = None,
    import_json_path: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Pick one micrograph and write its outputs; returns the summary written as JSON.

    With `picking.ctf_filter` true the LoG backend also runs the CTF-matched filter, with
    the CTF read from `ctf_json_path` and `import_json_path` (both then required).

    Summary keys (ISPyB contract): movie_name, number_of_particles,
    particle_diameter_angstrom, summary_image_path, coordinates_star_path.
    """
    image, pixel_size = read_micrograph(micrograph_path)
    params = log_params_from_config(picking)
    backend = picking.get("backend", "log")
    if backend == "log":
        ctf = None
        if bool(picking.get("ctf_filter", False)):
            if ctf_json_path is None or import_json_path is None:
                raise PickingError("picking.ctf_filter needs the CTF estimate and import metadata")
            ctf = micrograph_ctf_from_files(ctf_json_path, import_json_path)
        picks = pick_log(image, pixel_size, params, workers=workers, ctf=ctf)
    elif backend == "cryolo":
        cryolo = CryoloParams(
            config_path=str(picking.get("cryolo_config", "")),
            weights_path=str(picking.get("cryolo_weights", "")),
            threshold=float(picking.get("cryolo_threshold", 0.3)),
            gpu=str(picking.get("cryolo_gpu", "")),
        )
        picks = run_cryolo(
            micrograph_path, Path(star_path).parent / f".cryolo_{movie_name}", cryolo
        )
    else:
        raise PickingError(f"unknown picking.backend {backend!r} (log or cryolo)")
    # the configured size, not the LoG's best scale: that scale tracks the particle's mass
    # distribution (blobs pick the smallest scale) rather than its outer diameter
    diameter = 0.5 * (params.min_diameter_angstrom + params.max_diameter_angstrom)
    write_coordinate_star(star_path, picks)
    write_pick_snapshot(snapshot_path, image, picks, diameter / pixel_size)
    summary = {
        "movie_name": movie_name,
        "number_of_particles": int(len(picks)),
        "particle_diameter_angstrom": diameter,
        "summary_image_path": str(Path(snapshot_path).resolve()),
        "coordinates_star_path": str(Path(star_path).resolve()),
    }
    write_json_atomic(summary_path, summary)
    logger.info("%s: %d particles picked (%s backend)", movie_name, len(picks), backend)
    return summary
