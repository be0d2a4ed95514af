"""em-spa-class2d: the 2D classification batches PATo's "2D Classification" panel shows.

The job's program owns each batch's ParticleClassificationGroup (`programId`; PATo selects
groups by program and `type` "2D").

| row | from (emproc file) | PATo page |
|---|---|---|
| ParticleClassificationGroup (`type` 2D, `batchNumber`, `particlePickerId` = first picked movie's) | `Class2D/batch_<n>/summary.json` | 2D classes panel |
| ParticleClassification per class | the summary's `classes` | class gallery; `classImageFullPath` = class average image |

Natural keys: group (this or a superseded emproc program, type 2D, batchNumber); class
(group, classNumber).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from emproc.ispyb.collection import CollectionIds, Recipe
from emproc.ispyb.recipes.classification import write_classification
from emproc.ispyb.retry import DEFAULT_RETRY, RetryPolicy, run_in_transaction
from emproc.ispyb.rows import require
from emproc.ispyb.run import IngestRun, read_json
from emproc.ispyb.state import content_hash

RECIPE = Recipe("em-spa-class2d", "emproc 2D classification")
SUMMARY_GLOB = "Class2D/batch_*/summary.json"  # emproc.classify, relative to the outputs


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


def ingest_class2d_batch(
    engine: Engine,
    collection: CollectionIds,
    batch: Mapping[str, Any],
    particle_picker_id: int | None,
    known_ids: Mapping[str, Any] | None = None,
    policy: RetryPolicy = DEFAULT_RETRY,
) -> dict[str, Any]:
    """ParticleClassificationGroup + one ParticleClassification per class, in one transaction.

    `batch` keys: batch_number, number_of_particles, number_of_classes,
    binned_pixel_size_angstrom (optional), symmetry (optional, C1), classes: [{class_number,
    class_image_path, particles_per_class, class_distribution, estimated_resolution_angstrom,
    selected}].
    """
    source = f"2D classification batch {batch.get('batch_number')}"
    group_values = classification_group_row(batch, source)
    group_values.update(
        programId=collection.programs[RECIPE.name], particlePickerId=particle_picker_id
    )
    class_values = [classification_row(k, source) for k in require(batch, "classes", source)]
    programs = collection.program_and_earlier(RECIPE.name)

    def unit(connection: sa.Connection, attempt: int) -> dict[str, Any]:
        known_group = (known_ids or {}).get("particleClassificationGroupId")
        group_id, class_ids = write_classification(
            connection, programs, group_values, class_values,
            known_group if attempt == 1 else None,
        )  # fmt: skip
        return {"particleClassificationGroupId": group_id, "classes": class_ids}

    return run_in_transaction(engine, unit, source, policy)


def batch_files(output_dir: Path) -> list[Path]:
    """The 2D batch summaries under `output_dir` (empty: no em-spa-class2d job is written)."""
    return sorted(output_dir.glob(SUMMARY_GLOB))


def ingest(run: IngestRun, collection: CollectionIds, particle_picker_id: int | None) -> None:
    """Every 2D batch summary's group and classes."""
    collection_digest = content_hash([], collection.to_json())
    for path in batch_files(run.output_dir):
        batch = read_json(path)
        run.unit(
            f"class2d:{require(batch, 'batch_number', str(path))}",
            [path],
            [collection_digest, particle_picker_id],
            lambda known, b=batch: ingest_class2d_batch(
                run.engine, collection, b, particle_picker_id, known, run.policy
            ),
        )
