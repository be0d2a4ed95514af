"""The collection a recipe's rows hang from: visit, DataCollectionGroup, DataCollection, and
one ProcessingJob + AutoProcProgram per recipe (PATo groups everything by
`ProcessingJob.recipe` and reads a job's rows through its program).

One unit of work (one transaction, retried) writes the group, the collection, every recipe's
job with its parameters, program and attachments. Superseded emproc jobs on the collection
(the single `emproc-spa`/`emproc-tomo` job of emproc before PATo's recipes, or a run with
other parameters) are listed in `CollectionIds.earlier_programs`, so the recipes find and
move their rows, and are deleted by `retire_superseded_jobs` once nothing points at them.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ispyb.sqlalchemy as models
import sqlalchemy as sa
from sqlalchemy.engine import Engine

import emproc
from emproc.ispyb.db import find_id, upsert
from emproc.ispyb.retry import DEFAULT_RETRY, RetryPolicy, run_in_transaction
from emproc.ispyb.schema import Visit, find_session_id, parse_visit
from emproc.ispyb.state import content_hash

log = logging.getLogger(__name__)

JOB_DISPLAY_NAME = "emproc"
SUCCESS = (1, "processing successful")
# DataCollectionGroup.experimentType (the column's enum) and ExperimentType.name per kind
EXPERIMENTS = {"spa": ("EM", "Single Particle"), "tomo": ("tomo", "Tomography")}
# tables whose rows belong to a program: a superseded program is deleted only without them
_PROGRAM_OWNED = (
    (models.MotionCorrection, "autoProcProgramId"),
    (models.CTF, "autoProcProgramId"),
    (models.RelativeIceThickness, "autoProcProgramId"),
    (models.ParticlePicker, "programId"),
    (models.ParticleClassificationGroup, "programId"),
    (models.Tomogram, "autoProcProgramId"),
)


class VisitNotFoundError(LookupError):
    """The visit named in the config has no BLSession in the ISPyB database."""


@dataclass(frozen=True)
class Recipe:
    """A processing job as PATo knows it: `ProcessingJob.recipe` and the program that owns
    the job's rows (`AutoProcProgram.processingPrograms`)."""

    name: str
    program: str


@dataclass(frozen=True)
class CollectionIds:
    """ISPyB ids of one data collection and of the recipes' jobs and programs on it."""

    data_collection_group_id: int
    data_collection_id: int
    jobs: Mapping[str, int]  # recipe -> processingJobId
    programs: Mapping[str, int]  # recipe -> autoProcProgramId
    # programs of superseded emproc jobs on this collection (rows are looked up there too)
    earlier_programs: tuple[int, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "dataCollectionGroupId": self.data_collection_group_id,
            "dataCollectionId": self.data_collection_id,
            "jobs": dict(self.jobs),
            "programs": dict(self.programs),
            "earlierPrograms": list(self.earlier_programs),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CollectionIds:
        return cls(
            data["dataCollectionGroupId"],
            data["dataCollectionId"],
            dict(data["jobs"]),
            dict(data["programs"]),
            tuple(data.get("earlierPrograms", ())),
        )

    def program_and_earlier(self, recipe: str) -> list[int]:
        """The recipe's program and every superseded one (where a rerun finds old rows)."""
        return [self.programs[recipe], *self.earlier_programs]


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
    kind: str,
    data_collection: Mapping[str, Any],
    config: Mapping[str, Any],
    recipes: Sequence[Recipe],
    attachments: Sequence[tuple[str, str, str]] = (),
    known: CollectionIds | None = None,
    policy: RetryPolicy = DEFAULT_RETRY,
    outcomes: Mapping[str, tuple[int, str]] | None = None,
) -> CollectionIds:
    """Create or update the group, the collection and one job + program per recipe, in one
    transaction.

    `kind` is "spa" or "tomo". The DataCollection's natural key is (session, imageDirectory,
    fileTemplate); a job's is (collection, recipe, parameter hash in `comments`), so a
    changed config is a new job. `outcomes` gives a recipe's (processingStatus,
    processingMessage) where it is not SUCCESS. `attachments` are (recipe, file type, path)
    with file type one of Log, Result, Graph, Debug, Input.
    """
    experiment_enum, experiment_name = EXPERIMENTS[kind]
    parameters = processing_parameters(config)
    job_comment = f"emproc {emproc.__version__}, parameters {content_hash([], parameters)[:16]}"
    now = datetime.datetime.now().replace(microsecond=0)

    def unit(connection: sa.Connection, attempt: int) -> CollectionIds:
        dc_id = known.data_collection_id if known and attempt == 1 else None
        if dc_id is None:
            dc_id = find_id(
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
            "experimentType": experiment_enum,
            "experimentTypeId": find_id(connection, models.ExperimentType, name=experiment_name),
            "startTime": data_collection.get("startTime"),
            "endTime": data_collection.get("endTime"),
            "comments": f"emproc {experiment_name.lower()}",
        }
        if group["experimentTypeId"] is None:
            log.warning(
                "ISPyB has no ExperimentType %r: the group's type is left empty", experiment_name
            )
        dcg_id = upsert(connection, models.DataCollectionGroup, dcg_id, group)
        dc_id = upsert(
            connection,
            models.DataCollection,
            dc_id,
            {**data_collection, "dataCollectionGroupId": dcg_id, "SESSIONID": session_id},
        )
        jobs: dict[str, int] = {}
        programs: dict[str, int] = {}
        for recipe in recipes:
            jobs[recipe.name], programs[recipe.name] = _ensure_job(
                connection, dc_id, recipe, job_comment, parameters,
                (outcomes or {}).get(recipe.name, SUCCESS), now,
            )  # fmt: skip
        for recipe_name, file_type, path in attachments:
            _attach(connection, programs[recipe_name], file_type, path, now)
        earlier = connection.execute(
            sa.select(models.AutoProcProgram.autoProcProgramId)
            .join(models.ProcessingJob)
            .where(
                models.ProcessingJob.dataCollectionId == dc_id,
                models.ProcessingJob.displayName == JOB_DISPLAY_NAME,
                models.AutoProcProgram.autoProcProgramId.not_in(list(programs.values())),
            )
            .order_by(models.AutoProcProgram.autoProcProgramId)
        ).scalars()
        return CollectionIds(dcg_id, dc_id, jobs, programs, tuple(earlier))

    name = f"{kind} collection {data_collection['fileTemplate']}"
    return run_in_transaction(engine, unit, name, policy)


