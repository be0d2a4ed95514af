#!/usr/bin/env python3
"""Grid Engine job status for snakemake-executor-plugin-cluster-generic.

Usage: uge_status.py JOBID  -> prints exactly one of running | success | failed.

While the job is known to qmaster (`qstat -j`), it is running unless it sits in an error
state (Eqw: it will never start). Once it has left qmaster, `qacct -j` has the verdict; the
accounting record is written a moment after the job ends, so a missing record is retried a few
times and then reported as running (Snakemake asks again at its next poll).
Standard library only: it runs with the system python3 on the submit host.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

QACCT_ATTEMPTS = 5
QACCT_PAUSE_S = 1.0


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False)


def queued_or_running_state(job_id: str) -> str | None:
    """The job's qstat state letters (e.g. 'r', 'qw', 'Eqw'), or None if qmaster forgot it."""
    if _run("qstat", "-j", job_id).returncode != 0:
        return None
    listing = _run("qstat", "-u", "*").stdout
    for line in listing.splitlines():
        fields = line.split()
        # job-ID prior name user state ...; array jobs list the same id once per task
        if fields and fields[0] == job_id.split(".")[0] and len(fields) > 4:
            return fields[4]
    return "unknown"  # known to qstat -j but not listed yet: treat as queued


def accounting_verdict(job_id: str) -> str | None:
    """success/failed from `qacct -j`, or None while no accounting record exists."""
    result = _run("qacct", "-j", job_id.split(".")[0])
    if result.returncode != 0:
        return None
    failed = re.findall(r"^failed\s+(\d+)", result.stdout, flags=re.MULTILINE)
    exit_status = re.findall(r"^exit_status\s+(\d+)", result.stdout, flags=re.MULTILINE)
    if not exit_status:
        return None
    # A resubmitted id can have several records: the last one is the attempt that counts.
    ok = exit_status[-1] == "0" and (not failed or failed[-1] == "0")
    return "success" if ok else "failed"


def job_status(job_id: str) -> str:
    state = queued_or_running_state(job_id)
    if state is not None:
        return "failed" if "E" in state else "running"
    for attempt in range(QACCT_ATTEMPTS):
        verdict = accounting_verdict(job_id)
        if verdict is not None:
            return verdict
        if attempt + 1 < QACCT_ATTEMPTS:
            time.sleep(QACCT_PAUSE_S)
    return "running"


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].strip():
        print("usage: uge_status.py JOBID", file=sys.stderr)
        return 2
    print(job_status(argv[1].strip()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
