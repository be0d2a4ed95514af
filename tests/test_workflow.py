"""The Snakemake workflow on simulated sessions: DAG shape, full runs, reruns."""

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import starfile
import yaml

from emproc.ispyb.recipes.em_spa_preprocess import RECIPE as SPA_PREPROCESS
from tests.workflow_helpers import emproc_status, job_counts, simulated_spa_run, snakemake

STAGE_RULES = (
    "import_movies",
    "motion_correct",
    "ctf_estimate",
    "pick_particles",
    "extract_particles",
)


@pytest.fixture(scope="module")
def small_session(tmp_path_factory) -> Path:
    return simulated_spa_run(tmp_path_factory.mktemp("spa"), movies=3, size=128, frames=3)


def test_dry_run_plans_one_job_per_chunk_of_movies_and_stage(small_session: Path, tmp_path):
    config = yaml.safe_load(small_session.read_text())
    config["processing"] = {"movies_per_job": 2}
    chunked = tmp_path / "config.yaml"
    chunked.write_text(yaml.safe_dump(config))
    result = snakemake(chunked, "--dry-run", "--quiet", "rules")
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout + result.stderr)
    # 3 movies in chunks of 2: two jobs per per-movie stage
    for rule in STAGE_RULES:
        assert counts[rule] == 2, counts
    assert counts["corrected_micrographs_star"] == counts["micrographs_ctf_star"] == 1


def test_picking_waits_for_the_ctf_estimate_only_with_the_ctf_filter(small_session: Path, tmp_path):
    config = yaml.safe_load(small_session.read_text())
    for ctf_filter in (False, True):
        config.setdefault("picking", {})["ctf_filter"] = ctf_filter
        path = tmp_path / f"config_{ctf_filter}.yaml"
        path.write_text(yaml.safe_dump(config))
        result = snakemake(path, "--dry-run", "--quiet", "rules", "--until", "pick_particles")
        assert result.returncode == 0, result.stderr
        counts = job_counts(result.stdout + result.stderr)
        assert counts["pick_particles"] == 1, counts
        assert ("ctf_estimate" in counts) == ctf_filter, counts


def test_3d_rows_get_their_own_ingest_and_the_movies_rows_do_not_wait_for_3d(
    small_session: Path,
):
    full = job_counts(_dry_run_rules(small_session))
    assert full["ispyb_ingest"] == full["ispyb_ingest_3d"] == full["spa3d_index"] == 1, full
    movies_only = job_counts(_dry_run_rules(small_session, "--until", "ispyb_ingest"))
    assert movies_only["ispyb_ingest"] == 1, movies_only
    assert not {"spa3d_index", "ispyb_ingest_3d"} & set(movies_only), movies_only


def _dry_run_rules(config: Path, *arguments: str) -> str:
    result = snakemake(config, "--dry-run", "--quiet", "rules", *arguments)
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


