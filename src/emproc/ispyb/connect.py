"""Which ISPyB database to write to, and an engine for it.

Order: the config's `ispyb.credentials` (an ini path), else the `ISPYB_CREDENTIALS` environment
variable (the convention of the `ispyb` package), else the embedded SQLite database at
`ispyb.embedded_url` (`{outputs}` = the output directory), which is created and seeded with the
session's visit. Passwords never appear in messages: use `mask_url` for anything printed.

The ini file uses the `ispyb` package's `[ispyb_sqlalchemy]` section::

    [ispyb_sqlalchemy]
    username = emproc
    password = secret
    host = ispyb-db.example.org
    port = 3306
    database = ispyb
    # optional TLS (passed to pymysql's `ssl` argument)
    ssl_ca = /etc/ssl/certs/ispyb-ca.pem
    ssl_cert = /etc/ispyb/client-cert.pem
    ssl_key = /etc/ispyb/client-key.pem
    ssl_verify_cert = true

The stored-procedure section `[ispyb_mariadb_sp]` (user/pw/host/port/db) is accepted too.
"""

from __future__ import annotations

import configparser
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

CREDENTIALS_ENV = "ISPYB_CREDENTIALS"
DEFAULT_EMBEDDED_URL = "sqlite:///{outputs}/ispyb.sqlite"
_SQLALCHEMY_SECTION = "ispyb_sqlalchemy"
_STORED_PROCEDURE_SECTION = "ispyb_mariadb_sp"
# stored-procedure section key -> sqlalchemy section key
_SP_KEYS = {"user": "username", "pw": "password", "db": "database"}
_TLS_KEYS = ("ssl_ca", "ssl_cert", "ssl_key", "ssl_verify_cert", "ssl_verify_identity")


class CredentialsError(ValueError):
    """The ISPyB credentials file is missing, unreadable or incomplete."""


class DatabaseConnectionError(ConnectionError):
    """The ISPyB server cannot be reached or refuses the credentials (one line, no password)."""


@dataclass(frozen=True)
class DatabaseTarget:
    """Where ingest writes: URL, pymysql connect arguments (TLS) and whether it is embedded."""

    url: str = field(repr=False)  # may hold the password: never in a repr or log
    embedded: bool = False
    connect_args: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def masked_url(self) -> str:
        return mask_url(self.url)


def mask_url(url: str) -> str:
    """`url` with any password replaced by `***` (safe for logs and error messages)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparseable database URL>"


def read_credentials(path: str | os.PathLike[str]) -> tuple[str, dict[str, Any]]:
    """URL and TLS connect arguments from an `ispyb` credentials ini file."""
    path = Path(path)
    if not path.is_file():
        raise CredentialsError(f"ISPyB credentials file {path} does not exist")
    parser = configparser.RawConfigParser(allow_no_value=True)
    try:
        parser.read(path)
    except configparser.Error as error:
        raise CredentialsError(
            f"ISPyB credentials file {path} is not a valid ini file: {type(error).__name__}"
        ) from None
    if parser.has_section(_SQLALCHEMY_SECTION):
        values = dict(parser.items(_SQLALCHEMY_SECTION))
    elif parser.has_section(_STORED_PROCEDURE_SECTION):
        values = {
            _SP_KEYS.get(key, key): value for key, value in parser.items(_STORED_PROCEDURE_SECTION)
        }
    else:
        raise CredentialsError(
            f"ISPyB credentials file {path} has neither a [{_SQLALCHEMY_SECTION}] nor a "
            f"[{_STORED_PROCEDURE_SECTION}] section"
        )
    missing = [key for key in ("username", "host", "database") if not values.get(key)]
    if missing:
        raise CredentialsError(f"ISPyB credentials file {path} lacks {', '.join(missing)}")
    try:
        port = int(values.get("port") or 3306)
    except ValueError:
        raise CredentialsError(f"ISPyB credentials file {path}: port is not an integer") from None
    url = sa.URL.create(
        "mysql+pymysql",
        username=values["username"],
        password=values.get("password") or None,
        host=values["host"],
        port=port,
        database=values["database"],
    ).render_as_string(hide_password=False)
    tls = {key: values[key] for key in _TLS_KEYS if values.get(key)}
    for flag in ("ssl_verify_cert", "ssl_verify_identity"):
        if flag in tls:
            tls[flag] = tls[flag].strip().lower() in ("1", "true", "yes", "on")
    return url, ({"ssl": tls} if tls else {})


def resolve_target(
    ispyb_config: Mapping[str, Any],
    output_dir: str | os.PathLike[str],
    environ: Mapping[str, str] | None = None,
) -> DatabaseTarget:
    """Choose the database from the config's `ispyb` section and the environment."""
    environ = os.environ if environ is None else environ
    credentials = ispyb_config.get("credentials") or environ.get(CREDENTIALS_ENV, "")
    if credentials:
        url, connect_args = read_credentials(credentials)
        return DatabaseTarget(url=url, embedded=False, connect_args=connect_args)
    template = ispyb_config.get("embedded_url") or DEFAULT_EMBEDDED_URL
    url = template.replace("{outputs}", str(Path(output_dir).resolve()))
    return DatabaseTarget(url=url, embedded=True)


