"""em-tomo-preprocess: per tilt, what PATo's tomography "Preprocessing" and tilt pages show.

PATo's tilt motion page (`dataCollections/{id}/tomogram-motion`) and the tomogram CTF plot
inner-join Movie -> MotionCorrection -> CTF, so every aligned tilt gets all three; the job's
program owns MotionCorrection and CTF.

| row | from | PATo page |
|---|---|---|
| Movie per used tilt (`angle`, `movieNumber` = acquisition order, `createdTimeStamp` = mdoc DateTime, `fluence`) | `Tomograms/{ts}/{ts}_tomo.json` `tilts` (status "used") and the mdoc | tilt list |
| MotionCorrection per motion-corrected tilt (`imageNumber` = acquisition order, frames, dose per frame, totalMotion, averageMotionPerFrame) | the tilt record (`number_of_frames`, `total_motion_angstrom`, ...) | tilt motion page (no per-tilt snapshot or drift file: emproc keeps tilt sums in the stack only) |
| CTF per tilt whose defocus was estimated (`estimatedDefocus`, `estimatedResolution`) | the tilt record's `defocus_angstrom`, `ctf_fit_resolution_angstrom` | tilt CTF plot, tilt motion page |

Natural keys: Movie (dataCollectionId, movieFullPath); MotionCorrection movieId; CTF
motionCorrectionId.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ispyb.sqlalchemy as models
import sqlalchemy as sa
from sqlalchemy.engine import Engine

# the mdoc reader's own DateTime formats
from emproc.io.mdoc import MdocError, read_tilt_series_mdoc
from emproc.io.mdoc import _parse_time as parse_mdoc_time
from emproc.ispyb.collection import CollectionIds, Recipe
from emproc.ispyb.db import find_id, upsert
from emproc.ispyb.retry import DEFAULT_RETRY, RetryPolicy, run_in_transaction
from emproc.ispyb.rows import require
from emproc.ispyb.run import IngestRun

RECIPE = Recipe("em-tomo-preprocess", "emproc tilt motion correction, CTF")
SUMMARY_GLOB = "Tomograms/*/*_tomo.json"  # written by emproc.tomo.pipeline


def used_tilts(
    summary: Mapping[str, Any], session_dir: str | Path, source: str
) -> list[dict[str, Any]]:
    """The aligned tilts of `Tomograms/{ts}/{ts}_tomo.json`, each record with its absolute
    `movie_path`, 1-based `acquisition_number` and, from the mdoc, `acquired` (datetime)."""
    times: dict[int, Any] = {}
    mdoc = summary.get("mdoc_path")
    if mdoc and Path(mdoc).is_file():
        try:
            metadata = read_tilt_series_mdoc(mdoc)
            times = {t.acquisition_index: parse_mdoc_time(t.date_time) for t in metadata.tilts}
        except (MdocError, OSError, ValueError):
            times = {}  # times are a nicety: the tilts stand without them
    tilts = []
    for record in require(summary, "tilts", source):
        if record.get("status", "used") != "used" or not record.get("movie_name"):
            continue
        movie = Path(str(record["movie_name"]))
        mdoc_dir = Path(mdoc).parent if mdoc else Path(session_dir)
        index = int(record.get("acquisition_index", len(tilts)))
        tilts.append(
            {
                **record,
                "movie_path": str(movie if movie.is_absolute() else mdoc_dir / movie),
                "acquisition_number": index + 1,
                "acquired": times.get(index),
            }
        )
    return tilts


def tilt_movie_row(tilt: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Movie columns for one tilt (angle = nominal tilt, degrees; fluence = dose by the end
    of this exposure, e-/A^2)."""
    before = tilt.get("accumulated_dose_e_per_angstrom2")
    exposure = tilt.get("exposure_dose_e_per_angstrom2") or 0.0
    row = {
        "movieNumber": int(tilt["acquisition_number"]),
        "movieFullPath": str(require(tilt, "movie_path", source)),
        "angle": float(require(tilt, "tilt_angle_deg", source)),
        "fluence": None if before is None else float(before) + float(exposure),
    }
    if tilt.get("acquired") is not None:
        row["createdTimeStamp"] = tilt["acquired"]
    return row


