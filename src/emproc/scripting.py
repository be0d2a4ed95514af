"""What every Snakemake `script:` adapter needs: a log file and a clear failure message."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from emproc.failures import clear_failure, record_failure


@contextmanager
def step_logging(
    log_path: str | Path | None,
    step: str,
    failure_record: str | Path | None = None,
    chunk: str | None = None,
) -> Iterator[logging.Logger]:
    """Log to `log_path`; on failure log one clear line and re-raise.

    The line in the log names the file and the problem; the caller decides what the
    error stops (a chunk job catches a movie's error and carries on, other jobs fail).
    With `failure_record`, the failure is also recorded there (emproc.failures) for
    `emproc status` and the report; a success clears an old record. `chunk`
    (emproc.chunks) goes into the record so `emproc run --retry-failed` can rerun it.
    """
    logger = logging.getLogger(f"emproc.{step}")
    handler: logging.Handler | None = None
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_path, mode="w")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger("emproc").addHandler(handler)
        logging.getLogger("emproc").setLevel(logging.INFO)
    try:
        yield logger
    except Exception as error:
        # the traceback goes to the log only; the user sees one line naming the problem
        logger.error("%s failed: %s", step, error, exc_info=True)
        print(f"emproc {step} failed: {error}", file=sys.stderr)
        if failure_record:
            record_failure(failure_record, step, error, chunk=chunk)
        raise
    else:
        if failure_record:
            clear_failure(failure_record)
    finally:
        if handler is not None:
            logging.getLogger("emproc").removeHandler(handler)
            handler.close()


@contextmanager
def script_step(log_path: str | Path, step: str) -> Iterator[logging.Logger]:
    """step_logging for a whole Snakemake job (a `script:` adapter): on failure the job ends
    with exit status 1 after the one line, with no traceback on the console (it is in the
    log, where Snakemake's error report points)."""
    try:
        with step_logging(log_path, step) as logger:
            yield logger
    except Exception:
        sys.exit(1)
