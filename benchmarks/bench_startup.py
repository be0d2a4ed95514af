"""Fixed cost of a chunk job: interpreter, imports, Snakemake's script preamble, config.

    .venv/bin/python benchmarks/bench_startup.py [--size 1024] [--frames 24] [--repeats 3]
        [--compare /tmp/old/src]      # also time another checkout's library (before/after)

A two-movie simulated session (bench_throughput.simulate_session) is written and imported
once (not timed). Then, per per-movie stage in workflow order, a fresh interpreter runs what
`scripts/movie_stage.py` runs for a chunk of those two movies: Snakemake's script preamble
imports (`snakemake.iocontainers`, `snakemake.logging`), `emproc.chunks` and
`emproc.movie_stages`, then the stage step for movie 1 and movie 2. The parent times the
whole process; the child times each movie. Fixed cost per job = process wall - 2 x the second
(warm) movie's time: everything a one-movie chunk pays that a warm process would not
(start-up, imports, the first call's lazy imports); the same in CPU seconds (the child's
rusage minus 2 x the warm movie's process time), which a loaded machine inflates less.
Median of `--repeats` runs per stage.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_throughput import pipeline_config, simulate_session  # noqa: E402

STAGES = ("import", "motion", "ctf", "pick", "extract")

CHILD = r"""
import json, sys, time
from pathlib import Path
from snakemake.logging import logger
from snakemake.iocontainers import Snakemake
from emproc.chunks import movie_paths
from emproc.movie_stages import StageContext, stage_step
stage, spec = sys.argv[1], json.loads(Path(sys.argv[2]).read_text())
context = StageContext(
    output_dir=Path(spec["output_dir"]),
    config=spec["config"],
    movie_files=dict(spec["movies"]),
    threads=1,
)
step = stage_step(stage, context)
seconds = []
cpu = []
for movie in dict(spec["movies"]):
    start, cpu_start = time.perf_counter(), time.process_time()
    step(movie, movie_paths(spec["output_dir"], stage, movie))
    seconds.append(time.perf_counter() - start)
    cpu.append(time.process_time() - cpu_start)
heavy = [m for m in ("pandas", "matplotlib", "sqlalchemy", "starfile", "scipy.optimize")
         if m in sys.modules]
print(json.dumps({"movie_s": seconds, "movie_cpu_s": cpu, "heavy": heavy}))
"""


def run_stage(stage: str, spec_path: Path, source: Path | None) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    if source is not None:
        env["PYTHONPATH"] = str(source)
    cpu_before = _children_cpu_s()
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", CHILD, stage, str(spec_path)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - start
    cpu = _children_cpu_s() - cpu_before
    record = json.loads(result.stdout.strip().splitlines()[-1])
    warm, warm_cpu = record["movie_s"][-1], record["movie_cpu_s"][-1]
    return {
        "wall_s": wall,
        "warm_movie_s": warm,
        "fixed_s": wall - 2 * warm,
        "fixed_cpu_s": cpu - 2 * warm_cpu,
        **record,
    }


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(size: int, frames: int, repeats: int, compare: Path | None) -> None:
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        session = simulate_session(root / "session", 2, size, frames, particles=150)
        config = pipeline_config(root / "session", size, frames)
        movies = [(name, path) for path, name in session]
        spec = {"output_dir": str(root / "out"), "config": config, "movies": movies}
        spec_path = root / "spec.json"
        spec_path.write_text(json.dumps(spec))
        sources: list[Path | None] = [None] if compare is None else [compare, None]
        labels = ["this checkout"] if compare is None else [str(compare), "this checkout"]
        print(f"{size}x{size} px, {frames} frames; median of {repeats}, runs interleaved")
        print(
            "| library | stage | job wall (s) | warm movie (s) | fixed cost per job: wall (s) "
            "| CPU (s) | heavy |"
        )
        print("|---|---|---|---|---|---|---|")
        totals = {label: [0.0, 0.0] for label in labels}
        for stage in STAGES:
            runs: dict[str, list[dict]] = {label: [] for label in labels}
            for _ in range(repeats):  # alternate, so both see the same machine load
                for label, source in zip(labels, sources, strict=True):
                    runs[label].append(run_stage(stage, spec_path, source))
            for label in labels:
                fixed = statistics.median(run["fixed_s"] for run in runs[label])
                wall = statistics.median(run["wall_s"] for run in runs[label])
                warm = statistics.median(run["warm_movie_s"] for run in runs[label])
                fixed_cpu = statistics.median(run["fixed_cpu_s"] for run in runs[label])
                heavy = ", ".join(runs[label][0]["heavy"]) or "-"
                totals[label][0] += fixed
                totals[label][1] += fixed_cpu
                print(
                    f"| {label} | {stage} | {wall:.2f} | {warm:.2f} | {fixed:.2f} "
                    f"| {fixed_cpu:.2f} | {heavy} |",
                    flush=True,
                )
        for label, (total, total_cpu) in totals.items():
            print(f"| {label} | all five | | | {total:.2f} | {total_cpu:.2f} | |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--compare", type=Path, default=None, help="another checkout's src dir to time as well"
    )
    arguments = parser.parse_args()
    main(arguments.size, arguments.frames, arguments.repeats, arguments.compare)
