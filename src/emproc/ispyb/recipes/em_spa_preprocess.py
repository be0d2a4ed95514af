"""em-spa-preprocess: per movie, what PATo's SPA "Preprocessing" panels and movie page show.

One AutoProcProgram owns every row here (PATo reads CTF and picks through
`MotionCorrection.autoProcProgramId`, ice thickness through `RelativeIceThickness
.autoProcProgramId`, picks through `ParticlePicker.programId`).

| row | from (emproc file) | PATo page |
|---|---|---|
| Atlas (one per group), GridSquare, FoilHole | Import `grid_square`, `foil_hole` (EPU folder and file names) | movie page (inner-joins FoilHole), atlas / grid square pages |
| Movie (`createdTimeStamp` = acquisition time, `foilHoleId`) | `Import/{movie}.json` | motion list, movie page |
| MotionCorrection (`imageNumber` = acquisition order) | `MotionCorr/{movie}_motion.json` | motion panel; `driftPlotFullPath` = `{movie}_drift.json`, `micrographSnapshotFullPath` = `{movie}.jpg` |
| CTF | `CtfFind/{movie}_ctf.json` | CTF panel; `fftTheoreticalFullPath` = `{movie}_ctf.png` |
| RelativeIceThickness | motion JSON `relative_ice_thickness` (`emproc.motion.ice`) x ICE_SCALE | ice histogram, movie page box plot |
| ParticlePicker (`firstMotionCorrectionId`) | `Picking/{movie}_picks.json` | picking panel; `summaryImageFullPath` = `{movie}_picks.jpg` |

Natural keys (how a rerun finds a row): Movie (dataCollectionId, movieFullPath);
MotionCorrection movieId; CTF motionCorrectionId; RelativeIceThickness motionCorrectionId;
ParticlePicker (this or a superseded emproc program, firstMotionCorrectionId); Atlas
dataCollectionGroupId; GridSquare (atlasId, gridSquareLabel); FoilHole (gridSquareId,
foilHoleLabel).
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any

import ispyb.sqlalchemy as models
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from emproc.chunks import movie_glob, movie_paths
from emproc.ispyb.collection import CollectionIds, Recipe
from emproc.ispyb.db import (
    find_id,
    known_or_found,
    upsert,
    upsert_by_key,
    upsert_known_or_found,
)
from emproc.ispyb.retry import DEFAULT_RETRY, RetryPolicy, run_in_transaction
from emproc.ispyb.rows import IngestInputError, nm, parse_timestamp, require
from emproc.ispyb.run import IngestRun, read_json
from emproc.ispyb.state import content_hash

RECIPE = Recipe("em-spa-preprocess", "emproc motion correction, CTF, ice thickness, picking")
# RelativeIceThickness holds 10^4 x t/lambda: IceBreaker's integer scale (cryoemservices
# stores its figures x 10000), and PATo rounds the averages it shows to integers
ICE_SCALE = 10000.0
# atlas image of an EPU session, where the session directory has one
ATLAS_GLOBS = ("Atlas/Atlas*.jpg", "Atlas/Atlas*.mrc", "Atlas*.jpg")


# ---------------------------------------------------------------- column values


def movie_row(
    imported: Mapping[str, Any], movie_number: int, number_of_frames: int | None, source: str
) -> dict[str, Any]:
    """Movie columns from `Import/{movie}.json` (fluence = pre-exposure + frames x dose per
    frame, e-/A^2 by the end of the movie; createdTimeStamp = acquisition time)."""
    dose_per_frame = float(require(imported, "dose_per_frame_e_per_angstrom2", source))
    pre_exposure = float(imported.get("pre_exposure_e_per_angstrom2") or 0.0)
    fluence = None if number_of_frames is None else pre_exposure + number_of_frames * dose_per_frame
    nominal_defocus = imported.get("nominal_defocus_angstrom")
    row = {
        "movieNumber": movie_number,
        "movieFullPath": str(require(imported, "movie_path", source)),
        "numberOfFrames": number_of_frames,
        "nominalDefocus": None if nominal_defocus is None else float(nominal_defocus),
        "fluence": fluence,
    }
    acquired = parse_timestamp(imported.get("timestamp"), source)
    if acquired is not None:  # else the column's default (the insert time) stays
        row["createdTimeStamp"] = acquired
    return row


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
        # PATo parses this file as JSON; results of an emproc without it leave it empty
        "driftPlotFullPath": motion.get("drift_json_path"),
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


def ice_thickness_row(motion: Mapping[str, Any]) -> dict[str, Any] | None:
    """RelativeIceThickness five figures (ICE_SCALE x t/lambda), None without a figure."""
    ice = motion.get("relative_ice_thickness")
    if not ice:
        return None
    return {k: ICE_SCALE * float(ice[k]) for k in ("minimum", "q1", "median", "q3", "maximum")}


def particle_picker_row(picking: Mapping[str, Any], source: str) -> dict[str, Any]:
    """ParticlePicker columns (particleDiameter in nm as the model asks)."""
    return {
        "particlePickingTemplate": picking.get("picking_template"),
        "particleDiameter": nm(float(require(picking, "particle_diameter_angstrom", source))),
        "numberOfParticles": int(require(picking, "number_of_particles", source)),
        "summaryImageFullPath": picking.get("summary_image_path"),
    }


def find_atlas_image(session_dir: str | Path) -> str | None:
    """The session's atlas image (EPU `Atlas/Atlas*.jpg`), or None."""
    root = Path(session_dir)
    for pattern in ATLAS_GLOBS:
        found = sorted(root.glob(pattern))
        if found:
            return str(found[0].resolve())
    return None


