"""Ingest an emproc output directory into ISPyB: find the units, skip unchanged ones.

Reads the files of docs/architecture.md (Import, MotionCorr, CtfFind, where
`emproc.chunks.movie_paths` puts them) and of the later stages (paths below, proposed in
docs/ispyb.md), hashes each unit's inputs, and hands new or changed units to
`emproc.ispyb.units`. Linear in the number of movies.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ispyb.sqlalchemy as models
import mrcfile
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from emproc.chunks import movie_glob, movie_paths
from emproc.io.atomic import write_json_atomic
from emproc.ispyb import rows
from emproc.ispyb.connect import DatabaseTarget, open_engine, resolve_target
from emproc.ispyb.retry import DEFAULT_RETRY, RetryPolicy, run_in_transaction
from emproc.ispyb.state import (
    STATE_DIR,
    SUMMARY_FILE,
    IdMap,
    content_hash,
    load_id_map,
    save_id_map,
)
from emproc.ispyb.units import (
    SPA_STAGES,
    TOMO_STAGES,
    CollectionIds,
    VisitNotFoundError,
    ensure_collection,
    find_visit_session,
    ingest_class2d_batch,
    ingest_particle_picking,
    ingest_spa_movie,
    ingest_tomogram,
    processing_parameters,
)

__all__ = ["IngestInputError", "IngestSummary", "VisitNotFoundError", "ingest_output_dir"]

log = logging.getLogger(__name__)

# Files of later stages, relative to the output directory
PICKING_GLOB = movie_glob("pick", "summary")
CLASS2D_GLOB = "Class2D/batch_*/summary.json"  # emproc.classify
TOMOGRAM_GLOB = "Tomograms/*/*_tomo.json"  # written by emproc.tomo.pipeline

Done = Callable[[str, str, dict[str, Any]], None]


class IngestInputError(rows.IngestInputError):
    """An output file needed for ingest is missing or is not valid JSON."""


@dataclass(frozen=True)
class IngestSummary:
    """What one `ingest_output_dir` call did."""

    database: str  # masked URL
    session_id: int
    units_ingested: int
    units_skipped: int
    state_path: Path


# emproc stage -> the ISPyB stage (AutoProcProgram) its failures are reported under
FAILURE_PROGRAMS = {
    "import": "motion_correction",
    "motion": "motion_correction",
    "ctf": "ctf",
    "pick": "particle_picking",
    "extract": "particle_picking",
}


def stage_outcomes(
    failures: Mapping[str, Mapping[str, str]], movies_ingested: int
) -> dict[str, tuple[int, str]]:
    """(processingStatus, processingMessage) per ISPyB stage that had failed movies.

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


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise IngestInputError(f"{path}: file is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise IngestInputError(f"{path}: not readable JSON ({error})") from None
    if not isinstance(data, dict):
        raise IngestInputError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


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
    processing status and message of the stage's AutoProcProgram.

    The database is `engine` if given, else `target`, else the one `resolve_target` picks
    from the config (embedded SQLite is created and seeded). Linear in the number of movies:
    each unit's inputs are hashed once and unchanged units are skipped without a query.
    Writes `ISPyB/ispyb_ids.json` (also when a unit fails) and `ISPyB/ingest_state.json`.
    """
    output_dir = Path(output_dir)
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
    counts = {"ingested": 0, "skipped": 0}

    def done(key: str, digest: str, ids: dict[str, Any]) -> None:
        id_map.record(key, digest, ids)
        counts["ingested"] += 1

    movie_names = list(movies) if movies is not None else discover_movies(output_dir)
    try:
        if movie_names:
            _ingest_spa(
                engine,
                output_dir,
                config,
                session_id,
                movie_names,
                id_map,
                done,
                counts,
                policy,
                stage_outcomes(failures or {}, len(movie_names)),
            )
        for path in sorted(output_dir.glob(TOMOGRAM_GLOB)):
            _ingest_tomogram_file(
                engine, output_dir, config, session_id, path, id_map, done, counts, policy
            )
    finally:
        # once, not per unit (that would be quadratic); a failed run keeps its finished units
        save_id_map(output_dir, id_map)
    state_path = output_dir / STATE_DIR / SUMMARY_FILE
    summary = IngestSummary(
        target.masked_url, session_id, counts["ingested"], counts["skipped"], state_path
    )
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
    engine: Engine,
    output_dir: Path,
    config: Mapping[str, Any],
    session_id: int,
    movie_names: Sequence[str],
    id_map: IdMap,
    done: Done,
    counts: dict[str, int],
    policy: RetryPolicy,
    outcomes: Mapping[str, tuple[int, str]] | None = None,
) -> None:
    paths = {
        name: (
            movie_paths(output_dir, "import", name)["metadata"],
            movie_paths(output_dir, "motion", name)["summary"],
            movie_paths(output_dir, "ctf", name)["summary"],
        )
        for name in movie_names
    }
    imports = {name: _read_json(p[0]) for name, p in paths.items()}
    first_motion = next((p[1] for p in paths.values() if p[1].is_file()), None)
    motion0 = _read_json(first_motion) if first_motion else {}
    snapshots = []
    for name in movie_names[:4]:
        snapshot = movie_paths(output_dir, "motion", name)["snapshot"]
        if snapshot.is_file():
            snapshots.append(str(snapshot.resolve()))
    data_collection = rows.spa_data_collection_row(
        config,
        list(imports.values()),
        snapshots,
        motion0.get("number_of_frames"),
        _image_size_px(motion0.get("micrograph_path")),
    )
    attachments = [
        (stage, kind, str((output_dir / name).resolve()))
        for stage, kind, name in (
            ("motion_correction", "Input", "config_used.yaml"),
            ("motion_correction", "Result", "corrected_micrographs.star"),
            ("ctf", "Result", "micrographs_ctf.star"),
        )
        if (output_dir / name).is_file()
    ]
    collection = _collection(
        engine,
        session_id,
        "spa",
        "EM",
        data_collection,
        config,
        SPA_STAGES,
        attachments,
        id_map,
        policy,
        outcomes,
    )
    collection_digest = content_hash([], collection.to_json())

    # one query for all Movie ids of the collection, so units new to the id map are matched
    # by natural key without a query each (ingest stays linear in the number of movies)
    def read_movies(connection: sa.Connection, _: int) -> dict[str, tuple[int, int | None]]:
        query = sa.select(
            models.Movie.movieFullPath, models.Movie.movieId, models.Movie.movieNumber
        ).where(models.Movie.dataCollectionId == collection.data_collection_id)
        return {
            row.movieFullPath: (row.movieId, row.movieNumber) for row in connection.execute(query)
        }

    existing = run_in_transaction(engine, read_movies, "reading the collection's movies", policy)
    numbers = [n for _, n in existing.values() if n] + [
        u["ids"].get("movieNumber", 0) for k, u in id_map.units.items() if k.startswith("movie:")
    ]
    next_number = max(numbers, default=0) + 1
    for name in movie_names:
        import_path, motion_path, ctf_path = paths[name]
        present = [p if p.is_file() else None for p in (import_path, motion_path, ctf_path)]
        key = f"movie:{name}"
        digest = content_hash(present, collection_digest)
        if id_map.is_current(key, digest):
            counts["skipped"] += 1
            continue
        known = id_map.unit_ids(key)
        movie_path = str(imports[name].get("movie_path"))
        if "movieId" not in known:
            known["movieId"], known["movieNumber"] = existing.get(movie_path, (None, None))
        movie_number = known.get("movieNumber")
        if not movie_number:
            movie_number, next_number = next_number, next_number + 1
        ids = ingest_spa_movie(
            engine,
            collection,
            imports[name],
            _read_json(motion_path) if present[1] else None,
            _read_json(ctf_path) if present[2] else None,
            config,
            movie_number,
            known,
            policy,
        )
        done(key, digest, {**ids, "movieNumber": movie_number})

    picker_for_batches = None
    for path in sorted(output_dir.glob(PICKING_GLOB)):
        picking = _read_json(path)
        movie = str(rows.require(picking, "movie_name", str(path)))
        motion_ids = id_map.unit_ids(f"movie:{movie}")
        if "motionCorrectionId" not in motion_ids:
            raise IngestInputError(f"{path}: movie {movie} has no ingested motion correction")
        key = f"picking:{movie}"
        digest = content_hash([path], [collection_digest, motion_ids["motionCorrectionId"]])
        if id_map.is_current(key, digest):
            counts["skipped"] += 1
        else:
            done(
                key,
                digest,
                ingest_particle_picking(
                    engine,
                    collection,
                    picking,
                    motion_ids["motionCorrectionId"],
                    id_map.unit_ids(key),
                    policy,
                ),
            )
        picker_for_batches = picker_for_batches or id_map.unit_ids(key)["particlePickerId"]

    for path in sorted(output_dir.glob(CLASS2D_GLOB)):
        batch = _read_json(path)
        key = f"class2d:{rows.require(batch, 'batch_number', str(path))}"
        digest = content_hash([path], [collection_digest, picker_for_batches])
        if id_map.is_current(key, digest):
            counts["skipped"] += 1
            continue
        done(
            key,
            digest,
            ingest_class2d_batch(
                engine,
                collection,
                batch,
                picker_for_batches,
                id_map.unit_ids(key),
                policy,
            ),
        )


def _collection(
    engine: Engine,
    session_id: int,
    key: str,
    experiment_type: str,
    data_collection: Mapping[str, Any],
    config: Mapping[str, Any],
    stages: Mapping[str, str],
    attachments: Sequence[tuple[str, str, str]],
    id_map: IdMap,
    policy: RetryPolicy,
    outcomes: Mapping[str, tuple[int, str]] | None = None,
) -> CollectionIds:
    """The collection's ids, written only when its rows, parameters or outcomes changed."""
    digest = content_hash(
        [], [data_collection, processing_parameters(config), attachments, outcomes or {}]
    )
    stored = id_map.collections.get(key)
    if stored and stored.get("hash") == digest:
        return CollectionIds.from_json(stored["ids"])
    known = CollectionIds.from_json(stored["ids"]) if stored else None
    collection = ensure_collection(
        engine,
        session_id,
        experiment_type,
        data_collection,
        config,
        stages,
        attachments,
        known,
        policy,
        outcomes,
    )
    id_map.collections[key] = {"hash": digest, "ids": collection.to_json()}
    return collection


def _ingest_tomogram_file(
    engine: Engine,
    output_dir: Path,
    config: Mapping[str, Any],
    session_id: int,
    path: Path,
    id_map: IdMap,
    done: Done,
    counts: dict[str, int],
    policy: RetryPolicy,
) -> None:
    tomogram = _read_json(path)
    if "volume_path" not in tomogram:  # emproc.tomo's summary, not yet the ingest dict
        session_dir = config.get("session", {}).get("session_dir", "")
        tomogram = rows.tomogram_from_tomo_summary(tomogram, session_dir, str(path))
    name = str(rows.require(tomogram, "tilt_series_name", str(path)))
    data_collection = rows.tilt_series_data_collection_row(config, tomogram, str(path))
    attachments = [
        ("tomogram", "Graph", str(tomogram[key]))
        for key in ("xy_shift_plot_path", "residual_plot_path")
        if tomogram.get(key)
    ]
    collection = _collection(
        engine,
        session_id,
        f"tomo:{name}",
        "tomo",
        data_collection,
        config,
        TOMO_STAGES,
        attachments,
        id_map,
        policy,
    )
    key = f"tomogram:{name}"
    digest = content_hash([path], collection.to_json())
    if id_map.is_current(key, digest):
        counts["skipped"] += 1
        return
    done(key, digest, ingest_tomogram(engine, collection, tomogram, id_map.unit_ids(key), policy))
