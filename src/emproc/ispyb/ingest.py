"""Ingest an emproc output directory into ISPyB: find the collections and hand each recipe
its files (`emproc.ispyb.recipes`, one module per processing job PATo shows).

SPA: one collection for the session's movies, with an em-spa-preprocess job and, when 2D
batches exist, an em-spa-class2d job. Tomography: one collection per tilt series
(`Tomograms/{ts}/{ts}_tomo.json`) with em-tomo-preprocess and em-tomo-align jobs. Unchanged
units are skipped (`IngestRun.unit`); linear in the number of movies.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mrcfile
from sqlalchemy.engine import Engine

from emproc.chunks import movie_paths
from emproc.io.atomic import write_json_atomic
from emproc.ispyb import rows
from emproc.ispyb.collection import (
    CollectionIds,
    Recipe,
    VisitNotFoundError,
    ensure_collection,
    find_visit_session,
    processing_parameters,
    retire_superseded_jobs,
)
from emproc.ispyb.connect import DatabaseTarget, open_engine, resolve_target
from emproc.ispyb.recipes import (
    em_spa_class2d,
    em_spa_class3d,
    em_spa_preprocess,
    em_spa_refine,
    em_tomo_align,
    em_tomo_denoise,
    em_tomo_preprocess,
)
from emproc.ispyb.retry import DEFAULT_RETRY, RetryPolicy
from emproc.ispyb.run import IngestRun, read_json
from emproc.ispyb.state import (
    STATE_DIR,
    SUMMARY_FILE,
    IdMap,
    content_hash,
    ingest_lock,
    load_id_map,
    save_id_map,
)

__all__ = [
    "IngestInputError",
    "IngestSummary",
    "VisitNotFoundError",
    "ingest_movies_live",
    "ingest_output_dir",
]

log = logging.getLogger(__name__)

SPA_RECIPES = (
    em_spa_preprocess.RECIPE,
    em_spa_class2d.RECIPE,
    em_spa_class3d.RECIPE,
    em_spa_refine.RECIPE,
)
TOMO_RECIPES = (em_tomo_preprocess.RECIPE, em_tomo_align.RECIPE)


# an output file needed for ingest is missing, not valid JSON, or lacks a key
IngestInputError = rows.IngestInputError


@dataclass(frozen=True)
class IngestSummary:
    """What one `ingest_output_dir` call did."""

    database: str  # masked URL
    session_id: int
    units_ingested: int
    units_skipped: int
    state_path: Path


# emproc stage -> the recipe (its AutoProcProgram) its failures are reported under
FAILURE_PROGRAMS = {
    stage: em_spa_preprocess.RECIPE.name for stage in ("import", "motion", "ctf", "pick", "extract")
}


def stage_outcomes(
    failures: Mapping[str, Mapping[str, str]], movies_ingested: int
) -> dict[str, tuple[int, str]]:
    """(processingStatus, processingMessage) per recipe that had failed movies.

    Status 0 only when no movie got through at all; the message counts the failures and
    names the first ones (the column holds 255 characters; `emproc status` has them all).
    """
    by_program: dict[str, dict[str, str]] = {}
    for stage, movies in failures.items():
        by_program.setdefault(FAILURE_PROGRAMS.get(stage, stage), {}).update(movies)
    outcomes = {}
    for program, movies in by_program.items():
        listed = "; ".join(
            f"{Path(movie).name}: {error}" for movie, error in sorted(movies.items())
        )
        message = f"{len(movies)} movie(s) failed: {listed}"
        if len(message) > 255:
            message = message[:252] + "..."
        outcomes[program] = (0 if movies_ingested == 0 else 1, message)
    return outcomes


def _image_size_px(micrograph_path: str | None) -> tuple[int, int] | None:
    if not micrograph_path or not Path(micrograph_path).is_file():
        return None
    try:
        with mrcfile.open(micrograph_path, header_only=True, permissive=True) as mrc:
            return int(mrc.header.nx), int(mrc.header.ny)
    except (OSError, ValueError):
        return None


def discover_movies(output_dir: Path) -> list[str]:
    """Movie ids ({movie}) that have an `Import/{movie}.json`, sorted."""
    import_dir = output_dir / "Import"
    return sorted(
        str(p.relative_to(import_dir).with_suffix("")) for p in import_dir.rglob("*.json")
    )


def ingest_output_dir(
    output_dir: str | os.PathLike[str],
    config: Mapping[str, Any],
    engine: Engine | None = None,
    target: DatabaseTarget | None = None,
    movies: Sequence[str] | None = None,
    policy: RetryPolicy = DEFAULT_RETRY,
    failures: Mapping[str, Mapping[str, str]] | None = None,
) -> IngestSummary:
    """Ingest everything under `output_dir` that changed since the last ingest.

    `failures` (`{emproc stage: {movie: error}}`, from the chunk manifests) become the
    processing status and message of the em-spa-preprocess program.

    The database is `engine` if given, else `target`, else the one `resolve_target` picks
    from the config (embedded SQLite is created and seeded). Writes `ISPyB/ispyb_ids.json`
    (also when a unit fails) and `ISPyB/ingest_state.json`. One ingest at a time per output
    directory (`ingest_lock`).
    """
    with ingest_lock(output_dir):
        return _ingest_output_dir(
            Path(output_dir), config, engine, target, movies, policy, failures
        )


def _ingest_output_dir(
    output_dir: Path,
    config: Mapping[str, Any],
    engine: Engine | None,
    target: DatabaseTarget | None,
    movies: Sequence[str] | None,
    policy: RetryPolicy,
    failures: Mapping[str, Mapping[str, str]] | None,
    write_state: bool = True,
) -> IngestSummary:
    visit_name = str(config["session"]["visit"])
    if target is None and engine is not None:
        target = DatabaseTarget(engine.url.render_as_string(hide_password=False), embedded=False)
    target = target or resolve_target(config.get("ispyb", {}), output_dir)
    if engine is None:
        engine = open_engine(target, visit_name if target.embedded else None)
    id_map = load_id_map(output_dir, target.masked_url, visit_name)
    session_id = find_visit_session(engine, visit_name, policy)
    if id_map.session_id != session_id:
        id_map = IdMap(database=target.masked_url, visit=visit_name, session_id=session_id)
    run = IngestRun(engine, output_dir, config, session_id, id_map, policy)
    movie_names = list(movies) if movies is not None else discover_movies(output_dir)
    try:
        if movie_names:
            _ingest_spa(run, movie_names, stage_outcomes(failures or {}, len(movie_names)))
        for path in sorted(output_dir.glob(em_tomo_preprocess.SUMMARY_GLOB)):
            _ingest_tilt_series(run, path)
    finally:
        # once, not per unit (that would be quadratic); a failed run keeps its finished units
        save_id_map(output_dir, id_map)
    state_path = output_dir / STATE_DIR / SUMMARY_FILE
    summary = IngestSummary(
        target.masked_url,
        session_id,
        run.counts["ingested"],
        run.counts["skipped"],
        state_path,
    )
    if not write_state:  # the workflow's ingest job output: only that job writes it
        return summary
    write_json_atomic(
        state_path,
        {
            "database": target.masked_url,
            "visit": visit_name,
            "session_id": session_id,
            "units_ingested": summary.units_ingested,
            "units_skipped": summary.units_skipped,
            "units_total": len(id_map.units),
            "collections": id_map.collections,
        },
    )
    log.info(
        "ISPyB ingest into %s: %d units written, %d unchanged",
        target.masked_url,
        summary.units_ingested,
        summary.units_skipped,
    )
    return summary


def _ingest_spa(
    run: IngestRun,
    movie_names: Sequence[str],
    outcomes: Mapping[str, tuple[int, str]] | None = None,
) -> None:
    """The session's SPA collection, then each SPA recipe's rows."""
    output_dir = run.output_dir
    imports = {
        name: read_json(movie_paths(output_dir, "import", name)["metadata"]) for name in movie_names
    }
    first_motion = next(
        (
            path
            for name in movie_names
            if (path := movie_paths(output_dir, "motion", name)["summary"]).is_file()
        ),
        None,
    )
    motion0 = read_json(first_motion) if first_motion else {}
    snapshots = []
    for name in movie_names[:4]:
        snapshot = movie_paths(output_dir, "motion", name)["snapshot"]
        if snapshot.is_file():
            snapshots.append(str(snapshot.resolve()))
    data_collection = rows.spa_data_collection_row(
        run.config,
        list(imports.values()),
        snapshots,
        motion0.get("number_of_frames"),
        _image_size_px(motion0.get("micrograph_path")),
    )
    preprocess = em_spa_preprocess.RECIPE.name
    attachments = [
        (preprocess, kind, str((output_dir / name).resolve()))
        for kind, name in (
            ("Input", "config_used.yaml"),
            ("Result", "corrected_micrographs.star"),
            ("Result", "micrographs_ctf.star"),
        )
        if (output_dir / name).is_file()
    ]
    recipes = [em_spa_preprocess.RECIPE]
    if em_spa_class2d.batch_files(output_dir):
        recipes.append(em_spa_class2d.RECIPE)
    if em_spa_class3d.summary_files(output_dir):
        recipes.append(em_spa_class3d.RECIPE)
    if em_spa_refine.summary_files(output_dir):
        recipes.append(em_spa_refine.RECIPE)
    collection = _collection(run, "spa", "spa", data_collection, recipes, attachments, outcomes)
    first_picker = em_spa_preprocess.ingest(run, collection, movie_names, imports)
    for recipe in (em_spa_class2d, em_spa_class3d, em_spa_refine):
        if recipe.RECIPE in recipes:
            recipe.ingest(run, collection, first_picker)
    retire_superseded_jobs(run.engine, collection, run.policy)


def _ingest_tilt_series(run: IngestRun, path: Path) -> None:
    """One tilt series' collection, then its tilts and its tomogram."""
    summary = read_json(path)
    session_dir = run.config.get("session", {}).get("session_dir", "")
    name = str(rows.require(summary, "tilt_series_name", str(path)))
    tilts = em_tomo_preprocess.used_tilts(summary, session_dir, str(path))
    data_collection = rows.tilt_series_data_collection_row(run.config, summary, tilts, str(path))
    attachments = [
        (em_tomo_align.RECIPE.name, "Graph", str(summary[key]))
        for key in ("residual_plot_path",)
        if summary.get(key)
    ]
    message = em_tomo_align.alignment_message(summary)
    outcomes = {em_tomo_align.RECIPE.name: (1, message)} if message else None
    collection = _collection(
        run, f"tomo:{name}", "tomo", data_collection, list(TOMO_RECIPES), attachments, outcomes
    )
    movie_ids = em_tomo_preprocess.ingest(run, collection, path, summary, tilts)
    tomogram = em_tomo_align.ingest(run, collection, path, summary, tilts, movie_ids)
    em_tomo_denoise.ingest(run, path, summary, tomogram["tomogramId"])
    retire_superseded_jobs(run.engine, collection, run.policy)


