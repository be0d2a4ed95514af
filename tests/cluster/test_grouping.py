"""The cluster profiles batch per-movie stages: one submission per chunk of movies.

A dry run needs no scheduler and no real movies (discovery only globs names), so this checks the
grouping of a 60-movie session quickly; the scheduler tests check real submissions.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import yaml

from emproc.config import WORKFLOW_ROOT, load_config

from .conftest import run_workflow

MOVIES = 60
MOVIES_PER_JOB = 20  # processing.movies_per_job in config/config.yaml


@pytest.fixture(scope="module")
def empty_session_config(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("grouping")
    data = root / "session" / "Images-Disc1" / "GridSquare_1" / "Data"
    data.mkdir(parents=True)
    for index in range(MOVIES):
        (data / f"FoilHole_{index:04d}_Data_1_1_20261129_090000_fractions.tiff").touch()
    config = load_config(WORKFLOW_ROOT / "config" / "config.yaml")
    config["session"]["session_dir"] = str(root / "session")
    config["outputs"]["dir"] = str(root / "processed")
    config["microscope"]["gain_reference"] = ""
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.mark.parametrize("profile", ["slurm", "uge"])
def test_dry_run_packs_the_stages_of_each_chunk_of_movies_into_one_group_job(
    empty_session_config, profile
):
    result = run_workflow(
        empty_session_config, profile, "--dry-run", "--until", "ctf_estimate", timeout_s=300
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    chunks = math.ceil(MOVIES / MOVIES_PER_JOB)
    assert len(re.findall(r"Group job per_chunk", log)) == chunks, log[-4000:]
    # each group job carries one chunk's import, motion and CTF jobs
    for rule in ("import_movies", "motion_correct", "ctf_estimate"):
        assert len(re.findall(rf"rule {rule}:", log)) == chunks, rule
