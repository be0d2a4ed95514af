"""em-spa-refine: the refined map and its B-factor fit, PATo's SPA "Refinement" panel.

As cryoemservices' postprocess service writes it: a ParticleClassificationGroup of `type` 3D,
batch 1, one class, owned by the job's program; its one ParticleClassification is the
post-processed map; one BFactorFit row per particle subset hangs from that class. PATo's
refinement panel is the 3D classification query on this program (`classType` 3d) and its
B-factor plot is `ln(numberOfParticles)` against `1 / resolution^2` of the BFactorFit rows
joined through the program's groups and classes.

| row | from (emproc file) | PATo page |
|---|---|---|
| ParticleClassificationGroup (`type` 3D, `batchNumber` 1, one class, particles, symmetry, `binnedPixelSize`, `particlePickerId`) | `PostProcess/summary.json` | refinement panel |
| ParticleClassification 1 (`classImageFullPath` = `postprocess_masked.mrc`, `estimatedResolution` = masked FSC 0.143 resolution, particles, `classDistribution` 1, `selected` 1, rotation/translation accuracy, `bFactorFitLinear`/`Intercept` (1/A^2)) | PostProcess, `Refine3D/summary.json`, `BFactor/summary.json` | refined map, resolution |
| BFactorFit per subset (`numberOfParticles`, `particleBatchSize`, `resolution` A) | `BFactor/summary.json` `subsets` | B-factor plot |

cryoemservices overwrites the refined class's resolution with RELION's refinement estimate
from `run_model.star`; emproc keeps the post-processed (masked, phase-randomisation
corrected) FSC 0.143 resolution, the figure RELION itself reports for the map.

Natural keys: group (this or a superseded emproc program, type 3D, batchNumber 1); class
(group, classNumber 1); BFactorFit (class, numberOfParticles), fits of subset sizes no longer
in the summary are deleted.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ispyb.sqlalchemy as models
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from emproc.ispyb.collection import CollectionIds, Recipe
from emproc.ispyb.db import upsert_children
from emproc.ispyb.recipes.classification import write_classification
from emproc.ispyb.retry import DEFAULT_RETRY, RetryPolicy, run_in_transaction
from emproc.ispyb.rows import optional_float, require
from emproc.ispyb.run import IngestRun, read_json
from emproc.ispyb.state import content_hash

RECIPE = Recipe("em-spa-refine", "emproc 3D refinement (RELION auto-refine, postprocess, B-factor)")
# emproc.refine3d summaries, relative to the outputs (docs/architecture.md, "3D summaries")
REFINE_SUMMARY = "Refine3D/summary.json"
POSTPROCESS_SUMMARY = "PostProcess/summary.json"
BFACTOR_SUMMARY = "BFactor/summary.json"
REFINED_CLASS = 1


def refined_group_row(postprocess: Mapping[str, Any], source: str) -> dict[str, Any]:
    """ParticleClassificationGroup of the refined map: one batch, one class."""
    return {
        "type": "3D",
        "batchNumber": 1,
        "numberOfParticlesPerBatch": int(require(postprocess, "number_of_particles", source)),
        "numberOfClassesPerBatch": 1,
        "symmetry": postprocess.get("symmetry", "C1"),
        "binnedPixelSize": optional_float(postprocess.get("pixel_size_angstrom")),
    }


def refined_class_row(
    postprocess: Mapping[str, Any],
    refine: Mapping[str, Any] | None,
    bfactor: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """ParticleClassification of the refined map (resolution: post-processed, Angstrom;
    B-factor fit slope and intercept of 1/d^2 against ln N, 1/A^2)."""
    source = POSTPROCESS_SUMMARY
    refine = refine or {}
    bfactor = bfactor or {}
    return {
        "classNumber": REFINED_CLASS,
        "classImageFullPath": str(require(postprocess, "masked_map_path", source)),
        "particlesPerClass": int(require(postprocess, "number_of_particles", source)),
        "classDistribution": 1.0,
        "selected": 1,
        "estimatedResolution": float(require(postprocess, "resolution_angstrom", source)),
        "rotationAccuracy": optional_float(refine.get("rotation_accuracy_deg")),
        "translationAccuracy": optional_float(refine.get("translation_accuracy_angstrom")),
        "bFactorFitLinear": optional_float(bfactor.get("slope_per_angstrom2")),
        "bFactorFitIntercept": optional_float(bfactor.get("intercept_per_angstrom2")),
    }


def bfactor_fit_rows(bfactor: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """BFactorFit columns per particle subset (resolution in Angstrom)."""
    if bfactor is None:
        return []
    return [
        {
            "numberOfParticles": int(require(subset, "number_of_particles", BFACTOR_SUMMARY)),
            "particleBatchSize": int(
                subset.get("particle_batch_size", subset["number_of_particles"])
            ),
            "resolution": float(require(subset, "resolution_angstrom", BFACTOR_SUMMARY)),
        }
        for subset in require(bfactor, "subsets", BFACTOR_SUMMARY)
    ]


def ingest_refinement(
    engine: Engine,
    collection: CollectionIds,
    postprocess: Mapping[str, Any],
    refine: Mapping[str, Any] | None,
    bfactor: Mapping[str, Any] | None,
    particle_picker_id: int | None,
    known_ids: Mapping[str, Any] | None = None,
    policy: RetryPolicy = DEFAULT_RETRY,
) -> dict[str, Any]:
    """The refined group, its class and the B-factor fits, in one transaction."""
    group_values = {
        **refined_group_row(postprocess, POSTPROCESS_SUMMARY),
        "programId": collection.programs[RECIPE.name],
        "particlePickerId": particle_picker_id,
    }
    class_values = refined_class_row(postprocess, refine, bfactor)
    fits = bfactor_fit_rows(bfactor)
    programs = collection.program_and_earlier(RECIPE.name)

    def unit(connection: sa.Connection, attempt: int) -> dict[str, Any]:
        known = (known_ids or {}) if attempt == 1 else {}
        group_id, class_ids = write_classification(
            connection, programs, group_values, [class_values],
            known.get("particleClassificationGroupId"), drop_other_classes=True,
        )  # fmt: skip
        class_id = class_ids[str(REFINED_CLASS)]
        fit_table = models.BFactorFit
        fit_ids, stale = upsert_children(
            connection, fit_table, ("particleClassificationId", class_id), "numberOfParticles", fits
        )
        if stale:  # subset sizes of an earlier run
            connection.execute(sa.delete(fit_table).where(fit_table.bFactorFitId.in_(stale)))
        return {
            "particleClassificationGroupId": group_id,
            "particleClassificationId": class_id,
            "bFactorFits": fit_ids,
        }

    return run_in_transaction(engine, unit, "3D refinement", policy)


def summary_files(output_dir: Path) -> tuple[Path, Path | None, Path | None] | None:
    """(PostProcess, Refine3D or None, BFactor or None summaries), or None before a
    post-processed map exists."""
    postprocess = output_dir / POSTPROCESS_SUMMARY
    if not postprocess.is_file():
        return None
    refine, bfactor = (output_dir / REFINE_SUMMARY, output_dir / BFACTOR_SUMMARY)
    return postprocess, refine if refine.is_file() else None, bfactor if bfactor.is_file() else None


def ingest(run: IngestRun, collection: CollectionIds, particle_picker_id: int | None) -> None:
    """The refinement's rows, if the outputs have a post-processed map."""
    files = summary_files(run.output_dir)
    if files is None:
        return
    postprocess_path, refine_path, bfactor_path = files
    run.unit(
        "refine",
        list(files),
        [content_hash([], collection.to_json()), particle_picker_id],
        lambda known: ingest_refinement(
            run.engine,
            collection,
            read_json(postprocess_path),
            None if refine_path is None else read_json(refine_path),
            None if bfactor_path is None else read_json(bfactor_path),
            particle_picker_id,
            known,
            run.policy,
        ),
    )
