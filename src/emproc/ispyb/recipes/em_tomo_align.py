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
| alignment columns | TOMOGRAM_ALIGNMENT (one line per `_tomo.json` key) | tomogram info |
| TiltImageAlignment per used tilt (refinedTiltAngle, refinedTiltAxis, ...) | the tilt records; TILT_ALIGNMENT | tilt list order, CTF plot |

Natural keys: Tomogram dataCollectionId; TiltImageAlignment (movieId, tomogramId), its
primary key. A denoised tomogram (ProcessedTomogram, processingType "Denoised") would be one
more module writing a row keyed by the tomogramId this one returns.
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
from emproc.ispyb.rows import IngestInputError, nm, require
from emproc.ispyb.run import IngestRun

RECIPE = Recipe("em-tomo-align", "emproc tilt-series alignment and reconstruction")

# Tomogram column -> (`_tomo.json` key, conversion); a key absent from the file leaves the
# column empty. Alignment quality measured by emproc.tomo: one line per key.
TOMOGRAM_ALIGNMENT: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "residualErrorMean": ("alignment_residual_angstrom", nm),
    "residualErrorSD": ("alignment_residual_sd_angstrom", nm),
    "xAxisCorrection": ("x_axis_correction_deg", float),
    "tiltAngleOffset": ("tilt_angle_offset_deg", float),
    "zShift": ("z_shift_px", float),
    "globalAlignmentQuality": ("global_alignment_quality", float),
}
# TiltImageAlignment column -> (tilt record key, conversion); refinedTiltAxis falls back to
# the series' `tilt_axis_angle_deg`, refinedTiltAngle to the nominal `tilt_angle_deg`
TILT_ALIGNMENT: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "refinedTiltAngle": ("refined_tilt_angle_deg", float),
    "refinedTiltAxis": ("refined_tilt_axis_deg", float),
    "refinedMagnification": ("refined_magnification", float),
    "residualError": ("residual_error_angstrom", nm),
    "defocusU": ("defocus_angstrom", float),
    "defocusV": ("defocus_angstrom", float),
    "resolution": ("ctf_fit_resolution_angstrom", float),
}
# Tomogram image column -> `_tomo.json` key
TOMOGRAM_IMAGES = {
    "centralSliceImage": "slab_snapshot_path",
    "projXY": "xy_snapshot_path",
    "projXZ": "xz_snapshot_path",
    "xyShiftPlot": "xy_shift_plot_path",
    "tomogramMovie": "tomogram_movie_path",
}


def _mapped(
    source: Mapping[str, Any], table: Mapping[str, tuple[str, Callable[[Any], Any]]]
) -> dict[str, Any]:
    return {
        column: None if source.get(key) is None else convert(source[key])
        for column, (key, convert) in table.items()
    }


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
        **_mapped(summary, TOMOGRAM_ALIGNMENT),
    }
    for column, key in TOMOGRAM_IMAGES.items():
        path = summary.get(key)
        row[column] = None if not path else os.path.relpath(path, directory)
    return row


def tilt_alignment_row(tilt: Mapping[str, Any], tilt_axis_deg: float | None) -> dict[str, Any]:
    """TiltImageAlignment columns for one used tilt."""
    row = _mapped(tilt, TILT_ALIGNMENT)
    if row["refinedTiltAngle"] is None:
        row["refinedTiltAngle"] = float(tilt["tilt_angle_deg"])
    if row["refinedTiltAxis"] is None and tilt_axis_deg is not None:
        row["refinedTiltAxis"] = float(tilt_axis_deg)
    return row


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
    alignments = [tilt_alignment_row(t, summary.get("tilt_axis_angle_deg")) for t in tilts]

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
) -> None:
    """The tilt series' Tomogram and tilt alignments."""
    run.unit(
        f"tomogram:{summary['tilt_series_name']}",
        [summary_path],
        [collection.to_json(), list(movie_ids)],
        lambda known: ingest_tomogram(
            run.engine, collection, summary, tilts, movie_ids, known, run.policy
        ),
    )