# ---------------------------------------------------------------- units of work


def _foil_hole_id(
    connection: sa.Connection,
    collection: CollectionIds,
    imported: Mapping[str, Any],
    atlas_image: str | None,
) -> int | None:
    """FoilHole of the movie (with its GridSquare and the group's Atlas), or None if the
    movie's EPU names give no grid square or foil hole."""
    square, hole = imported.get("grid_square"), imported.get("foil_hole")
    if square is None or hole is None:
        return None
    # GridSquare needs an Atlas (atlasId is NOT NULL): without an atlas image in the session
    # its image is left empty ("") and PATo's atlas view shows none
    atlas_id = upsert_by_key(
        connection,
        models.Atlas,
        {"dataCollectionGroupId": collection.data_collection_group_id},
        {"atlasImage": atlas_image or "", "pixelSize": 0.0, "mode": "Single Particle"},
    )
    square_id = find_id(
        connection, models.GridSquare, atlasId=atlas_id, gridSquareLabel=int(square)
    )
    if square_id is None:
        square_id = upsert(
            connection,
            models.GridSquare,
            None,
            {"atlasId": atlas_id, "gridSquareLabel": int(square), "mode": "Single Particle"},
        )
    hole_id = find_id(connection, models.FoilHole, gridSquareId=square_id, foilHoleLabel=str(hole))
    if hole_id is None:
        hole_id = upsert(
            connection,
            models.FoilHole,
            None,
            {"gridSquareId": square_id, "foilHoleLabel": str(hole)},
        )
    return hole_id


