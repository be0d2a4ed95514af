"""A wrong password or an unreachable ISPyB server is one line naming host:port (never the
password), with the detail in the rule's log; another database is a reason to ingest again."""

from __future__ import annotations

import runpy
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from emproc.ispyb.connect import (
    DatabaseConnectionError,
    DatabaseTarget,
    database_identity,
    open_engine,
)
from emproc.ispyb.state import record_database_identity

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "s3cret-pw-never-printed"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _credentials(path: Path, host: str = "127.0.0.1", port: int = 3306, **values: str) -> Path:
    settings = {"username": "emproc", "password": PASSWORD, "database": "ispyb", **values}
    lines = ["[ispyb_sqlalchemy]", f"host = {host}", f"port = {port}"]
    lines += [f"{key} = {value}" for key, value in settings.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_ingest_rule_against_an_unreachable_server_is_one_line_and_a_full_log(
    spa_session, tmp_path: Path, capsys
):
    output_dir, config = spa_session
    port = _closed_port()
    config["ispyb"]["credentials"] = str(_credentials(tmp_path / "ispyb.ini", port=port))
    log = output_dir / "logs" / "ispyb_ingest.log"
    rule = SimpleNamespace(  # what Snakemake hands the script
        log=[str(log)],
        input=SimpleNamespace(imports=[], motion=[], ctf=[]),
        output=SimpleNamespace(
            state=str(output_dir / "ISPyB" / "ingest_state.json"),
            database=str(output_dir / "ISPyB" / "database_x.id"),
        ),
        params=SimpleNamespace(config=config),
    )
    with pytest.raises(SystemExit) as stopped:
        runpy.run_path(str(REPO / "scripts" / "ispyb_ingest.py"), {"snakemake": rule})
    assert stopped.value.code == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0
    assert error.startswith("emproc ispyb_ingest failed: cannot use the ISPyB database at ")
    assert f"127.0.0.1:{port}" in error and "Connection refused" in error
    detail = log.read_text()
    assert "Traceback" in detail and f"127.0.0.1:{port}" in detail
    assert PASSWORD not in error + detail
    assert not (output_dir / "ISPyB" / "ingest_state.json").exists()


def test_a_wrong_password_is_one_line_naming_host_port_and_user(mysql_server_url: str):
    url = sa.engine.make_url(mysql_server_url).set(password=PASSWORD, database="mysql")
    target = DatabaseTarget(url=url.render_as_string(hide_password=False))
    with pytest.raises(DatabaseConnectionError) as raised:
        open_engine(target)
    message = str(raised.value)
    assert "\n" not in message and PASSWORD not in message
    assert f"{url.host}:{url.port or 3306}" in message
    assert f"user {url.username}" in message and "1045" in message
    assert "check the user and password" in message


def test_database_identity_changes_with_the_database_not_the_password(tmp_path: Path):
    def identity(visit: str = "bi12345-1", **credentials: str) -> str:
        ini = _credentials(tmp_path / f"{len(list(tmp_path.iterdir()))}.ini", **credentials)
        return database_identity({"credentials": str(ini)}, tmp_path, visit)

    first = identity()
    assert identity(password="another-password") == first
    assert identity(host="ispyb-db.example.org") != first
    assert identity(port=3307) != first
    assert identity(username="other") != first
    assert identity(database="ispyb_test") != first
    assert identity(visit="bi12345-2") != first
    assert PASSWORD not in first
    # embedded SQLite: a copied output directory carries its database along; another
    # embedded_url is another database
    embedded = {"credentials": "", "embedded_url": "sqlite:///{outputs}/ispyb.sqlite"}
    here = database_identity(embedded, tmp_path / "a", "bi1-1", environ={})
    assert database_identity(embedded, tmp_path / "b", "bi1-1", environ={}) == here
    other = {**embedded, "embedded_url": "sqlite:///{outputs}/other.sqlite"}
    assert database_identity(other, tmp_path / "a", "bi1-1", environ={}) != here


def test_the_marker_of_the_last_database_replaces_the_others(tmp_path: Path):
    record_database_identity(tmp_path / "database_aaaa.id")
    record_database_identity(tmp_path / "database_bbbb.id")
    assert [path.name for path in tmp_path.iterdir()] == ["database_bbbb.id"]
    record_database_identity(tmp_path / "database_aaaa.id")  # and back: ingest ran again
    assert [path.name for path in tmp_path.iterdir()] == ["database_aaaa.id"]
