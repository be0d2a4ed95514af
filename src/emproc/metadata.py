"""Per-movie metadata for the import stage: EPU XML cross-checked against the config.

The config is the source of truth (a run must be reproducible from it alone); the EPU
metadata is read to catch a session recorded with other optics than the config claims
and to keep what only the microscope knows (nominal defocus, acquisition time).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from emproc.io.epu import (
    EpuMovieMetadata,
    EpuMovieName,
    EpuNameError,
    epu_metadata_path,
    parse_epu_movie_name,
    read_epu_movie_xml,
)
from emproc.io.movie import movie_header


class MetadataMismatchError(ValueError):
    """The microscope recorded other optics than the config states."""


def _check_agreement(
    what: str, recorded: float | None, configured: float, tolerance: float, source: Path
) -> None:
    if recorded is None or configured == 0:
        return
    if abs(recorded - configured) > tolerance * abs(configured):
        raise MetadataMismatchError(
            f"{source}: {what} is {recorded:g} in the EPU metadata but {configured:g} in the "
            "config; fix the config (microscope section) or exclude this movie"
        )


def _timestamp(epu: EpuMovieMetadata | None, name: EpuMovieName | None) -> str | None:
    if epu is not None and epu.timestamp is not None:
        return epu.timestamp.isoformat()
    return name.timestamp.isoformat() if name is not None else None


def build_movie_metadata(
    movie_path: str | Path,
    *,
    session_dir: str | Path,
    microscope: Mapping[str, Any],
    movie_name: str | None = None,
    epu_xml: str | Path | None = None,
) -> dict[str, Any]:
    """The `Import/{movie}.json` record (keys in docs/architecture.md).

    `movie_name` is the `{movie}` id; without it, it is derived from the path relative to
    `session_dir` (which a storage provider's local copy of the movie is not). `epu_xml` is
    the EPU metadata file when given (the rule's staged input); otherwise it is looked for
    beside the movie.
    """
    from emproc.discovery import movie_id

    movie_path = Path(movie_path).resolve()
    session_dir = Path(session_dir).resolve()
    if not movie_path.is_file():
        raise FileNotFoundError(f"movie not found: {movie_path}")
    if movie_path.stat().st_size == 0:
        raise ValueError(f"{movie_path}: movie file is empty")
    # a file that matches the movie glob but is no movie (a text file, a half-copied TIFF)
    # fails here, by its header, instead of counting as imported until motion correction
    movie_header(movie_path, eer_fractions=int(microscope.get("eer_fractions", 40)))
    try:  # movies not named by EPU (e.g. copied by hand) are processed without its metadata
        name = parse_epu_movie_name(movie_path)
        xml_path: Path | None = epu_metadata_path(movie_path)
    except EpuNameError:
        name, xml_path = None, None
    if epu_xml is not None:
        xml_path = Path(epu_xml)
    epu = read_epu_movie_xml(xml_path) if xml_path is not None and xml_path.is_file() else None
    tolerance = float(microscope["pixel_size_tolerance_fraction"])
    if epu is not None:
        _check_agreement(
            "pixel size (A)",
            epu.pixel_size_angstrom,
            microscope["pixel_size_angstrom"],
            tolerance,
            xml_path,
        )
        _check_agreement("voltage (kV)", epu.voltage_kv, microscope["voltage_kv"], 0.01, xml_path)
    gain = microscope.get("gain_reference") or None
    defects = microscope.get("defect_map") or None
    for role, path in (("gain reference", gain), ("defect map", defects)):
        if path and not Path(path).is_file():
            raise FileNotFoundError(f"{role} not found: {path} (config section microscope)")
    return {
        "movie_name": movie_name or movie_id(movie_path, session_dir),
        "movie_path": str(movie_path),
        "metadata_path": str(xml_path) if epu is not None else None,
        "pixel_size_angstrom": float(microscope["pixel_size_angstrom"]),
        "dose_per_frame_e_per_angstrom2": float(microscope["dose_per_frame_e_per_angstrom2"]),
        "pre_exposure_e_per_angstrom2": float(microscope.get("pre_exposure_e_per_angstrom2", 0.0)),
        "voltage_kv": float(microscope["voltage_kv"]),
        "spherical_aberration_mm": float(microscope["spherical_aberration_mm"]),
        "amplitude_contrast": float(microscope["amplitude_contrast"]),
        "nominal_defocus_angstrom": epu.nominal_defocus_angstrom if epu is not None else None,
        "timestamp": _timestamp(epu, name),
        "epu_total_dose_e_per_angstrom2": epu.dose_e_per_angstrom2 if epu is not None else None,
        "epu_number_of_frames": epu.number_of_frames if epu is not None else None,
        "grid_square": name.grid_square if name is not None else None,
        "foil_hole": name.foil_hole if name is not None else None,
        "detector": microscope.get("detector") or (epu.detector if epu is not None else ""),
        "gain_reference": str(Path(gain).resolve()) if gain else None,
        "gain_rotation_deg": int(microscope.get("gain_rotation_deg", 0)),
        "gain_flip": microscope.get("gain_flip", "none"),
        "defect_map": str(Path(defects).resolve()) if defects else None,
        "eer_fractions": int(microscope.get("eer_fractions", 40)),
        # One optics group per run: the config fixes the optics, mismatches fail above.
        "optics_group": 1,
        "optics_group_name": "opticsGroup1",
    }
