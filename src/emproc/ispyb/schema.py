"""The ISPyB table subset emproc writes and PATo reads, created from the published
`ispyb.sqlalchemy` models (schema 5.2.0, the version `lims-utils` models for PATo).

The subset is the EM tables, the tables PATo joins (permissions, experiment types, atlas,
attachments, B-factor fits) plus everything they reference by foreign key. MariaDB gets the models' own DDL; SQLite gets a metadata
copy whose MySQL-only types and server defaults are rewritten in `_sqlite_metadata` (the one
place that adapts them), so the embedded database has the same tables and columns.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import Any

import ispyb.sqlalchemy as models
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.schema import CreateTable

# Tables emproc writes to or PATo reads (or the visit comes from); the subset adds their
# foreign-key closure.
EM_TABLES: tuple[str, ...] = (
    "Person",
    "Proposal",
    "BLSession",
    "ProposalHasPerson",
    "Session_has_Person",
    "ExperimentType",
    "DataCollectionGroup",
    "Atlas",
    "GridSquare",
    "FoilHole",
    "DataCollectionFileAttachment",
    "DataCollection",
    "ProcessingJob",
    "ProcessingJobParameter",
    "AutoProcProgram",
    "AutoProcProgramAttachment",
    "Movie",
    "MotionCorrection",
    "CTF",
    "RelativeIceThickness",
    "ParticlePicker",
    "ParticleClassificationGroup",
    "ParticleClassification",
    "CryoemInitialModel",
    "ParticleClassification_has_CryoemInitialModel",
    "BFactorFit",
    "Tomogram",
    "TiltImageAlignment",
    "ProcessedTomogram",
)

# ISPyB's standard ExperimentType rows for EM (ids as in Diamond's database and murfey)
EXPERIMENT_TYPES: dict[str, int] = {"Tomography": 36, "Single Particle": 37}
# PATo lists sessions on beamlines named m% (microscopes) or b24%: seeded visits use one
SEED_BEAMLINE = "m01"

_VISIT_PATTERN = re.compile(r"^(?P<code>[a-z]{2})(?P<number>[0-9]+)-(?P<visit>[0-9]+)$")


class VisitNameError(ValueError):
    """A visit name is not `<proposal code><proposal number>-<visit number>`."""


@dataclass(frozen=True)
class Visit:
    """An ISPyB visit, e.g. `bi12345-1`."""

    proposal_code: str
    proposal_number: str
    visit_number: int

    @property
    def name(self) -> str:
        return f"{self.proposal_code}{self.proposal_number}-{self.visit_number}"


def parse_visit(visit_name: str) -> Visit:
    """Split `bi12345-1` into proposal code `bi`, proposal number `12345`, visit number 1."""
    match = _VISIT_PATTERN.match(visit_name)
    if match is None:
        raise VisitNameError(
            f"visit {visit_name!r} is not of the form <2-letter code><number>-<visit number>, "
            "e.g. bi12345-1"
        )
    return Visit(match["code"], match["number"], int(match["visit"]))


def schema_tables() -> list[sa.Table]:
    """The EM tables plus their foreign-key closure, in dependency order."""
    metadata = models.Base.metadata
    wanted: set[str] = set()
    pending = list(EM_TABLES)
    while pending:
        name = pending.pop()
        if name in wanted:
            continue
        wanted.add(name)
        pending.extend(fk.column.table.name for fk in metadata.tables[name].foreign_keys)
    return [table for table in metadata.sorted_tables if table.name in wanted]


def _sqlite_metadata(tables: list[sa.Table]) -> sa.MetaData:
    """Copy `tables` with SQLite-compatible types and server defaults.

    MySQL types (TINYINT, MEDIUMINT, LONGTEXT, ...) become their generic equivalents and
    `current_timestamp() ON UPDATE current_timestamp()` becomes CURRENT_TIMESTAMP (SQLite has
    no ON UPDATE); index names get their table's name as prefix (SQLite's are per database).
    Table and column names, keys and nullability are unchanged.
    """
    metadata = sa.MetaData()
    for table in tables:
        copy = table.to_metadata(metadata)
        for index in copy.indexes:
            # MySQL index names are per table, SQLite's per database
            index.name = f"{table.name}__{index.name}"
        for column in copy.columns:
            column.type = column.type.as_generic()
            default = column.server_default
            if isinstance(default, sa.DefaultClause):
                text = str(getattr(default.arg, "text", default.arg))
                if "current_timestamp" in text.lower():
                    column.server_default = sa.DefaultClause(sa.text("CURRENT_TIMESTAMP"))
                    column.server_onupdate = None
            elif isinstance(default, sa.Computed):
                # virtual columns in MySQL syntax: keep the column, drop the expression
                column.server_default = None
                column.computed = None
    return metadata


def create_schema(engine: Engine) -> None:
    """Create the table subset (existing tables are left alone)."""
    tables = schema_tables()
    # one transaction: SQLite then syncs the file once instead of once per table
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            _sqlite_metadata(tables).create_all(connection)
            return
        existing = set(sa.inspect(connection).get_table_names())
        for table in tables:
            if table.name not in existing:
                connection.exec_driver_sql(_create_table_with_keys(table, engine.dialect))


def _create_table_with_keys(table: sa.Table, dialect: sa.Dialect) -> str:
    """The models' CREATE TABLE with their indexes inline as KEY clauses.

    Same table as `create_all` makes, but one DDL statement instead of one per index
    (61 instead of 205), each of which costs InnoDB a file sync.
    """
    quote = dialect.identifier_preparer.quote
    statement = str(CreateTable(table).compile(dialect=dialect)).rstrip()
    keys = [
        f"{'UNIQUE ' if index.unique else ''}KEY {quote(index.name)} "
        f"({', '.join(quote(column.name) for column in index.columns)})"
        for index in sorted(table.indexes, key=lambda index: index.name)
    ]
    if not keys:
        return statement
    # the column list ends at the last "\n)"; table options (COMMENT=...) may follow it
    columns, closing, options = statement.rpartition("\n)")
    return columns.rstrip() + ",\n\t" + ",\n\t".join(keys) + closing + options


def ensure_experiment_types(connection: sa.Connection) -> None:
    """Add the standard EM ExperimentType rows a test or demo database lacks."""
    table = models.ExperimentType.__table__
    present = set(connection.execute(sa.select(table.c.name)).scalars())
    for name, type_id in EXPERIMENT_TYPES.items():
        if name not in present:
            connection.execute(
                sa.insert(table).values(
                    experimentTypeId=type_id, name=name, proposalType="em", active=1
                )
            )


def ensure_visit(engine: Engine, visit_name: str) -> int:
    """Create Person, Proposal and BLSession for `visit_name` if missing; return the sessionId.

    Also seeds the EM ExperimentType rows. The BLSession's beamline is `SEED_BEAMLINE` (PATo
    lists only microscope sessions); a visit seeded by an earlier emproc on beamline `emproc`
    is moved there. For test and demo databases only: production ingest never creates visits.
    """
    visit = parse_visit(visit_name)
    with engine.begin() as connection:
        ensure_experiment_types(connection)
        existing = find_session_id(connection, visit)
        if existing is not None:
            connection.execute(
                sa.update(models.BLSession)
                .where(
                    models.BLSession.sessionId == existing,
                    models.BLSession.beamLineName == "emproc",
                )
                .values(beamLineName=SEED_BEAMLINE)
            )
            return existing
        proposal_id = connection.execute(
            sa.select(models.Proposal.proposalId).where(
                models.Proposal.proposalCode == visit.proposal_code,
                models.Proposal.proposalNumber == visit.proposal_number,
            )
        ).scalar()
        if proposal_id is None:
            person_id = connection.execute(
                sa.insert(models.Person).values(
                    familyName="Demo", givenName="emproc", login="emproc"
                )
            ).inserted_primary_key[0]
            proposal_id = connection.execute(
                sa.insert(models.Proposal).values(
                    personId=person_id,
                    title="emproc demo proposal",
                    proposalCode=visit.proposal_code,
                    proposalNumber=visit.proposal_number,
                    proposalType="em",
                    state="Open",
                )
            ).inserted_primary_key[0]
        now = datetime.datetime.now().replace(microsecond=0)
        return connection.execute(
            sa.insert(models.BLSession).values(
                proposalId=proposal_id,
                visit_number=visit.visit_number,
                beamLineName=SEED_BEAMLINE,
                startDate=now,
                endDate=now + datetime.timedelta(days=1),
                comments="seeded by emproc",
            )
        ).inserted_primary_key[0]


def find_session_id(connection: sa.Connection, visit: Visit) -> int | None:
    """The BLSession.sessionId of `visit`, or None if the database has no such visit."""
    return connection.execute(
        sa.select(models.BLSession.sessionId)
        .join(models.Proposal, models.Proposal.proposalId == models.BLSession.proposalId)
        .where(
            models.Proposal.proposalCode == visit.proposal_code,
            models.Proposal.proposalNumber == visit.proposal_number,
            models.BLSession.visit_number == visit.visit_number,
        )
    ).scalar()


def make_engine(url: str | sa.URL, **options: Any) -> Engine:
    """`sqlalchemy.create_engine`, with real transactions on SQLite.

    Python's sqlite3 driver commits DDL implicitly and begins transactions late; SQLAlchemy's
    documented fix (driver autocommit plus an explicit BEGIN) makes a unit of work one
    transaction there too, and creating the schema one file sync instead of one per table.
    """
    engine = sa.create_engine(url, **options)
    if engine.dialect.name == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _driver_autocommit(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None
            # WAL + NORMAL: a commit survives a killed process without an fsync per unit
            # (only a power cut may lose the last commits of the embedded demo database)
            dbapi_connection.execute("PRAGMA journal_mode=WAL")
            dbapi_connection.execute("PRAGMA synchronous=NORMAL")
            dbapi_connection.execute("PRAGMA busy_timeout=30000")

        @sa.event.listens_for(engine, "begin")
        def _begin(connection: sa.Connection) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def init_db(url: str, seed_visit: str | None = None) -> Engine:
    """Create the schema subset at `url` (MariaDB or SQLite) and optionally seed a visit.

    The database itself must exist for MariaDB (`CREATE DATABASE`); SQLite files are created.
    """
    engine = make_engine(url)
    create_schema(engine)
    with engine.begin() as connection:
        ensure_experiment_types(connection)
    if seed_visit:
        ensure_visit(engine, seed_visit)
    return engine