@pytest.mark.slow
def test_full_run_writes_relion_tables_and_a_rerun_does_nothing(tmp_path: Path):
    config = simulated_spa_run(tmp_path, movies=2, size=512, frames=8)
    settings = yaml.safe_load(config.read_text())
    settings["processing"] = {"movies_per_job": 1}  # two chunks: aggregates span manifests
    config.write_text(yaml.safe_dump(settings, sort_keys=False))
    result = snakemake(config)
    assert result.returncode == 0, result.stderr[-3000:]
    processed = tmp_path / "processed"
    corrected = starfile.read(processed / "corrected_micrographs.star")
    assert set(corrected) == {"optics", "micrographs"}
    assert len(corrected["micrographs"]) == 2
    ctf = starfile.read(processed / "micrographs_ctf.star")["micrographs"]
    assert isinstance(ctf, pd.DataFrame) and len(ctf) == 2
    assert (ctf["rlnDefocusU"] >= ctf["rlnDefocusV"]).all()
    assert (processed / "config_used.yaml").is_file()
    particles = starfile.read(processed / "particles.star")
    assert len(particles["particles"]) > 0 and "rlnImagePixelSize" in particles["optics"]

    # the embedded ISPyB database holds one row per movie in each per-movie table
    database = sqlite3.connect(processed / "ispyb.sqlite")
    for table in ("Movie", "MotionCorrection", "CTF", "ParticlePicker"):
        assert database.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == 2, table
    defocus = sorted(row[0] for row in database.execute("SELECT estimatedDefocus FROM CTF"))
    database.close()
    star_defocus = sorted((ctf["rlnDefocusU"] + ctf["rlnDefocusV"]) / 2)
    assert defocus == pytest.approx(star_defocus)
    assert "<h2>CTF</h2>" in (processed / "report" / "index.html").read_text()
    assert sorted(path.name for path in (processed / "Chunks").iterdir()) == ["00001", "00002"]

    again = snakemake(config, "--dry-run")
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr

    # another database is a reason to ingest again: a copied output directory carries its
    # embedded database along (nothing to do); pointed at a server, it ingests again
    shutil.copytree(processed, tmp_path / "copy", symlinks=True)
    settings["outputs"]["dir"] = str(tmp_path / "copy")
    copied = tmp_path / "copy.yaml"
    copied.write_text(yaml.safe_dump(settings, sort_keys=False))
    plan = snakemake(copied, "--dry-run")
    assert "Nothing to be done" in plan.stdout + plan.stderr, plan.stderr[-2000:]
    credentials = tmp_path / "ispyb.ini"
    credentials.write_text(
        "[ispyb_sqlalchemy]\nhost = 127.0.0.1\nusername = emproc\ndatabase = ispyb\n"
    )
    settings["ispyb"] = {"credentials": str(credentials)}
    copied.write_text(yaml.safe_dump(settings, sort_keys=False))
    plan = snakemake(copied, "--dry-run", "--quiet", "rules")
    assert plan.returncode == 0, plan.stderr[-2000:]
    assert job_counts(plan.stdout + plan.stderr).get("ispyb_ingest") == 1


@pytest.mark.slow
def test_a_truncated_movie_fails_alone_and_the_session_completes(tmp_path: Path):
    config = simulated_spa_run(tmp_path, movies=3, size=256, frames=4)
    movies = sorted((tmp_path / "session").glob("Images-Disc1/GridSquare_*/Data/*.tiff"))
    broken = movies[1]
    original, written = broken.read_bytes(), broken.stat()
    broken.write_bytes(original[: written.st_size // 2])
    os.utime(broken, ns=(written.st_atime_ns, written.st_mtime_ns))
    result = subprocess.run(
        [sys.executable, "-m", "emproc.cli", "run", "--configfile", str(config), "--cores", "2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "1 movie(s) failed" in result.stderr
    processed = tmp_path / "processed"
    ctf = starfile.read(processed / "micrographs_ctf.star")["micrographs"]
    assert len(ctf) == 2
    assert not any(broken.stem in name for name in ctf["rlnMicrographName"])
    status = emproc_status(processed)
    assert "failed movies           1" in status
    assert broken.name in status  # the error names the file
    # ISPyB: the two good movies have rows; the failure is the preprocessing program's message
    database = sqlite3.connect(processed / "ispyb.sqlite")
    assert database.execute("SELECT COUNT(*) FROM CTF").fetchone()[0] == 2
    messages = dict(
        database.execute("SELECT processingPrograms, processingMessage FROM AutoProcProgram")
    )
    database.close()
    assert messages[SPA_PREPROCESS.program].startswith("1 movie(s) failed: " + broken.stem)

    # the whole file arrives (same mtime, so only the retry reruns its chunk's stages)
    broken.write_bytes(original)
    os.utime(broken, ns=(written.st_atime_ns, written.st_mtime_ns))
    command = [sys.executable, "-m", "emproc.cli", "run", "--configfile", str(config)]
    retry = subprocess.run(
        [*command, "--cores", "2", "--retry-failed"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert retry.returncode == 0, retry.stderr[-3000:]
    assert "retrying 1 failed movies" in retry.stderr and "failed (details" not in retry.stderr
    ctf = starfile.read(processed / "micrographs_ctf.star")["micrographs"]
    assert len(ctf) == 3
    database = sqlite3.connect(processed / "ispyb.sqlite")
    assert database.execute("SELECT COUNT(*) FROM CTF").fetchone()[0] == 3
    messages = dict(
        database.execute("SELECT processingPrograms, processingMessage FROM AutoProcProgram")
    )
    database.close()
    assert messages[SPA_PREPROCESS.program] == "processing successful"