def tilt_motion_row(tilt: Mapping[str, Any]) -> dict[str, Any] | None:
    """MotionCorrection columns for a motion-corrected tilt, else None (motion in A; the
    totals are absent from summaries of emproc before they were recorded)."""
    if not tilt.get("motion_corrected", True):
        return None
    frames = tilt.get("number_of_frames")
    exposure = tilt.get("exposure_dose_e_per_angstrom2")
    return {
        "imageNumber": int(tilt["acquisition_number"]),
        "firstFrame": None if frames is None else 1,
        "lastFrame": frames,
        "dosePerFrame": None if not frames or exposure is None else float(exposure) / frames,
        "totalMotion": tilt.get("total_motion_angstrom"),
        "averageMotionPerFrame": tilt.get("average_motion_per_frame_angstrom"),
    }


def tilt_ctf_row(tilt: Mapping[str, Any]) -> dict[str, Any] | None:
    """CTF columns for a tilt whose defocus was estimated (not the mdoc's), else None."""
    if not tilt.get("ctf_estimated", True) or tilt.get("defocus_angstrom") is None:
        return None
    resolution = tilt.get("ctf_fit_resolution_angstrom")
    return {
        "estimatedDefocus": float(tilt["defocus_angstrom"]),
        "estimatedResolution": None if resolution is None else float(resolution),
        "comments": f"defocus from the {tilt.get('ctf_source', 'tilt')} fit",
    }


def ingest_tilts(
    engine: Engine,
    collection: CollectionIds,
    tilts: list[dict[str, Any]],
    name: str,
    policy: RetryPolicy = DEFAULT_RETRY,
) -> dict[str, Any]:
    """Movie, MotionCorrection and CTF of every used tilt in one transaction; returns
    `movieIds` (in the order of `tilts`)."""
    source = f"tilts of tilt series {name}"
    program_id = collection.programs[RECIPE.name]
    dc_id = collection.data_collection_id
    rows = [
        (tilt_movie_row(t, f"{source}, tilt {i}"), tilt_motion_row(t), tilt_ctf_row(t))
        for i, t in enumerate(tilts)
    ]

    def unit(connection: sa.Connection, _: int) -> dict[str, Any]:
        existing = dict(
            connection.execute(
                sa.select(models.Movie.movieFullPath, models.Movie.movieId).where(
                    models.Movie.dataCollectionId == dc_id
                )
            ).all()
        )
        movie_ids = []
        for movie, motion, ctf in rows:
            movie_id = upsert(
                connection,
                models.Movie,
                existing.get(movie["movieFullPath"]),
                {**movie, "dataCollectionId": dc_id},
            )
            movie_ids.append(movie_id)
            if motion is None:
                continue
            motion_id = upsert(
                connection,
                models.MotionCorrection,
                find_id(connection, models.MotionCorrection, movieId=movie_id),
                {
                    **motion,
                    "movieId": movie_id,
                    "dataCollectionId": dc_id,
                    "autoProcProgramId": program_id,
                },
            )
            if ctf is not None:
                upsert(
                    connection,
                    models.CTF,
                    find_id(connection, models.CTF, motionCorrectionId=motion_id),
                    {**ctf, "motionCorrectionId": motion_id, "autoProcProgramId": program_id},
                )
        return {"movieIds": movie_ids}

    return run_in_transaction(engine, unit, source, policy)


def ingest(
    run: IngestRun,
    collection: CollectionIds,
    summary_path: Path,
    summary: Mapping[str, Any],
    tilts: list[dict[str, Any]],
) -> list[int]:
    """The tilt series' tilt rows; returns their Movie ids (order of `tilts`)."""
    name = str(summary["tilt_series_name"])
    ids = run.unit(
        f"tilts:{name}",
        [summary_path],
        [collection.to_json(), [str(t.get("acquired")) for t in tilts]],
        lambda _known: ingest_tilts(run.engine, collection, tilts, name, run.policy),
    )
    return list(ids["movieIds"])
