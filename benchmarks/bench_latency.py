"""Latency from a movie landing to its results in ISPyB and the report, under `emproc watch`.

    .venv/bin/python benchmarks/bench_latency.py light      [--movies 8]  [--every 60]
    .venv/bin/python benchmarks/bench_latency.py overload   [--movies 30] [--every 3]
    .venv/bin/python benchmarks/bench_latency.py warm       # per-movie work in one warm process
    .venv/bin/python benchmarks/bench_latency.py all --json latency.json   # the three, ~15 min
    options: [--size 1024] [--frames 24] [--stable-seconds 2] [--json out.json] [--keep DIR]
             [--no-live-worker] (watch as before the live worker, for comparison)

A simulated EPU session (bench_throughput.simulate_session: K3-like TIFF, no gain) is
written to a staging directory first (not timed). `emproc watch` then watches an empty
session directory into which the movies are delivered at a steady rate, each written
atomically as a transfer tool does (EPU XML first, then the movie under a hidden name,
renamed into place): a movie is *complete* at its rename. A poller (every 0.25 s) reads the
embedded ISPyB database (`ispyb.sqlite`) for the movie's Movie, MotionCorrection, CTF and
ParticlePicker rows (the time of the first poll that sees them: Movie.createdTimeStamp is
the acquisition time since the PATo change, not the insert time), the full report's mtime and
the live page's rows (`report/live_movies.json`, written by the live worker after its
ingest). A movie's latency is from its rename to the earlier of: the first poll that sees
both its rows and its live-page row, or the first full report written after its rows were
seen (the report rule runs after the ingest, in the same workflow run).

`overload` also runs a batch `emproc run` over the same movies (all present, fresh output
directory) and reports watch throughput (movies / (last done - first complete)) against the
batch's (movies / wall). `warm` runs the five per-movie steps in one process
(bench_throughput.process_movie) and reports the per-movie time of the warm movies, the
yardstick of the light-rate target. "other processes" is the share of the 2 cores that
other work took during the phase (/proc/stat), as in bench_throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).parent))

from bench_throughput import (  # noqa: E402
    machine_busy_s,
    own_cpu_s,
    pipeline_config,
    process_movie,
    simulate_session,
)

COMPLETE_SQL = """
SELECT m.movieFullPath FROM Movie m
JOIN MotionCorrection mc ON mc.movieId = m.movieId
JOIN CTF c ON c.motionCorrectionId = mc.motionCorrectionId
JOIN ParticlePicker p ON p.firstMotionCorrectionId = mc.motionCorrectionId
"""


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class ResultPoller:
    """Records when each movie's rows appear in ISPyB and when the report is rewritten."""

    def __init__(self, output_dir: Path, period_s: float = 0.25) -> None:
        self.database = output_dir / "ispyb.sqlite"
        # the full report (each workflow run) and the live page (the live worker, per movie)
        self.pages = [output_dir / "report" / "index.html", output_dir / "report" / "live.html"]
        self.period_s = period_s
        self.in_ispyb: dict[str, float] = {}
        self.reports: list[float] = []  # wall times at which a new report or page was seen
        self._mtimes: dict[Path, float] = {}
        self.live_data = output_dir / "report" / "live_movies.json"
        self.in_live_page: dict[str, float] = {}  # movie id -> first poll that saw its row
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        now = time.time()
        for page in self.pages:
            try:
                mtime = page.stat().st_mtime
            except FileNotFoundError:
                continue
            if mtime > self._mtimes.get(page, 0.0):
                self._mtimes[page] = mtime
                self.reports.append(mtime)
        self.reports.sort()
        try:
            live_rows = json.loads(self.live_data.read_text())["movies"]
        except (OSError, ValueError, KeyError):
            live_rows = []
        for row in live_rows:
            self.in_live_page.setdefault(str(row.get("movie_name")), now)
        if not self.database.is_file():
            return
        try:
            connection = sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=1)
            try:
                rows = connection.execute(COMPLETE_SQL).fetchall()
            finally:
                connection.close()
        except sqlite3.Error:
            return  # not created yet, or locked by the ingest: next poll
        for (path,) in rows:
            # first seen at this poll (every 0.25 s): late by up to a period, more when the
            # poller is starved of CPU on a loaded machine
            self.in_ispyb.setdefault(str(Path(path).resolve()), now)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._poll()
            self._stop.wait(self.period_s)
        self._poll()

    def done_at(self, movie: str, movie_name: str | None = None) -> float | None:
        """When the movie was in ISPyB and a report (or live page) written after its rows
        were inserted existed. Both writers (the workflow's report rule, the live worker's
        page) write after their ingest, so a page written after the rows were first seen
        shows the movie; a poll can see the rows up to a period after the insert, so a page
        written in that period is missed and the next one counts (pessimistic)."""
        inserted = self.in_ispyb.get(movie)
        if inserted is None:
            return None
        later = [mtime for mtime in self.reports if mtime >= inserted]
        full_report = later[0] if later else None
        # the live page (live worker): the first poll that saw both its row and the rows
        live = self.in_live_page.get(movie_name) if movie_name else None
        live = None if live is None else max(live, inserted)
        candidates = [t for t in (full_report, live) if t is not None]
        return min(candidates) if candidates else None


