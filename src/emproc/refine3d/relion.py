"""Running RELION 3.1 programs: one place for the command line, MPI, niceness and errors.

Every program runs with the project directory as its working directory, so the
rlnImageName paths of the particle STAR files (relative to it) resolve.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


class Relion3DError(RuntimeError):
    """A RELION program is missing, failed, or wrote unreadable output."""


@dataclass(frozen=True)
class Compute:
    """How a RELION step runs: threads per rank, MPI ranks (1: the non-MPI binary)."""

    threads: int = 1
    mpi_ranks: int = 1
    nice: int = 0  # > 0: run under `nice -n`


SERIAL = Compute()  # one thread, no MPI


def relion_command(program: str, arguments: Sequence[str], compute: Compute) -> list[str]:
    """`program` (or its _mpi twin under mpirun) with `arguments`, `--j` added for refine."""
    command = [program, *arguments]
    if program == "relion_refine":
        command += ["--j", str(compute.threads)]
    if compute.mpi_ranks > 1:
        command = [
            "mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(compute.mpi_ranks),
            f"{program}_mpi", *command[1:],
        ]  # fmt: skip
    if compute.nice > 0:
        command = ["nice", "-n", str(compute.nice), *command]
    return command


def run_relion(
    program: str,
    arguments: Sequence[str],
    project_dir: str | os.PathLike[str],
    compute: Compute = SERIAL,
    log_path: str | os.PathLike[str] | None = None,
) -> None:
    """Run a RELION program in `project_dir`; its output goes to `log_path` if given."""
    needed = f"{program}_mpi" if compute.mpi_ranks > 1 else program
    if shutil.which(needed) is None:
        raise Relion3DError(f"{needed} not found on PATH (install RELION: tools/bootstrap.sh)")
    if compute.mpi_ranks > 1 and shutil.which("mpirun") is None:
        raise Relion3DError("mpirun not found on PATH (Debian package openmpi-bin)")
    command = relion_command(program, arguments, compute)
    environment = {
        **os.environ,
        "OMPI_ALLOW_RUN_AS_ROOT": "1",
        "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
        # an idle rank (RELION's leader) yields its core instead of spinning
        "OMPI_MCA_mpi_yield_when_idle": "1",
    }
    # RELION's output goes straight to the log, so a long run can be watched there
    with tempfile.TemporaryDirectory() as scratch:
        log = Path(log_path) if log_path is not None else Path(scratch) / "relion.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as stream:
            stream.write(" ".join(command) + "\n")
            stream.flush()
            returncode = subprocess.run(
                command, cwd=project_dir, stdout=stream, stderr=subprocess.STDOUT, check=False,
                env=environment,
            ).returncode  # fmt: skip
        if returncode != 0:
            tail = log.read_text(errors="replace")[-800:].strip()
            raise Relion3DError(f"{program} failed (exit {returncode}) in {project_dir}: {tail}")


def last_iteration_file(directory: Path, root: str, suffix: str) -> Path:
    """The highest-numbered `<root>_itNNN<suffix>` in `directory`."""
    candidates = sorted(directory.glob(f"{root}_it[0-9][0-9][0-9]{suffix}"))
    if not candidates:
        raise Relion3DError(f"no {root}_it*{suffix} in {directory}: RELION wrote no iteration")
    return candidates[-1]
