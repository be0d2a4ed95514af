"""The `emproc` command: simulate sessions, validate configs, run the workflow."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from emproc.config import WORKFLOW_ROOT, ConfigError, load_config, validate_config
from emproc.discovery import DiscoveryError, discover_movies
from emproc.failures import clear_all_failures, failure_records, retry_targets
from emproc.io.atomic import remove_stale_temporaries
from emproc.preflight import check_detector_references, check_referenced_files
from emproc.run_lock import OutputDirLockedError, output_dir_lock
from emproc.status import format_status, session_status
from emproc.watch import FileEventWaker, WatchSettings, watch_session


class OutputDirError(OSError):
    """The output directory cannot be created or written (permissions, a file in the way)."""


def check_output_dir(output_dir: str | Path) -> None:
    """Create `output_dir` and write a probe file there before Snakemake starts, so a bad
    output path gives one clear line instead of a traceback from Snakemake's DAG build."""
    path = Path(output_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".emproc-write-test-"):
            pass
    except OSError as error:
        reason = error.strerror or str(error)
        raise OutputDirError(
            f"{path}: output directory cannot be created or written ({reason})"
        ) from error


def _check_config(config_path: str, overrides: dict[str, str]) -> dict:
    config = load_config(config_path)
    config.update(overrides)
    validated = validate_config(config)
    check_referenced_files(validated)
    if validated["session"]["experiment"] == "spa":
        session = validated["session"]
        movies = discover_movies(
            session["session_dir"], session["movie_glob"], movie_list=session["movie_list"]
        )
        check_detector_references(validated, next(iter(movies.values())))
    return validated


def split_config_overrides(extra: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """The `--config key=value` pairs among pass-through Snakemake arguments, and the other
    arguments."""
    overrides: dict[str, str] = {}
    rest: list[str] = []
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
            continue
        rest.append(argument)
    return overrides, rest


def _config_overrides(extra: Sequence[str]) -> dict[str, str]:
    return split_config_overrides(extra)[0]


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


def uses_storage_provider(profile: str | None, extra: Sequence[str]) -> bool:
    """Whether outputs go through a Snakemake storage plugin (paths must stay relative)."""
    if any(argument.startswith("--default-storage-provider") for argument in extra):
        return True
    if not profile:
        return False
    import yaml

    for name in ("config.v8+.yaml", "config.yaml"):
        path = Path(profile) / name
        if path.is_file():
            settings = yaml.safe_load(path.read_text()) or {}
            return bool(settings.get("default-storage-provider"))
    return False


RUN_CONFIG = ".emproc-run/config.yaml"


def write_run_config(config: dict, output_dir: Path) -> Path:
    """The validated config with absolute paths, in the output directory: Snakemake then
    runs with the output directory as its working directory (`--directory`), so its state
    (.snakemake: metadata, locks, logs) stays with the outputs whoever starts the run."""
    from emproc.config import with_absolute_paths, write_config

    path = output_dir / RUN_CONFIG
    write_config(with_absolute_paths(config, Path.cwd()), path)
    return path


def _absolute_credentials_env() -> None:
    # the Snakemake jobs run in the output directory: a relative path would move with them
    from emproc.ispyb.connect import CREDENTIALS_ENV

    if os.environ.get(CREDENTIALS_ENV):
        os.environ[CREDENTIALS_ENV] = str(Path(os.environ[CREDENTIALS_ENV]).resolve())


def command_run(args: argparse.Namespace) -> int:
    extra = [argument for argument in args.snakemake_args if argument != "--"]
    overrides, other_arguments = split_config_overrides(extra)
    config = _check_config(args.configfile, overrides)
    profile = args.profile
    if profile is None and (WORKFLOW_ROOT / "profiles" / "local").is_dir():
        profile = str(WORKFLOW_ROOT / "profiles" / "local")
    relocate = not uses_storage_provider(profile, extra)
    output_dir = Path(config["outputs"]["dir"])
    if relocate:
        output_dir = output_dir.resolve()
    check_output_dir(output_dir)
    with output_dir_lock(output_dir, "run") as lock:
        if relocate:
            _absolute_credentials_env()
            command = snakemake_command(
                str(write_run_config(config, output_dir)),
                str(Path(profile).resolve()) if profile else None,
                args.cores,
                [*other_arguments, "--directory", str(output_dir)],
            )
        else:
            command = snakemake_command(args.configfile, profile, args.cores, extra)
        if lock.took_over_stale:
            # its Snakemake was killed too (the lock counts it): its lock is stale as well
            print(f"emproc: {output_dir}: clearing the lock of a killed run", file=sys.stderr)
            subprocess.run([*command, "--unlock"], capture_output=True, check=False)
        removed = remove_stale_temporaries(output_dir)
        if removed:
            print(f"emproc: removed {removed} temporary file(s) of killed writes", file=sys.stderr)
        rerun = _stale_live_chunks(output_dir, config)
        if args.retry_failed:
            # the chunk stages that recorded the failures run again (Snakemake --forcerun)
            rerun += retry_targets(output_dir)
            retried = clear_all_failures(output_dir)
            print(f"emproc: retrying {retried} failed movies", file=sys.stderr)
        if rerun:
            command += ["--forcerun", *sorted(set(rerun))]
        return run_session(command, output_dir, on_spawn=lock.add_process)


def _stale_live_chunks(output_dir: Path, config: dict) -> list[str]:
    """Chunk stages the live worker ran with parameters that have changed since."""
    from emproc.live import stale_live_manifests

    stale = stale_live_manifests(output_dir, config)
    if stale:
        print(
            f"emproc: {len(stale)} chunk stage(s) of emproc watch's live worker ran with other "
            "parameters: running them again",
            file=sys.stderr,
        )
    return stale


def with_config_overrides(command: Sequence[str], pairs: Sequence[str]) -> list[str]:
    """Add `key=value` pairs to the command's `--config` (Snakemake keeps only one)."""
    command = list(command)
    for flag in ("--config", "-C"):
        if flag in command:
            position = command.index(flag) + 1
            return command[:position] + list(pairs) + command[position:]
    return [*command, "--config", *pairs]


def _call(
    command: Sequence[str], on_spawn: Callable[[int], None] | None = None, niceness: int = 0
) -> int:
    """Run Snakemake (`niceness` added to its priority); Ctrl-C (also when only we received
    it) stops it cleanly."""
    # nice(1) execs Snakemake in its own process (same pid); no preexec_fn, which is unsafe
    # in a process with threads (the watcher has some)
    prefix = ["nice", "-n", str(niceness)] if niceness else []
    process = subprocess.Popen([*prefix, *command], env=os.environ.copy())
    if on_spawn is not None:
        on_spawn(process.pid)
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGINT)
        process.wait()
        raise