def ingest_movie(
    engine: Engine,
    collection: CollectionIds,
    imported: Mapping[str, Any],
    motion: Mapping[str, Any] | None,
    ctf: Mapping[str, Any] | None,
    config: Mapping[str, Any],
    movie_number: int,
    known_ids: Mapping[str, Any] | None = None,
    policy: RetryPolicy = DEFAULT_RETRY,
    foil_holes: MutableMapping[tuple[Any, Any], int] | None = None,
    atlas_image: str | None = None,
) -> dict[str, int]:
    """FoilHole (+ GridSquare, Atlas), Movie, MotionCorrection, CTF and RelativeIceThickness
    of one movie, in one transaction; returns their ids.

    `known_ids` (from the id map) saves the lookups; a movieId of None there means the caller
    knows the movie is not in the database yet. `foil_holes` caches (grid square, foil hole)
    -> foilHoleId across the movies of one run.
    """
    known_ids = known_ids or {}
    foil_holes = {} if foil_holes is None else foil_holes
    program_id = collection.programs[RECIPE.name]
    movie_name = str(imported.get("movie_name", imported.get("movie_path")))
    frames = None if motion is None else int(motion.get("number_of_frames") or 0) or None
    movie_values = movie_row(imported, movie_number, frames, f"Import/{movie_name}.json")
    movie_values["dataCollectionId"] = collection.data_collection_id
    motion_values = ctf_values = ice_values = None
    if motion is not None:
        motion_values = motion_correction_row(
            motion, movie_number, f"MotionCorr/{movie_name}_motion.json"
        )
        motion_values.update(
            dataCollectionId=collection.data_collection_id, autoProcProgramId=program_id
        )
        ice_values = ice_thickness_row(motion)
    if ctf is not None and motion is not None:
        ctf_values = ctf_row(
            ctf,
            config.get("ctf", {}),
            imported.get("amplitude_contrast"),
            f"CtfFind/{movie_name}_ctf.json",
        )
        ctf_values["autoProcProgramId"] = program_id
    location = (imported.get("grid_square"), imported.get("foil_hole"))

    def unit(connection: sa.Connection, attempt: int) -> dict[str, int]:
        ids: dict[str, int] = {}
        hole_id = foil_holes.get(location) if attempt == 1 else None
        if hole_id is None:
            hole_id = _foil_hole_id(connection, collection, imported, atlas_image)
        if hole_id is not None:
            ids["foilHoleId"] = hole_id
        # movieId None in known_ids = known to be new (the caller read the collection's
        # movies): skip the lookup, whose cost grows with the collection (no index on path)
        movie_id = known_or_found(
            connection, known_ids, "movieId", attempt, "movieId" not in known_ids,
            models.Movie, dataCollectionId=collection.data_collection_id,
            movieFullPath=movie_values["movieFullPath"],
        )  # fmt: skip
        ids["movieId"] = upsert(
            connection, models.Movie, movie_id, {**movie_values, "foilHoleId": hole_id}
        )
        if motion_values is None:
            return ids
        ids["motionCorrectionId"] = upsert_known_or_found(
            connection, known_ids, "motionCorrectionId", attempt, models.MotionCorrection,
            {"movieId": ids["movieId"]}, motion_values,
        )  # fmt: skip
        of_motion = {"motionCorrectionId": ids["motionCorrectionId"]}
        if ice_values is not None:
            ids["relativeIceThicknessId"] = upsert_known_or_found(
                connection, known_ids, "relativeIceThicknessId", attempt,
                models.RelativeIceThickness, of_motion,
                {**ice_values, "autoProcProgramId": program_id},
            )  # fmt: skip
        if ctf_values is not None:
            ids["ctfId"] = upsert_known_or_found(
                connection, known_ids, "ctfId", attempt, models.CTF, of_motion, ctf_values
            )
        return ids

    ids = run_in_transaction(engine, unit, f"movie {movie_name}", policy)
    if "foilHoleId" in ids:
        foil_holes[location] = ids["foilHoleId"]
    return ids


def ingest_particle_picking(
    engine: Engine,
    collection: CollectionIds,
    picking: Mapping[str, Any],
    motion_correction_id: int,
    known_ids: Mapping[str, Any] | None = None,
    policy: RetryPolicy = DEFAULT_RETRY,
) -> dict[str, int]:
    """One movie's ParticlePicker row, owned by the em-spa-preprocess program.

    `picking` keys: movie_name, number_of_particles, particle_diameter_angstrom,
    summary_image_path, coordinates_star_path, picking_template (optional).
    """
    source = f"particle picking of {picking.get('movie_name')}"
    values = particle_picker_row(picking, source)
    values.update(
        programId=collection.programs[RECIPE.name], firstMotionCorrectionId=motion_correction_id
    )
    programs = collection.program_and_earlier(RECIPE.name)

    def unit(connection: sa.Connection, attempt: int) -> dict[str, int]:
        picker_id = (known_ids or {}).get("particlePickerId") if attempt == 1 else None
        if picker_id is None:
            picker_id = connection.execute(
                sa.select(models.ParticlePicker.particlePickerId)
                .where(
                    models.ParticlePicker.programId.in_(programs),
                    models.ParticlePicker.firstMotionCorrectionId == motion_correction_id,
                )
                .order_by(models.ParticlePicker.particlePickerId)
                .limit(1)
            ).scalar()
        return {"particlePickerId": upsert(connection, models.ParticlePicker, picker_id, values)}

    return run_in_transaction(engine, unit, source, policy)


