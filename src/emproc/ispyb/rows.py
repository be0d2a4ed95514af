"""Column values for ISPyB rows, from emproc's output dicts (pure functions, no database).

Column names are spelled as in the `ispyb.sqlalchemy` models; units follow the models'
comments (ISPyB stores particle diameter, background radius, tomogram residuals and thickness
in nm, everything else emproc writes in Angstrom, degrees, e-/A^2 and pixels).
docs/ispyb.md lists the mapping.
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


def _nm(angstrom: float | None) -> float | None:
    return None if angstrom is None else float(angstrom) / ANGSTROM_PER_NM


def movie_row(
    imported: Mapping[str, Any], movie_number: int, number_of_frames: int | None, source: str
) -> dict[str, Any]:
    """Movie columns from `Import/{movie}.json`.

    fluence = pre-exposure + frames x dose per frame (e-/A^2 accumulated by the end of the movie).
    """
    dose_per_frame = float(require(imported, "dose_per_frame_e_per_angstrom2", source))
    pre_exposure = float(imported.get("pre_exposure_e_per_angstrom2") or 0.0)
    fluence = None if number_of_frames is None else pre_exposure + number_of_frames * dose_per_frame
    nominal_defocus = imported.get("nominal_defocus_angstrom")
    return {
        "movieNumber": movie_number,
        "movieFullPath": str(require(imported, "movie_path", source)),
        "numberOfFrames": number_of_frames,
        "nominalDefocus": None if nominal_defocus is None else float(nominal_defocus),
        "fluence": fluence,
    }


def motion_correction_row(
    motion: Mapping[str, Any], movie_number: int, source: str
) -> dict[str, Any]:
    """MotionCorrection columns from `MotionCorr/{movie}_motion.json` (motion in Angstrom)."""
    return {
        "imageNumber": movie_number,
        "firstFrame": int(require(motion, "first_frame", source)),
        "lastFrame": int(require(motion, "last_frame", source)),
        "dosePerFrame": float(require(motion, "dose_per_frame_e_per_angstrom2", source)),
        "totalMotion": float(require(motion, "total_motion_angstrom", source)),
        "averageMotionPerFrame": float(
            require(motion, "average_motion_per_frame_angstrom", source)
        ),
        "patchesUsedX": int(require(motion, "patches_used_x", source)),
        "patchesUsedY": int(require(motion, "patches_used_y", source)),
        "micrographFullPath": str(require(motion, "micrograph_path", source)),
        "micrographSnapshotFullPath": motion.get("snapshot_path"),
        "driftPlotFullPath": motion.get("drift_plot_path"),
        "comments": (
            f"early motion {motion['early_motion_angstrom']:.2f} A, "
            f"late motion {motion['late_motion_angstrom']:.2f} A"
            if motion.get("early_motion_angstrom") is not None
            and motion.get("late_motion_angstrom") is not None
            else None
        ),
    }


def ctf_row(
    ctf: Mapping[str, Any],
    ctf_config: Mapping[str, Any],
    amplitude_contrast: float | None,
    source: str,
) -> dict[str, Any]:
    """CTF columns from `CtfFind/{movie}_ctf.json`; search limits from the config's `ctf`.

    estimatedDefocus is the mean of U and V; astigmatism = |U - V| (Angstrom).
    """
    defocus_u = float(require(ctf, "defocus_u_angstrom", source))
    defocus_v = float(require(ctf, "defocus_v_angstrom", source))
    box = ctf.get("box_size_px", ctf_config.get("box_size_px"))
    astigmatism = ctf.get("astigmatism_angstrom")
    phase_shift = ctf.get("phase_shift_deg")
    return {
        "boxSizeX": None if box is None else float(box),
        "boxSizeY": None if box is None else float(box),
        "minResolution": ctf.get(
            "min_resolution_angstrom", ctf_config.get("min_resolution_angstrom")
        ),
        "maxResolution": ctf.get(
            "max_resolution_angstrom", ctf_config.get("max_resolution_angstrom")
        ),
        "minDefocus": ctf_config.get("min_defocus_angstrom"),
        "maxDefocus": ctf_config.get("max_defocus_angstrom"),
        "defocusStepSize": ctf_config.get("defocus_step_angstrom"),
        "astigmatism": abs(defocus_u - defocus_v) if astigmatism is None else float(astigmatism),
        "astigmatismAngle": float(require(ctf, "astigmatism_angle_deg", source)),
        "estimatedResolution": float(require(ctf, "fit_resolution_angstrom", source)),
        "estimatedDefocus": 0.5 * (defocus_u + defocus_v),
        "amplitudeContrast": amplitude_contrast,
        "ccValue": float(require(ctf, "cross_correlation", source)),
        "fftTheoreticalFullPath": ctf.get("diagnostic_image_path"),
        "comments": (
            f"defocusU {defocus_u:.1f} A, defocusV {defocus_v:.1f} A"
            + (f", phase shift {float(phase_shift):.1f} deg" if phase_shift else "")
        ),
    }


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
        "pixelSizeOnImage": pixel_size,
        "imageSizeX": None if image_size_px is None else image_size_px[0],
        "imageSizeY": None if image_size_px is None else image_size_px[1],
        "totalExposedDose": total_dose,
        "binning": 1,
        "particleDiameter": _nm(sum(diameters) / len(diameters)) if diameters else None,
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


def particle_picker_row(picking: Mapping[str, Any], source: str) -> dict[str, Any]:
    """ParticlePicker columns (particleDiameter in nm as the model asks)."""
    return {
        "particlePickingTemplate": picking.get("picking_template"),
        "particleDiameter": _nm(float(require(picking, "particle_diameter_angstrom", source))),
        "numberOfParticles": int(require(picking, "number_of_particles", source)),
        "summaryImageFullPath": picking.get("summary_image_path"),
    }


def classification_group_row(batch: Mapping[str, Any], source: str) -> dict[str, Any]:
    """ParticleClassificationGroup columns for one 2D classification batch."""
    return {
        "type": "2D",
        "batchNumber": int(require(batch, "batch_number", source)),
        "numberOfParticlesPerBatch": int(require(batch, "number_of_particles", source)),
        "numberOfClassesPerBatch": int(require(batch, "number_of_classes", source)),
        "symmetry": batch.get("symmetry", "C1"),
        "binnedPixelSize": batch.get("binned_pixel_size_angstrom"),
    }


def classification_row(klass: Mapping[str, Any], source: str) -> dict[str, Any]:
    """ParticleClassification columns for one class of a batch."""
    resolution = klass.get("estimated_resolution_angstrom")
    return {
        "classNumber": int(require(klass, "class_number", source)),
        "classImageFullPath": klass.get("class_image_path"),
        "particlesPerClass": int(require(klass, "particles_per_class", source)),
        "classDistribution": float(require(klass, "class_distribution", source)),
        "estimatedResolution": None if resolution is None else float(resolution),
        "rotationAccuracy": klass.get("rotation_accuracy_deg"),
        "translationAccuracy": klass.get("translation_accuracy_angstrom"),
        "selected": int(bool(klass.get("selected", False))),
    }


def tilt_series_data_collection_row(
    config: Mapping[str, Any], tomogram: Mapping[str, Any], source: str
) -> dict[str, Any]:
    """DataCollection columns for one tilt series (axisStart/axisEnd = tilt range, degrees)."""
    microscope = config.get("microscope", {})
    tilts = require(tomogram, "tilts", source)
    angles = [float(require(t, "tilt_angle_deg", f"{source} tilt")) for t in tilts]
    paths = [Path(str(require(t, "movie_path", f"{source} tilt"))) for t in tilts]
    times = [parse_timestamp(t.get("timestamp"), source) for t in tilts]
    times = [t for t in times if t]
    return {
        "experimenttype": "tomo",
        "runStatus": "DataCollection Successful",
        "imageDirectory": str(paths[0].parent) if paths else None,
        "fileTemplate": tomogram.get("tilt_series_path")
        or str(require(tomogram, "tilt_series_name", source)),
        "numberOfImages": len(tilts),
        "startTime": min(times) if times else None,
        "endTime": max(times) if times else None,
        "axisStart": min(angles) if angles else None,
        "axisEnd": max(angles) if angles else None,
        "voltage": microscope.get("voltage_kv"),
        "pixelSizeOnImage": microscope.get("pixel_size_angstrom"),
        "totalExposedDose": tomogram.get("total_dose_e_per_angstrom2"),
        "binning": int(config.get("tomo", {}).get("binning", 1)),
        "xtalSnapshotFullPath1": tomogram.get("central_slice_image_path"),
        "xtalSnapshotFullPath2": tomogram.get("projection_xy_path"),
        "xtalSnapshotFullPath3": tomogram.get("projection_xz_path"),
        "xtalSnapshotFullPath4": tomogram.get("xy_shift_plot_path"),
    }


def tomogram_row(tomogram: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Tomogram columns (residuals and thickness converted from Angstrom to nm)."""
    volume = Path(str(require(tomogram, "volume_path", source)))
    return {
        "volumeFile": str(volume),
        "stackFile": tomogram.get("stack_path"),
        "fileDirectory": str(volume.parent),
        "sizeX": int(require(tomogram, "size_x_px", source)),
        "sizeY": int(require(tomogram, "size_y_px", source)),
        "sizeZ": int(require(tomogram, "size_z_px", source)),
        "pixelSpacing": float(require(tomogram, "pixel_spacing_angstrom", source)),
        "residualErrorMean": _nm(tomogram.get("residual_error_mean_angstrom")),
        "residualErrorSD": _nm(tomogram.get("residual_error_sd_angstrom")),
        "xAxisCorrection": tomogram.get("x_axis_correction_deg"),
        "tiltAngleOffset": tomogram.get("tilt_angle_offset_deg"),
        "zShift": tomogram.get("z_shift_px"),
        "thickness": _nm(tomogram.get("thickness_angstrom")),
        "centralSliceImage": tomogram.get("central_slice_image_path"),
        "tomogramMovie": tomogram.get("tomogram_movie_path"),
        "xyShiftPlot": tomogram.get("xy_shift_plot_path"),
        "projXY": tomogram.get("projection_xy_path"),
        "projXZ": tomogram.get("projection_xz_path"),
        "globalAlignmentQuality": tomogram.get("global_alignment_quality"),
    }