def database_identity(
    ispyb_config: Mapping[str, Any],
    output_dir: str | os.PathLike[str],
    visit_name: str,
    environ: Mapping[str, str] | None = None,
) -> str:
    """A short hash of which database and visit ingest writes to (resolve_target's choice):
    a server's URL without its password (user, host, port, name), or the embedded
    database's `embedded_url` as configured (`{outputs}` unexpanded: a copied output
    directory carries its embedded database along). A change of either is a reason to
    ingest again; the password is not part of it and the hash reveals nothing."""
    target = resolve_target(ispyb_config, output_dir, environ)
    where = (
        ispyb_config.get("embedded_url") or DEFAULT_EMBEDDED_URL
        if target.embedded
        else target.masked_url
    )
    return hashlib.sha256(f"{where}\n{visit_name}".encode()).hexdigest()[:16]


def connection_error_message(target: DatabaseTarget, error: BaseException) -> str:
    """One line naming host:port, database and user, and the server's reason."""
    url = make_url(target.url)
    reason = str(getattr(error, "orig", None) or error).splitlines()[0]
    arguments = getattr(getattr(error, "orig", None), "args", ())
    if len(arguments) == 2 and isinstance(arguments[0], int):
        code, text = arguments
        reason = f"{text} (MySQL error {code})"
        if code == 1045:
            reason += "; check the user and password in the ISPyB credentials file"
    return (
        f"cannot use the ISPyB database at {url.host}:{url.port or 3306} (database "
        f"{url.database}, user {url.username}): {reason}"
    )


def check_connection(engine: Engine, target: DatabaseTarget) -> None:
    """Connect once, so an unreachable server or wrong password is one clear line."""
    try:
        with engine.connect():
            pass
    except sa.exc.DBAPIError as error:
        raise DatabaseConnectionError(connection_error_message(target, error)) from None


def open_engine(target: DatabaseTarget, visit_name: str | None = None) -> Engine:
    """An engine for `target`; an embedded database is created and seeded with `visit_name`.
    A server is connected to once: DatabaseConnectionError when that fails."""
    from emproc.ispyb.schema import create_schema, ensure_visit, make_engine

    url = make_url(target.url)
    options: dict[str, Any] = {"connect_args": dict(target.connect_args)}
    if url.get_backend_name() == "mysql":
        # pre_ping replaces connections a proxy closed while idle; recycle under wait_timeout
        options.update(pool_pre_ping=True, pool_recycle=3600)
    if url.get_backend_name() == "sqlite" and url.database:
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(url, **options)
    if not target.embedded:
        check_connection(engine, target)
    if target.embedded:
        create_schema(engine)
        if visit_name:
            ensure_visit(engine, visit_name)
    return engine
