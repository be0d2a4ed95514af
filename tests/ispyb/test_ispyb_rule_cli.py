"""The Snakemake rule and the `emproc ispyb` commands, on the embedded SQLite database."""

from __future__ import annotations

import argparse
from pathlib import Path

import ispyb.sqlalchemy as models
import sqlalchemy as sa
import yaml
from ispyb_fixtures import NUMBER_OF_MOVIES, VISIT

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
    assert "9 units written" in capsys.readouterr().out
    assert ctf_count(database) == NUMBER_OF_MOVIES + 5  # and the 5 used tilts
