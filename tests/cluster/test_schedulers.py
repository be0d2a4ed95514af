"""The real workflow through profiles/slurm and profiles/uge on schedulers running on localhost.

The same simulated session must give the same results as under profiles/local, with every
per-movie stage of up to 20 movies travelling in one submission, and that submission asking the
scheduler for one core and the chunk's runtime (its stages one after another).
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from emproc.resources import rule_resources

from .compare import differences
from .conftest import MOVIES, config_for_run, run_workflow

MOVIES_PER_JOB = 20  # processing.movies_per_job in config/config.yaml
CHUNK_RULES = ("import_movies", "motion_correct", "ctf_estimate", "pick_particles",
               "extract_particles")  # fmt: skip
# A chunk job's stages run in series on one core: it asks for the sum of their chunk runtimes.
CHUNK_JOB_RUNTIME_MIN = MOVIES_PER_JOB * sum(
    rule_resources({}, rule)["runtime"] for rule in CHUNK_RULES
)

pytestmark = pytest.mark.cluster

# Test-only overrides: one 2-core node and no accounting database (so no sacct), fast polling.
SLURM_TEST_ARGS = (
    "--cores", "2", "--slurm-status-command", "squeue", "--slurm-no-account",
    "--slurm-init-seconds-before-status-checks", "2", "--latency-wait", "10",
)  # fmt: skip
UGE_TEST_ARGS = ("--cores", "2", "--seconds-between-status-checks", "2", "--latency-wait", "10")


def per_movie_submissions(log: str, scheduler: str) -> list[str]:
    """External job ids of the per-chunk group submissions found in a Snakemake log."""
    if scheduler == "slurm":
        pattern = r"submitted with SLURM jobid (\d+) \(log: \S*group_per_chunk"
    else:
        # cluster-generic names the group only in the job script it submits
        pattern = r"Submitted group job \S+ with external jobid '(\S+)'"
    return re.findall(pattern, log)


def all_submissions(log: str) -> list[str]:
    return re.findall(r"(?:SLURM jobid|external jobid) '?(\d+)", log)


def _run_and_compare(
    scheduler: str, profile: str, args: tuple[str, ...], env: dict[str, str],
    simulated_config: Path, local_reference: Path, tmp_path: Path,
) -> list[str]:  # fmt: skip
    config = config_for_run(simulated_config, tmp_path / scheduler)
    result = run_workflow(config, profile, *args, env=env)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-6000:]
    problems = differences(local_reference, tmp_path / scheduler / "processed")
    assert not problems, "\n".join(problems)
    submissions = per_movie_submissions(log, scheduler)
    # Every per-movie stage of the session rides in one submission per chunk of movies.
    assert len(submissions) == math.ceil(MOVIES / MOVIES_PER_JOB), log[-6000:]
    print(
        f"{scheduler}: {len(all_submissions(log))} submissions in all, "
        f"{len(submissions)} for {MOVIES} movies' per-movie stages"
    )
    return submissions


def scheduler_request(scheduler: str, job_id: str, env: dict[str, str]) -> str:
    """What the scheduler recorded as the job's request (SLURM keeps finished jobs for
    MinJobAge; Grid Engine's accounting is written a moment after the end)."""
    command = ["scontrol", "show", "job", "-o", job_id] if scheduler == "slurm" else [
        "qacct", "-j", job_id]  # fmt: skip
    for _ in range(10):
        result = subprocess.run(command, capture_output=True, text=True, check=False,
                                env={**os.environ, **env})  # fmt: skip
        if result.returncode == 0 and result.stdout.strip():
            return result.stdout
        time.sleep(1)
    raise AssertionError(f"{' '.join(command)}: {result.stderr}")


def test_slurm_profile_matches_local_with_one_submission_per_chunk(
    slurm_cluster, simulated_config, local_reference, tmp_path
):
    (job,) = _run_and_compare(
        "slurm", "slurm", SLURM_TEST_ARGS, slurm_cluster, simulated_config, local_reference,
        tmp_path,
    )  # fmt: skip
    request = scheduler_request("slurm", job, slurm_cluster)
    hours, minutes = divmod(CHUNK_JOB_RUNTIME_MIN, 60)
    assert re.search(r"\bNumCPUs=1\b", request), request
    assert f"TimeLimit={hours:02d}:{minutes:02d}:00" in request, request


def test_uge_profile_matches_local_with_one_submission_per_chunk(
    gridengine_cluster, simulated_config, local_reference, tmp_path
):
    (job,) = _run_and_compare(
        "uge", "uge", UGE_TEST_ARGS, gridengine_cluster, simulated_config, local_reference,
        tmp_path,
    )  # fmt: skip
    request = scheduler_request("uge", job, gridengine_cluster)
    assert re.search(r"-pe smp 1\b", request), request
    assert f"h_rt={CHUNK_JOB_RUNTIME_MIN * 60}," in request, request
