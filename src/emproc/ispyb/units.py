"""The ISPyB units of work: each writes its rows in one transaction, retried, idempotent.

Units: a collection (DataCollectionGroup + DataCollection + ProcessingJob with its parameters
+ one AutoProcProgram per stage + attachments), one SPA movie (Movie + MotionCorrection + CTF),
one movie's particle picking (ParticlePicker), one 2D classification batch
(ParticleClassificationGroup + ParticleClassification per class), one tomogram (tilt-series
DataCollection, a Movie per tilt, Tomogram, TiltImageAlignment per tilt, ProcessedTomogram if
denoised). Each unit's rows are found again by the stored id map (`emproc.ispyb.state`) or by
natural key, so a rerun updates rows instead of adding them. `emproc.ispyb.ingest` finds the
units in an output directory.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ispyb.sqlalchemy as models
import sqlalchemy as sa
from sqlalchemy.engine import Engine

import emproc
from emproc.ispyb import rows
from emproc.ispyb.retry import DEFAULT_RETRY, RetryPolicy, run_in_transaction
from emproc.ispyb.schema import Visit, find_session_id, parse_visit
from emproc.ispyb.state import content_hash

# AutoProcProgram.processingPrograms per stage (also the natural key within a ProcessingJob)
SPA_STAGES = {
    "motion_correction": "emproc motion correction",
    "ctf": "emproc CTF estimation",
    "particle_picking": "emproc particle picking",
    "class2d": "emproc 2D classification",
}
TOMO_STAGES = {"tomogram": "emproc tomogram reconstruction"}
SUCCESS = (1, "processing successful")


class VisitNotFoundError(LookupError):
    """The visit named in the config has no BLSession in the ISPyB database."""


@dataclass(frozen=True)
class CollectionIds:
    """ISPyB ids of one data collection and of the processing run that produced its results."""

    data_collection_group_id: int
    data_collection_id: int
    processing_job_id: int
    programs: Mapping[str, int]  # stage name -> autoProcProgramId

    def to_json(self) -> dict[str, Any]:
        return {
            "dataCollectionGroupId": self.data_collection_group_id,
            "dataCollectionId": self.data_collection_id,
            "processingJobId": self.processing_job_id,
            "programs": dict(self.programs),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CollectionIds:
        return cls(
            data["dataCollectionGroupId"],
            data["dataCollectionId"],
            data["processingJobId"],
            dict(data["programs"]),
        )


# ---------------------------------------------------------------- database helpers


def _primary_key(model: Any) -> sa.Column:
    (column,) = model.__table__.primary_key.columns
    return column


def _find_id(connection: sa.Connection, model: Any, **criteria: Any) -> int | None:
    pk = _primary_key(model)
    query = sa.select(pk).where(*(model.__table__.c[k] == v for k, v in criteria.items()))
    return connection.execute(query.order_by(pk).limit(1)).scalar()


def _upsert(
    connection: sa.Connection, model: Any, row_id: int | None, values: Mapping[str, Any]
) -> int:
    """Update row `row_id` of `model` with `values`, or insert it if absent; return its id."""
    pk = _primary_key(model)
    if row_id is not None:
        result = connection.execute(sa.update(model).where(pk == row_id).values(**values))
        if result.rowcount:
            return row_id
    return connection.execute(sa.insert(model).values(**values)).inserted_primary_key[0]


def _known(ids: Mapping[str, Any], name: str, attempt: int) -> int | None:
    # after a failed attempt a commit may have happened unseen: trust only the database
    return ids.get(name) if attempt == 1 else None


def _known_or_found(
    connection: sa.Connection,
    known_ids: Mapping[str, Any],
    name: str,
    attempt: int,
    look_up_unknown: bool,
    model: Any,
    **natural_key: Any,
) -> int | None:
    """A row's id: from the id map on a first attempt, else by its natural key (always after
    a failed attempt, whose commit may have happened unseen; for a first attempt only when
    `look_up_unknown`)."""
    row_id = _known(known_ids, name, attempt)
    if row_id is None and (attempt > 1 or look_up_unknown):
        row_id = _find_id(connection, model, **natural_key)
    return row_id


def find_visit_session(engine: Engine, visit_name: str, policy: RetryPolicy = DEFAULT_RETRY) -> int:
    """BLSession.sessionId of the visit; `VisitNotFoundError` if the database lacks it."""
    visit: Visit = parse_visit(visit_name)
    session_id = run_in_transaction(
        engine,
        lambda connection, _: find_session_id(connection, visit),
        f"visit {visit_name}",
        policy,
    )
    if session_id is None:
        raise VisitNotFoundError(
            f"visit {visit_name} (proposal {visit.proposal_code}{visit.proposal_number}, "
            f"visit number {visit.visit_number}) does not exist in ISPyB; it must be created "
            "by the facility's user office before processing results can be ingested"
        )
    return session_id


# ---------------------------------------------------------------- collections


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = json.dumps(value) if not isinstance(value, str) else value
    return flat


def processing_parameters(config: Mapping[str, Any]) -> dict[str, str]:
    """ProcessingJobParameter key/values: the flattened config without the ispyb section
    (which names credentials), scheduler resources and job batching (neither changes a
    result)."""
    kept = {k: v for k, v in config.items() if k not in ("ispyb", "resources", "processing")}
    return _flatten(kept)


def ensure_collection(
    engine: Engine,
    session_id: int,
    experiment_type: str,
    data_collection: Mapping[str, Any],
    config: Mapping[str, Any],
    stages: Mapping[str, str],
    attachments: Sequence[tuple[str, str, str]] = (),
    known: CollectionIds | None = None,
    policy: RetryPolicy = DEFAULT_RETRY,
    outcomes: Mapping[str, tuple[int, str]] | None = None,
) -> CollectionIds:
    """Create or update the DataCollectionGroup, DataCollection, ProcessingJob (+ parameters),
    one AutoProcProgram per stage and their attachments, in one transaction.

    `outcomes` gives a stage's (processingStatus, processingMessage) where it is not
    (1, "processing successful"), e.g. when some movies failed.

    The DataCollection's natural key is (session, imageDirectory, fileTemplate); the
    ProcessingJob's is (data collection, recipe, parameter hash in `comments`), so a changed
    config is a new processing run. `attachments` are (stage, file type, absolute path) with
    file type one of Log, Result, Graph, Debug, Input.
    """
    parameters = processing_parameters(config)
    parameters_hash = content_hash([], parameters)[:16]
    recipe = f"emproc-{'tomo' if experiment_type == 'tomo' else 'spa'}"
    job_comment = f"emproc {emproc.__version__}, parameters {parameters_hash}"
    now = datetime.datetime.now().replace(microsecond=0)

    def unit(connection: sa.Connection, attempt: int) -> CollectionIds:
        dc_id = known.data_collection_id if known and attempt == 1 else None
        if dc_id is None:
            dc_id = _find_id(
                connection,
                models.DataCollection,
                SESSIONID=session_id,
                imageDirectory=data_collection["imageDirectory"],
                fileTemplate=data_collection["fileTemplate"],
            )
        dcg_id = known.data_collection_group_id if known and attempt == 1 else None
        if dcg_id is None and dc_id is not None:
            dcg_id = connection.execute(
                sa.select(models.DataCollection.dataCollectionGroupId).where(
                    models.DataCollection.dataCollectionId == dc_id
                )
            ).scalar()
        group = {
            "sessionId": session_id,
            "experimentType": experiment_type,
            "startTime": data_collection.get("startTime"),
            "endTime": data_collection.get("endTime"),
            "comments": f"emproc {recipe}",
        }
        dcg_id = _upsert(connection, models.DataCollectionGroup, dcg_id, group)
        dc_id = _upsert(
            connection,
            models.DataCollection,
            dc_id,
            {**data_collection, "dataCollectionGroupId": dcg_id, "SESSIONID": session_id},
        )
        job_id = _find_id(
            connection,
            models.ProcessingJob,
            dataCollectionId=dc_id,
            recipe=recipe,
            comments=job_comment,
        )
        if job_id is None:
            job_id = _upsert(
                connection,
                models.ProcessingJob,
                None,
                {
                    "dataCollectionId": dc_id,
                    "displayName": "emproc",
                    "recipe": recipe,
                    "automatic": 1,
                    "comments": job_comment,
                },
            )
            connection.execute(
                sa.insert(models.ProcessingJobParameter),
                [
                    {"processingJobId": job_id, "parameterKey": k[:80], "parameterValue": v[:1024]}
                    for k, v in parameters.items()
                ],
            )
        programs: dict[str, int] = {}
        for stage, program_name in stages.items():
            program_id = _find_id(
                connection,
                models.AutoProcProgram,
                processingJobId=job_id,
                processingPrograms=program_name,
            )
            values = {
                "processingJobId": job_id,
                "processingPrograms": program_name,
                "processingCommandLine": "snakemake (emproc workflow)",
                "processingStatus": (outcomes or {}).get(stage, SUCCESS)[0],
                "processingMessage": (outcomes or {}).get(stage, SUCCESS)[1][:255],
                "processingEndTime": now,
                "recordTimeStamp": now,
            }
            if program_id is None:
                values["processingStartTime"] = now
            programs[stage] = _upsert(connection, models.AutoProcProgram, program_id, values)
        for stage, file_type, path in attachments:
            _attach(connection, programs[stage], file_type, path)
        return CollectionIds(dcg_id, dc_id, job_id, programs)

    name = f"{experiment_type} collection {data_collection['fileTemplate']}"
    return run_in_transaction(engine, unit, name, policy)


def _attach(connection: sa.Connection, program_id: int, file_type: str, path: str) -> int:
    # ISPyB convention: fileName is the base name, filePath the directory
    location = Path(path)
    key = {
        "autoProcProgramId": program_id,
        "fileName": location.name,
        "filePath": str(location.parent),
    }
    attachment_id = _find_id(connection, models.AutoProcProgramAttachment, **key)
    values = {
        **key,
        "fileType": file_type,
        "recordTimeStamp": datetime.datetime.now().replace(microsecond=0),
    }
    return _upsert(connection, models.AutoProcProgramAttachment, attachment_id, values)


# ---------------------------------------------------------------- SPA units


def ingest_spa_movie(
    engine: Engine,
    collection: CollectionIds,
    imported: Mapping[str, Any],
    motion: Mapping[str, Any] | None,
    ctf: Mapping[str, Any] | None,
    config: Mapping[str, Any],
    movie_number: int,
    known_ids: Mapping[str, Any] | None = None,
    policy: RetryPolicy = DEFAULT_RETRY,
) -> dict[str, int]:
    """Movie + MotionCorrection + CTF of one movie, in one transaction; returns their ids.

    Natural keys: Movie by (dataCollectionId, movieFullPath), MotionCorrection by movieId,
    CTF by motionCorrectionId. `known_ids` (from the id map) saves the lookups; a movieId of
    None there means the caller knows the movie is not in the database yet.
    """
    known_ids = known_ids or {}
    movie_name = str(imported.get("movie_name", imported.get("movie_path")))
    frames = None if motion is None else int(motion.get("number_of_frames") or 0) or None
    movie_values = rows.movie_row(imported, movie_number, frames, f"Import/{movie_name}.json")
    movie_values["dataCollectionId"] = collection.data_collection_id
    motion_values = ctf_values = None
    if motion is not None:
        motion_values = rows.motion_correction_row(
            motion, movie_number, f"MotionCorr/{movie_name}_motion.json"
        )
        motion_values.update(
            dataCollectionId=collection.data_collection_id,
            autoProcProgramId=collection.programs["motion_correction"],
        )
    if ctf is not None and motion is not None:
        ctf_values = rows.ctf_row(
            ctf,
            config.get("ctf", {}),
            imported.get("amplitude_contrast"),
            f"CtfFind/{movie_name}_ctf.json",
        )
        ctf_values["autoProcProgramId"] = collection.programs["ctf"]

    def unit(connection: sa.Connection, attempt: int) -> dict[str, int]:
        # movieId None in known_ids = known to be new (the caller read the collection's
        # movies): skip the lookup, whose cost grows with the collection (no index on path)
        movie_id = _known_or_found(
            connection, known_ids, "movieId", attempt, "movieId" not in known_ids,
            models.Movie, dataCollectionId=collection.data_collection_id,
            movieFullPath=movie_values["movieFullPath"],
        )  # fmt: skip
        ids = {"movieId": _upsert(connection, models.Movie, movie_id, movie_values)}
        if motion_values is None:
            return ids
        motion_id = _known_or_found(
            connection, known_ids, "motionCorrectionId", attempt, True,
            models.MotionCorrection, movieId=ids["movieId"],
        )  # fmt: skip
        ids["motionCorrectionId"] = _upsert(
            connection,
            models.MotionCorrection,
            motion_id,
            {**motion_values, "movieId": ids["movieId"]},
        )
        if ctf_values is None:
            return ids
        ctf_id = _known_or_found(
            connection, known_ids, "ctfId", attempt, True,
            models.CTF, motionCorrectionId=ids["motionCorrectionId"],
        )  # fmt: skip
        ids["ctfId"] = _upsert(
            connection,
            models.CTF,
            ctf_id,
            {**ctf_values, "motionCorrectionId": ids["motionCorrectionId"]},
        )
        return ids

    return run_in_transaction(engine, unit, f"movie {movie_name}", policy)


def ingest_particle_picking(
    engine: Engine,
    collection: CollectionIds,
    picking: Mapping[str, Any],
    motion_correction_id: int,
    known_ids: Mapping[str, Any] | None = None,
    policy: RetryPolicy = DEFAULT_RETRY,
) -> dict[str, int]:
    """One movie's ParticlePicker row; natural key (programId, firstMotionCorrectionId).

    `picking` keys: movie_name, number_of_particles, particle_diameter_angstrom,
    summary_image_path, coordinates_star_path, picking_template (optional).
    """
    source = f"particle picking of {picking.get('movie_name')}"
    values = rows.particle_picker_row(picking, source)
    values.update(
        programId=collection.programs["particle_picking"],
        firstMotionCorrectionId=motion_correction_id,
    )

    def unit(connection: sa.Connection, attempt: int) -> dict[str, int]:
        picker_id = _known_or_found(
            connection, known_ids or {}, "particlePickerId", attempt, True,
            models.ParticlePicker, programId=values["programId"],
            firstMotionCorrectionId=motion_correction_id,
        )  # fmt: skip
        return {"particlePickerId": _upsert(connection, models.ParticlePicker, picker_id, values)}

    return run_in_transaction(engine, unit, source, policy)


def ingest_class2d_batch(
    engine: Engine,
    collection: CollectionIds,
    batch: Mapping[str, Any],
    particle_picker_id: int | None,
    known_ids: Mapping[str, Any] | None = None,
    policy: RetryPolicy = DEFAULT_RETRY,
) -> dict[str, Any]:
    """ParticleClassificationGroup + one ParticleClassification per class, in one transaction.

    Natural keys: the group by (programId, type 2D, batchNumber), a class by (group,
    classNumber). `batch` keys: batch_number, number_of_particles, number_of_classes,
    binned_pixel_size_angstrom (optional), symmetry (optional, C1), classes: [{class_number,
    class_image_path, particles_per_class, class_distribution, estimated_resolution_angstrom,
    selected}].
    """
    source = f"2D classification batch {batch.get('batch_number')}"
    group_values = rows.classification_group_row(batch, source)
    group_values.update(
        programId=collection.programs["class2d"], particlePickerId=particle_picker_id
    )
    class_values = [
        rows.classification_row(k, source) for k in rows.require(batch, "classes", source)
    ]

    def unit(connection: sa.Connection, attempt: int) -> dict[str, Any]:
        group_id = _known_or_found(
            connection, known_ids or {}, "particleClassificationGroupId", attempt, True,
            models.ParticleClassificationGroup, programId=group_values["programId"],
            type="2D", batchNumber=group_values["batchNumber"],
        )  # fmt: skip
        group_id = _upsert(connection, models.ParticleClassificationGroup, group_id, group_values)
        existing = dict(
            connection.execute(
                sa.select(
                    models.ParticleClassification.classNumber,
                    models.ParticleClassification.particleClassificationId,
                ).where(models.ParticleClassification.particleClassificationGroupId == group_id)
            ).all()
        )
        class_ids = {}
        for values in class_values:
            number = values["classNumber"]
            class_ids[str(number)] = _upsert(
                connection,
                models.ParticleClassification,
                existing.get(number),
                {**values, "particleClassificationGroupId": group_id},
            )
        return {"particleClassificationGroupId": group_id, "classes": class_ids}

    return run_in_transaction(engine, unit, source, policy)


# ---------------------------------------------------------------- tomography


def ingest_tomogram(
    engine: Engine,
    collection: CollectionIds,
    tomogram: Mapping[str, Any],
    known_ids: Mapping[str, Any] | None = None,
    policy: RetryPolicy = DEFAULT_RETRY,
) -> dict[str, Any]:
    """A Movie per tilt, the Tomogram, a TiltImageAlignment per tilt and, if
    `denoised_volume_path` is given, a ProcessedTomogram: one transaction.

    `collection` is the tilt series' own collection (`ensure_collection` with
    `rows.tilt_series_data_collection_row`). Keys of `tomogram`: docs/ispyb.md.
    """
    name = str(rows.require(tomogram, "tilt_series_name", "tomogram"))
    source = f"tomogram of tilt series {name}"
    tomogram_values = rows.tomogram_row(tomogram, source)
    tomogram_values.update(
        dataCollectionId=collection.data_collection_id,
        autoProcProgramId=collection.programs["tomogram"],
    )
    tilts = list(rows.require(tomogram, "tilts", source))
    tilt_axis = tomogram.get("tilt_axis_angle_deg")
    movies = [
        rows.tilt_movie_row(t, int(t.get("acquisition_number", i + 1)), f"{source}, tilt {i}")
        for i, t in enumerate(tilts)
    ]
    alignments = [
        rows.tilt_alignment_row(t, tilt_axis, f"{source}, tilt {i}") for i, t in enumerate(tilts)
    ]
    denoised = tomogram.get("denoised_volume_path")

    def unit(connection: sa.Connection, attempt: int) -> dict[str, Any]:
        existing_movies = dict(
            connection.execute(
                sa.select(models.Movie.movieFullPath, models.Movie.movieId).where(
                    models.Movie.dataCollectionId == collection.data_collection_id
                )
            ).all()
        )
        tomogram_id = _known_or_found(
            connection, known_ids or {}, "tomogramId", attempt, True,
            models.Tomogram, dataCollectionId=collection.data_collection_id,
        )  # fmt: skip
        tomogram_id = _upsert(connection, models.Tomogram, tomogram_id, tomogram_values)
        movie_ids = []
        for movie, alignment in zip(movies, alignments, strict=True):
            movie_id = _upsert(
                connection,
                models.Movie,
                existing_movies.get(movie["movieFullPath"]),
                {**movie, "dataCollectionId": collection.data_collection_id},
            )
            movie_ids.append(movie_id)
            key = {"movieId": movie_id, "tomogramId": tomogram_id}
            updated = connection.execute(
                sa.update(models.TiltImageAlignment)
                .where(
                    models.TiltImageAlignment.movieId == movie_id,
                    models.TiltImageAlignment.tomogramId == tomogram_id,
                )
                .values(**alignment)
            ).rowcount
            if not updated:
                connection.execute(sa.insert(models.TiltImageAlignment).values(**key, **alignment))
        ids: dict[str, Any] = {"tomogramId": tomogram_id, "movieIds": movie_ids}
        if denoised:
            processed_id = _find_id(
                connection,
                models.ProcessedTomogram,
                tomogramId=tomogram_id,
                processingType="Denoised",
            )
            ids["processedTomogramId"] = _upsert(
                connection,
                models.ProcessedTomogram,
                processed_id,
                {
                    "tomogramId": tomogram_id,
                    "filePath": str(denoised),
                    "processingType": "Denoised",
                },
            )
        return ids

    return run_in_transaction(engine, unit, source, policy)