def _collection(
    run: IngestRun,
    key: str,
    kind: str,
    data_collection: Mapping[str, Any],
    recipes: Sequence[Recipe],
    attachments: Sequence[tuple[str, str, str]],
    outcomes: Mapping[str, tuple[int, str]] | None = None,
) -> CollectionIds:
    """The collection's ids, written only when its rows, recipes, parameters or outcomes
    changed."""
    digest = content_hash(
        [],
        [
            data_collection,
            [r.name for r in recipes],
            processing_parameters(run.config),
            attachments,
            outcomes or {},
        ],
    )
    stored = run.id_map.collections.get(key)
    if stored and stored.get("hash") == digest:
        return CollectionIds.from_json(stored["ids"])
    known = CollectionIds.from_json(stored["ids"]) if stored else None
    collection = ensure_collection(
        run.engine,
        run.session_id,
        kind,
        data_collection,
        run.config,
        recipes,
        attachments,
        known,
        run.policy,
        outcomes,
    )
    run.id_map.collections[key] = {"hash": digest, "ids": collection.to_json()}
    return collection


def ingest_movies_live(
    output_dir: str | os.PathLike[str],
    config: Mapping[str, Any],
    movies: Sequence[str],
    all_movies: Sequence[str],
    engine: Engine | None = None,
    policy: RetryPolicy = DEFAULT_RETRY,
) -> int:
    """The rows of `movies` alone (Movie, MotionCorrection, CTF, ice, ParticlePicker), as the
    em-spa-preprocess recipe writes them, for `emproc watch`'s live worker.

    The same units and id map as `ingest_output_dir`, so the workflow's ingest later skips
    them. The collection's rows (image count, times, attachments) are left to that ingest;
    before the collection exists, this is a full ingest of `all_movies` (the movies with a
    CTF so far). Returns the units written.
    """
    output_dir = Path(output_dir)
    visit_name = str(config["session"]["visit"])
    with ingest_lock(output_dir):
        target = resolve_target(config.get("ispyb", {}), output_dir)
        if engine is None:
            engine = open_engine(target, visit_name if target.embedded else None)
        id_map = load_id_map(output_dir, target.masked_url, visit_name)
        session_id = find_visit_session(engine, visit_name, policy)
        stored = id_map.collections.get("spa")
        if stored is None or id_map.session_id != session_id:
            summary = _ingest_output_dir(
                output_dir, config, engine, target, all_movies, policy, None, write_state=False
            )
            return summary.units_ingested
        run = IngestRun(engine, output_dir, config, session_id, id_map, policy)
        imports = {
            name: read_json(movie_paths(output_dir, "import", name)["metadata"]) for name in movies
        }
        try:
            em_spa_preprocess.ingest(
                run, CollectionIds.from_json(stored["ids"]), movies, imports, movies
            )
        finally:
            save_id_map(output_dir, id_map)
        return run.counts["ingested"]
