"""`emproc ispyb ...` sub-commands: `init-db URL [--seed-visit VISIT]` and
`ingest OUTPUT_DIR [--config FILE]`. The lead's `emproc.cli` calls `register(subparsers)`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

from emproc.ispyb.connect import mask_url
from emproc.ispyb.ingest import ingest_output_dir
from emproc.ispyb.retry import RetriesExhaustedError
from emproc.ispyb.schema import init_db


def register(subparsers: Any) -> None:
    """Add the `ispyb` command group to an argparse sub-parsers object."""
    ispyb = subparsers.add_parser("ispyb", help="ISPyB database: create a test schema, ingest")
    commands = ispyb.add_subparsers(dest="ispyb_command", required=True)

    init = commands.add_parser(
        "init-db", help="create the ISPyB table subset emproc uses (MariaDB or SQLite)"
    )
    init.add_argument(
        "url",
        help="SQLAlchemy URL, e.g. sqlite:///ispyb.sqlite or "
        "mysql+pymysql://user@host:3306/ispyb_test (the database must exist)",
    )
    init.add_argument(
        "--seed-visit",
        metavar="VISIT",
        help="also create Person/Proposal/BLSession for a visit, e.g. bi12345-1",
    )
    init.set_defaults(handler=_guarded(_init_db))

    ingest = commands.add_parser(
        "ingest", help="ingest a processed output directory into ISPyB (new/changed units only)"
    )
    ingest.add_argument("output_dir", type=Path, help="emproc output directory (outputs.dir)")
    ingest.add_argument(
        "--config",
        type=Path,
        default=None,
        help="config file (default: OUTPUT_DIR/config_used.yaml)",
    )
    ingest.set_defaults(handler=_guarded(_ingest))


def _guarded(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Report expected failures (bad input, missing visit, unreachable database) in one line."""

    def run(arguments: argparse.Namespace) -> int:
        try:
            return command(arguments)
        except (ValueError, LookupError, OSError, RetriesExhaustedError) as error:
            print(f"emproc: error: {error}", file=sys.stderr)
        except sa.exc.SQLAlchemyError as error:
            # the message names the server and user, never the password
            print(f"emproc: error: database: {error.__class__.__name__}: {error}", file=sys.stderr)
        return 2

    return run


def _init_db(arguments: argparse.Namespace) -> int:
    init_db(arguments.url, seed_visit=arguments.seed_visit).dispose()
    seeded = f", visit {arguments.seed_visit} seeded" if arguments.seed_visit else ""
    print(f"ISPyB schema ready at {mask_url(arguments.url)}{seeded}")
    return 0


def _ingest(arguments: argparse.Namespace) -> int:
    config_path = arguments.config or arguments.output_dir / "config_used.yaml"
    try:
        config = yaml.safe_load(config_path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"config {config_path} does not exist") from None
    except yaml.YAMLError as error:
        raise ValueError(f"config {config_path} is not valid YAML: {error}") from None
    if not isinstance(config, dict) or "session" not in config:
        raise ValueError(f"config {config_path} has no `session` section")
    summary = ingest_output_dir(arguments.output_dir, config)
    print(
        f"ISPyB ingest into {summary.database}: {summary.units_ingested} units written, "
        f"{summary.units_skipped} unchanged; state in {summary.state_path}"
    )
    return 0
