"""Movies per hour through the per-movie SPA pipeline (run by hand; results in docs/benchmarks.md).

    .venv/bin/python benchmarks/bench_throughput.py [--movies 3] [--size 4096] [--frames 40]
        [--particles 400] [--node-cores 16] [--node-memory-gib 64 128] [--json records.json]

A simulated EPU session (`simulate_spa_session`: K3-like counting TIFF, LZW-compressed uint8,
already gain-corrected, 1 A/px, 1 e-/A^2/frame) is written to a temporary directory first
(not timed). Each movie then goes through import -> motion correction + dose weighting ->
CTF -> picking -> extraction with the steps a chunk job runs (emproc.movie_stages) and the
defaults of config/config.yaml, in two modes:

(a) one worker process with threads=2 processes the movies in series;
(b) two worker processes with threads=1 each; each worker processes every movie (the second
    starting one movie later), so both stay busy for the whole run (2 x N movie jobs).

Workers are spawned processes that set the thread variables Snakemake sets for a job
(OMP_NUM_THREADS etc.). Per stage: wall and process CPU seconds (all threads of the worker)
and the stage's peak RSS (getrusage; the high-water mark is reset before each stage through
/proc/self/clear_refs where the kernel allows it, otherwise the value is the worker's peak
so far). Movies/hour per mode = movie jobs x 3600 / (last worker end - first worker start).
"other processes" is the machine's busy CPU time (/proc/stat) minus the benchmark's own,
per second of the mode's run: the share of the cores that other jobs took.
The node projection scales the CPU seconds per movie of mode (b): one single-threaded worker
per core, each needing the largest per-stage peak RSS measured.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

STAGES = ("import", "motion", "ctf", "pick", "extract")
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "GOTO_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
COLLECTION_RATES = (  # movies per hour: upper ends of the usual ranges, two current ones
    ("Falcon II", 100),
    ("K2", 75),
    ("K3 / Falcon 4i", 300),
    ("K3 / Falcon 4i, fast (AFIS, several per hole)", 600),
)


def simulate_session(
    directory: Path, movies: int, size: int, frames: int, particles: int
) -> list[tuple[str, str]]:
    """Write the session; return (movie path, {movie} name) pairs in acquisition order."""
    from emproc.simulate.spa import SpaMovieParams, load_spa_truth, simulate_spa_session

    params = SpaMovieParams(
        shape_px=(size, size), number_of_frames=frames, number_of_particles=particles
    )
    truth_path = simulate_spa_session(
        directory, number_of_movies=movies, params=params, with_gain=False, workers=2
    )
    truth = load_spa_truth(truth_path)
    return [(str(movie.movie_path), movie.movie_name) for movie in truth.movies]


def prepare_session(
    directory: Path, movies: int, size: int, frames: int, particles: int
) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """Simulate the session and load the config for it (run in a child process)."""
    session = simulate_session(directory, movies, size, frames, particles)
    return session, pipeline_config(directory, size, frames)


def pipeline_config(session_dir: Path, size: int, frames: int) -> dict[str, Any]:
    """config/config.yaml, validated as the rules validate it, pointed at the session."""
    from emproc.config import WORKFLOW_ROOT, load_config, validate_config
    from emproc.simulate.spa import load_spa_truth

    config = validate_config(load_config(WORKFLOW_ROOT / "config" / "config.yaml"))
    config["session"]["session_dir"] = str(session_dir)
    params = load_spa_truth(session_dir).params
    microscope = config["microscope"]
    simulated = {
        "voltage_kv": params.voltage_kv,
        "pixel_size_angstrom": params.pixel_size_angstrom,
        "dose_per_frame_e_per_angstrom2": params.dose_per_frame_e_per_angstrom2,
        "gain_reference": "",
    }
    differing = {key: value for key, value in simulated.items() if microscope[key] != value}
    if differing:
        raise SystemExit(
            f"config/config.yaml microscope defaults differ from the session: {differing}"
        )
    if params.shape_px != (size, size) or params.number_of_frames != frames:
        raise SystemExit("the simulated session does not have the requested size")
    return config


def reset_peak_rss() -> bool:
    """Reset the process's RSS high-water mark (Linux >= 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def timed(stage: str, call: Callable[[], object]) -> dict[str, Any]:
    """Run one stage; its wall and CPU seconds and peak RSS (GiB)."""
    reset = reset_peak_rss()
    start = time.perf_counter()
    cpu_start = time.process_time()
    call()
    return {
        "stage": stage,
        "wall_s": time.perf_counter() - start,
        "cpu_s": time.process_time() - cpu_start,
        "peak_rss_gib": peak_rss_gib(),
        "peak_rss_reset": reset,
    }


