"""Real schedulers on localhost for the profile tests: SLURM, Grid Engine and azurite.

Each daemon set is a session fixture: installed from Debian/npm when missing (the test machine is
a fresh CI box, we are root), started under a temp dir, and stopped at the end of the session.
The simulated session and its local-profile reference run are shared between pytest-xdist
workers through a file lock, so `pytest -n 2` simulates and runs the reference once.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from emproc.config import WORKFLOW_ROOT

TOOLS = WORKFLOW_ROOT / "tools" / "cluster"
PROFILES = WORKFLOW_ROOT / "profiles"
MOVIES = 2
MOVIE_SIZE_PX = 256
FRAMES = 4


def run_tool(script: str, action: str, state_dir: Path | None = None) -> None:
    """tools/cluster/<script> <action> [state_dir]; skip the test if it cannot install."""
    command = ["bash", str(TOOLS / script), action]
    if state_dir is not None:
        command.append(str(state_dir))
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
    if result.returncode != 0:
        message = f"{script} {action} failed:\n{result.stdout}\n{result.stderr}"
        if action == "install" and os.geteuid() != 0:
            pytest.skip(message)
        raise RuntimeError(message)


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory, worker_id) -> Path:
    """A temp dir every xdist worker of this session sees (the workers' common parent)."""
    base = tmp_path_factory.getbasetemp()
    return base if worker_id == "master" else base.parent


def _locked(path: Path):
    handle = open(path, "w")  # noqa: SIM115 - closed by the caller
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


@pytest.fixture(scope="session")
def simulated_config(shared_dir: Path) -> Path:
    """A tiny simulated SPA session and its config (shared between workers)."""
    root = shared_dir / "cluster_session"
    config = root / "config.yaml"
    with _locked(shared_dir / "cluster_session.lock"):
        if not config.exists():
            subprocess.run(
                [str(Path(sys.executable).parent / "emproc"), "simulate", "spa",
                 str(root / "session"), "--movies", str(MOVIES), "--size", str(MOVIE_SIZE_PX),
                 "--frames", str(FRAMES), "--write-config", str(root / "config.partial.yaml")],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            (root / "config.partial.yaml").rename(config)
    return config


def config_for_run(config: Path, run_dir: Path) -> Path:
    """A copy of the session config writing its outputs under run_dir/processed."""
    settings = yaml.safe_load(config.read_text())
    settings["outputs"]["dir"] = str(run_dir / "processed")
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "config.yaml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


def run_workflow(
    config: Path,
    profile: str,
    *arguments: str,
    env: dict[str, str] | None = None,
    timeout_s: float = 600,
) -> subprocess.CompletedProcess[str]:
    """snakemake on the real Snakefile with one of our profiles, from the config's directory."""
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(WORKFLOW_ROOT / "Snakefile"),
        "--configfile", str(config), "--profile", str(PROFILES / profile), *arguments,
    ]  # fmt: skip
    return subprocess.run(
        command, cwd=config.parent, capture_output=True, text=True, check=False,
        env={**os.environ, **(env or {})}, timeout=timeout_s,
    )  # fmt: skip


@pytest.fixture(scope="session")
def local_reference(shared_dir: Path, simulated_config: Path) -> Path:
    """Outputs dir of the session processed with profiles/local (shared between workers)."""
    run_dir = shared_dir / "cluster_reference_local"
    done = run_dir / "done"
    with _locked(shared_dir / "cluster_reference.lock"):
        if not done.exists():
            shutil.rmtree(run_dir, ignore_errors=True)
            config = config_for_run(simulated_config, run_dir)
            result = run_workflow(config, "local", "--cores", "2")
            assert result.returncode == 0, result.stderr[-4000:]
            done.touch()
    return run_dir / "processed"


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory) -> Iterator[dict[str, str]]:
    """munged + slurmctld + slurmd for one node; yields the client environment."""
    state = tmp_path_factory.mktemp("slurm")
    run_tool("slurm.sh", "install")
    env = {"SLURM_CONF": str(state / "slurm.conf")}
    run_tool("slurm.sh", "start", state)
    try:
        yield env
    finally:
        run_tool("slurm.sh", "stop", state)


@pytest.fixture(scope="session")
def gridengine_cluster(tmp_path_factory) -> Iterator[dict[str, str]]:
    """sge_qmaster + sge_execd with queue all.q; yields the client environment."""
    state = tmp_path_factory.mktemp("gridengine")
    run_tool("gridengine.sh", "install")
    env = {"SGE_ROOT": "/var/lib/gridengine", "SGE_CELL": "default"}
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)  # the start script's qconf calls need them too
    try:
        run_tool("gridengine.sh", "start", state)
        yield env
    finally:
        run_tool("gridengine.sh", "stop", state)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def azurite(tmp_path_factory) -> Iterator[str]:
    """A local Azure Blob emulator; yields its connection string."""
    state = tmp_path_factory.mktemp("azurite")
    run_tool("azurite.sh", "install")
    port = str(10000 + os.getpid() % 1000)  # two xdist workers must not share a port
    os.environ["AZURITE_BLOB_PORT"] = port
    try:
        run_tool("azurite.sh", "start", state)
        yield (state / "connection").read_text().strip()
    finally:
        run_tool("azurite.sh", "stop", state)
        os.environ.pop("AZURITE_BLOB_PORT", None)
