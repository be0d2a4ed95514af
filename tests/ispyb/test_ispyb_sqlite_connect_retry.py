"""Embedded SQLite default, credentials resolution, retry classification (no server needed)."""

from __future__ import annotations

import json

import ispyb.sqlalchemy as models
import pymysql
import pytest
import sqlalchemy as sa
from ispyb_fixtures import NUMBER_OF_MOVIES

from emproc.ispyb.connect import CredentialsError, mask_url, read_credentials, resolve_target
from emproc.ispyb.ingest import ingest_output_dir
from emproc.ispyb.retry import (
    RetriesExhaustedError,
    RetryPolicy,
    is_retryable,
    run_in_transaction,
)
from emproc.ispyb.schema import VisitNameError, parse_visit, schema_tables


def test_embedded_sqlite_has_the_models_tables_and_columns(spa_session, monkeypatch):
    output_dir, config = spa_session
    monkeypatch.delenv("ISPYB_CREDENTIALS", raising=False)
    summary = ingest_output_dir(output_dir, config)
    assert summary.database.startswith("sqlite:///") and summary.units_ingested == 9
    engine = sa.create_engine(f"sqlite:///{output_dir / 'ispyb.sqlite'}")
    inspector = sa.inspect(engine)
    tables = schema_tables()
    assert len(tables) >= 56 and set(inspector.get_table_names()) == {t.name for t in tables}
    for table in tables:
        assert [c["name"] for c in inspector.get_columns(table.name)] == [
            c.name for c in table.columns
        ]
    with engine.connect() as c:
        assert (
            c.execute(sa.select(sa.func.count()).select_from(models.CTF)).scalar()
            == NUMBER_OF_MOVIES + 5  # and the tilt series' 5 used tilts
        )
        assert c.execute(sa.select(models.Movie.createdTimeStamp)).first()[0] is not None
    again = ingest_output_dir(output_dir, config)
    assert again.units_ingested == 0
    engine.dispose()


def test_credentials_ini_gives_url_and_tls_and_never_shows_the_password(tmp_path, monkeypatch):
    ini = tmp_path / "ispyb.ini"
    ini.write_text(
        "[ispyb_sqlalchemy]\nusername = emproc\npassword = s3cret!\nhost = db.example.org\n"
        "port = 3307\ndatabase = ispyb\nssl_ca = /etc/ca.pem\nssl_verify_cert = true\n"
    )
    url, connect_args = read_credentials(ini)
    parsed = sa.make_url(url)
    assert (parsed.username, parsed.password, parsed.host, parsed.port, parsed.database) == (
        "emproc",
        "s3cret!",
        "db.example.org",
        3307,
        "ispyb",
    )
    assert connect_args == {"ssl": {"ssl_ca": "/etc/ca.pem", "ssl_verify_cert": True}}
    assert "s3cret" not in mask_url(url)
    monkeypatch.setenv("ISPYB_CREDENTIALS", str(ini))
    target = resolve_target({"credentials": ""}, tmp_path)
    assert not target.embedded and "s3cret" not in target.masked_url + repr(target)
    monkeypatch.delenv("ISPYB_CREDENTIALS")
    embedded = resolve_target({"embedded_url": "sqlite:///{outputs}/db.sqlite"}, tmp_path)
    assert embedded.embedded and embedded.url == f"sqlite:///{tmp_path.resolve()}/db.sqlite"


def test_stored_procedure_section_and_bad_files(tmp_path):
    ini = tmp_path / "sp.ini"
    ini.write_text("[ispyb_mariadb_sp]\nuser = u\npw = p\nhost = h\nport = 3306\ndb = d\n")
    assert sa.make_url(read_credentials(ini)[0]).database == "d"
    with pytest.raises(CredentialsError, match="does not exist"):
        read_credentials(tmp_path / "missing.ini")
    (tmp_path / "empty.ini").write_text("[other]\nx = 1\n")
    with pytest.raises(CredentialsError, match="neither"):
        read_credentials(tmp_path / "empty.ini")
    (tmp_path / "partial.ini").write_text("[ispyb_sqlalchemy]\npassword = hidden\n")
    with pytest.raises(CredentialsError, match="lacks username, host, database") as error:
        read_credentials(tmp_path / "partial.ini")
    assert "hidden" not in str(error.value)


def test_visit_names():
    visit = parse_visit("bi12345-1")
    assert (visit.proposal_code, visit.proposal_number, visit.visit_number) == ("bi", "12345", 1)
    with pytest.raises(VisitNameError, match="bi12345"):
        parse_visit("bi12345")


def _wrapped(code: int) -> sa.exc.OperationalError:
    return sa.exc.OperationalError("UPDATE x", {}, pymysql.err.OperationalError(code, "msg"))


@pytest.mark.parametrize("code", [1213, 1205, 2006, 2013, 1927])
def test_transient_errors_are_retryable(code):
    assert is_retryable(_wrapped(code)) and is_retryable(pymysql.err.OperationalError(code, "m"))


def test_other_errors_are_not_retryable():
    assert not is_retryable(_wrapped(1062))  # duplicate key: a bug, not a transient failure
    assert not is_retryable(ValueError("x"))


def test_unit_is_rerun_whole_and_rolled_back_each_time():
    engine = sa.create_engine("sqlite://")
    with engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    attempts, delays = [], []

    def unit(connection, attempt):
        attempts.append(attempt)
        connection.exec_driver_sql(f"INSERT INTO t VALUES ({attempt})")
        if attempt < 3:
            raise _wrapped(1213)
        return "done"

    policy = RetryPolicy(max_attempts=5, initial_delay_s=1.0, multiplier=2.0, jitter_fraction=0.0)
    assert run_in_transaction(engine, unit, "test unit", policy, sleep=delays.append) == "done"
    assert attempts == [1, 2, 3] and delays == [1.0, 2.0]
    with engine.connect() as c:
        assert [r[0] for r in c.exec_driver_sql("SELECT x FROM t")] == [3]

    def always_failing(connection, attempt):
        connection.exec_driver_sql("INSERT INTO t VALUES (99)")
        raise _wrapped(2013)

    with pytest.raises(RetriesExhaustedError, match="test unit failed after 5 attempts.*2013"):
        run_in_transaction(engine, always_failing, "test unit", policy, sleep=delays.append)
    assert delays[2:] == [1.0, 2.0, 4.0, 8.0]
    with engine.connect() as c:
        assert c.exec_driver_sql("SELECT COUNT(*) FROM t WHERE x = 99").scalar() == 0


def test_bad_input_file_is_named(spa_session):
    output_dir, config = spa_session
    broken = next((output_dir / "CtfFind").rglob("*_ctf.json"))
    broken.write_text("{not json")
    with pytest.raises(ValueError, match=f"{broken.name}: not readable JSON"):
        ingest_output_dir(output_dir, config)
    broken.write_text(json.dumps({"movie_name": "x"}))
    with pytest.raises(ValueError, match="required key 'defocus_u_angstrom' is missing"):
        ingest_output_dir(output_dir, config)