def process_movie(
    movie_path: str, movie_name: str, config: dict[str, Any], output_dir: Path, threads: int
) -> list[dict[str, Any]]:
    """One movie through the five per-movie stages: the steps a chunk job runs
    (`emproc.movie_stages`, as scripts/movie_stage.py calls them)."""
    from emproc.chunks import STAGES, movie_paths
    from emproc.io.epu import epu_metadata_path
    from emproc.movie_stages import StageContext, stage_step

    epu_xml = epu_metadata_path(movie_path)
    context = StageContext(
        output_dir=output_dir,
        config=config,
        movie_files={movie_name: movie_path},
        epu_files={movie_name: str(epu_xml)} if epu_xml.is_file() else {},
        threads=threads,
    )
    records = []
    for stage in STAGES:
        outputs = movie_paths(output_dir, stage, movie_name)
        step = stage_step(stage, context)
        records.append(timed(stage, lambda step=step, outputs=outputs: step(movie_name, outputs)))
    summary = movie_paths(output_dir, "extract", movie_name)["summary"]
    particles = int(json.loads(summary.read_text())["number_of_particles"])
    return [{**record, "particles": particles} for record in records]


def set_thread_variables(threads: int) -> None:
    """In a fresh worker, before numpy is imported: what Snakemake sets for a job."""
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)


def run_worker(
    jobs: list[tuple[str, str]], config: dict[str, Any], output_dir: str, threads: int
) -> dict[str, Any]:
    """One worker process: its movies in series; start/end on the shared wall clock."""
    import emproc.ctf  # noqa: F401 - imports are not part of the measured run
    import emproc.extract.run  # noqa: F401
    import emproc.motion  # noqa: F401
    import emproc.picking.run  # noqa: F401

    start = time.time()
    movies = []
    for movie_path, movie_name in jobs:
        movie_start = time.time()
        stages = process_movie(movie_path, movie_name, config, Path(output_dir), threads)
        movies.append({"movie": movie_name, "start": movie_start, "stages": stages})
    return {"start": start, "end": time.time(), "pid": os.getpid(), "movies": movies}


def run_mode(
    movies: list[tuple[str, str]],
    config: dict[str, Any],
    directory: Path,
    workers: int,
    threads: int,
) -> dict[str, Any]:
    """`workers` spawned processes; worker k processes every movie, starting at movie k."""
    context = get_context("spawn")
    busy_start, own_start, wall_start = machine_busy_s(), own_cpu_s(), time.perf_counter()
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=set_thread_variables,
        initargs=(threads,),
    ) as pool:
        futures = [
            pool.submit(
                run_worker,
                movies[k:] + movies[:k],
                config,
                str(directory / f"outputs_{workers}x{threads}_worker{k}"),
                threads,
            )
            for k in range(workers)
        ]
        results = [future.result() for future in futures]
    # the pool has joined its workers: their CPU time is in RUSAGE_CHILDREN now
    window = time.perf_counter() - wall_start
    others = (machine_busy_s() - busy_start - (own_cpu_s() - own_start)) / window
    makespan = max(r["end"] for r in results) - min(r["start"] for r in results)
    jobs = sum(len(r["movies"]) for r in results)
    return {
        "workers": workers,
        "threads": threads,
        "jobs": jobs,
        "makespan_s": makespan,
        "movies_per_hour": jobs * 3600 / makespan,
        "records": [stage for r in results for movie in r["movies"] for stage in movie["stages"]],
        "pids": len({r["pid"] for r in results}),
        "other_cores": others,
    }


