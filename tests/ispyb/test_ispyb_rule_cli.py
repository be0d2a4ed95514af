"""The Snakemake rule and the `emproc ispyb` commands, on the embedded SQLite database."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import ispyb.sqlalchemy as models
import pytest
import sqlalchemy as sa
import yaml
from ispyb_fixtures import NUMBER_OF_MOVIES, VISIT, movie_name

from emproc.ispyb.cli import register

REPO = Path(__file__).resolve().parents[2]


def run_cli(*arguments: str) -> None:
    parser = argparse.ArgumentParser(prog="emproc")
    register(parser.add_subparsers(dest="command", required=True))
    parsed = parser.parse_args(list(arguments))
    assert parsed.handler(parsed) == 0


def ctf_count(database: Path) -> int:
    engine = sa.create_engine(f"sqlite:///{database}")
    with engine.connect() as connection:
        count = connection.execute(sa.select(sa.func.count()).select_from(models.CTF)).scalar()
    engine.dispose()
    return count


def test_cli_init_db_and_ingest(spa_session, tmp_path, monkeypatch, capsys):
    output_dir, config = spa_session
    monkeypatch.delenv("ISPYB_CREDENTIALS", raising=False)
    database = tmp_path / "fresh.sqlite"
    run_cli("ispyb", "init-db", f"sqlite:///{database}", "--seed-visit", VISIT)
    engine = sa.create_engine(f"sqlite:///{database}")
    with engine.connect() as connection:
        assert connection.execute(sa.select(models.BLSession.visit_number)).scalar_one() == 1
    engine.dispose()

    config["ispyb"]["embedded_url"] = f"sqlite:///{database}"
    (output_dir / "config_used.yaml").write_text(yaml.safe_dump(config))
    run_cli("ispyb", "ingest", str(output_dir))
    assert "8 units written" in capsys.readouterr().out
    assert ctf_count(database) == NUMBER_OF_MOVIES


@pytest.mark.slow
def test_snakemake_rule_ingests_into_embedded_database(spa_session, tmp_path, monkeypatch):
    output_dir, config = spa_session
    monkeypatch.delenv("ISPYB_CREDENTIALS", raising=False)
    workdir = tmp_path / "workflow"
    (workdir / "rules").mkdir(parents=True)
    (workdir / "rules" / "ispyb.smk").write_text((REPO / "rules" / "ispyb.smk").read_text())
    (workdir / "scripts").mkdir()
    script = (REPO / "scripts" / "ispyb_ingest.py").read_text()
    (workdir / "scripts" / "ispyb_ingest.py").write_text(script)
    (workdir / "envs").mkdir()
    env = REPO / "envs" / "ispyb.yaml"  # the rule names it; Snakemake records it per job
    (workdir / "envs" / "ispyb.yaml").write_text(
        env.read_text() if env.is_file() else "dependencies: [python=3.11]\n"
    )
    (workdir / "config.json").write_text(json.dumps(config))
    movies = [movie_name(i) for i in range(NUMBER_OF_MOVIES)]
    # stand-in for the lead's rules/common.smk: the names rules/ispyb.smk uses
    (workdir / "Snakefile").write_text(
        f"configfile: 'config.json'\n"
        f"OUTDIR = {str(output_dir)!r}\n"
        f"MOVIES = {movies!r}\n"
        "IMPORT_JSON = OUTDIR + '/Import/{movie}.json'\n"
        "MOTION_JSON = OUTDIR + '/MotionCorr/{movie}_motion.json'\n"
        "CTF_JSON = OUTDIR + '/CtfFind/{movie}_ctf.json'\n"
        "include: 'rules/ispyb.smk'\n"
        "rule all:\n    input: OUTDIR + '/ISPyB/ingest_state.json'\n"
    )
    command = [sys.executable, "-m", "snakemake", "--cores", "1", "--quiet", "all"]
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    state = json.loads((output_dir / "ISPyB" / "ingest_state.json").read_text())
    assert state["units_ingested"] == 8 and state["visit"] == VISIT
    assert ctf_count(output_dir / "ispyb.sqlite") == NUMBER_OF_MOVIES
