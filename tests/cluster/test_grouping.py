"""The cluster profiles batch per-movie stages: one submission per chunk of movies.

A dry run needs no scheduler and no real movies (discovery only globs names), so this checks the
grouping of a 60-movie session quickly; the scheduler tests check real submissions.
A chunk job's request grows with its chunk: each stage asks for its per-movie runtime times the
chunk size, and the profiles cap a chunk job at one core (per_chunk_cores), so CTF and picking
do not make Snakemake ask for two cores for a job whose motion correction uses one.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import yaml

from emproc.config import WORKFLOW_ROOT, load_config
from emproc.resources import rule_resources

from .conftest import run_workflow

MOVIES = 60
CHUNK_RULES = ("import_movies", "motion_correct", "ctf_estimate")


def write_session(root: Path, movies_per_job: int) -> Path:
    data = root / "session" / "Images-Disc1" / "GridSquare_1" / "Data"
    data.mkdir(parents=True, exist_ok=True)
    for index in range(MOVIES):
        (data / f"FoilHole_{index:04d}_Data_1_1_20261129_090000_fractions.tiff").touch()
    config = load_config(WORKFLOW_ROOT / "config" / "config.yaml")
    config["session"]["session_dir"] = str(root / "session")
    config["outputs"]["dir"] = str(root / f"processed-{movies_per_job}")
    config["microscope"]["gain_reference"] = ""
    config["processing"]["movies_per_job"] = movies_per_job
    path = root / f"config-{movies_per_job}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def job_resources(log: str, rule: str) -> list[dict[str, str]]:
    """The resources line of every job of `rule` in a dry-run log."""
    blocks = re.findall(rf"rule {rule}:\n(.*?)resources: ([^\n]*)", log, flags=re.DOTALL)
    return [dict(item.split("=", 1) for item in line.split(", ")) for _, line in blocks]


# the default chunk on one profile, a small chunk on the other: grouping is the profiles'
@pytest.mark.parametrize(("profile", "movies_per_job"), [("slurm", 20), ("uge", 5)])
def test_dry_run_packs_the_stages_of_each_chunk_of_movies_into_one_group_job(
    tmp_path, profile, movies_per_job
):
    config = write_session(tmp_path, movies_per_job)
    result = run_workflow(config, profile, "--dry-run", "--until", "ctf_estimate", timeout_s=300)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    chunks = math.ceil(MOVIES / movies_per_job)
    assert len(re.findall(r"Group job per_chunk", log)) == chunks, log[-4000:]
    # each group job carries one chunk's import, motion and CTF jobs, each asking for its
    # per-movie runtime times the chunk size and one core of the chunk job
    defaults = yaml.safe_load((WORKFLOW_ROOT / "config" / "config.yaml").read_text())
    for rule in CHUNK_RULES:
        jobs = job_resources(log, rule)
        assert len(jobs) == chunks, rule
        per_movie_min = rule_resources(defaults["resources"], rule)["runtime"]
        for resources in jobs:
            assert int(resources["runtime"]) == per_movie_min * movies_per_job, (rule, resources)
            assert resources.get("per_chunk_cores") == "1", (rule, resources)