def stage(root: Path, movies: int, size: int, frames: int) -> tuple[Path, list[Path], dict]:
    """Simulate the session in `root/staging`; its movies in order and the config."""
    staging = root / "staging"
    session = simulate_session(staging, movies, size, frames, particles=150)
    config = pipeline_config(staging, size, frames)
    return staging, [Path(path) for path, _ in session], config


def deliver(staging: Path, session: Path, movie: Path) -> float:
    """Copy the movie's EPU XML and then the movie into `session` atomically; return when."""
    relative = movie.relative_to(staging)
    target = session / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    xml = movie.with_name(movie.name.replace("_fractions.tiff", ".xml"))
    for source in ([xml] if xml.is_file() else []) + [movie]:
        hidden = target.parent / f".{source.name}.part"
        shutil.copyfile(source, hidden)
        os.replace(hidden, target.parent / source.name)
    return time.time()


def write_config(config: dict, session: Path, output_dir: Path, path: Path) -> Path:
    config = json.loads(json.dumps(config))
    config["session"]["session_dir"] = str(session)
    config["outputs"]["dir"] = str(output_dir)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_watch(
    root: Path,
    staging: Path,
    movies: list[Path],
    config: dict,
    every_s: float,
    stable_seconds: float,
    live_worker: bool = True,
) -> dict[str, Any]:
    session, output = root / "session", root / "watch-out"
    session.mkdir()
    config_path = write_config(config, session, output, root / "watch.yaml")
    log = (root / "watch.log").open("w")
    command = [
        sys.executable, "-m", "emproc.cli", "watch", str(session),
        "--configfile", str(config_path), "--cores", "2", "--interval", "5",
        "--max-interval", "30", "--stable-seconds", str(stable_seconds),
        "--idle-timeout", "3600",
    ]  # fmt: skip
    if not live_worker:
        command.append("--no-live-worker")
    poller = ResultPoller(output)
    busy, own, start = machine_busy_s(), own_cpu_s(), time.time()
    watcher = subprocess.Popen(
        command,
        cwd=root,
        stdout=log,
        stderr=subprocess.STDOUT,
        # a shell's background job ignores SIGINT, and so would the watcher: restore it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    poller.start()
    completed: dict[str, float] = {}
    names: dict[str, str] = {}  # resolved path -> movie id (the live page's movie_name)
    try:
        while not (output / ".emproc-watch" / "lock").exists():  # the watcher is up
            if watcher.poll() is not None:
                raise SystemExit(f"emproc watch stopped; see {root / 'watch.log'}")
            time.sleep(0.2)
        time.sleep(2)  # its first (empty) scan
        first = time.time()
        for index, movie in enumerate(movies):
            time.sleep(max(first + index * every_s - time.time(), 0))
            key = str((session / movie.relative_to(staging)).resolve())
            names[key] = str(movie.relative_to(staging).with_suffix(""))
            completed[key] = deliver(staging, session, movie)
        deadline = time.time() + 600 + 60 * len(movies)
        while any(poller.done_at(movie, names[movie]) is None for movie in completed):
            if time.time() > deadline or watcher.poll() is not None:
                raise SystemExit(f"not all movies reached ISPyB; see {root / 'watch.log'}")
            time.sleep(1)
            if int(time.time()) % 30 == 0:
                print(
                    f"{len(poller.in_ispyb)}/{len(completed)} in ISPyB, "
                    f"{len(poller.reports)} report(s)",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        poller.stop()
        if watcher.poll() is None:
            watcher.send_signal(signal.SIGINT)
            watcher.wait(timeout=300)
        log.close()
    window = time.time() - start
    others = (machine_busy_s() - busy - (own_cpu_s() - own)) / window
    latencies = {m: poller.done_at(m, names[m]) - at for m, at in completed.items()}
    done = [poller.done_at(movie, names[movie]) for movie in completed]
    span = max(done) - min(completed.values())
    log_lines = (root / "watch.log").read_text().splitlines()
    hand_overs = [
        int(line.split()[2])
        for line in log_lines
        if line.startswith("emproc watch:") and "new movie(s)" in line
    ]
    live_seconds = [
        float(line.rsplit(" done in ", 1)[1].split()[0])
        for line in log_lines
        if line.startswith("emproc watch: live: ") and " done in " in line
    ]
    return {
        "movies": len(movies),
        "every_s": every_s,
        "stable_seconds": stable_seconds,
        "latency_s": list(latencies.values()),
        "median_s": statistics.median(latencies.values()),
        "p95_s": percentile(list(latencies.values()), 0.95),
        "max_s": max(latencies.values()),
        "movies_per_hour": len(movies) * 3600 / span,
        "hand_overs": hand_overs,
        "live_worker": live_worker,
        "live_worker_movies": len(live_seconds),
        "live_worker_median_s": statistics.median(live_seconds) if live_seconds else None,
        "live_worker_step_median_s": live_step_medians(log_lines),
        "other_processes_cores": others,
    }


def live_step_medians(log_lines: list[str]) -> dict[str, float]:
    """Median seconds of each live-worker step ('done in T s (import a, motion b, ...)')."""
    steps: dict[str, list[float]] = {}
    for line in log_lines:
        if not line.startswith("emproc watch: live: ") or " s (" not in line:
            continue
        for item in line.rsplit(" s (", 1)[1].rstrip(")").split(", "):
            if " " in item:
                name, value = item.rsplit(" ", 1)
                steps.setdefault(name, []).append(float(value))
    return {name: statistics.median(values) for name, values in steps.items()}


def run_batch(root: Path, staging: Path, config: dict) -> dict[str, Any]:
    output = root / "batch-out"
    config_path = write_config(config, staging, output, root / "batch.yaml")
    command = [
        sys.executable, "-m", "emproc.cli", "run", "--configfile", str(config_path),
        "--cores", "2",
    ]  # fmt: skip
    busy, own, start = machine_busy_s(), own_cpu_s(), time.perf_counter()
    with (root / "batch.log").open("w") as log:
        subprocess.run(command, cwd=root, stdout=log, stderr=subprocess.STDOUT, check=True)
    wall = time.perf_counter() - start
    others = (machine_busy_s() - busy - (own_cpu_s() - own)) / wall
    movies = sqlite3.connect(output / "ispyb.sqlite").execute(COMPLETE_SQL).fetchall()
    return {
        "movies": len(movies),
        "wall_s": wall,
        "movies_per_hour": len(movies) * 3600 / wall,
        "other_processes_cores": others,
    }


def run_warm(root: Path, staging: Path, movies: list[Path], config: dict) -> dict[str, Any]:
    """The five steps per movie in this one process; the first movie pays the imports."""
    seconds = []
    for movie in movies:
        start = time.perf_counter()
        name = str(movie.relative_to(staging).with_suffix(""))
        process_movie(str(movie), name, config, root / "warm-out", threads=1)
        seconds.append(time.perf_counter() - start)
    warm = seconds[1:] or seconds
    return {"movie_s": seconds, "warm_median_s": statistics.median(warm)}


def run_phase(
    phase: str, root: Path, movies: int, every: float, args: argparse.Namespace
) -> dict[str, Any]:
    staging, movie_paths, config = stage(root, movies, args.size, args.frames)
    result: dict[str, Any] = {"phase": phase, "size": args.size, "frames": args.frames}
    result["load_average_before"] = os.getloadavg()
    if phase == "warm":
        result |= run_warm(root, staging, movie_paths, config)
    else:
        live = not args.no_live_worker
        result |= run_watch(root, staging, movie_paths, config, every, args.stable_seconds, live)
    if phase == "overload":
        result["batch"] = run_batch(root, staging, config)
        result["throughput_vs_batch"] = (
            result["movies_per_hour"] / result["batch"]["movies_per_hour"]
        )
    result["load_average_after"] = os.getloadavg()
    return result


DEFAULTS = {"light": (8, 60.0), "overload": (30, 3.0), "warm": (4, 0.0)}
# `all`: the three phases in one go, sized to finish in ~15 min on the 2-core VM
ALL_PHASES = (("warm", 4, 0.0), ("light", 6, 60.0), ("overload", 18, 3.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phase", choices=["light", "overload", "warm", "all"])
    parser.add_argument("--movies", type=int, default=None)
    parser.add_argument("--every", type=float, default=None, help="seconds between movies")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--stable-seconds", type=float, default=2.0)
    parser.add_argument(
        "--no-live-worker", action="store_true", help="watch without the live worker"
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--keep", type=Path, default=None, help="work here and keep it")
    args = parser.parse_args()
    if args.phase == "all":
        phases = ALL_PHASES
    else:
        movies, every = DEFAULTS[args.phase]
        movies = args.movies or movies
        every = args.every if args.every is not None else every
        phases = ((args.phase, movies, every),)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    results = []
    with tempfile.TemporaryDirectory() as directory:
        for phase, movies, every in phases:
            root = (args.keep or Path(directory)) / phase
            root.mkdir(parents=True, exist_ok=True)
            result = run_phase(phase, root, movies, every, args)
            print(json.dumps(result, indent=1), flush=True)
            results.append(result)
            if args.json:
                args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
