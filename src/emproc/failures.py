"""Per-movie failure records: a bad movie never blocks the rest of the session.

A movie whose stage fails (corrupt file, wrong gain size, ...) gets
`<outputs>/failures/<stage>/<movie>.json` with the error and the chunk it was processed in
(emproc.chunks); its chunk carries on and the chunk manifest lists it as failed, so the
aggregates (STAR tables, ISPyB, 2D batches) complete without it. `emproc status` lists the
records; `emproc run --retry-failed` reruns the chunk stages that recorded them and removes
the records (e.g. after fixing the gain).
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from emproc.io.atomic import write_json_atomic

FAILURES_DIR = "failures"


def record_failure(
    record_path: str | Path, step: str, error: BaseException, chunk: str | None = None
) -> None:
    record = {
        "step": step,
        "error": str(error),
        "error_type": type(error).__name__,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if chunk is not None:
        record["chunk"] = chunk
    write_json_atomic(record_path, record)


def clear_failure(record_path: str | Path) -> None:
    Path(record_path).unlink(missing_ok=True)


def failure_records(output_dir: str | Path) -> dict[str, list[dict[str, Any]]]:
    """`{movie: [record, ...]}` for every failure recorded under `output_dir`."""
    root = Path(output_dir) / FAILURES_DIR
    records: dict[str, list[dict[str, Any]]] = {}
    if not root.is_dir():
        return records
    for path in sorted(root.glob("*/**/*.json")):
        stage_dir, *rest = path.relative_to(root).parts
        movie = str(Path(*rest).with_suffix(""))
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            record = {"step": stage_dir, "error": f"unreadable failure record {path}"}
        record.setdefault("step", stage_dir)
        records.setdefault(movie, []).append(record)
    return records


class NoMoviesError(RuntimeError):
    """Every movie failed before an aggregate: there is nothing to tabulate."""


def require_movies(movies: list[str], output_dir: str | Path, stage: str) -> list[str]:
    """`movies` when there are any; else NoMoviesError, one line saying why none got through
    `stage` (the first failure record) and where the rest are listed."""
    if movies:
        return movies
    failures = failure_records(output_dir)
    if not failures:
        raise NoMoviesError(f"no movie got through {stage} (and none recorded a failure)")
    movie, records = next(iter(failures.items()))
    first = records[0]
    raise NoMoviesError(
        f"no movie got through {stage}: {len(failures)} movie(s) failed, e.g. {movie} in "
        f"{first.get('step')}: {first.get('error')} (all: emproc status {output_dir}; fix the "
        "cause, then emproc run --retry-failed)"
    )


def retry_targets(output_dir: str | Path) -> list[str]:
    """The chunk manifests (as the workflow names them) whose stage recorded a failure."""
    prefix = str(output_dir).rstrip("/")
    targets = {
        f"{prefix}/Chunks/{record['chunk']}/{record['step']}.json"
        for records in failure_records(output_dir).values()
        for record in records
        if record.get("chunk")
    }
    return sorted(targets)


def clear_all_failures(output_dir: str | Path) -> int:
    """Remove every failure record; return how many movies had one."""
    count = len(failure_records(output_dir))
    shutil.rmtree(Path(output_dir) / FAILURES_DIR, ignore_errors=True)
    return count