def run_session(
    command: Sequence[str],
    output_dir: str | Path,
    on_spawn: Callable[[int], None] | None = None,
    niceness: int = 0,
) -> int:
    """Run the workflow and say how many movies failed (they never block the others)."""
    print("emproc: running " + " ".join(command), file=sys.stderr)
    returncode = _call(command, on_spawn, niceness)
    failures = failure_records(output_dir)
    if failures:
        print(
            f"emproc: {len(failures)} movie(s) failed (details: emproc status {output_dir})",
            file=sys.stderr,
        )
    if returncode != 0:
        print(
            f"emproc: the workflow stopped with an error (exit status {returncode}): the "
            "'emproc ... failed:' lines above say why; each failed rule's log has the detail",
            file=sys.stderr,
        )
    return returncode


# the workflow's priority below the live worker's (nice(1) steps; jobs inherit it)
BACKGROUND_NICENESS = 5


def command_watch(args: argparse.Namespace) -> int:
    extra = [argument for argument in args.snakemake_args if argument != "--"]
    config = validate_config({**load_config(args.configfile), "session_dir": args.session_dir})
    session_dir = Path(config["session"]["session_dir"])
    if not session_dir.is_dir():
        raise DiscoveryError(f"session directory does not exist: {session_dir}")
    output_dir = Path(config["outputs"]["dir"])
    check_output_dir(output_dir)
    profile = args.profile or str(WORKFLOW_ROOT / "profiles" / "local")
    command = snakemake_command(args.configfile, profile, args.cores, extra)
    settings = WatchSettings(
        interval_s=args.interval,
        max_interval_s=args.max_interval,
        idle_timeout_s=args.idle_timeout,
        stable_seconds=args.stable_seconds,
        batch_size=int(config["processing"]["movies_per_job"]),
        batch_wait_s=args.batch_wait,
    )

    workflow_processes: list[int] = []
    # the live worker's chunks run with other parameters: the first run redoes them
    forcerun = _stale_live_chunks(output_dir, config)

    def run_workflow(manifest: Path) -> int:
        overrides = [f"session_dir={session_dir}", f"movie_list={manifest.resolve()}"]
        run_command = with_config_overrides(command, overrides)
        if forcerun:
            run_command += ["--forcerun", *forcerun]
            forcerun.clear()
        return run_session(run_command, output_dir, workflow_processes.append, priority["niceness"])

    # With the live worker, a workflow run that only has aggregates and the report to do
    # runs at a lower priority: on a busy machine the movie at hand (feedback) goes first.
    # A run with per-movie work (a backlog) runs at normal priority: throughput.
    priority = {"niceness": 0}

    def workflow_priority(low: bool) -> None:
        priority["niceness"] = BACKGROUND_NICENESS if low else 0

    def interrupt_workflow() -> None:
        # the live watcher runs the workflow in the background: Ctrl-C stops it too
        if workflow_processes:
            try:
                os.kill(workflow_processes[-1], signal.SIGINT)
            except ProcessLookupError:
                pass

    live = None
    if config["processing"]["live_worker"] and not args.no_live_worker:
        from emproc.config import write_config
        from emproc.live_worker import LiveWorker
        from emproc.watch import WATCH_DIR

        state_dir = output_dir / WATCH_DIR
        state_dir.mkdir(parents=True, exist_ok=True)
        live_config = state_dir / "live_config.yaml"
        write_config(config, live_config)
        live = LiveWorker(live_config, output_dir, state_dir / "live_worker.log")
        print(
            "emproc watch: a live worker processes each movie as it completes "
            f"(log: {state_dir / 'live_worker.log'})",
            file=sys.stderr,
        )

    def release_stale_snakemake_lock() -> None:
        # A watcher killed with its Snakemake leaves Snakemake's lock behind; this runs once
        # watch_session holds the one-watcher-per-output-dir lock, so that lock is stale.
        subprocess.run(
            [*with_config_overrides(command, [f"session_dir={session_dir}"]), "--unlock"],
            capture_output=True,
            check=False,
        )

    waker = FileEventWaker(session_dir)
    if waker.uses_events:
        print("emproc watch: woken by file events (inotify) as well as polling", file=sys.stderr)
    try:
        return watch_session(
            session_dir,
            config["session"]["movie_glob"],
            output_dir,
            run_workflow,
            settings,
            sleep=waker.sleep,
            on_start=release_stale_snakemake_lock,
            renamed=waker.take_renamed,
            live=live,
            interrupt_workflow=interrupt_workflow,
            workflow_priority=workflow_priority,
        )
    except KeyboardInterrupt:
        print("emproc watch: interrupted; `emproc watch` again resumes", file=sys.stderr)
        return 130
    finally:
        waker.close()


