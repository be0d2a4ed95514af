"""em-tomo-align: the tomogram PATo's tomography page shows, and each tilt's alignment.

PATo lists `dataCollections/{id}/tomograms` per ProcessingJob (the frontend keeps only
em-tomo-align and em-tomo-preprocess jobs) and serves every image as
`Tomogram.fileDirectory + "/" + column`, so the image columns hold file names relative to
`fileDirectory` (the tilt series' output folder).

| row / column | from `Tomograms/{ts}/{ts}_tomo.json` | PATo page |
|---|---|---|
| Tomogram volumeFile, stackFile, sizeX/Y/Z, pixelSpacing, thickness (nm) | `tomogram_path`, `stack_path`, `tomogram_shape_zyx`, `voxel_size_angstrom` | tomogram info |
| centralSliceImage, projXY, projXZ | `slab_snapshot_path`, `xy_snapshot_path`, `xz_snapshot_path` (names in fileDirectory) | central slice, projections |
| xyShiftPlot | `xy_shift_plot_path` (JSON `{"data": [{"x", "y"}]}`, A) | shift plot |
| residualErrorMean, residualErrorSD (nm), zShift (unbinned px), xAxisCorrection (0) | `alignment_residual_mean_nm`, `alignment_residual_sd_nm`, `z_shift_px` (TOMOGRAM_ALIGNMENT) | tomogram info |
| TiltImageAlignment per used tilt: refinedTiltAngle, refinedTiltAxis, refinedMagnification, residualError (nm) | the tilt's `tilt_alignment` entry (TILT_ALIGNMENT) | tilt list order, CTF plot |
| TiltImageAlignment defocusU/V, resolution | the tilt record's `defocus_angstrom`, `ctf_fit_resolution_angstrom` (TILT_CTF) | tilt CTF plot |
| AutoProcProgram.processingMessage | `alignment_method`, beads used of found, `alignment_fallback_reason` | processing job status |

Natural keys: Tomogram dataCollectionId; TiltImageAlignment (movieId, tomogramId), its
primary key. The denoised tomogram (ProcessedTomogram, processingType "Denoised") is written
by `em_tomo_denoise` under the tomogramId this one returns.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import ispyb.sqlalchemy as models
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from emproc.ispyb.collection import CollectionIds, Recipe
from emproc.ispyb.db import known_or_found, upsert
from emproc.ispyb.retry import DEFAULT_RETRY, RetryPolicy, run_in_transaction
from emproc.ispyb.rows import IngestInputError, nm, optional_float, require
from emproc.ispyb.run import IngestRun

RECIPE = Recipe("em-tomo-align", "emproc tilt-series alignment and reconstruction")

# Tomogram column -> alternatives of (`_tomo.json` key, conversion), first present wins; none
# present leaves the column empty. Keys of emproc.tomo.alignment_report (docs/architecture.md);
# `alignment_residual_angstrom` is the single residual of outputs before it.
TOMOGRAM_ALIGNMENT: dict[str, tuple[tuple[str, Callable[[Any], Any]], ...]] = {
    "residualErrorMean": (
        ("alignment_residual_mean_nm", float),
        ("alignment_residual_angstrom", nm),
    ),
    "residualErrorSD": (("alignment_residual_sd_nm", float),),
    # etomo's z shift to centre the volume, unbinned pixels of the stack
    "zShift": (("z_shift_px", float),),
    # emproc solves no x-axis tilt, so the correction applied is none (etomo's X axis tilt 0)
    "xAxisCorrection": (("alignment_method", lambda _: 0.0),),
}
# TiltImageAlignment column -> key of the tilt's `tilt_alignment` entry (residualError is
# converted from unbinned pixels in `tilt_alignment_rows`)
TILT_ALIGNMENT: dict[str, str] = {
    "refinedTiltAngle": "tilt_angle_deg",  # nominal: emproc does not refine tilt angles
    "refinedTiltAxis": "tilt_axis_angle_deg",  # with the tilt's own rotation
    "refinedMagnification": "magnification",
}
# TiltImageAlignment column -> key of the tilt record (`tilts`): its CTF
TILT_CTF: dict[str, str] = {
    "defocusU": "defocus_angstrom",
    "defocusV": "defocus_angstrom",
    "resolution": "ctf_fit_resolution_angstrom",
}
# Tomogram image column -> `_tomo.json` key
TOMOGRAM_IMAGES = {
    "centralSliceImage": "slab_snapshot_path",
    "projXY": "xy_snapshot_path",
    "projXZ": "xz_snapshot_path",
    "xyShiftPlot": "xy_shift_plot_path",
    "tomogramMovie": "tomogram_movie_path",
}


def _first_present(
    source: Mapping[str, Any], alternatives: Sequence[tuple[str, Callable[[Any], Any]]]
) -> Any:
    for key, convert in alternatives:
        if source.get(key) is not None:
            return convert(source[key])
    return None


def tomogram_row(summary: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Tomogram columns (residuals and thickness in nm, images relative to fileDirectory)."""
    volume = Path(str(require(summary, "tomogram_path", source)))
    shape = require(summary, "tomogram_shape_zyx", source)
    if len(shape) != 3:
        raise IngestInputError(f"{source}: tomogram_shape_zyx must have 3 values, not {shape}")
    voxel = float(require(summary, "voxel_size_angstrom", source))
    directory = volume.parent
    row = {
        "volumeFile": str(volume),
        "stackFile": summary.get("stack_path"),
        "fileDirectory": str(directory),
        "sizeX": int(shape[2]),
        "sizeY": int(shape[1]),
        "sizeZ": int(shape[0]),
        "pixelSpacing": voxel,
        "thickness": nm(float(shape[0]) * voxel),
        **{c: _first_present(summary, a) for c, a in TOMOGRAM_ALIGNMENT.items()},
    }
    for column, key in TOMOGRAM_IMAGES.items():
        path = summary.get(key)
        row[column] = None if not path else os.path.relpath(path, directory)
    return row


