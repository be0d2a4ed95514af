"""Movie chunks: the per-movie SPA stages run as one Snakemake job per chunk of movies.

One job per movie and stage costs Snakemake a few milliseconds each to plan, so a
20,000-movie session (100,000 jobs) took minutes just to build its DAG. A chunk job runs one
stage for up to `processing.movies_per_job` movies and writes a manifest,
`Chunks/<chunk>/<stage>.json`, naming the movies that succeeded and those that failed (with
the error). The per-movie files keep their places (`MotionCorr/{movie}.mrc`, ...); later
stages and the aggregates read the manifests to know which movies to use, so one bad movie
fails alone and never blocks its chunk.

Chunks never change members once their import manifest exists (the ledger), so a chunk that
is done is never redone when more movies arrive: new movies form new chunks. A rerun of a
stage (changed parameters, `emproc run --retry-failed`) redoes that stage for the chunk.
"""

from __future__ import annotations

import errno
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from emproc.failures import clear_failure
from emproc.io.atomic import write_json_atomic
from emproc.scripting import step_logging

log = logging.getLogger(__name__)

CHUNKS_DIR = "Chunks"
CHUNK_DIGITS = 5
CHUNK_PATTERN = rf"\d{{{CHUNK_DIGITS}}}"  # the {chunk} wildcard

# in workflow order; each works on the movies its upstream manifests (the rules' inputs) name
STAGES = ("import", "motion", "ctf", "pick", "extract")

# the stages whose manifests each stage reads (its rule's `upstream` inputs)
UPSTREAM: dict[str, tuple[str, ...]] = {
    "import": (),
    "motion": ("import",),
    "ctf": ("motion",),
    "pick": ("motion",),
    "extract": ("pick", "ctf"),
}

# Per-movie files of each stage, relative to the output directory ({movie} is the movie id)
MOVIE_OUTPUTS: dict[str, dict[str, str]] = {
    "import": {"metadata": "Import/{movie}.json"},
    "motion": {
        "micrograph": "MotionCorr/{movie}.mrc",
        "micrograph_dw": "MotionCorr/{movie}_DW.mrc",
        "shifts_star": "MotionCorr/{movie}.star",
        "shifts_csv": "MotionCorr/{movie}_shifts.csv",
        "summary": "MotionCorr/{movie}_motion.json",
        "snapshot": "MotionCorr/{movie}.jpg",
        "drift_plot": "MotionCorr/{movie}_drift.png",
    },
    "ctf": {
        "ctffind_txt": "CtfFind/{movie}.txt",
        "summary": "CtfFind/{movie}_ctf.json",
        "diagnostic": "CtfFind/{movie}_ctf.png",
        "ctf_image": "CtfFind/{movie}.ctf",
    },
    "pick": {
        "star": "Picking/{movie}.star",
        "summary": "Picking/{movie}_picks.json",
        "snapshot": "Picking/{movie}_picks.jpg",
    },
    "extract": {
        "stack": "Extract/{movie}.mrcs",
        "star": "Extract/{movie}.star",
        "summary": "Extract/{movie}_extract.json",
    },
}
# per-movie log directories, as before chunks existed
LOG_DIRS = {
    "import": "import",
    "motion": "motion",
    "ctf": "ctf",
    "pick": "picking",
    "extract": "extract",
}


def manifest_path(output_dir: str | Path, chunk: str, stage: str) -> Path:
    """`Chunks/<chunk>/<stage>.json`: the output of the stage's rule for the chunk."""
    return Path(output_dir) / CHUNKS_DIR / chunk / f"{stage}.json"


def chunk_id(number: int) -> str:
    return f"{number:0{CHUNK_DIGITS}d}"


def movie_paths(output_dir: str | Path, stage: str, movie: str) -> dict[str, Path]:
    """The per-movie files of `stage` for `movie`, by role."""
    return {
        role: Path(output_dir) / pattern.format(movie=movie)
        for role, pattern in MOVIE_OUTPUTS[stage].items()
    }


def movie_glob(stage: str, role: str) -> str:
    """Glob (relative to the output directory) of one per-movie file of `stage`, all movies."""
    return MOVIE_OUTPUTS[stage][role].format(movie="**/*")


def read_ledger(output_dir: str | Path) -> dict[str, list[str]]:
    """`{chunk: members}` of every chunk whose import manifest or claim exists (fixed
    membership; the import manifest wins where both exist)."""
    ledger: dict[str, list[str]] = {}
    chunks_dir = Path(output_dir) / CHUNKS_DIR
    for path in sorted(chunks_dir.glob(f"*/{CLAIM_FILE}")):
        try:
            members = json.loads(path.read_text())["members"]
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("ignoring unreadable chunk claim %s", path)
            continue
        ledger[path.parent.name] = [str(movie) for movie in members]
    for path in sorted(chunks_dir.glob("*/import.json")):
        try:
            members = read_manifest(path)["members"]
        except (OSError, ValueError, KeyError):
            # an unreadable manifest is rebuilt: its movies count as unassigned
            log.warning("ignoring unreadable chunk manifest %s", path)
            continue
        ledger[path.parent.name] = [str(movie) for movie in members]
    return dict(sorted(ledger.items()))


# `emproc watch` with live processing assigns chunks itself, before any stage runs: a claim
# fixes a chunk's number and members, so the live worker and a Snakemake run started
# meanwhile never pick the same number (Snakemake reads claims as part of the ledger).
CLAIM_FILE = "claim.json"


