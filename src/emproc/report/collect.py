"""Gather the per-unit summaries a report shows, from the output directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from emproc.failures import failure_records
from emproc.status import stage_records


@dataclass
class ReportData:
    micrographs: pd.DataFrame  # one row per movie: time, motion, defocus, resolution, particles
    class_batches: list[dict[str, Any]]
    tomograms: list[dict[str, Any]]
    failures: dict[str, list[dict[str, Any]]]
    records: dict[str, list[dict[str, Any]]]  # every stage's summaries (emproc.status)


def collect_report_data(output_dir: str | Path) -> ReportData:
    output_dir = Path(output_dir)
    records = stage_records(output_dir)  # read once; the status block reuses them
    rows: dict[str, dict[str, Any]] = {}
    for record in records["imported"]:
        rows.setdefault(record["movie_name"], {})["timestamp"] = record.get("timestamp")
    for record in records["motion corrected"]:
        rows.setdefault(record["movie_name"], {}).update(
            total_motion_angstrom=record.get("total_motion_angstrom"),
            early_motion_angstrom=record.get("early_motion_angstrom"),
            late_motion_angstrom=record.get("late_motion_angstrom"),
            shifts_csv_path=record.get("shifts_csv_path"),
        )
    for record in records["CTF estimated"]:
        rows.setdefault(record["movie_name"], {}).update(
            defocus_angstrom=(record["defocus_u_angstrom"] + record["defocus_v_angstrom"]) / 2,
            astigmatism_angstrom=record.get("astigmatism_angstrom"),
            fit_resolution_angstrom=record.get("fit_resolution_angstrom"),
        )
    for record in records["picked"]:
        rows.setdefault(record["movie_name"], {})["particles"] = record.get("number_of_particles")
    micrographs = pd.DataFrame.from_dict(rows, orient="index")
    micrographs.index.name = "movie_name"
    if "timestamp" in micrographs:
        micrographs["timestamp"] = pd.to_datetime(micrographs["timestamp"], errors="coerce")
        micrographs = micrographs.sort_values("timestamp", na_position="last")
    return ReportData(
        micrographs=micrographs,
        class_batches=records["2D batches"],
        tomograms=records["tomograms"],
        failures=failure_records(output_dir),
        records=records,
    )
