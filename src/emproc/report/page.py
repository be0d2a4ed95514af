"""Write `report/index.html`: a self-contained page (images embedded) a user can open at
the microscope or mail home."""

from __future__ import annotations

import base64
import html
from datetime import datetime
from pathlib import Path

from emproc.io.atomic import write_text_atomic
from emproc.refine3d.report import spa3d_section
from emproc.report.collect import ReportData, collect_report_data
from emproc.report.plots import drift_trajectories, over_time_and_histogram
from emproc.status import format_status, session_status

STYLE = """
body { font-family: sans-serif; margin: 1.5em; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: 0.2em 0.5em; }
figure { display: inline-block; margin: 0.4em; vertical-align: top; }
figcaption { font-size: 0.85em; color: #555; }
img { max-width: 100%; }
"""


def _image(data: bytes, mime: str, caption: str) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return (
        f'<figure><img src="data:{mime};base64,{encoded}" alt="{html.escape(caption)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _image_file(path: str | Path | None, caption: str, max_bytes: int = 4_000_000) -> str:
    if not path:
        return ""
    path = Path(path)
    suffix = path.suffix.lower()
    mime = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}.get(suffix)
    if mime is None or not path.is_file() or path.stat().st_size > max_bytes:
        return ""
    return _image(path.read_bytes(), mime, caption)


def _plots(data: ReportData) -> list[str]:
    micrographs = data.micrographs
    sections = []
    motion = [
        over_time_and_histogram(micrographs, "total_motion_angstrom", "total motion (A)"),
        drift_trajectories(
            [Path(p) for p in micrographs.get("shifts_csv_path", []) if isinstance(p, str)]
        ),
    ]
    sections.append(("Motion", [_image(png, "image/png", "motion") for png in motion if png]))
    ctf = [
        over_time_and_histogram(micrographs, "defocus_angstrom", "defocus (A)"),
        over_time_and_histogram(
            micrographs, "fit_resolution_angstrom", "CTF fit resolution (A)", invert=True
        ),
        over_time_and_histogram(micrographs, "astigmatism_angstrom", "astigmatism (A)"),
    ]
    sections.append(("CTF", [_image(png, "image/png", "CTF") for png in ctf if png]))
    particles = over_time_and_histogram(micrographs, "particles", "particles per micrograph")
    sections.append(
        (
            "Particles",
            [_image(particles, "image/png", "particles per micrograph")] if particles else [],
        )
    )
    return [
        f"<h2>{title}</h2>" + ("".join(items) if items else "<p>No results yet.</p>")
        for title, items in sections
    ]


def _classes(data: ReportData, output_dir: Path) -> str:
    if not data.class_batches:
        return "<h2>2D classes</h2><p>No 2D classification batch yet.</p>"
    items = []
    for batch in sorted(data.class_batches, key=lambda b: b.get("batch_number", 0)):
        number = batch.get("batch_number")
        # the class2d_batch rule writes the gallery (classes sorted by size) as classes.png
        gallery = (
            batch.get("gallery_path") or output_dir / "Class2D" / f"batch_{number}" / "classes.png"
        )
        caption = (
            f"batch {number}: {batch.get('number_of_particles', '?')} particles, "
            f"{batch.get('number_of_classes', '?')} classes"
        )
        items.append(_image_file(gallery, caption) or f"<p>{html.escape(caption)}</p>")
    return "<h2>2D classes</h2>" + "".join(items)


def _tomograms(data: ReportData) -> str:
    if not data.tomograms:
        return ""
    items = []
    for tomogram in data.tomograms:
        name = tomogram.get("tilt_series_name", "?")
        used, excluded = (
            tomogram.get("number_of_tilts_used"),
            tomogram.get("number_of_tilts_excluded"),
        )
        items.append(
            _image_file(
                tomogram.get("xy_snapshot_path"),
                f"{name}: XY, {used} tilts used, {excluded} excluded",
            )
        )
        items.append(_image_file(tomogram.get("xz_snapshot_path"), f"{name}: XZ"))
    return "<h2>Tomograms</h2>" + "".join(items)


def _failures(data: ReportData) -> str:
    if not data.failures:
        return "<h2>Failures</h2><p>None.</p>"
    rows = "".join(
        f"<tr><td>{html.escape(movie)}</td><td>{html.escape(str(r.get('step')))}</td>"
        f"<td>{html.escape(str(r.get('error')))}</td></tr>"
        for movie, records in data.failures.items()
        for r in records
    )
    return (
        f"<h2>Failures ({len(data.failures)} movies)</h2>"
        f"<table><tr><th>movie</th><th>stage</th><th>error</th></tr>{rows}</table>"
    )


def render_report(output_dir: str | Path, title: str) -> str:
    output_dir = Path(output_dir)
    data = collect_report_data(output_dir)
    summary = html.escape(format_status(session_status(output_dir, data.records, data.failures)))
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Written {datetime.now():%Y-%m-%d %H:%M}. Refreshes with every workflow run; "
        'under emproc watch, <a href="live.html">the latest movies</a> update as each movie '
        "is processed.</p>",
        f"<h2>Summary</h2><pre>{summary}</pre>",
        *_plots(data),
        _classes(data, output_dir),
        spa3d_section(output_dir, _image),
        _tomograms(data),
        _failures(data),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )


def write_report(output_dir: str | Path, report_path: str | Path, title: str) -> None:
    write_text_atomic(report_path, render_report(output_dir, title))