def _ensure_job(
    connection: sa.Connection,
    dc_id: int,
    recipe: Recipe,
    job_comment: str,
    parameters: Mapping[str, str],
    outcome: tuple[int, str],
    now: datetime.datetime,
) -> tuple[int, int]:
    """(processingJobId, autoProcProgramId) of the recipe's job on collection `dc_id`."""
    job_id = find_id(
        connection,
        models.ProcessingJob,
        dataCollectionId=dc_id,
        recipe=recipe.name,
        comments=job_comment,
    )
    if job_id is None:
        job_id = upsert(
            connection,
            models.ProcessingJob,
            None,
            {
                "dataCollectionId": dc_id,
                "displayName": JOB_DISPLAY_NAME,
                "recipe": recipe.name,
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
    program_id = find_id(
        connection,
        models.AutoProcProgram,
        processingJobId=job_id,
        processingPrograms=recipe.program,
    )
    values = {
        "processingJobId": job_id,
        "processingPrograms": recipe.program,
        "processingCommandLine": "snakemake (emproc workflow)",
        "processingStatus": outcome[0],
        "processingMessage": outcome[1][:255],
        "processingEndTime": now,
        "recordTimeStamp": now,
    }
    if program_id is None:
        values["processingStartTime"] = now
    return job_id, upsert(connection, models.AutoProcProgram, program_id, values)


def _attach(
    connection: sa.Connection, program_id: int, file_type: str, path: str, now: datetime.datetime
) -> int:
    # ISPyB convention: fileName is the base name, filePath the directory
    location = Path(path)
    key = {
        "autoProcProgramId": program_id,
        "fileName": location.name,
        "filePath": str(location.parent),
    }
    attachment_id = find_id(connection, models.AutoProcProgramAttachment, **key)
    values = {**key, "fileType": file_type, "recordTimeStamp": now}
    return upsert(connection, models.AutoProcProgramAttachment, attachment_id, values)


def retire_superseded_jobs(
    engine: Engine, collection: CollectionIds, policy: RetryPolicy = DEFAULT_RETRY
) -> int:
    """Delete superseded emproc programs that own no rows any more (with their
    attachments), then their jobs once programless; returns the number of jobs deleted."""
    if not collection.earlier_programs:
        return 0

    def unit(connection: sa.Connection, _: int) -> int:
        empty = []
        for program_id in collection.earlier_programs:
            owned = any(
                connection.execute(
                    sa.select(sa.literal(1)).where(getattr(model, column) == program_id).limit(1)
                ).first()
                for model, column in _PROGRAM_OWNED
            )
            if not owned:
                empty.append(program_id)
        if not empty:
            return 0
        job_ids = set(
            connection.execute(
                sa.select(models.AutoProcProgram.processingJobId).where(
                    models.AutoProcProgram.autoProcProgramId.in_(empty)
                )
            ).scalars()
        )
        for model in (models.AutoProcProgramAttachment, models.AutoProcProgram):
            connection.execute(sa.delete(model).where(model.autoProcProgramId.in_(empty)))
        still_used = set(
            connection.execute(
                sa.select(models.AutoProcProgram.processingJobId).where(
                    models.AutoProcProgram.processingJobId.in_(job_ids)
                )
            ).scalars()
        )
        retired = sorted(job_ids - still_used)
        for model in (models.ProcessingJobParameter, models.ProcessingJob):
            connection.execute(sa.delete(model).where(model.processingJobId.in_(retired)))
        return len(retired)

    name = f"superseded jobs of collection {collection.data_collection_id}"
    return run_in_transaction(engine, unit, name, policy)
