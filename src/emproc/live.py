"""Live processing of one movie, as `emproc watch`'s resident worker does it.

The moment a movie is complete the worker runs its per-movie stages (import, motion, CTF,
picking, extraction) for the movie's own chunk, through the very code the workflow's chunk
jobs run (`emproc.chunks.run_chunk_stage` with `emproc.movie_stages`): the same per-movie
files, failure records, logs and chunk manifests, each written atomically. It then writes
the movie's ISPyB rows (`emproc.ispyb.ingest.ingest_movies_live`: the same units and id map
as the workflow's ingest, which later skips them) and its row of the live page
(`emproc.report.live`).

The chunk manifests are the workflow's outputs, written in the order its rules would write
them, so Snakemake finds them complete and newer than their inputs and runs none of these
jobs again; it does the aggregates, 2D classification, 3D and the full report. A stage whose
manifest already exists is not run again, so a movie interrupted half-way (a killed watcher)
resumes at the first stage it had not finished.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from emproc.chunks import (
    CHUNKS_DIR,
    STAGES,
    UPSTREAM,
    manifest_path,
    read_manifest,
    run_chunk_stage,
    stage_members,
    succeeded_movies,
)

log = logging.getLogger(__name__)


# The config sections each stage's rule passes as `params` (rules/spa.smk, particles.smk).
# Snakemake reruns a job whose params changed only from the metadata it recorded when it
# ran the job; it has none for the worker's chunks, so the worker records a digest of them
# in each manifest and `emproc run`/`watch` force the stale ones (`stale_live_manifests`).
STAGE_PARAMS = {
    "import": ("microscope",),
    "motion": ("motion",),
    "ctf": ("ctf",),
    "pick": ("picking",),
    "extract": ("extraction",),
}
PARAMS_KEY = "live_params"


def stage_params_digest(stage: str, config: Mapping[str, Any]) -> str:
    import hashlib
    import json

    sections = {key: config.get(key) for key in STAGE_PARAMS[stage]}
    text = json.dumps(sections, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def stale_live_manifests(output_dir: str | Path, config: Mapping[str, Any]) -> list[str]:
    """The live worker's chunk manifests (as the workflow names them) whose stage
    parameters differ from `config`'s: `--forcerun` them, as Snakemake would rerun its own."""
    prefix = str(output_dir).rstrip("/")
    digests = {stage: stage_params_digest(stage, config) for stage in STAGES}
    stale = []
    for path in sorted(Path(output_dir, CHUNKS_DIR).glob("*/*.json")):
        stage = path.stem
        if stage not in digests:
            continue  # the claim
        try:
            recorded = read_manifest(path).get(PARAMS_KEY)
        except (OSError, ValueError):
            continue
        if recorded is not None and recorded != digests[stage]:
            stale.append(f"{prefix}/{CHUNKS_DIR}/{path.parent.name}/{path.name}")
    return stale


def _epu_xml(movie_path: Path) -> str | None:
    from emproc.io.epu import EpuNameError, epu_metadata_path

    try:
        xml = epu_metadata_path(movie_path)
    except EpuNameError:
        return None
    return str(xml) if xml.is_file() else None


def run_movie_stages(
    output_dir: Path, config: Mapping[str, Any], movie: str, movie_path: Path, chunk: str
) -> tuple[dict[str, str], dict[str, float]]:
    """The per-movie stages of `chunk` (the movie alone) whose manifests are missing.

    Returns `({stage: error}` of the stages the movie failed, `{stage: seconds}`).
    """
    from emproc.movie_stages import StageContext, stage_step

    xml = _epu_xml(movie_path)
    context = StageContext(
        output_dir=output_dir,
        config=config,
        movie_files={movie: str(movie_path)},
        epu_files={movie: xml} if xml else {},
        threads=1,
    )
    failed: dict[str, str] = {}
    seconds: dict[str, float] = {}
    for stage in STAGES:
        manifest = manifest_path(output_dir, chunk, stage)
        if manifest.is_file():
            record = read_manifest(manifest)
        else:
            upstream = [manifest_path(output_dir, chunk, u) for u in UPSTREAM[stage]]
            members = [movie] if not upstream else stage_members(upstream)
            started = time.perf_counter()
            record = run_chunk_stage(
                stage, chunk, members, output_dir, stage_step(stage, context), manifest,
                {PARAMS_KEY: stage_params_digest(stage, config)},
            )  # fmt: skip
            seconds[stage] = round(time.perf_counter() - started, 3)
        if movie in record.get("failed", {}):
            failed[stage] = record["failed"][movie]
    return failed, seconds


def movies_with_ctf(output_dir: Path) -> list[str]:
    """Every movie with a CTF so far (what the workflow's ingest ingests)."""
    return succeeded_movies(sorted((output_dir / CHUNKS_DIR).glob("*/ctf.json")))


def process_movie(
    output_dir: str | Path,
    config: Mapping[str, Any],
    movie: str,
    movie_path: str | Path,
    chunk: str,
    engine: Any = None,
) -> dict[str, Any]:
    """Stages, ISPyB rows and live page of one movie; a summary of what happened.

    A failed stage is the movie's (recorded like a chunk job records it); a failed ingest or
    page update is logged and left to the workflow, which ingests and reports everything.
    """
    output_dir = Path(output_dir)
    started = time.perf_counter()
    failed, seconds = run_movie_stages(output_dir, config, movie, Path(movie_path), chunk)
    result: dict[str, Any] = {"movie": movie, "chunk": chunk, "failed": failed}
    has_ctf = (
        manifest_path(output_dir, chunk, "ctf").is_file()
        and movie in (read_manifest(manifest_path(output_dir, chunk, "ctf"))["succeeded"])
    )
    if has_ctf:
        from emproc.ispyb.ingest import ingest_movies_live

        ingest_started = time.perf_counter()
        try:
            ingest_movies_live(
                output_dir, config, [movie], movies_with_ctf(output_dir), engine=engine
            )
        except Exception as error:  # the workflow's ingest retries it
            log.error("live ISPyB ingest of %s failed: %s", movie, error)
            result["ingest_error"] = f"{type(error).__name__}: {error}"
        seconds["ispyb"] = round(time.perf_counter() - ingest_started, 3)
    from emproc.report.live import update_live_page

    try:
        first_error = next(iter(failed.values()), None)
        update_live_page(output_dir, movie, first_error)
    except OSError as error:
        log.error("live page update for %s failed: %s", movie, error)
    seconds["total"] = round(time.perf_counter() - started, 3)
    result["seconds"] = seconds
    return result
