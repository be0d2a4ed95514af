"""Movie chunks: fixed membership once imported, per-movie failures that never stop a chunk."""

import errno
import json
from pathlib import Path

import pytest

from emproc.chunks import (
    OutputStorageError,
    assign_chunks,
    failures_by_stage,
    read_ledger,
    run_chunk_stage,
    stage_members,
    succeeded_movies,
)
from emproc.failures import failure_records, retry_targets
from emproc.ispyb.ingest import stage_outcomes

MOVIES = [f"GridSquare_1/Data/FoilHole_{index}_fractions" for index in range(7)]


def write_manifest(output_dir: Path, chunk: str, stage: str, succeeded, failed=None) -> Path:
    path = output_dir / "Chunks" / chunk / f"{stage}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "chunk": chunk,
        "stage": stage,
        "members": list(succeeded) + list(failed or {}),
        "succeeded": list(succeeded),
        "failed": dict(failed or {}),
    }
    path.write_text(json.dumps(record))
    return path


def test_new_movies_fill_chunks_in_order():
    chunks = assign_chunks(MOVIES, {}, movies_per_job=3)
    assert chunks == {"00001": MOVIES[:3], "00002": MOVIES[3:6], "00003": MOVIES[6:]}


def test_imported_chunks_keep_their_members_when_movies_arrive(tmp_path):
    # in watch mode chunk 1 was imported with two movies; five more arrived since
    write_manifest(tmp_path, "00001", "import", MOVIES[:2])
    chunks = assign_chunks(MOVIES, read_ledger(tmp_path), movies_per_job=3)
    assert chunks == {"00001": MOVIES[:2], "00002": MOVIES[2:5], "00003": MOVIES[5:]}


def test_a_chunk_without_its_import_manifest_gets_the_same_movies_again(tmp_path):
    # chunk 2's import job was killed before its manifest existed
    write_manifest(tmp_path, "00001", "import", MOVIES[:3])
    write_manifest(tmp_path, "00003", "import", MOVIES[6:])
    chunks = assign_chunks(MOVIES, read_ledger(tmp_path), movies_per_job=3)
    assert chunks["00002"] == MOVIES[3:6]
    assert sorted(chunks) == ["00001", "00002", "00003"]


def test_an_unreadable_ledger_entry_is_rebuilt(tmp_path):
    path = write_manifest(tmp_path, "00001", "import", MOVIES[:3])
    path.write_text("{not json")
    assert read_ledger(tmp_path) == {}
    assert assign_chunks(MOVIES[:3], read_ledger(tmp_path), 3) == {"00001": MOVIES[:3]}


def test_movies_per_job_must_be_positive():
    with pytest.raises(ValueError, match="movies_per_job"):
        assign_chunks(MOVIES, {}, movies_per_job=0)


def test_a_failing_movie_is_recorded_and_the_rest_of_the_chunk_carries_on(tmp_path):
    processed = []

    def step(movie: str, outputs: dict[str, Path]) -> None:
        if movie == MOVIES[1]:
            raise ValueError(f"{movie}.tiff: truncated (expected 40 frames, found 12)")
        outputs["summary"].parent.mkdir(parents=True, exist_ok=True)
        outputs["summary"].write_text("{}")
        processed.append(movie)

    manifest_path = tmp_path / "Chunks" / "00004" / "ctf.json"
    manifest = run_chunk_stage("ctf", "00004", MOVIES[:3], tmp_path, step, manifest_path)
    assert processed == [MOVIES[0], MOVIES[2]]
    assert manifest["succeeded"] == [MOVIES[0], MOVIES[2]]
    assert "truncated" in manifest["failed"][MOVIES[1]]
    assert json.loads(manifest_path.read_text()) == manifest
    assert (tmp_path / "CtfFind" / f"{MOVIES[0]}_ctf.json").is_file()
    assert "truncated" in (tmp_path / "logs" / "ctf" / f"{MOVIES[1]}.log").read_text()
    records = failure_records(tmp_path)
    assert list(records) == [MOVIES[1]] and records[MOVIES[1]][0]["chunk"] == "00004"
    # a retry reruns exactly the chunk stage that recorded the failure
    assert retry_targets(tmp_path) == [f"{tmp_path}/Chunks/00004/ctf.json"]


def test_later_stages_work_on_movies_that_succeeded_upstream(tmp_path):
    pick = write_manifest(tmp_path, "00001", "pick", MOVIES[:3])
    ctf = write_manifest(tmp_path, "00001", "ctf", [MOVIES[0], MOVIES[2]], {MOVIES[1]: "bad"})
    assert stage_members([pick, ctf]) == [MOVIES[0], MOVIES[2]]
    second = write_manifest(tmp_path, "00002", "ctf", MOVIES[3:5])
    assert succeeded_movies([ctf, second]) == [MOVIES[0], MOVIES[2], *MOVIES[3:5]]
    assert failures_by_stage([pick, ctf, second]) == {"ctf": {MOVIES[1]: "bad"}}


def test_failures_become_the_ispyb_programs_status_and_message():
    outcomes = stage_outcomes(
        {"motion": {MOVIES[1]: "TiffReadError: strip 3 is corrupt"}, "pick": {MOVIES[2]: "x"}},
        movies_ingested=5,
    )
    # every per-movie stage is PATo's em-spa-preprocess job: one program, one message
    status, message = outcomes["em-spa-preprocess"]
    assert status == 1 and message.startswith("2 movie(s) failed: FoilHole_1_fractions: Tiff")
    assert list(outcomes) == ["em-spa-preprocess"]
    many = {movie: "error " * 40 for movie in MOVIES}
    status, message = stage_outcomes({"ctf": many}, movies_ingested=0)["em-spa-preprocess"]
    assert status == 0 and len(message) == 255 and message.endswith("...")


def test_a_full_disk_stops_the_chunk_instead_of_failing_every_movie(tmp_path):
    def step(movie: str, outputs: dict[str, Path]) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(outputs["summary"]))

    manifest_path = tmp_path / "Chunks" / "00001" / "motion.json"
    with pytest.raises(OutputStorageError, match="cannot write outputs.*No space left"):
        run_chunk_stage("motion", "00001", MOVIES[:3], tmp_path, step, manifest_path)
    assert not manifest_path.exists()  # the rerun redoes the chunk
    assert failure_records(tmp_path) == {}  # and no movie is blamed