def stage_summary(records: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per stage: mean wall and CPU seconds, largest peak RSS."""
    summary = {}
    for stage in (*STAGES, "total"):
        rows = [r for r in records if stage in ("total", r["stage"])]
        movies = len(rows) // (len(STAGES) if stage == "total" else 1)
        summary[stage] = {
            "wall_s": sum(r["wall_s"] for r in rows) / movies,
            "cpu_s": sum(r["cpu_s"] for r in rows) / movies,
            "peak_rss_gib": max(r["peak_rss_gib"] for r in rows),
        }
    return summary


def machine_busy_s() -> float:
    """CPU seconds all cores have been busy since boot (/proc/stat; NaN where unavailable)."""
    try:
        with open("/proc/stat") as handle:
            fields = [int(value) for value in handle.readline().split()[1:9]]
    except (OSError, ValueError):
        return math.nan
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """CPU seconds of this process and its finished children (the workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def load_average() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def print_report(
    results: list[dict[str, Any]],
    arguments: argparse.Namespace,
    loads: tuple[str, str],
) -> None:
    cores = os.cpu_count() or 1
    print(f"\nload at start: {loads[0]}\nload at end:   {loads[1]}\n")
    print(f"worker processes per mode: {[r['pids'] for r in results]}")
    print(
        f"{arguments.size} x {arguments.size} x {arguments.frames} movies, "
        f"{arguments.movies} distinct, {cores} cores\n"
    )
    print(
        "| mode | movie jobs | makespan | movies/h | wall per movie | CPU per movie "
        "| peak RSS per worker | other processes |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for result in results:
        total = stage_summary(result["records"])["total"]
        peak = max(r["peak_rss_gib"] for r in result["records"])
        print(
            f"| {result['workers']} worker(s) x {result['threads']} thread(s) "
            f"| {result['jobs']} | {result['makespan_s']:.0f} s | {result['movies_per_hour']:.0f} "
            f"| {total['wall_s']:.1f} s | {total['cpu_s']:.1f} s | {peak:.2f} GiB "
            f"| {result['other_cores']:.1f} cores |"
        )
    print("\nPer stage (mean per movie; peak RSS = largest over movies):\n")
    header = " | ".join(f"{r['workers']}x{r['threads']} wall / CPU / RSS" for r in results)
    print(f"| stage | {header} |")
    print("|---|" + "---|" * len(results))
    summaries = [stage_summary(r["records"]) for r in results]
    for stage in (*STAGES, "total"):
        cells = " | ".join(
            f"{s[stage]['wall_s']:.1f} s / {s[stage]['cpu_s']:.1f} s / "
            f"{s[stage]['peak_rss_gib']:.2f} GiB"
            for s in summaries
        )
        print(f"| {stage} | {cells} |")
    particles = [r["particles"] for result in results for r in result["records"]]
    reset = all(r["peak_rss_reset"] for result in results for r in result["records"])
    print(f"\nparticles extracted per movie: {min(particles)}-{max(particles)}")
    print(f"per-stage peak RSS reset before each stage: {reset}")

    single = next((r for r in results if r["threads"] == 1), results[-1])
    summary = stage_summary(single["records"])
    cpu_per_movie = summary["total"]["cpu_s"]
    worker_gib = summary["total"]["peak_rss_gib"]
    print(
        f"\nProjection from the {single['workers']} x {single['threads']}-thread mode: "
        f"{cpu_per_movie:.1f} CPU-s per movie, {worker_gib:.2f} GiB peak RSS per worker; "
        "one single-threaded worker per core, CPU-bound (no I/O or memory-bandwidth limit):\n"
    )
    print("| node | movies/h | memory for the workers |")
    print("|---|---|---|")
    for node_cores in sorted({cores, *arguments.node_cores}):
        print(
            f"| {node_cores} cores | {node_cores * 3600 / cpu_per_movie:.0f} "
            f"| {node_cores * worker_gib:.0f} GiB |"
        )
    for memory in arguments.node_memory_gib:
        print(f"| {memory} GiB: workers that fit in 90 % | | {int(memory * 0.9 // worker_gib)} |")
    print("\n| detector | movies/h | cores to keep up |")
    print("|---|---|---|")
    for detector, rate in COLLECTION_RATES:
        print(f"| {detector} | {rate} | {math.ceil(rate * cpu_per_movie / 3600)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--movies", type=int, default=3)
    parser.add_argument("--size", type=int, default=4096, help="frame side, pixels")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--particles", type=int, default=400, help="per movie (at most)")
    parser.add_argument("--node-cores", type=int, nargs="+", default=[16])
    parser.add_argument("--node-memory-gib", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--json", default=None, help="also write all records to this file")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_throughput_") as temporary:
        directory = Path(temporary)
        session_dir = directory / "session"
        start = time.perf_counter()
        # in a child, so that the workers (children of this small process) do not inherit the
        # simulator's peak RSS: a fork + exec carries the parent's high-water mark into
        # getrusage's ru_maxrss, and /proc/self/clear_refs does not reset that part
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            movies, config = pool.submit(
                prepare_session,
                session_dir,
                arguments.movies,
                arguments.size,
                arguments.frames,
                arguments.particles,
            ).result()
        print(f"simulated {len(movies)} movies in {time.perf_counter() - start:.0f} s", flush=True)
        print(f"benchmark process peak RSS: {peak_rss_gib():.2f} GiB (the workers' floor)")
        loads = (load_average(), "")
        print(f"load at start: {loads[0]}", flush=True)
        results = []
        for workers, threads in ((1, 2), (2, 1)):
            result = run_mode(movies, config, directory, workers, threads)
            print(
                f"{workers} x {threads}: {result['jobs']} movie jobs in "
                f"{result['makespan_s']:.0f} s, {result['movies_per_hour']:.0f} movies/h "
                f"(load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
            results.append(result)
        loads = (loads[0], load_average())
    if arguments.json:
        Path(arguments.json).write_text(json.dumps(results, indent=1))
    print_report(results, arguments, loads)


if __name__ == "__main__":
    main()
