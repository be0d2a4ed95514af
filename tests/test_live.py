"""The live worker of `emproc watch`: a movie's results (files, ISPyB rows, live page) without
waiting for a workflow run, which then finds them complete and does not redo them."""

import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest
import yaml

from emproc.chunks import CHUNKS_DIR, assign_chunks, claim_chunk, read_ledger
from emproc.config import validate_config, write_config
from emproc.discovery import movie_id
from emproc.live import process_movie, stale_live_manifests
from emproc.live_worker import LiveJob, LiveWorker
from tests.workflow_helpers import job_counts, simulated_spa_run, snakemake

PER_MOVIE_RULES = {
    "import_movies",
    "motion_correct",
    "ctf_estimate",
    "pick_particles",
    "extract_particles",
}


def _rows(database: Path, table: str) -> int:
    connection = sqlite3.connect(database)
    try:
        return connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    finally:
        connection.close()


def _session(tmp_path: Path, movies: int) -> tuple[dict, list[Path]]:
    config_path = simulated_spa_run(tmp_path, movies=movies, size=256, frames=4)
    config = validate_config(yaml.safe_load(config_path.read_text()))
    session = Path(config["session"]["session_dir"])
    return config, sorted(session.glob("Images-Disc1/GridSquare_*/Data/*_fractions.tiff"))


def test_claims_fix_chunk_numbers_for_the_worker_and_the_workflow(tmp_path):
    ledger = read_ledger(tmp_path)
    assert claim_chunk(tmp_path, ["a"], ledger) == "00001"
    assert claim_chunk(tmp_path, ["b", "c"], ledger) == "00002"
    assert read_ledger(tmp_path) == {"00001": ["a"], "00002": ["b", "c"]}
    # the workflow, planning movies b, c and d: b and c keep their claim, a's number stays
    # taken though a is not (yet) in its movie list, d gets a new chunk
    assert assign_chunks(["b", "c", "d"], read_ledger(tmp_path), 20) == {
        "00002": ["b", "c"],
        "00003": ["d"],
    }
    # an import manifest wins over the claim
    manifest = tmp_path / CHUNKS_DIR / "00001" / "import.json"
    manifest.write_text(json.dumps({"members": ["a"], "succeeded": ["a"], "failed": {}}))
    assert read_ledger(tmp_path)["00001"] == ["a"]


@pytest.mark.slow
def test_a_live_movie_is_in_ispyb_at_once_and_the_workflow_does_not_redo_it(tmp_path):
    config, movies = _session(tmp_path, movies=2)
    output = Path(config["outputs"]["dir"])
    session = Path(config["session"]["session_dir"])
    database = output / "ispyb.sqlite"
    ledger = read_ledger(output)
    for movie in movies:
        name = movie_id(movie, session)
        result = process_movie(output, config, name, movie, claim_chunk(output, [name], ledger))
        assert result["failed"] == {} and "ingest_error" not in result, result
        # in ISPyB and on the live page with no workflow run and no chunk of 20 to wait for
        assert name in (output / "report" / "live.html").read_text()
    assert not (output / ".snakemake").exists() and not (tmp_path / ".snakemake").exists()
    for table in ("Movie", "MotionCorrection", "CTF", "ParticlePicker"):
        assert _rows(database, table) == 2, table
    motion_files = sorted(output.glob("MotionCorr/**/*.mrc"))
    mtimes = {path: path.stat().st_mtime_ns for path in motion_files}

    config_path = tmp_path / "config.yaml"
    plan = snakemake(config_path, "--dry-run")
    assert plan.returncode == 0, plan.stderr[-3000:]
    planned = job_counts(plan.stdout + plan.stderr)
    assert not PER_MOVIE_RULES & set(planned), planned  # the worker's chunks are complete
    assert planned.get("ispyb_ingest") == 1  # the aggregates and the full report still run

    run = snakemake(config_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert {path: path.stat().st_mtime_ns for path in motion_files} == mtimes
    # the workflow's ingest skipped the live units: no duplicate rows
    for table in ("Movie", "MotionCorrection", "CTF", "ParticlePicker"):
        assert _rows(database, table) == 2, table
    state = json.loads((output / "ISPyB" / "ingest_state.json").read_text())
    assert state["units_skipped"] >= 4  # two movies and their two pickings
    assert (output / "report" / "index.html").is_file()

    # Snakemake has no params metadata for the worker's chunks: the worker's own digest
    # names the stages to force when a parameter changes (emproc run / watch do)
    assert stale_live_manifests(output, config) == []
    changed = {**config, "ctf": {**config["ctf"], "max_resolution_angstrom": 6.0}}
    assert stale_live_manifests(output, changed) == [
        f"{output}/Chunks/00001/ctf.json",
        f"{output}/Chunks/00002/ctf.json",
    ]


@pytest.mark.slow
def test_a_corrupt_movie_fails_alone_in_the_worker_and_a_crash_hands_the_movie_on(tmp_path):
    config, movies = _session(tmp_path, movies=2)
    output = Path(config["outputs"]["dir"])
    session = Path(config["session"]["session_dir"])
    broken, good = movies
    broken.write_bytes(broken.read_bytes()[:1000])  # a truncated TIFF
    write_config(config, tmp_path / "live.yaml")
    worker = LiveWorker(tmp_path / "live.yaml", output, tmp_path / "live.log")
    worker.start()
    ledger = read_ledger(output)
    results = []
    try:
        for movie in (broken, good):
            name = movie_id(movie, session)
            worker.submit(LiveJob(name, str(movie), claim_chunk(output, [name], ledger)))
            deadline = time.monotonic() + 300
            while not (answers := worker.results()):
                assert time.monotonic() < deadline, (tmp_path / "live.log").read_text()[-2000:]
                time.sleep(0.1)
            results += answers
        first, second = results
        assert first["movie"] == movie_id(broken, session)
        stage, error = next(iter(first["failed"].items()))
        assert broken.name in error  # one line naming the file
        record = json.loads((output / "failures" / stage / f"{first['movie']}.json").read_text())
        assert record["chunk"] == "00001"  # `emproc run --retry-failed` reruns that chunk
        assert second["failed"] == {} and second["movie"] == movie_id(good, session)
        assert _rows(output / "ispyb.sqlite", "CTF") == 1

        # the worker dies mid-movie: the movie is reported crashed (the watcher then gives
        # it to the workflow) and the next submit starts a fresh worker
        name = movie_id(good, session)
        worker.submit(LiveJob(name, str(good), "00003"))
        time.sleep(0.5)
        assert worker.process is not None
        os.kill(worker.process.pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while not (answers := worker.results()):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert answers[0]["movie"] == name and "exited" in answers[0]["crashed"]
        assert worker.idle and worker.crashes == 1
    finally:
        worker.close()
