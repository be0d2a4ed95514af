"""`emproc status OUTPUT_DIR`: the numbers a user checks at the microscope."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from emproc.failures import failure_records

# stage label -> glob of its per-unit summary under the output dir
STAGE_SUMMARIES = {
    "imported": "Import/**/*.json",
    "motion corrected": "MotionCorr/**/*_motion.json",
    "CTF estimated": "CtfFind/**/*_ctf.json",
    "picked": "Picking/**/*_picks.json",
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
    notes: list[str] = field(default_factory=list)


def _load(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _acquisition_rate(timestamps: list[datetime]) -> float | None:
    """Movies per hour over the acquisition span (needs two timestamps an instant apart)."""
    if len(timestamps) < 2:
        return None
    span_h = (max(timestamps) - min(timestamps)).total_seconds() / 3600
    return (len(timestamps) - 1) / span_h if span_h > 0 else None


def session_status(output_dir: str | Path) -> SessionStatus:
    output_dir = Path(output_dir)
    summaries = {
        stage: sorted(output_dir.glob(pattern)) for stage, pattern in STAGE_SUMMARIES.items()
    }
    timestamps = []
    for path in summaries["imported"]:
        record = _load(path)
        if record and record.get("timestamp"):
            timestamps.append(datetime.fromisoformat(record["timestamp"]))
    ctf = [record for path in summaries["CTF estimated"] if (record := _load(path))]
    motion = [record for path in summaries["motion corrected"] if (record := _load(path))]
    picks = [record for path in summaries["picked"] if (record := _load(path))]
    return SessionStatus(
        output_dir=output_dir,
        counts={stage: len(paths) for stage, paths in summaries.items()},
        failures=failure_records(output_dir),
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
