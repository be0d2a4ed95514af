"""`emproc status OUTPUT_DIR`: the numbers a user checks at the microscope."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from emproc.chunks import movie_glob
from emproc.failures import failure_records

# stage label -> glob of its per-unit summary under the output dir
STAGE_SUMMARIES = {
    "imported": movie_glob("import", "metadata"),
    "motion corrected": movie_glob("motion", "summary"),
    "CTF estimated": movie_glob("ctf", "summary"),
    "picked": movie_glob("pick", "summary"),
    "2D batches": "Class2D/batch_*/summary.json",
    "tomograms": "Tomograms/**/*_tomo.json",
}


@dataclass
class SessionStatus:
    output_dir: Path
    counts: dict[str, int]
    failures: dict[str, list[dict[str, Any]]]
    movies_per_hour: float | None
    median_defocus_angstrom: float | None
    median_fit_resolution_angstrom: float | None
    median_total_motion_angstrom: float | None
    particles: int


def summary_paths(output_dir: Path, stage: str) -> list[Path]:
    """The per-unit summary files of one stage (a key of STAGE_SUMMARIES), sorted."""
    return sorted(output_dir.glob(STAGE_SUMMARIES[stage]))


def read_summaries(paths: list[Path]) -> list[dict[str, Any]]:
    """The JSON records of `paths`; a file being replaced or unreadable is skipped (the next
    look has it)."""
    records = []
    for path in paths:
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    return records


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _acquisition_rate(timestamps: list[datetime]) -> float | None:
    """Movies per hour over the acquisition span (needs two timestamps an instant apart)."""
    if len(timestamps) < 2:
        return None
    span_h = (max(timestamps) - min(timestamps)).total_seconds() / 3600
    return (len(timestamps) - 1) / span_h if span_h > 0 else None


def stage_records(output_dir: str | Path) -> dict[str, list[dict[str, Any]]]:
    """Every stage's summary records (a key of STAGE_SUMMARIES each), read once."""
    output_dir = Path(output_dir)
    return {stage: read_summaries(summary_paths(output_dir, stage)) for stage in STAGE_SUMMARIES}


def session_status(
    output_dir: str | Path,
    records: dict[str, list[dict[str, Any]]] | None = None,
    failures: dict[str, list[dict[str, Any]]] | None = None,
) -> SessionStatus:
    """The status from `records` and `failures` when the caller has read them already (the
    report does), else from the output directory."""
    output_dir = Path(output_dir)
    records = records if records is not None else stage_records(output_dir)
    timestamps = [
        datetime.fromisoformat(record["timestamp"])
        for record in records["imported"]
        if record.get("timestamp")
    ]
    ctf = records["CTF estimated"]
    motion = records["motion corrected"]
    picks = records["picked"]
    return SessionStatus(
        output_dir=output_dir,
        counts={stage: len(stage_list) for stage, stage_list in records.items()},
        failures=failures if failures is not None else failure_records(output_dir),
        movies_per_hour=_acquisition_rate(timestamps),
        median_defocus_angstrom=_median(
            [(r["defocus_u_angstrom"] + r["defocus_v_angstrom"]) / 2 for r in ctf]
        ),
        median_fit_resolution_angstrom=_median(
            [r["fit_resolution_angstrom"] for r in ctf if r.get("fit_resolution_angstrom")]
        ),
        median_total_motion_angstrom=_median(
            [r["total_motion_angstrom"] for r in motion if "total_motion_angstrom" in r]
        ),
        particles=sum(int(r.get("number_of_particles", 0)) for r in picks),
    )


def _value(value: float | None, unit: str, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f} {unit}".rstrip()


def format_status(status: SessionStatus) -> str:
    lines = [f"emproc status: {status.output_dir}", ""]
    width = max(len(stage) for stage in status.counts)
    lines += [f"  {stage:<{width}}  {count:>7,d}" for stage, count in status.counts.items()]
    lines += [
        f"  {'failed movies':<{width}}  {len(status.failures):>7,d}",
        "",
        f"  acquisition rate          {_value(status.movies_per_hour, 'movies/h')}",
        f"  median defocus            {_value(status.median_defocus_angstrom, 'A', 0)}",
        f"  median CTF fit resolution {_value(status.median_fit_resolution_angstrom, 'A')}",
        f"  median total motion       {_value(status.median_total_motion_angstrom, 'A')}",
        f"  particles picked          {status.particles:,d}",
    ]
    if status.failures:
        lines += ["", "failures (emproc run --retry-failed attempts them again):"]
        for movie, records in status.failures.items():
            for record in records:
                lines.append(f"  {movie}: {record.get('step')}: {record.get('error')}")
    return "\n".join(lines)