def alignment_message(summary: Mapping[str, Any]) -> str | None:
    """The em-tomo-align program's processingMessage: how the series was aligned (ISPyB has
    no column for the method or the beads), None for outputs without the alignment keys."""
    method = summary.get("alignment_method")
    if method is None:
        return None
    if method == "fiducial":
        return (
            f"fiducial alignment: {summary.get('fiducial_beads_used', 0)} of "
            f"{summary.get('fiducial_beads_found', 0)} beads used"
        )
    reason = summary.get("alignment_fallback_reason")
    return f"{method.replace('_', ' ')} alignment" + (f" (fiducials: {reason})" if reason else "")


def tilt_alignment_rows(
    summary: Mapping[str, Any], tilts: Sequence[Mapping[str, Any]], source: str
) -> list[dict[str, Any]]:
    """TiltImageAlignment columns per used tilt (same order as `tilts`).

    The refined values come from the `tilt_alignment` entry of the same nominal tilt angle
    (stack order is by angle); residualError is its `residual_mean_px` in nm (unbinned
    pixels x `pixel_size_angstrom` / 10). Outputs without `tilt_alignment` give the nominal
    angle and the series' tilt axis.
    """
    per_angle = {
        round(float(entry["tilt_angle_deg"]), 2): entry
        for entry in summary.get("tilt_alignment") or ()
    }
    nm_per_px = nm(summary.get("pixel_size_angstrom"))
    rows = []
    for tilt in tilts:
        angle = float(require(tilt, "tilt_angle_deg", source))
        entry = per_angle.get(round(angle, 2))
        if per_angle and entry is None:
            raise IngestInputError(f"{source}: tilt_alignment has no tilt at {angle:g} deg")
        entry = entry or {
            "tilt_angle_deg": angle,
            "tilt_axis_angle_deg": summary.get("tilt_axis_angle_deg"),
        }
        row = {column: optional_float(entry.get(key)) for column, key in TILT_ALIGNMENT.items()}
        residual_px = entry.get("residual_mean_px")
        row["residualError"] = (
            None if residual_px is None or nm_per_px is None else float(residual_px) * nm_per_px
        )
        row.update({column: optional_float(tilt.get(key)) for column, key in TILT_CTF.items()})
        rows.append(row)
    return rows


def ingest_tomogram(
    engine: Engine,
    collection: CollectionIds,
    summary: Mapping[str, Any],
    tilts: Sequence[Mapping[str, Any]],
    movie_ids: Sequence[int],
    known_ids: Mapping[str, Any] | None = None,
    policy: RetryPolicy = DEFAULT_RETRY,
) -> dict[str, Any]:
    """The Tomogram and a TiltImageAlignment per used tilt (`movie_ids` from
    em_tomo_preprocess, same order as `tilts`), in one transaction."""
    name = str(require(summary, "tilt_series_name", "tomogram"))
    source = f"tomogram of tilt series {name}"
    values = tomogram_row(summary, source)
    values.update(
        dataCollectionId=collection.data_collection_id,
        autoProcProgramId=collection.programs[RECIPE.name],
    )
    alignments = tilt_alignment_rows(summary, tilts, source)

    def unit(connection: sa.Connection, attempt: int) -> dict[str, Any]:
        tomogram_id = known_or_found(
            connection, known_ids or {}, "tomogramId", attempt, True,
            models.Tomogram, dataCollectionId=collection.data_collection_id,
        )  # fmt: skip
        tomogram_id = upsert(connection, models.Tomogram, tomogram_id, values)
        for movie_id, alignment in zip(movie_ids, alignments, strict=True):
            updated = connection.execute(
                sa.update(models.TiltImageAlignment)
                .where(
                    models.TiltImageAlignment.movieId == movie_id,
                    models.TiltImageAlignment.tomogramId == tomogram_id,
                )
                .values(**alignment)
            ).rowcount
            if not updated:
                connection.execute(
                    sa.insert(models.TiltImageAlignment).values(
                        movieId=movie_id, tomogramId=tomogram_id, **alignment
                    )
                )
        return {"tomogramId": tomogram_id}

    return run_in_transaction(engine, unit, source, policy)


def ingest(
    run: IngestRun,
    collection: CollectionIds,
    summary_path: Path,
    summary: Mapping[str, Any],
    tilts: Sequence[Mapping[str, Any]],
    movie_ids: Sequence[int],
) -> dict[str, Any]:
    """The tilt series' Tomogram and tilt alignments; their ids (`tomogramId`)."""
    return run.unit(
        f"tomogram:{summary['tilt_series_name']}",
        [summary_path],
        [collection.to_json(), list(movie_ids)],
        lambda known: ingest_tomogram(
            run.engine, collection, summary, tilts, movie_ids, known, run.policy
        ),
    )
