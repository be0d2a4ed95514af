"""What every Snakemake `script:` adapter needs: a log file and a clear failure message."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def step_logging(log_path: str | Path | None, step: str) -> Iterator[logging.Logger]:
    """Log to the rule's log file; on failure log one clear line and re-raise.

    The re-raise makes Snakemake mark the job failed (and, with --keep-going, carry on
    with the other movies); the line in the log names the file and the problem.
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
        logger.error("%s failed: %s", step, error)
        print(f"emproc {step} failed: {error}", file=sys.stderr)
        raise
    finally:
        if handler is not None:
            logging.getLogger("emproc").removeHandler(handler)
            handler.close()