# ---------------------------------------------------------------- from the output directory


def ingest(
    run: IngestRun,
    collection: CollectionIds,
    movie_names: Sequence[str],
    imports: Mapping[str, Mapping[str, Any]],
    picked_movies: Sequence[str] | None = None,
) -> int | None:
    """Every movie's rows, then every movie's picking; returns the first ParticlePicker id
    (2D batches point at it), or None without picks.

    `picked_movies` limits the picking to those movies (live ingest of one movie); by
    default every `Picking/{movie}_picks.json` is read.

    Movie numbers are stable: a movie keeps the number it got first (id map or database);
    new movies are numbered after the highest, in acquisition order.
    """
    collection_digest = content_hash([], collection.to_json())
    dc_id = collection.data_collection_id

    # one query for all Movie ids of the collection, so units new to the id map are matched
    # by natural key without a query each (ingest stays linear in the number of movies)
    def read_movies(connection: sa.Connection, _: int) -> dict[str, tuple[int, int | None]]:
        query = sa.select(
            models.Movie.movieFullPath, models.Movie.movieId, models.Movie.movieNumber
        ).where(models.Movie.dataCollectionId == dc_id)
        return {r.movieFullPath: (r.movieId, r.movieNumber) for r in connection.execute(query)}

    existing = run_in_transaction(
        run.engine, read_movies, "reading the collection's movies", run.policy
    )
    numbers = [n for _, n in existing.values() if n] + [
        u["ids"].get("movieNumber", 0)
        for k, u in run.id_map.units.items()
        if k.startswith("movie:")
    ]
    next_number = max(numbers, default=0) + 1
    acquisition_order = sorted(
        movie_names, key=lambda name: (str(imports[name].get("timestamp") or ""), name)
    )
    atlas_image = find_atlas_image(run.config.get("session", {}).get("session_dir", "."))
    foil_holes: dict[tuple[Any, Any], int] = {}
    for name in acquisition_order:
        paths = (
            movie_paths(run.output_dir, "import", name)["metadata"],
            movie_paths(run.output_dir, "motion", name)["summary"],
            movie_paths(run.output_dir, "ctf", name)["summary"],
        )
        present = [p if p.is_file() else None for p in paths]
        imported = imports[name]

        def write(known: dict[str, Any], imported=imported, present=present) -> dict[str, Any]:
            nonlocal next_number
            if "movieId" not in known:
                known["movieId"], known["movieNumber"] = existing.get(
                    str(imported.get("movie_path")), (None, None)
                )
            movie_number = known.get("movieNumber")
            if not movie_number:
                movie_number, next_number = next_number, next_number + 1
            ids = ingest_movie(
                run.engine,
                collection,
                imported,
                read_json(present[1]) if present[1] else None,
                read_json(present[2]) if present[2] else None,
                run.config,
                movie_number,
                known,
                run.policy,
                foil_holes,
                atlas_image,
            )
            return {**ids, "movieNumber": movie_number}

        run.unit(f"movie:{name}", present, [collection_digest, atlas_image], write)

    first_picker = None
    pick_summaries = (
        sorted(run.output_dir.glob(movie_glob("pick", "summary")))
        if picked_movies is None
        else [
            path
            for movie in picked_movies
            if (path := movie_paths(run.output_dir, "pick", movie)["summary"]).is_file()
        ]
    )
    for path in pick_summaries:
        picking = read_json(path)
        movie = str(require(picking, "movie_name", str(path)))
        motion_ids = run.id_map.unit_ids(f"movie:{movie}")
        if "motionCorrectionId" not in motion_ids:
            raise IngestInputError(f"{path}: movie {movie} has no ingested motion correction")
        ids = run.unit(
            f"picking:{movie}",
            [path],
            [collection_digest, motion_ids["motionCorrectionId"]],
            lambda known, p=picking, m=motion_ids["motionCorrectionId"]: ingest_particle_picking(
                run.engine, collection, p, m, known, run.policy
            ),
        )
        first_picker = first_picker or ids["particlePickerId"]
    return first_picker
