"""tools/cluster/uge_status.py against stand-in qstat/qacct commands (no scheduler needed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import TOOLS

QSTAT_LISTING = """job-ID  prior   name       user   state submit/start at     queue  slots
-----------------------------------------------------------------------------
     41 0.50000 snakejob.p root   {state}    11/29/2026 12:45:50         2
"""
QACCT_RECORD = """==============================================================
qname        all.q
jobnumber    {job}
failed       {failed}
exit_status  {exit_status}
"""


def status_with(tmp_path: Path, job: str, *, queued_state: str | None, record: str | None) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    qstat = "#!/bin/sh\n"
    if queued_state is None:
        qstat += "echo 'Following jobs do not exist:' >&2; exit 1\n"
    else:
        listing = QSTAT_LISTING.format(state=queued_state)
        qstat += f'[ "$1" = -j ] && exit 0\ncat <<"EOF"\n{listing}EOF\n'
    qacct = "#!/bin/sh\n" + (
        f'cat <<"EOF"\n{record}EOF\n' if record else "echo 'error: job id not found' >&2; exit 1\n"
    )
    for name, text in (("qstat", qstat), ("qacct", qacct)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    result = subprocess.run(
        [sys.executable, str(TOOLS / "uge_status.py"), job],
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return result.stdout.strip()


@pytest.mark.parametrize(
    ("queued_state", "record", "expected"),
    [
        ("qw", None, "running"),
        ("r", None, "running"),
        ("Eqw", None, "failed"),
        (None, QACCT_RECORD.format(job=41, failed=0, exit_status=0), "success"),
        (None, QACCT_RECORD.format(job=41, failed=0, exit_status=1), "failed"),
        (None, QACCT_RECORD.format(job=41, failed="100 : assumedly after job", exit_status=0),
         "failed"),
    ],
)  # fmt: skip
def test_status_follows_qstat_then_qacct(tmp_path, queued_state, record, expected):
    assert status_with(tmp_path, "41", queued_state=queued_state, record=record) == expected


def test_job_without_accounting_record_yet_is_still_running(tmp_path):
    # qmaster forgot the job and qacct has no record yet: ask again at the next poll.
    assert status_with(tmp_path, "41", queued_state=None, record=None) == "running"
