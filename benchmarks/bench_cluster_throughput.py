"""Movies per hour on a cluster profile as execution slots grow, and what a chunk job costs.

Run by hand as root (starts SLURM and Grid Engine on localhost with tools/cluster/*.sh); results
go in docs/benchmarks.md under "Cluster throughput: movies/h against nodes".

    nice -n 10 .venv/bin/python benchmarks/bench_cluster_throughput.py measure \\
        --runs uge:1:4:32 uge:2:4:32 uge:4:4:32 uge:2:1:16 uge:2:16:16 \\
               slurm:1:4:16 slurm:2:4:16 slurm:4:4:16 --json cluster.json
    .venv/bin/python benchmarks/bench_cluster_throughput.py model cluster.json

A run SCHEDULER:SLOTS:CHUNK:MOVIES is one `emproc run --profile profiles/<scheduler>` of a
simulated session of MOVIES movies (1024 x 1024 x 24 frames, simulated once per size, not timed)
with `processing.movies_per_job: CHUNK`, on daemons restarted for it with SLOTS execution slots:
SLURM gets SLOTS nodes of 1 CPU (one slurmd per node name on this host, `slurmd -N`), Grid
Engine one queue with SLOTS slots (one execd per host is all Grid Engine allows). The
per-session steps (aggregates, ISPyB ingest, report) run too, on the submit host as the
profiles say; the session is small enough that no 2D classification batch fills.

Per scheduler job (from SLURM's job-completion log, slurmctld's record of what sacct shows,
or Grid Engine's `qacct -j`): submit, start and end time (1 s resolution) and, on Grid Engine,
the job's CPU seconds (all its processes). Per run: the chunk span (first chunk submission to
last chunk end), movies/h = movies x 3600 / span, the slot overhead per job = (slots x span -
sum of job run times) / jobs, the workflow wall time, and the machine's busy cores during the
run (/proc/stat) next to our own jobs' CPU, so others' load is on record.

`model` fits CPU-s per chunk job = fixed + per_movie x chunk (least squares over Grid Engine
jobs), takes the dispatch gap and the submission rate from the runs, predicts each run's span,
and projects 16-core nodes (see `project`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "tools" / "cluster"
MOVIE_SIZE_PX = 1024
FRAMES = 24
PARTICLES = 100
# Per movie at the real size: CPU-s of the five stages (one thread) and MB read.
MOVIE_TYPES = (
    # measured: docs/benchmarks.md, "Throughput: movies per hour" (LZW TIFF as EPU writes)
    ("K3-like 4096 x 4096 x 40 TIFF", 38.8, 180.0),
    # estimate: 1.4x the pixels, the full-frame FFT 2x as long (same section)
    ("K3 5760 x 4092 x 40 TIFF", 60.0, 250.0),
    # estimate: summed into 40 fractions of 4096 x 4096 (emproc.io.movie), EER decoding
    # in place of LZW decoding, not measured here
    ("Falcon 4 EER, 40 fractions", 40.0, 400.0),
)
RUN_ARGS = {
    "slurm": ["--cores", "2", "--slurm-status-command", "squeue", "--slurm-no-account",
              "--slurm-init-seconds-before-status-checks", "2", "--latency-wait", "10"],
    "uge": ["--cores", "2", "--seconds-between-status-checks", "2", "--latency-wait", "10"],
}  # fmt: skip
CHUNK_JOB = {
    "slurm": r"submitted with SLURM jobid (\d+) \(log: \S*group_per_chunk",
    "uge": r"Submitted group job \S+ with external jobid '(\d+)'",
}
SGE_ENV = {"SGE_ROOT": "/var/lib/gridengine", "SGE_CELL": "default"}
# The chunk stages' memory requests, small enough that SLOTS 1-CPU SLURM nodes sharing this
# host's RAM each hold a job (the 8 GB motion default would fit no node at 4 slots).
RUN_RESOURCES = {
    rule: {"mem_mb": 1500}
    for rule in ("import_movies", "motion_correct", "ctf_estimate", "pick_particles",
                 "extract_particles")
}  # fmt: skip


# ---------------------------------------------------------------- measurement


def busy_jiffies() -> tuple[int, int]:
    """(busy, total) CPU jiffies of the whole machine since boot."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def simulate(work: Path, movies: int) -> Path:
    """A simulated session of `movies` movies and its config (cached in work)."""
    root = work / f"session-{movies}"
    config = root / "config.yaml"
    if not config.exists():
        subprocess.run(
            [str(Path(sys.executable).parent / "emproc"), "simulate", "spa", str(root / "session"),
             "--movies", str(movies), "--size", str(MOVIE_SIZE_PX), "--frames", str(FRAMES),
             "--particles", str(PARTICLES), "--write-config", str(root / "partial.yaml")],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        (root / "partial.yaml").rename(config)
    return config


def run_config(session_config: Path, run_dir: Path, chunk: int) -> Path:
    settings = yaml.safe_load(session_config.read_text())
    settings["outputs"]["dir"] = str(run_dir / "processed")
    settings["processing"]["movies_per_job"] = chunk
    settings.setdefault("resources", {}).update(RUN_RESOURCES)
    # no 2D classification job: its 2-core request would never start on a 1-slot queue
    settings["class2d"].update(batch_size=1_000_000, classify_partial_batch=False)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "config.yaml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


def daemons(scheduler: str, action: str, state: Path, slots: int) -> dict[str, str]:
    """Start or stop the scheduler's daemons with `slots` slots; return the client env."""
    env = dict(os.environ)
    if scheduler == "slurm":
        env.update(SLURM_CONF=str(state / "slurm.conf"), EMPROC_SLURM_NODES=str(slots),
                   EMPROC_SLURM_CPUS="1")  # fmt: skip
        script = "slurm.sh"
    else:
        env.update(SGE_ENV, EMPROC_SGE_SLOTS=str(slots))
        script = "gridengine.sh"
    subprocess.run(["bash", str(TOOLS / script), action, str(state)], check=True, env=env,
                   capture_output=True, text=True)  # fmt: skip
    return env


def slurm_jobs(state: Path, ids: set[str]) -> dict[str, dict[str, float]]:
    """submit/start/end (epoch s) of the given jobs from slurmctld's job-completion log."""
    jobs = {}
    for line in (state / "jobcomp.log").read_text().splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if fields.get("JobId") in ids:
            jobs[fields["JobId"]] = {
                key: datetime.fromisoformat(fields[name]).timestamp()
                for key, name in (("submit", "SubmitTime"), ("start", "StartTime"),
                                  ("end", "EndTime"))
            } | {"state": fields.get("JobState")}  # fmt: skip
    return jobs


def qacct(job_id: str, env: dict[str, str]) -> dict[str, Any]:
    for _ in range(20):  # accounting is written a moment after the end
        result = subprocess.run(["qacct", "-j", job_id], capture_output=True, text=True, env=env)
        if result.returncode == 0 and "end_time" in result.stdout:
            break
        time.sleep(1)
    fields = dict(
        line.split(None, 1) for line in result.stdout.splitlines() if len(line.split(None, 1)) == 2
    )

    def epoch(name: str) -> float:
        return datetime.strptime(fields[name].strip(), "%a %b %d %H:%M:%S %Y").timestamp()

    return {
        "submit": epoch("qsub_time"), "start": epoch("start_time"), "end": epoch("end_time"),
        "cpu_s": float(fields["cpu"].strip().rstrip("s")), "state": fields["exit_status"].strip(),
        "request": fields.get("category", "").strip(),
    }  # fmt: skip


def measure_run(
    scheduler: str, slots: int, chunk: int, movies: int, work: Path, label: str
) -> dict[str, Any]:
    session_config = simulate(work, movies)
    run_dir = work / label
    config = run_config(session_config, run_dir, chunk)
    state = work / f"{label}-daemons"
    state.mkdir(parents=True, exist_ok=True)
    env = daemons(scheduler, "start", state, slots)
    try:
        load_before = os.getloadavg()
        busy0, total0 = busy_jiffies()
        children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.time()
        command = [str(Path(sys.executable).parent / "emproc"), "run", "--configfile", str(config),
                   "--profile", str(ROOT / "profiles" / scheduler), "--", *RUN_ARGS[scheduler]]  # fmt: skip
        result = subprocess.run(
            command, cwd=run_dir, capture_output=True, text=True, env=env, timeout=1800
        )
        wall = time.time() - start
        busy1, total1 = busy_jiffies()
        children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        load_after = os.getloadavg()
        log = result.stdout + result.stderr
        (run_dir / "emproc-run.log").write_text(log)
        if result.returncode != 0:
            raise SystemExit(f"{label} failed (log: {run_dir / 'emproc-run.log'}):\n{log[-3000:]}")
        ids = re.findall(CHUNK_JOB[scheduler], log)
        if scheduler == "slurm":
            jobs = slurm_jobs(state, set(ids))
        else:
            jobs = {job_id: qacct(job_id, env) for job_id in ids}
    finally:
        daemons(scheduler, "stop", state, slots)
    cores = os.cpu_count() or 1
    head_cpu = (children1.ru_utime + children1.ru_stime) - (children0.ru_utime + children0.ru_stime)
    machine_busy = (busy1 - busy0) / (total1 - total0) * cores  # cores busy on average
    return summarise(
        {
            "label": label, "scheduler": scheduler, "slots": slots, "chunk": chunk,
            "movies": movies, "wall_s": wall, "jobs": [jobs[i] for i in ids],
            "head_cpu_s": head_cpu, "machine_busy_cores": machine_busy,
            "load_before": load_before[0], "load_after": load_after[0],
            "date": datetime.now().isoformat(timespec="seconds"),
        }
    )  # fmt: skip


def summarise(record: dict[str, Any]) -> dict[str, Any]:
    jobs = record["jobs"]
    first_submit = min(job["submit"] for job in jobs)
    last_end = max(job["end"] for job in jobs)
    span = max(last_end - first_submit, 1.0)
    runs = [job["end"] - job["start"] for job in jobs]
    waits = sorted(job["start"] - job["submit"] for job in jobs)
    submits = sorted(job["submit"] for job in jobs)
    record.update(
        chunk_jobs=len(jobs),
        span_s=span,
        movies_per_h=record["movies"] * 3600 / span,
        job_run_s=statistics.mean(runs),
        # the jobs that found a free slot: submit -> start is the scheduler's dispatch time
        dispatch_s=statistics.mean(waits[: min(record["slots"], len(waits))]),
        slot_overhead_per_job_s=(record["slots"] * span - sum(runs)) / len(jobs),
        submission_span_s=submits[-1] - submits[0],
    )
    # a job that waited for a slot: from the end that freed it to its start (1 s resolution)
    by_start = sorted(jobs, key=lambda job: job["start"])
    turnarounds = [
        job["start"] - max(other["end"] for other in jobs if other["end"] <= job["start"])
        for job in by_start[record["slots"] :]
        if any(other["end"] <= job["start"] for other in jobs)
    ]
    record["queued"] = bool(turnarounds)
    record["turnaround_s"] = statistics.mean(turnarounds) if turnarounds else 0.0
    cpus = [job.get("cpu_s") for job in jobs]
    if all(cpu is not None for cpu in cpus):
        record["job_cpu_s"] = statistics.mean(cpus)
        # our own CPU: chunk jobs plus the submit host (Snakemake, its local rules, emproc)
        own = (sum(cpus) + record["head_cpu_s"]) / record["wall_s"]
        record["others_cores"] = max(record["machine_busy_cores"] - own, 0.0)
    return record


def print_record(record: dict[str, Any]) -> None:
    cpu = f"{record['job_cpu_s']:.1f}" if "job_cpu_s" in record else "-"
    print(
        f"{record['label']}: {record['chunk_jobs']} chunk jobs, span {record['span_s']:.0f} s, "
        f"{record['movies_per_h']:.0f} movies/h, job run {record['job_run_s']:.1f} s, "
        f"job CPU {cpu} s, dispatch {record['dispatch_s']:.1f} s, slot overhead/job "
        f"{record['slot_overhead_per_job_s']:.1f} s, turnaround {record['turnaround_s']:.1f} s, "
        f"workflow wall {record['wall_s']:.0f} s, "
        f"head CPU {record['head_cpu_s']:.0f} s, machine busy {record['machine_busy_cores']:.2f}"
        f" cores, load {record['load_before']:.1f} -> {record['load_after']:.1f}",
        flush=True,
    )


def command_measure(args: argparse.Namespace) -> None:
    work = Path(args.work or tempfile.mkdtemp(prefix="emproc-cluster-bench-"))
    records = json.loads(Path(args.json).read_text()) if Path(args.json).exists() else []
    for spec in args.runs:
        scheduler, slots, chunk, movies = spec.split(":")
        label = f"{scheduler}-s{slots}-c{chunk}-m{movies}-{len(records)}"
        record = measure_run(scheduler, int(slots), int(chunk), int(movies), work, label)
        records.append(record)
        print_record(record)
        Path(args.json).write_text(json.dumps(records, indent=1))


# ---------------------------------------------------------------- model


def fit_job_cpu(records: list[dict[str, Any]]) -> tuple[float, float]:
    """Least squares CPU-s per chunk job = fixed + per_movie x movies in the chunk."""
    points = []
    for record in records:
        for index, job in enumerate(record["jobs"]):
            if "cpu_s" in job:
                movies_in_job = min(record["chunk"], record["movies"] - index * record["chunk"])
                points.append((movies_in_job, job["cpu_s"]))
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum(
        (x - mean_x) ** 2 for x, _ in points
    )
    return mean_y - slope * mean_x, slope


def predicted_span_s(record: dict[str, Any], job_wall_s: float) -> float:
    """Chunk span of equal jobs on the run's slots: dispatch, then rounds of (job + turnaround)."""
    rounds = math.ceil(record["chunk_jobs"] / record["slots"])
    return record["dispatch_s"] + rounds * job_wall_s + (rounds - 1) * record["turnaround_s"]


def node_slots(cores: int, node_memory_gib: float, job_memory_gib: float) -> int:
    """Chunk jobs one node runs at once: one per core while their memory requests fit."""
    return min(cores, math.floor(node_memory_gib / job_memory_gib))


def movies_per_hour(
    nodes: int, slots_per_node: int, chunk: int, movie_cpu_s: float, fixed_cpu_s: float,
    turnaround_s: float, jobs_in_flight: int, submit_rate_per_s: float,
    movie_mb: float, storage_mb_per_s: float,
) -> tuple[float, str]:  # fmt: skip
    """Steady-state movies/h and what limits it. Each slot (a dedicated core) runs chunk job
    after chunk job, each costing its fixed start-up, its movies and the scheduler's
    turnaround; the jobs in flight cap the slots in use; the submit host must submit a job per
    chunk; the shared file system must deliver every movie once."""
    slots = min(nodes * slots_per_node, jobs_in_flight)
    limits = {
        "jobs in flight" if slots < nodes * slots_per_node else "cores": slots
        * chunk * 3600 / (fixed_cpu_s + chunk * movie_cpu_s + turnaround_s),
        "submission": submit_rate_per_s * chunk * 3600,
        "storage": storage_mb_per_s * 3600 / movie_mb,
    }  # fmt: skip
    limit = min(limits, key=limits.get)
    return limits[limit], limit


def command_model(args: argparse.Namespace) -> None:
    records = [summarise(record) for record in json.loads(Path(args.json).read_text())]
    fixed, per_movie = fit_job_cpu(records)
    print(f"CPU-s per chunk job = {fixed:.1f} + {per_movie:.2f} x movies (Grid Engine jobs)")
    # held out: fit without one chunk size, predict that chunk size's jobs
    for held in sorted({r["chunk"] for r in records if "job_cpu_s" in r}):
        rest = [r for r in records if r["chunk"] != held]
        if len({r["chunk"] for r in rest if "job_cpu_s" in r}) < 2:
            continue
        f, b = fit_job_cpu(rest)
        measured = [r["job_cpu_s"] for r in records if r["chunk"] == held and "job_cpu_s" in r]
        print(f"  fit without chunk {held}: {f:.1f} + {b:.2f} x k predicts {f + b * held:.1f} "
              f"CPU-s per job; measured {', '.join(f'{m:.1f}' for m in measured)}")  # fmt: skip
    for record in records:
        print_record(record)
    turnaround = {
        scheduler: statistics.median(
            r["turnaround_s"] for r in records if r["scheduler"] == scheduler and r["queued"]
        )
        for scheduler in {r["scheduler"] for r in records if r["queued"]}
    }
    rates = [r["chunk_jobs"] / r["submission_span_s"] for r in records if r["chunk_jobs"] >= 8]
    submit_rate = min(rates) if rates else args.submit_rate
    print(f"turnaround (job end -> next start on the freed slot), median: {turnaround}")
    print(f"submission rate, slowest run with >= 8 jobs: {submit_rate:.1f} jobs/s")
    print("\nconsistency of the scheduler terms: span = dispatch + rounds x job wall +")
    print("(rounds - 1) x turnaround, with each run's own mean job wall (its CPU stretch, job")
    print("wall / CPU, is set by the load of others and is not predicted here):")
    for record in records:
        job_cpu = fixed + per_movie * record["chunk"]
        stretch = record["job_run_s"] / job_cpu
        predicted = predicted_span_s(record, record["job_run_s"])
        print(
            f"  {record['label']}: stretch {stretch:.1f}; span measured {record['span_s']:.0f} s,"
            f" predicted {predicted:.0f} s; movies/h measured {record['movies_per_h']:.0f}, "
            f"predicted {record['movies'] * 3600 / predicted:.0f}; per dedicated core "
            f"{record['chunk'] * 3600 / (job_cpu + turnaround.get(record['scheduler'], 0)):.0f}"
        )
    gap = max(turnaround.values(), default=2.0)
    print(f"\nprojection, 16-core nodes, {args.node_memory_gib:g} GiB, turnaround {gap:.1f} s,"
          f" storage {args.storage_mb_per_s:g} MB/s; profile defaults (jobs 100, motion 8 GB)"
          " | sized (jobs >= slots, 3 GB):")  # fmt: skip
    for name, movie_cpu_s, movie_mb in MOVIE_TYPES:
        for nodes in (1, 4, 16):
            for chunk in (1, 5, 20):
                cells = []
                for jobs, memory in ((100, 8.0), (10**6, 3.0)):
                    slots = node_slots(16, args.node_memory_gib, memory)
                    rate, limit = movies_per_hour(
                        nodes, slots, chunk, movie_cpu_s, fixed, gap, jobs, submit_rate,
                        movie_mb, args.storage_mb_per_s,
                    )  # fmt: skip
                    cells.append(f"{rate:,.0f} ({limit})")
                print(f"  {name}: {nodes:2d} node(s), chunk {chunk:2d}: " + " | ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    commands = parser.add_subparsers(required=True)
    measure = commands.add_parser("measure")
    measure.add_argument("--runs", nargs="+", required=True, help="SCHEDULER:SLOTS:CHUNK:MOVIES")
    measure.add_argument("--json", default="cluster_throughput.json")
    measure.add_argument("--work", help="scratch directory (kept; default: a new temp dir)")
    measure.set_defaults(handler=command_measure)
    model = commands.add_parser("model")
    model.add_argument("json")
    model.add_argument("--submit-rate", type=float, default=5.0, help="jobs/s, if unmeasured")
    model.add_argument("--node-memory-gib", type=float, default=64.0)
    model.add_argument("--storage-mb-per-s", type=float, default=2000.0, help="shared FS read")
    model.set_defaults(handler=command_model)
    args = parser.parse_args()
    args.handler(args)


if __name__ == "__main__":
    main()