def tilt_movie_row(tilt: Mapping[str, Any], movie_number: int, source: str) -> dict[str, Any]:
    """Movie columns for one tilt image (angle = nominal tilt, degrees)."""
    frames = tilt.get("number_of_frames")
    return {
        "movieNumber": movie_number,
        "movieFullPath": str(require(tilt, "movie_path", source)),
        "angle": float(require(tilt, "tilt_angle_deg", source)),
        "numberOfFrames": None if frames is None else int(frames),
        "nominalDefocus": tilt.get("nominal_defocus_angstrom"),
        "fluence": tilt.get("accumulated_dose_e_per_angstrom2"),
    }


def tilt_alignment_row(
    tilt: Mapping[str, Any], tilt_axis_deg: float | None, source: str
) -> dict[str, Any]:
    """TiltImageAlignment columns; the tilt axis defaults to the tomogram's."""
    axis = tilt.get("refined_tilt_axis_deg", tilt_axis_deg)
    return {
        "refinedTiltAngle": tilt.get("refined_tilt_angle_deg", tilt.get("tilt_angle_deg")),
        "refinedTiltAxis": None if axis is None else float(axis),
        "refinedMagnification": tilt.get("refined_magnification"),
        "residualError": _nm(tilt.get("residual_error_angstrom")),
        "defocusU": tilt.get("defocus_u_angstrom"),
        "defocusV": tilt.get("defocus_v_angstrom"),
        "resolution": tilt.get("ctf_fit_resolution_angstrom"),
        "fitQuality": tilt.get("ctf_cross_correlation"),
        "psdFile": tilt.get("ctf_diagnostic_image_path"),
    }


