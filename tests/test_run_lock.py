"""One emproc process per output directory; a killed run's leftovers (its lock, Snakemake's
lock, temporaries of interrupted writes) are cleared by the next run; Snakemake's state
(.snakemake) lives with the outputs."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emproc.cli import main
from emproc.io.atomic import TEMPORARY_PREFIX
from emproc.run_lock import (
    OutputDirLockedError,
    acquire_output_lock,
    process_alive,
    release_output_lock,
)
from tests.workflow_helpers import simulated_spa_run

HOLD = (
    "import sys, time\n"
    "from emproc.run_lock import acquire_output_lock\n"
    "acquire_output_lock(sys.argv[1], 'run')\n"
    "print('held', flush=True)\n"
    "time.sleep(120)\n"
)


def _holder(output_dir: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(output_dir)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_live_holder_is_named_and_a_killed_one_is_taken_over(tmp_path: Path):
    holder = _holder(tmp_path)
    try:
        with pytest.raises(OutputDirLockedError) as refused:
            acquire_output_lock(tmp_path, "run")
        message = str(refused.value)
        assert f"pid {holder.pid} on host {socket.gethostname()}" in message
        assert "\n" not in message
    finally:
        holder.kill()
        holder.wait()
    lock = acquire_output_lock(tmp_path, "run")
    assert lock.took_over_stale
    release_output_lock(lock)
    assert not lock.path.exists()
    fresh = acquire_output_lock(tmp_path, "run")
    assert not fresh.took_over_stale
    release_output_lock(fresh)


def test_a_lock_from_another_host_is_respected(tmp_path: Path):
    (tmp_path / ".emproc.lock").write_text(
        '{"command": "run", "host": "other-node", "started": "2026-12-01T10:00:00+00:00",'
        ' "processes": [{"pid": 1, "start": null}]}'
    )
    with pytest.raises(OutputDirLockedError, match="pid 1 on host other-node"):
        acquire_output_lock(tmp_path, "run")


@pytest.fixture(scope="module")
def session_config(tmp_path_factory) -> Path:
    return simulated_spa_run(tmp_path_factory.mktemp("lock"), movies=1, size=128, frames=2)


def test_a_second_run_from_another_directory_is_refused_while_the_first_lives(
    session_config: Path, tmp_path: Path, monkeypatch, capsys
):
    (session_config.parent / "processed").mkdir(exist_ok=True)
    holder = _holder(session_config.parent / "processed")
    monkeypatch.chdir(tmp_path)  # another working directory than the first run's
    try:
        code = main(["run", "--configfile", str(session_config), "--cores", "1", "--dry-run"])
    finally:
        holder.kill()
        holder.wait()
    assert code == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0
    assert f"pid {holder.pid} on host {socket.gethostname()}" in error


def _emproc(*arguments: str, cwd: Path, **options) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "emproc.cli", *arguments],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **options,
    )


@pytest.mark.slow
def test_after_a_kill_the_next_run_clears_the_leftovers_itself(tmp_path: Path):
    config = simulated_spa_run(tmp_path, movies=1, size=128, frames=2)
    processed = tmp_path / "processed"
    first_dir, second_dir = tmp_path / "a", tmp_path / "b"
    first_dir.mkdir()
    second_dir.mkdir()
    first = _emproc("run", "--configfile", str(config), "--cores", "1", cwd=first_dir,
                    start_new_session=True)  # fmt: skip
    locks = processed / ".snakemake" / "locks"
    deadline = time.monotonic() + 120
    while not (locks.is_dir() and any(locks.iterdir())) and time.monotonic() < deadline:
        assert first.poll() is None, first.communicate()
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)  # emproc, Snakemake and its jobs
    first.communicate()
    # SIGKILL is asynchronous: let every holder named in the lock be gone before the next run
    holders = json.loads((processed / ".emproc.lock").read_text())["processes"]
    deadline = time.monotonic() + 30
    while any(process_alive(process) for process in holders) and time.monotonic() < deadline:
        time.sleep(0.1)
    # Snakemake's state went with the outputs, not into the working directory
    assert any(locks.iterdir()) and not (first_dir / ".snakemake").exists()
    # an interrupted atomic write left its temporary behind
    (processed / "MotionCorr").mkdir(exist_ok=True)
    orphan = processed / "MotionCorr" / f"{TEMPORARY_PREFIX}movie.k2x9a1b3.mrc"
    orphan.write_bytes(b"half")
    os.utime(orphan, (time.time() - 3600, time.time() - 3600))
    in_progress = processed / f"{TEMPORARY_PREFIX}config_used.q0w9e8r7.yaml"
    in_progress.write_bytes(b"being written")

    second = _emproc("run", "--configfile", str(config), "--cores", "1", "--dry-run",
                     cwd=second_dir)  # fmt: skip
    _, stderr = second.communicate(timeout=300)
    assert second.returncode == 0, stderr[-3000:]
    assert "clearing the lock of a killed run" in stderr
    assert "removed 1 temporary file(s) of killed writes" in stderr
    assert "--unlock" not in stderr.replace(" --unlock", "")  # no advice to unlock by hand
    assert not orphan.exists() and in_progress.exists()
    assert not (processed / ".emproc.lock").exists()
    assert not (second_dir / ".snakemake").exists()
