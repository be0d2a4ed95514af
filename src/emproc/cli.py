"""The `emproc` command: simulate sessions, validate configs, run the workflow."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence

from emproc.config import WORKFLOW_ROOT, ConfigError, load_config, validate_config
from emproc.discovery import DiscoveryError, discover_movies


def _check_config(config_path: str, overrides: dict[str, str]) -> dict:
    config = load_config(config_path)
    config.update(overrides)
    validated = validate_config(config)
    if validated["session"]["experiment"] == "spa":
        discover_movies(validated["session"]["session_dir"], validated["session"]["movie_glob"])
    return validated


def _config_overrides(extra: Sequence[str]) -> dict[str, str]:
    """The `--config key=value` pairs among pass-through Snakemake arguments."""
    overrides: dict[str, str] = {}
    collecting = False
    for argument in extra:
        if argument in ("--config", "-C"):
            collecting = True
            continue
        if argument.startswith("-"):
            collecting = False
        elif collecting and "=" in argument:
            key, value = argument.split("=", 1)
            overrides[key] = value
    return overrides


def command_validate_config(args: argparse.Namespace) -> int:
    validated = _check_config(args.configfile, {})
    movies = "" if validated["session"]["experiment"] != "spa" else " (movies found)"
    print(f"{args.configfile}: valid{movies}")
    return 0


def snakemake_command(
    configfile: str, profile: str | None, cores: int | None, extra: Sequence[str]
) -> list[str]:
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(WORKFLOW_ROOT / "Snakefile")]
    command += ["--configfile", configfile]
    if profile:
        command += ["--profile", profile]
    if cores is not None:
        command += ["--cores", str(cores)]
    elif not profile:
        command += ["--cores", "all"]
    return command + list(extra)


def command_run(args: argparse.Namespace) -> int:
    extra = [argument for argument in args.snakemake_args if argument != "--"]
    _check_config(args.configfile, _config_overrides(extra))
    profile = args.profile
    if profile is None and (WORKFLOW_ROOT / "profiles" / "local").is_dir():
        profile = str(WORKFLOW_ROOT / "profiles" / "local")
    command = snakemake_command(args.configfile, profile, args.cores, extra)
    print("emproc: running " + " ".join(command), file=sys.stderr)
    return subprocess.call(command, env=os.environ.copy())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emproc", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)

    from emproc.simulate.cli import register as register_simulate

    register_simulate(subparsers)

    run = subparsers.add_parser(
        "run",
        help="run the workflow (wraps snakemake; unknown arguments pass through)",
        description="Run the workflow. Arguments emproc does not know go to snakemake, "
        "e.g. `emproc run --configfile c.yaml -- --dry-run`.",
    )
    run.add_argument("--configfile", default="config/config.yaml")
    run.add_argument("--profile", default=None, help="Snakemake profile dir (default: local)")
    run.add_argument("--cores", type=int, default=None)
    run.add_argument("snakemake_args", nargs=argparse.REMAINDER)
    run.set_defaults(handler=command_run)

    validate = subparsers.add_parser("validate-config", help="check a config file and its session")
    validate.add_argument("configfile")
    validate.set_defaults(handler=command_validate_config)

    try:
        from emproc.ispyb.cli import register as register_ispyb
    except ImportError:  # the ISPyB sub-commands need the optional database drivers
        register_ispyb = None
    if register_ispyb is not None:
        register_ispyb(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        if args.command != "run":
            parser.error(f"unrecognised arguments: {' '.join(unknown)}")
        args.snakemake_args = list(unknown) + list(args.snakemake_args)
    try:
        return int(args.handler(args) or 0)
    except (ConfigError, DiscoveryError, FileNotFoundError) as error:
        print(f"emproc: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
