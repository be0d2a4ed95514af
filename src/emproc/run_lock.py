"""One emproc process per output directory: a lock file in the output directory.

Snakemake's own lock lives in its working directory and only knows file names, so two runs
started from different directories both ran, and after a kill it needs a manual `--unlock`.
This lock sits with the outputs and names its holder (pid, host, start time, command); a
lock whose processes are all gone (the holder was killed) is taken over, and the caller
learns that it was stale, so it can clear what the dead run left (Snakemake's lock,
temporary files).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

LOCK_NAME = ".emproc.lock"


class OutputDirLockedError(RuntimeError):
    """Another live emproc process works on the output directory."""


@dataclass(frozen=True)
class OutputLock:
    path: Path
    took_over_stale: bool  # a killed run left the lock: its leftovers may be cleared

    def add_process(self, pid: int) -> None:
        """Count `pid` (e.g. the Snakemake child) as a holder too: if only emproc is killed,
        the lock stays held while its Snakemake still runs."""
        record = json.loads(self.path.read_text())
        record["processes"].append(_process(pid))
        _write(self.path, record)


def lock_path(output_dir: str | os.PathLike[str]) -> Path:
    return Path(output_dir) / LOCK_NAME


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name (Linux): [state, ppid, ...]; None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid."""
    fields = _stat_fields(pid)
    return fields[19] if fields else None


def _process(pid: int) -> dict[str, object]:
    return {"pid": pid, "start": _start_time(pid)}


def process_alive(process: dict[str, object]) -> bool:
    pid = int(process.get("pid") or 0)
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    fields = _stat_fields(pid)
    if fields and fields[0] in ("Z", "X"):
        # killed but not yet reaped (its parent died too and nothing reaps orphans here):
        # a zombie holds nothing
        return False
    start = process.get("start")
    return start is None or (fields[19] if fields else None) in (None, start)


def _write(path: Path, record: dict[str, object]) -> None:
    from emproc.io.atomic import write_text_atomic

    write_text_atomic(path, json.dumps(record, indent=2) + "\n")


def _describe(record: dict[str, object], path: Path) -> str:
    pids = ", ".join(str(process["pid"]) for process in record.get("processes", []))
    return (
        f"{path.parent}: another emproc {record.get('command', 'run')} works on this output "
        f"directory (pid {pids} on host {record.get('host')}, since {record.get('started')}); "
        f"wait for it to finish or stop it (lock: {path})"
    )


def acquire_output_lock(output_dir: str | os.PathLike[str], command: str) -> OutputLock:
    """Take the output directory's lock for this process (`command`: run, watch).

    Raises OutputDirLockedError naming the holder when a live process holds it; a lock
    held on another host is respected (its processes cannot be checked from here).
    """
    path = lock_path(output_dir)
    record = {
        "command": command,
        "host": socket.gethostname(),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "processes": [_process(os.getpid())],
    }
    took_over = False
    for _ in range(2):
        try:
            # O_EXCL: of two emproc processes starting at once, exactly one creates it
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                held = json.loads(path.read_text())
            except (OSError, ValueError):
                held = {}  # unreadable or half-written by a killed process
            processes = held.get("processes", [])
            if held and held.get("host") != record["host"]:
                raise OutputDirLockedError(_describe(held, path)) from None
            if any(process_alive(process) for process in processes):
                raise OutputDirLockedError(_describe(held, path)) from None
            path.unlink(missing_ok=True)  # stale: its holder was killed
            took_over = True
            continue
        with os.fdopen(handle, "w") as stream:
            stream.write(json.dumps(record, indent=2) + "\n")
        return OutputLock(path, took_over)
    raise OutputDirLockedError(f"{path}: could not take the lock (another process raced for it)")


def release_output_lock(lock: OutputLock) -> None:
    """Remove the lock if it is still ours (a holder taken over as stale never removes it)."""
    try:
        held = json.loads(lock.path.read_text())
    except (OSError, ValueError):
        return
    if any(int(process.get("pid", 0)) == os.getpid() for process in held.get("processes", [])):
        lock.path.unlink(missing_ok=True)


@contextmanager
def output_dir_lock(output_dir: str | os.PathLike[str], command: str) -> Iterator[OutputLock]:
    lock = acquire_output_lock(output_dir, command)
    try:
        yield lock
    finally:
        release_output_lock(lock)
