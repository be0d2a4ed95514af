"""Running the real workflow on simulated sessions, for the workflow tests."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from emproc.config import WORKFLOW_ROOT
from emproc.simulate.cli import spa_config
from emproc.simulate.spa import SpaMovieParams, simulate_spa_session


def simulated_spa_run(
    root: Path, *, movies: int = 2, size: int = 256, frames: int = 6, seed: int = 0
) -> Path:
    """Simulate a session under `root` and write its config; return the config path."""
    params = SpaMovieParams(
        shape_px=(size, size), number_of_frames=frames, number_of_particles=8, total_drift_px=4.0
    )
    truth = simulate_spa_session(
        root / "session", number_of_movies=movies, params=params, seed=seed
    )
    config = spa_config(truth, root / "session", root / "processed")
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake(config_path: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(WORKFLOW_ROOT / "Snakefile"),
        "--configfile",
        str(config_path),
        "--cores",
        "2",
        *arguments,
    ]
    return subprocess.run(
        command, cwd=config_path.parent, capture_output=True, text=True, check=False
    )


def job_counts(dry_run_output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run, rule -> number of jobs."""
    table = dry_run_output.split("Job stats:", 1)[1].split("Reasons:", 1)[0]
    return {
        match[1]: int(match[2])
        for match in re.finditer(r"^(\w+)\s+(\d+)$", table, flags=re.MULTILINE)
        if match[1] != "total"
    }


def emproc_status(output_dir: Path) -> str:
    """What `emproc status OUTPUT_DIR` prints."""
    return subprocess.run(
        [sys.executable, "-m", "emproc.cli", "status", str(output_dir)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
