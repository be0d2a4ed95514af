"""How long Snakemake takes to build the DAG (dry run) for large SPA sessions.

Generates an EPU-like tree of empty movie files (the dry run reads no movie), writes a
config for it and times `snakemake --dry-run` with peak memory (of the snakemake process,
from resource.getrusage of children, so run one size per call for exact peaks).

    .venv/bin/python benchmarks/bench_dag.py 1000 5000 20000
    .venv/bin/python benchmarks/bench_dag.py --movies-per-job 1 1000
    .venv/bin/python benchmarks/bench_dag.py --workflow-root /tmp/old-checkout 1000   # before/after
    .venv/bin/python benchmarks/bench_dag.py --schedule 1000

`--schedule` times job scheduling instead: `snakemake --touch` up to the micrograph and particle
aggregates, so every per-movie job passes through Snakemake's scheduler and job bookkeeping
while nothing runs (the outputs do not exist, so nothing is touched either).
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from emproc.config import WORKFLOW_ROOT, load_config

MOVIES_PER_SQUARE = 200


def make_session(root: Path, movies: int, movies_per_job: int) -> Path:
    session = root / "session"
    for index in range(movies):
        square = session / "Images-Disc1" / f"GridSquare_{index // MOVIES_PER_SQUARE + 1}" / "Data"
        if index % MOVIES_PER_SQUARE == 0:
            square.mkdir(parents=True)
        hole = 1_000_000 + index
        (square / f"FoilHole_{hole}_Data_1_{index}_20261129_120000_fractions.tiff").touch()
    config = load_config(WORKFLOW_ROOT / "config" / "config.yaml")
    config["session"]["session_dir"] = str(session)
    config["microscope"]["gain_reference"] = ""
    config["outputs"]["dir"] = str(root / "processed")
    config["processing"] = {"movies_per_job": movies_per_job}
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


# the per-movie stages and the aggregates that need no checkpoint output
SCHEDULE_UNTIL = ["corrected_micrographs_star", "micrographs_ctf_star", "aggregate_particles"]


def time_dry_run(
    config: Path,
    workflow_root: Path,
    schedule: bool = False,
    scheduler: str = "ilp",
    subsample: int | None = None,
) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (MiB) of the dry run (or scheduling run), number of jobs."""
    mode = ["--touch", "--until", *SCHEDULE_UNTIL] if schedule else ["--dry-run"]
    mode += ["--scheduler", scheduler]
    if subsample:
        mode += ["--scheduler-subsample", str(subsample)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(workflow_root / "Snakefile"),
            "--configfile",
            str(config),
            *([] if schedule else ["--quiet", "rules"]),
            "--cores",
            "2",
            *mode,
        ],
        cwd=config.parent,
        capture_output=True,
        text=True,
        check=True,
    )
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    total = [line for line in result.stdout.splitlines() if line.startswith("total")]
    steps = re.findall(r"\d+ of (\d+) steps", result.stdout + result.stderr)
    jobs = int(total[0].split()[-1]) if total else int(steps[-1]) if steps else -1
    return elapsed, max(peak, before) / 1024, jobs


def local_profile_subsample() -> int | None:
    profile = yaml.safe_load((WORKFLOW_ROOT / "profiles" / "local" / "config.v8+.yaml").read_text())
    return profile.get("scheduler-subsample")


def main(
    sizes: list[int],
    movies_per_job: int,
    workflow_root: Path,
    schedule: bool,
    scheduler: str,
    subsample: int | None = None,
) -> None:
    print(
        f"workflow: {workflow_root}, movies per job: {movies_per_job}, scheduler: {scheduler}, "
        f"scheduler subsample: {subsample}"
    )
    what = "scheduling (--touch)" if schedule else "dry-run"
    print(f"| movies | jobs | {what} wall (s) | peak RSS (MiB) |")
    print("|---|---|---|---|")
    for movies in sizes:
        with tempfile.TemporaryDirectory() as directory:
            config = make_session(Path(directory), movies, movies_per_job)
            elapsed, peak, jobs = time_dry_run(
                config, workflow_root, schedule, scheduler, subsample
            )
            print(f"| {movies:,} | {jobs:,} | {elapsed:.1f} | {peak:.0f} |", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[1000, 5000, 20000])
    parser.add_argument("--movies-per-job", type=int, default=20)
    parser.add_argument("--workflow-root", type=Path, default=WORKFLOW_ROOT)
    parser.add_argument("--schedule", action="store_true", help="time scheduling (--touch)")
    parser.add_argument("--scheduler", choices=["ilp", "greedy"], default="ilp")
    parser.add_argument(
        "--subsample",
        type=int,
        default=local_profile_subsample(),
        help="snakemake --scheduler-subsample (ready jobs per round; 0: all); default: "
        "profiles/local's, as `emproc run` uses it",
    )
    arguments = parser.parse_args()
    main(
        arguments.sizes,
        arguments.movies_per_job,
        arguments.workflow_root,
        arguments.schedule,
        arguments.scheduler,
        arguments.subsample,
    )
