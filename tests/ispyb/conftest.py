"""Fixtures for the ISPyB tests: a fresh MariaDB database per test and a small output dir.

The server URL comes from EMPROC_TEST_MYSQL_URL (default root@127.0.0.1:3306, no password);
`tools/mariadb.sh env` starts a private server when none answers there.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from ispyb_fixtures import (
    NUMBER_OF_MOVIES,
    VISIT,
    make_config,
    write_later_stage_outputs,
    write_spa_outputs,
)

from emproc.ispyb.schema import init_db

DEFAULT_SERVER_URL = "mysql+pymysql://root@127.0.0.1:3306"


@pytest.fixture(scope="session")
def mysql_server_url() -> str:
    url = os.environ.get("EMPROC_TEST_MYSQL_URL", DEFAULT_SERVER_URL)
    try:
        sa.create_engine(url).connect().close()
    except sa.exc.OperationalError as error:
        pytest.skip(f'no MariaDB at {url} ({error.orig}); run `eval "$(tools/mariadb.sh env)"`')
    return url


@pytest.fixture
def mysql_url(mysql_server_url: str) -> Iterator[str]:
    """URL of a new, empty database on the test server, dropped afterwards."""
    name = f"emproc_test_{uuid.uuid4().hex[:12]}"
    server = sa.create_engine(mysql_server_url, isolation_level="AUTOCOMMIT")
    with server.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE `{name}`")
    try:
        yield f"{mysql_server_url.rstrip('/')}/{name}"
    finally:
        with server.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
        server.dispose()


@pytest.fixture
def mysql_engine(mysql_url: str) -> Iterator[sa.Engine]:
    """The ISPyB schema subset with the test visit seeded."""
    engine = init_db(mysql_url, seed_visit=VISIT)
    yield engine
    engine.dispose()


@pytest.fixture
def spa_session(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """(output dir, config) for a small SPA session with picking, 2D classes and a tomogram."""
    session_dir = tmp_path / "session"
    output_dir = tmp_path / "processed"
    write_spa_outputs(output_dir, session_dir, NUMBER_OF_MOVIES)
    write_later_stage_outputs(output_dir, session_dir, NUMBER_OF_MOVIES)
    (output_dir / "config_used.yaml").write_text("session: {}\n")
    return output_dir, make_config(session_dir, output_dir)
