"""em-spa-class3d: the 3D classification PATo's SPA "3D Classification" panel shows, with the
initial model it started from.

As cryoemservices' class3d service writes it: one ParticleClassificationGroup of `type` 3D,
batch 1, owned by the job's program (PATo selects groups by program and type "3D"), one
ParticleClassification per class whose `classImageFullPath` is the class map (.mrc: PATo
serves "the class' image representation or MRC file" and draws the map), and one
CryoemInitialModel linked to every class through ParticleClassification_has_CryoemInitialModel
(PATo outer-joins it into each class: resolution and particles of the initial model).

| row | from (emproc file) | PATo page |
|---|---|---|
| ParticleClassificationGroup (`type` 3D, `batchNumber` 1, particles, classes, symmetry, `binnedPixelSize`, `particlePickerId` = first picked movie's) | `Class3D/summary.json` | 3D classification panel |
| ParticleClassification per class (`classImageFullPath` = `run_itNNN_class00k.mrc`, particles, distribution, accuracies, `estimatedResolution` (99 where RELION had none, as cryoemservices), `overallFourierCompleteness`, `selected` = the class refined) | the summary's `classes` | class list, map viewer |
| CryoemInitialModel (`resolution`, `numberOfParticles`) + one link per class | `InitialModel/summary.json` | initial model column of each 3D class |

Natural keys: group (this or a superseded emproc program, type 3D, batchNumber 1); class
(group, classNumber), classes beyond the summary's are deleted (a rerun with fewer classes);
CryoemInitialModel: the model any of the group's classes links to; link: its primary key.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ispyb.sqlalchemy as models
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from emproc.ispyb.collection import CollectionIds, Recipe
from emproc.ispyb.db import upsert
from emproc.ispyb.recipes.classification import write_classification
from emproc.ispyb.retry import DEFAULT_RETRY, RetryPolicy, run_in_transaction
from emproc.ispyb.rows import optional_float, require
from emproc.ispyb.run import IngestRun, read_json
from emproc.ispyb.state import content_hash

RECIPE = Recipe("em-spa-class3d", "emproc 3D classification (RELION initial model, class3d)")
# emproc.refine3d summaries, relative to the outputs (docs/architecture.md, "3D summaries")
CLASS3D_SUMMARY = "Class3D/summary.json"
INITIAL_MODEL_SUMMARY = "InitialModel/summary.json"
_LINK = models.t_ParticleClassification_has_CryoemInitialModel


def class3d_group_row(summary: Mapping[str, Any], source: str) -> dict[str, Any]:
    """ParticleClassificationGroup columns of the 3D classification (one batch: number 1)."""
    return {
        "type": "3D",
        "batchNumber": 1,
        "numberOfParticlesPerBatch": int(require(summary, "number_of_particles", source)),
        "numberOfClassesPerBatch": int(require(summary, "number_of_classes", source)),
        "symmetry": summary.get("symmetry", "C1"),
        "binnedPixelSize": optional_float(summary.get("pixel_size_angstrom")),
    }


def class3d_row(klass: Mapping[str, Any], source: str) -> dict[str, Any]:
    """ParticleClassification columns of one 3D class (accuracies in degrees / Angstrom)."""
    return {
        "classNumber": int(require(klass, "class_number", source)),
        "classImageFullPath": str(require(klass, "class_map_path", source)),
        "particlesPerClass": int(require(klass, "particles_per_class", source)),
        "classDistribution": float(require(klass, "class_distribution", source)),
        "rotationAccuracy": optional_float(klass.get("rotation_accuracy_deg")),
        "translationAccuracy": optional_float(klass.get("translation_accuracy_angstrom")),
        "estimatedResolution": optional_float(klass.get("estimated_resolution_angstrom")),
        "overallFourierCompleteness": optional_float(klass.get("overall_fourier_completeness")),
        "selected": int(bool(klass.get("selected", False))),
    }


def initial_model_row(summary: Mapping[str, Any], source: str) -> dict[str, Any]:
    """CryoemInitialModel columns (resolution in Angstrom)."""
    return {
        "resolution": optional_float(summary.get("resolution_angstrom")),
        "numberOfParticles": int(require(summary, "number_of_particles", source)),
    }


def ingest_class3d(
    engine: Engine,
    collection: CollectionIds,
    class3d: Mapping[str, Any],
    initial_model: Mapping[str, Any] | None,
    particle_picker_id: int | None,
    known_ids: Mapping[str, Any] | None = None,
    policy: RetryPolicy = DEFAULT_RETRY,
) -> dict[str, Any]:
    """The 3D group, its classes and the initial model linked to each class, in one
    transaction."""
    source = CLASS3D_SUMMARY
    group_values = {
        **class3d_group_row(class3d, source),
        "programId": collection.programs[RECIPE.name],
        "particlePickerId": particle_picker_id,
    }
    class_values = [class3d_row(k, source) for k in require(class3d, "classes", source)]
    model_values = (
        None if initial_model is None else initial_model_row(initial_model, INITIAL_MODEL_SUMMARY)
    )
    programs = collection.program_and_earlier(RECIPE.name)

    def unit(connection: sa.Connection, attempt: int) -> dict[str, Any]:
        known = (known_ids or {}) if attempt == 1 else {}
        group_id, class_ids = write_classification(
            connection, programs, group_values, class_values,
            known.get("particleClassificationGroupId"), drop_other_classes=True,
        )  # fmt: skip
        ids: dict[str, Any] = {"particleClassificationGroupId": group_id, "classes": class_ids}
        if model_values is None:
            return ids
        model_id = (
            known.get("cryoemInitialModelId")
            or connection.execute(
                sa.select(_LINK.c.cryoemInitialModelId)
                .where(_LINK.c.particleClassificationId.in_(list(class_ids.values())))
                .order_by(_LINK.c.cryoemInitialModelId)
                .limit(1)
            ).scalar()
        )
        model_id = upsert(connection, models.CryoemInitialModel, model_id, model_values)
        linked = set(
            connection.execute(
                sa.select(_LINK.c.particleClassificationId).where(
                    _LINK.c.cryoemInitialModelId == model_id
                )
            ).scalars()
        )
        missing = [i for i in class_ids.values() if i not in linked]
        if missing:
            connection.execute(
                sa.insert(_LINK),
                [
                    {"particleClassificationId": i, "cryoemInitialModelId": model_id}
                    for i in missing
                ],
            )
        ids["cryoemInitialModelId"] = model_id
        return ids

    return run_in_transaction(engine, unit, "3D classification", policy)


def summary_files(output_dir: Path) -> tuple[Path, Path | None] | None:
    """(Class3D summary, InitialModel summary or None), or None before 3D classification."""
    class3d = output_dir / CLASS3D_SUMMARY
    if not class3d.is_file():
        return None
    initial_model = output_dir / INITIAL_MODEL_SUMMARY
    return class3d, initial_model if initial_model.is_file() else None


def ingest(run: IngestRun, collection: CollectionIds, particle_picker_id: int | None) -> None:
    """The 3D classification's rows, if the outputs have one."""
    files = summary_files(run.output_dir)
    if files is None:
        return
    class3d_path, model_path = files
    run.unit(
        "class3d",
        [class3d_path, model_path],
        [content_hash([], collection.to_json()), particle_picker_id],
        lambda known: ingest_class3d(
            run.engine,
            collection,
            read_json(class3d_path),
            None if model_path is None else read_json(model_path),
            particle_picker_id,
            known,
            run.policy,
        ),
    )