def claim_chunk(
    output_dir: str | Path, members: Sequence[str], ledger: dict[str, list[str]]
) -> str:
    """Claim the lowest chunk number not in `ledger` for `members`; return it.

    `ledger` (read_ledger's, kept by the caller) gets the claim too. Only one process may
    claim in an output directory (the watcher, under the output lock).
    """
    number = 1
    while chunk_id(number) in ledger:
        number += 1
    chunk = chunk_id(number)
    write_json_atomic(
        Path(output_dir) / CHUNKS_DIR / chunk / CLAIM_FILE,
        {"chunk": chunk, "members": list(members)},
    )
    ledger[chunk] = list(members)
    return chunk


def assign_chunks(
    movies: Iterable[str], ledger: Mapping[str, Sequence[str]], movies_per_job: int
) -> dict[str, list[str]]:
    """Chunks for `movies`: the ledger's chunks as they are, new movies in new chunks.

    New movies (in the order given) fill the lowest free chunk numbers, `movies_per_job` at a
    time, so a chunk whose job was interrupted before its manifest existed gets the same
    movies again. Ledger chunks keep only members still among `movies`.
    """
    if movies_per_job < 1:
        raise ValueError(f"movies_per_job must be at least 1, got {movies_per_job}")
    movies = list(movies)
    known = set(movies)
    chunks = {
        chunk: [movie for movie in members if movie in known] for chunk, members in ledger.items()
    }
    assigned = {movie for members in ledger.values() for movie in members}
    unassigned = [movie for movie in movies if movie not in assigned]
    number = 1
    for start in range(0, len(unassigned), movies_per_job):
        while chunk_id(number) in chunks:
            number += 1
        chunks[chunk_id(number)] = unassigned[start : start + movies_per_job]
    return {chunk: members for chunk, members in sorted(chunks.items()) if members}


def read_manifest(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"chunk manifest is missing: {path}") from None
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not a readable chunk manifest ({error})") from None
    if not isinstance(manifest, dict) or "succeeded" not in manifest:
        raise ValueError(f"{path}: not a chunk manifest (no 'succeeded' list)")
    return manifest


def succeeded_movies(manifests: Iterable[str | Path]) -> list[str]:
    """Movies that succeeded, in chunk order then acquisition order within each chunk."""
    return [movie for path in manifests for movie in read_manifest(path)["succeeded"]]


def failures_by_stage(manifests: Iterable[str | Path]) -> dict[str, dict[str, str]]:
    """`{stage: {movie: error}}` of every failure the manifests record."""
    failures: dict[str, dict[str, str]] = {}
    for path in manifests:
        manifest = read_manifest(path)
        if manifest.get("failed"):
            failures.setdefault(manifest["stage"], {}).update(manifest["failed"])
    return failures


def stage_members(upstream_manifests: Sequence[str | Path]) -> list[str]:
    """Movies that succeeded in every upstream manifest, in the first one's order."""
    if not upstream_manifests:
        return []
    first, *rest = (read_manifest(path)["succeeded"] for path in upstream_manifests)
    others = [set(movies) for movies in rest]
    return [movie for movie in first if all(movie in movies for movies in others)]


MovieStep = Callable[[str, dict[str, Path]], None]

# Errors of the output storage, not of the movie: they stop the chunk job instead of marking
# every remaining movie failed (its rerun, once there is space, redoes the chunk).
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


class OutputStorageError(OSError):
    """The output directory cannot take more data (disk full, quota, read-only)."""


def run_chunk_stage(
    stage: str,
    chunk: str,
    members: Sequence[str],
    output_dir: str | Path,
    step: MovieStep,
    manifest: str | Path,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run `step(movie, outputs)` for each member, then write the chunk's stage manifest
    (with `extra`'s keys added).

    Each movie logs to `logs/<stage>/<movie>.log`; a movie that fails gets a failure record
    (`emproc.failures`, naming its chunk so a retry can rerun it) and is listed under
    `failed`, and the others carry on. A full or read-only output disk is not the movie's
    fault: it raises `OutputStorageError` and writes no manifest. Returns the manifest.
    """
    output_dir = Path(output_dir)
    started = time.perf_counter()
    succeeded: list[str] = []
    failed: dict[str, str] = {}
    for movie in members:
        outputs = movie_paths(output_dir, stage, movie)
        try:
            with step_logging(
                output_dir / "logs" / LOG_DIRS[stage] / f"{movie}.log",
                stage,
                output_dir / "failures" / stage / f"{movie}.json",
                chunk=chunk,
            ):
                step(movie, outputs)
        except OSError as error:
            if error.errno not in STORAGE_ERRNOS:
                failed[movie] = f"{type(error).__name__}: {error}"
                log.error("%s %s failed: %s", stage, movie, error)
                continue
            clear_failure(output_dir / "failures" / stage / f"{movie}.json")
            raise OutputStorageError(
                error.errno,
                f"{stage} of chunk {chunk} stopped at {movie}: cannot write outputs "
                f"({error.strerror}: {error.filename or output_dir}); free space and run again",
            ) from error
        except Exception as error:  # one bad movie must not stop the chunk
            failed[movie] = f"{type(error).__name__}: {error}"
            log.error("%s %s failed: %s", stage, movie, error)
        else:
            succeeded.append(movie)
            log.info("%s %s done", stage, movie)
    record = {
        "chunk": chunk,
        "stage": stage,
        "members": list(members),
        "succeeded": succeeded,
        "failed": failed,
        "seconds": round(time.perf_counter() - started, 3),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        **(extra or {}),
    }
    write_json_atomic(manifest, record)
    return record


def movie_files(output_dir: str | Path, movies: Iterable[str], stage: str, role: str) -> list[Path]:
    """One per-movie file (`role` of `stage`) for each movie, in order."""
    return [movie_paths(output_dir, stage, movie)[role] for movie in movies]
