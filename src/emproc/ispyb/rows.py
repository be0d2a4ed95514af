"""Column values every recipe needs, and the DataCollection rows (pure functions).

Column names are spelled as in the `ispyb.sqlalchemy` models; units follow the models'
comments and PATo (ISPyB stores pixelSizeOnImage, particle diameter, background radius,
tomogram residuals and thickness in nm, everything else emproc writes in Angstrom, degrees,
e-/A^2 and pixels). The recipes' own rows are in `emproc.ispyb.recipes`; docs/ispyb.md
lists the mapping.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ANGSTROM_PER_NM = 10.0


class IngestInputError(ValueError):
    """An emproc result lacks a key the ingest needs, or has a value of the wrong kind."""


def require(data: Mapping[str, Any], key: str, source: str) -> Any:
    """`data[key]`, or an error naming the source file/dict and the missing key."""
    if key not in data or data[key] is None:
        raise IngestInputError(f"{source}: required key {key!r} is missing or null")
    return data[key]


def parse_timestamp(value: str | None, source: str) -> datetime.datetime | None:
    """ISO 8601 -> naive datetime (ISPyB DATETIME columns have no time zone), or None."""
    if value is None:
        return None
    try:
        moment = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise IngestInputError(f"{source}: timestamp {value!r} is not ISO 8601") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.UTC).replace(tzinfo=None)
    return moment.replace(microsecond=0)


def optional_float(value: Any) -> float | None:
    """float(value), None staying None (an optional number of an emproc summary)."""
    return None if value is None else float(value)


def nm(angstrom: float | None) -> float | None:
    """Angstrom -> nm (None stays None)."""
    return None if angstrom is None else float(angstrom) / ANGSTROM_PER_NM


def spa_data_collection_row(
    config: Mapping[str, Any],
    imports: Sequence[Mapping[str, Any]],
    snapshot_paths: Sequence[str],
    frames_per_movie: int | None,
    image_size_px: tuple[int, int] | None,
) -> dict[str, Any]:
    """DataCollection EM columns for one SPA collection (all movies of the session).

    totalExposedDose is per movie (pre-exposure + frames x dose per frame); bgRadius converts
    the extraction background radius (downscaled pixels) to nm as the model asks.
    """
    microscope = config.get("microscope", {})
    ctf = config.get("ctf", {})
    picking = config.get("picking", {})
    extraction = config.get("extraction", {})
    session = config.get("session", {})
    pixel_size = float(microscope.get("pixel_size_angstrom", 0.0)) or None
    times = [
        parse_timestamp(i.get("timestamp"), f"Import/{i.get('movie_name')}.json") for i in imports
    ]
    times = [t for t in times if t]
    defoci = [
        float(i["nominal_defocus_angstrom"])
        for i in imports
        if i.get("nominal_defocus_angstrom") is not None
    ]
    dose = microscope.get("dose_per_frame_e_per_angstrom2")
    total_dose = (
        None
        if dose is None or frames_per_movie is None
        else float(microscope.get("pre_exposure_e_per_angstrom2") or 0.0)
        + frames_per_movie * float(dose)
    )
    diameters = [picking.get("min_diameter_angstrom"), picking.get("max_diameter_angstrom")]
    diameters = [float(d) for d in diameters if d is not None]
    bg_radius_nm = None
    if pixel_size and extraction.get("bg_radius_px") and extraction.get("downscale_size_px"):
        downscaled_pixel = (
            pixel_size * extraction.get("box_size_px", 256) / extraction["downscale_size_px"]
        )
        bg_radius_nm = extraction["bg_radius_px"] * downscaled_pixel / ANGSTROM_PER_NM
    snapshots = list(snapshot_paths[:4]) + [None] * (4 - min(4, len(snapshot_paths)))
    return {
        "experimenttype": "EM",
        "runStatus": "DataCollection Successful",
        "imageDirectory": str(Path(session.get("session_dir", "")).resolve()),
        "fileTemplate": session.get("movie_glob"),
        "numberOfImages": len(imports),
        "startTime": min(times) if times else None,
        "endTime": max(times) if times else None,
        "voltage": microscope.get("voltage_kv"),
        "pixelSizeOnImage": nm(pixel_size),  # PATo shows 10 x this in Angstrom
        "imageSizeX": None if image_size_px is None else image_size_px[0],
        "imageSizeY": None if image_size_px is None else image_size_px[1],
        "totalExposedDose": total_dose,
        "totalAbsorbedDose": total_dose,
        "binning": 1,
        "particleDiameter": nm(sum(diameters) / len(diameters)) if diameters else None,
        "boxSize_CTF": ctf.get("box_size_px"),
        "minResolution": ctf.get("min_resolution_angstrom"),
        "minDefocus": min(defoci) if defoci else ctf.get("min_defocus_angstrom"),
        "maxDefocus": max(defoci) if defoci else ctf.get("max_defocus_angstrom"),
        "defocusStepSize": ctf.get("defocus_step_angstrom"),
        "amountAstigmatism": ctf.get("expected_astigmatism_angstrom"),
        "extractSize": extraction.get("box_size_px"),
        "bgRadius": bg_radius_nm,
        "phasePlate": int(bool(ctf.get("phase_plate", False))),
        "xtalSnapshotFullPath1": snapshots[0],
        "xtalSnapshotFullPath2": snapshots[1],
        "xtalSnapshotFullPath3": snapshots[2],
        "xtalSnapshotFullPath4": snapshots[3],
    }


def tilt_series_data_collection_row(
    config: Mapping[str, Any],
    summary: Mapping[str, Any],
    tilts: Sequence[Mapping[str, Any]],
    source: str,
) -> dict[str, Any]:
    """DataCollection columns for one tilt series from `Tomograms/{ts}/{ts}_tomo.json` and its
    used tilts (`emproc.ispyb.recipes.em_tomo_preprocess.used_tilts`): axisStart/axisEnd =
    tilt range (degrees), start/end = first/last tilt's mdoc DateTime."""
    microscope = config.get("microscope", {})
    angles = [float(require(t, "tilt_angle_deg", f"{source} tilt")) for t in tilts]
    paths = [Path(str(require(t, "movie_path", f"{source} tilt"))) for t in tilts]
    times = [t["acquired"] for t in tilts if t.get("acquired") is not None]
    doses = [
        float(t.get("accumulated_dose_e_per_angstrom2") or 0.0)
        + float(t.get("exposure_dose_e_per_angstrom2") or 0.0)
        for t in tilts
    ]
    pixel_size = summary.get("pixel_size_angstrom", microscope.get("pixel_size_angstrom"))
    return {
        "experimenttype": "tomo",
        "runStatus": "DataCollection Successful",
        "imageDirectory": str(paths[0].parent) if paths else None,
        "fileTemplate": summary.get("mdoc_path")
        or str(require(summary, "tilt_series_name", source)),
        "numberOfImages": len(tilts),
        "startTime": min(times) if times else None,
        "endTime": max(times) if times else None,
        "axisStart": min(angles) if angles else None,
        "axisEnd": max(angles) if angles else None,
        "voltage": microscope.get("voltage_kv"),
        "pixelSizeOnImage": nm(pixel_size),
        "totalExposedDose": max(doses) if doses else None,
        "totalAbsorbedDose": max(doses) if doses else None,
        "binning": int(summary.get("binning", config.get("tomo", {}).get("binning", 1))),
        "xtalSnapshotFullPath1": summary.get("slab_snapshot_path"),
        "xtalSnapshotFullPath2": summary.get("xy_snapshot_path"),
        "xtalSnapshotFullPath3": summary.get("xz_snapshot_path"),
    }