def command_status(args: argparse.Namespace) -> int:
    print(format_status(session_status(args.output_dir)))
    return 0


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
    run.add_argument(
        "--retry-failed", action="store_true", help="attempt movies that failed before again"
    )
    run.add_argument("snakemake_args", nargs=argparse.REMAINDER)
    run.set_defaults(handler=command_run)

    watch = subparsers.add_parser(
        "watch",
        help="process a session while it is being collected",
        description="Scan the session, process movies once their files are complete, "
        "until no new movie arrived for --idle-timeout seconds (or Ctrl-C).",
    )
    watch.add_argument("session_dir")
    watch.add_argument("--configfile", default="config/config.yaml")
    watch.add_argument("--profile", default=None, help="Snakemake profile dir (default: local)")
    watch.add_argument("--cores", type=int, default=None)
    watch.add_argument("--interval", type=float, default=30.0, help="seconds between scans")
    watch.add_argument("--max-interval", type=float, default=300.0, help="backoff limit, s")
    watch.add_argument("--idle-timeout", type=float, default=3600.0, help="stop after, s")
    watch.add_argument(
        "--stable-seconds", type=float, default=30.0, help="unchanged this long = complete"
    )
    watch.add_argument(
        "--batch-wait",
        type=float,
        default=0.0,
        help="0 (default): hand each stable movie to the workflow as soon as it is free "
        "(movies that arrive during a run go together after it); >0: hand over whole chunks "
        "(processing.movies_per_job) and a remainder once its oldest waited this long, s",
    )
    watch.add_argument(
        "--no-live-worker",
        action="store_true",
        help="every movie waits for a workflow run (config processing.live_worker: false)",
    )
    # unknown arguments go to snakemake (main() collects them)
    watch.set_defaults(handler=command_watch, snakemake_args=[])

    status = subparsers.add_parser("status", help="counts, failures and key numbers of a run")
    status.add_argument("output_dir")
    status.set_defaults(handler=command_status)

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
        if args.command not in ("run", "watch"):
            parser.error(f"unrecognised arguments: {' '.join(unknown)}")
        args.snakemake_args = list(unknown) + list(args.snakemake_args)
    try:
        return int(args.handler(args) or 0)
    except (
        ConfigError,
        DiscoveryError,
        FileNotFoundError,
        OutputDirError,
        OutputDirLockedError,
    ) as error:
        print(f"emproc: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
