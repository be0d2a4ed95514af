"""Wall time and submissions of one simulated session under profiles local, slurm and uge.

Run by hand as root (starts SLURM and Grid Engine on localhost with tools/cluster/*.sh):
    .venv/bin/python benchmarks/bench_profiles.py --movies 3
Results go in docs/benchmarks.md under "Profiles / burst-out".
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "tools" / "cluster"
TEST_ARGS = {
    "local": ["--cores", "2"],
    "slurm": ["--cores", "2", "--slurm-status-command", "squeue", "--slurm-no-account",
              "--slurm-init-seconds-before-status-checks", "2"],
    "uge": ["--cores", "2", "--seconds-between-status-checks", "2"],
}  # fmt: skip
CLIENT_ENV = {
    "slurm": lambda state: {"SLURM_CONF": str(state / "slurm.conf")},
    "uge": lambda state: {"SGE_ROOT": "/var/lib/gridengine", "SGE_CELL": "default"},
}
TOOL = {"slurm": "slurm.sh", "uge": "gridengine.sh"}


def tool(name: str, action: str, state: Path, env: dict[str, str]) -> None:
    subprocess.run(["bash", str(TOOLS / name), action, str(state)], check=True, env=env)


def run(profile: str, session_config: Path, work: Path, env: dict[str, str]) -> tuple[float, int]:
    settings = yaml.safe_load(session_config.read_text())
    settings["outputs"]["dir"] = str(work / profile / "processed")
    (work / profile).mkdir(parents=True)
    config = work / profile / "config.yaml"
    config.write_text(yaml.safe_dump(settings))
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
               "--configfile", str(config), "--profile", str(ROOT / "profiles" / profile),
               *TEST_ARGS[profile]]  # fmt: skip
    start = time.perf_counter()
    result = subprocess.run(command, cwd=config.parent, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{profile} failed:\n{result.stderr[-3000:]}")
    log = result.stdout + result.stderr
    return elapsed, len(re.findall(r"(?:SLURM jobid|external jobid) '?\d+", log))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--movies", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        session_config = work / "session.yaml"
        subprocess.run([str(Path(sys.executable).parent / "emproc"), "simulate", "spa",
                        str(work / "session"), "--movies", str(args.movies), "--size", "256",
                        "--frames", "4", "--write-config", str(session_config)],
                       check=True, capture_output=True)  # fmt: skip
        for profile in ("local", "slurm", "uge"):
            env = dict(os.environ)
            state = work / f"{profile}-daemons"
            if profile in TOOL:
                env.update(CLIENT_ENV[profile](state))
                tool(TOOL[profile], "install", state, env)
                tool(TOOL[profile], "start", state, env)
            try:
                elapsed, submissions = run(profile, session_config, work, env)
            finally:
                if profile in TOOL:
                    tool(TOOL[profile], "stop", state, env)
            print(f"{profile}: {args.movies} movies, {elapsed:.0f} s wall, "
                  f"{submissions} scheduler submissions")  # fmt: skip


if __name__ == "__main__":
    main()
