"""Watch mode against the real workflow: a collection written over time, one movie slowly."""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.workflow_helpers import simulated_spa_run


def _copy_slowly(source: Path, target: Path, chunks: int, pause_s: float) -> None:
    data = source.read_bytes()
    step = len(data) // chunks + 1
    with target.open("wb") as handle:
        for start in range(0, len(data), step):
            handle.write(data[start : start + step])
            handle.flush()
            time.sleep(pause_s)


def _collect(staging: Path, session: Path, movies: list[Path]) -> None:
    """Arrive like EPU: metadata first, then the movie; the last one written in chunks."""
    for index, movie in enumerate(movies):
        relative = movie.relative_to(staging)
        (session / relative).parent.mkdir(parents=True, exist_ok=True)
        xml = movie.with_name(movie.name.replace("_fractions.tiff", ".xml"))
        shutil.copy(xml, session / xml.relative_to(staging))
        if index == len(movies) - 1:
            _copy_slowly(movie, session / relative, chunks=4, pause_s=1.5)
        else:
            shutil.copy(movie, session / relative)
        time.sleep(3)


def _motion_jobs(workdir: Path) -> dict[str, int]:
    """How often each movie was motion-corrected: by the live worker (its log), and by the
    motion_correct jobs in Snakemake's run logs (one per chunk of movies), counted for each
    movie of the chunk."""
    counts: dict[str, int] = {}
    live_log = workdir / "processed" / ".emproc-watch" / "live_worker.log"
    if live_log.is_file():
        for line in live_log.read_text().splitlines():
            message = line.split(" live INFO: ", 1)[-1]
            if message.startswith("motion ") and message.endswith(" done"):
                movie = message.removeprefix("motion ").removesuffix(" done")
                counts[movie] = counts.get(movie, 0) + 1
    runs: dict[str, int] = {}
    for log in (workdir / ".snakemake" / "log").glob("*.snakemake.log"):
        rule = None
        for line in log.read_text().splitlines():
            if line.startswith(("rule ", "localrule ")):
                rule = line.split()[1].rstrip(":")
            elif rule == "motion_correct" and line.strip().startswith("wildcards: chunk="):
                chunk = line.split("chunk=", 1)[1].strip()
                runs[chunk] = runs.get(chunk, 0) + 1
    for chunk, times in runs.items():
        manifest = workdir / "processed" / "Chunks" / chunk / "motion.json"
        for movie in json.loads(manifest.read_text())["members"]:
            counts[movie] = counts.get(movie, 0) + times
    return counts


@pytest.mark.slow
def test_watch_processes_each_movie_once_and_never_a_partial_file(tmp_path: Path):
    staging_config = simulated_spa_run(tmp_path / "staging", movies=3, size=512, frames=4)
    staging = tmp_path / "staging" / "session"
    movies = sorted(staging.glob("Images-Disc1/GridSquare_*/Data/*_fractions.tiff"))
    session = tmp_path / "session"
    session.mkdir()
    config = yaml.safe_load(staging_config.read_text())
    config["session"]["session_dir"] = str(session)
    config["outputs"]["dir"] = str(tmp_path / "processed")
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))

    collector = threading.Thread(target=_collect, args=(staging, session, movies))
    collector.start()
    watch = subprocess.run(
        [
            sys.executable,
            "-m",
            "emproc.cli",
            "watch",
            str(session),
            "--configfile",
            str(config_path),
            "--cores",
            "2",
            "--interval",
            "1",
            "--max-interval",
            "2",
            "--stable-seconds",
            "2.5",
            "--idle-timeout",
            "20",
            "--batch-wait",
            "2",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    collector.join()
    assert watch.returncode == 0, watch.stderr[-3000:]
    processed = tmp_path / "processed"
    names = [str(m.relative_to(staging).with_suffix("")) for m in movies]
    assert _motion_jobs(tmp_path) == {name: 1 for name in names}
    assert not (processed / "failures").exists()  # the slow file was never read half-written
    manifest = (processed / ".emproc-watch" / "ready_movies.txt").read_text().split()
    assert sorted(manifest) == sorted(str(m.relative_to(staging)) for m in movies)
    database = sqlite3.connect(processed / "ispyb.sqlite")
    assert database.execute("SELECT COUNT(*) FROM Movie").fetchone()[0] == len(movies)
    assert database.execute("SELECT COUNT(*) FROM CTF").fetchone()[0] == len(movies)
    database.close()
    batches = json.loads((processed / "Class2D" / "class2d_batches.json").read_text())
    assert batches, "no 2D batch was formed"
    assert (processed / "report" / "index.html").is_file()
    state = json.loads((processed / "ISPyB" / "ingest_state.json").read_text())
    assert state["visit"] == "bi12345-1"


@pytest.mark.slow
def test_a_killed_watcher_restarts_without_losing_or_redoing_work(tmp_path: Path):
    config = simulated_spa_run(tmp_path, movies=3, size=256, frames=4)
    session, processed = tmp_path / "session", tmp_path / "processed"
    command = [
        sys.executable, "-m", "emproc.cli", "watch", str(session), "--configfile", str(config),
        "--cores", "2", "--interval", "1", "--stable-seconds", "0.5", "--idle-timeout", "5",
        "--batch-wait", "1",
    ]  # fmt: skip
    first = subprocess.Popen(
        command, cwd=tmp_path, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not list(processed.glob("CtfFind/**/*_ctf.json")):
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)  # the watcher and its Snakemake, mid-run
    first.wait()
    # a CTF result means that movie's motion job had finished completely
    finished = {
        str(path.relative_to(processed / "CtfFind")).removesuffix("_ctf.json")
        for path in processed.glob("CtfFind/**/*_ctf.json")
    }
    second = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False
    )
    assert second.returncode == 0, second.stderr[-3000:]
    counts = _motion_jobs(tmp_path)
    assert len(counts) == 3
    assert all(counts[movie] == 1 for movie in finished), (finished, counts)
    assert not (processed / "failures").exists()
    database = sqlite3.connect(processed / "ispyb.sqlite")
    assert database.execute("SELECT COUNT(*) FROM CTF").fetchone()[0] == 3
    database.close()