def tomogram_from_tomo_summary(
    summary: Mapping[str, Any], session_dir: str | Path, source: str
) -> dict[str, Any]:
    """The ingest's tomogram dict from `Tomograms/{ts}/{ts}_tomo.json` (emproc.tomo's summary).

    Only tilts whose status is 'used' are aligned tilts; relative movie names are resolved
    against `session_dir`. tomogram_shape_zyx is [z, y, x] in reconstruction voxels.
    """
    shape = require(summary, "tomogram_shape_zyx", source)
    if len(shape) != 3:
        raise IngestInputError(f"{source}: tomogram_shape_zyx must have 3 values, not {shape}")
    session_dir = Path(session_dir)
    tilts = []
    for record in require(summary, "tilts", source):
        if record.get("status", "used") != "used" or not record.get("movie_name"):
            continue
        movie = Path(str(record["movie_name"]))
        defocus = record.get("defocus_angstrom")
        tilts.append(
            {
                "movie_path": str(movie if movie.is_absolute() else session_dir / movie),
                "tilt_angle_deg": float(require(record, "tilt_angle_deg", source)),
                "acquisition_number": int(record.get("acquisition_index", len(tilts))) + 1,
                "accumulated_dose_e_per_angstrom2": record.get("accumulated_dose_e_per_angstrom2"),
                "defocus_u_angstrom": defocus,
                "defocus_v_angstrom": defocus,
                "ctf_fit_resolution_angstrom": record.get("ctf_fit_resolution_angstrom"),
            }
        )
    return {
        "tilt_series_name": require(summary, "tilt_series_name", source),
        "tilt_series_path": summary.get("mdoc_path"),
        "volume_path": require(summary, "tomogram_path", source),
        "stack_path": summary.get("stack_path"),
        "size_x_px": int(shape[2]),
        "size_y_px": int(shape[1]),
        "size_z_px": int(shape[0]),
        "pixel_spacing_angstrom": float(require(summary, "voxel_size_angstrom", source)),
        "tilt_axis_angle_deg": summary.get("tilt_axis_angle_deg"),
        "residual_error_mean_angstrom": summary.get("alignment_residual_angstrom"),
        "thickness_angstrom": float(shape[0]) * float(summary["voxel_size_angstrom"]),
        "central_slice_image_path": summary.get("slab_snapshot_path"),
        "projection_xy_path": summary.get("xy_snapshot_path"),
        "projection_xz_path": summary.get("xz_snapshot_path"),
        "residual_plot_path": summary.get("residual_plot_path"),
        "tilts": tilts,
    }
