"""`report/live.html`: the latest movies, updated by `emproc watch`'s live worker as each
movie is processed (the full report, `report/index.html`, follows with each workflow run).

Cheap by design: it reads only the just-processed movie's summaries and keeps the latest
`LATEST_MOVIES` rows in `report/live_movies.json`; no plots, no pandas, no whole-session
scan. Images are linked, not embedded, so the page stays small.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from emproc.chunks import movie_paths
from emproc.io.atomic import write_json_atomic, write_text_atomic

LATEST_MOVIES = 50
LIVE_DATA = "report/live_movies.json"
LIVE_PAGE = "report/live.html"
REFRESH_S = 15


def _summary(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def movie_row(output_dir: Path, movie: str, error: str | None = None) -> dict[str, Any]:
    """One movie's key figures from its summaries (absent ones are None)."""
    imported = _summary(movie_paths(output_dir, "import", movie)["metadata"])
    motion = _summary(movie_paths(output_dir, "motion", movie)["summary"])
    ctf = _summary(movie_paths(output_dir, "ctf", movie)["summary"])
    picks = _summary(movie_paths(output_dir, "pick", movie)["summary"])
    defocus = (
        0.5 * (ctf["defocus_u_angstrom"] + ctf["defocus_v_angstrom"])
        if "defocus_u_angstrom" in ctf and "defocus_v_angstrom" in ctf
        else None
    )
    return {
        "movie_name": movie,
        "acquired": imported.get("timestamp"),
        "processed": datetime.now().isoformat(timespec="seconds"),
        "total_motion_angstrom": motion.get("total_motion_angstrom"),
        "defocus_angstrom": defocus,
        "ctf_fit_resolution_angstrom": ctf.get("fit_resolution_angstrom"),
        "particles": picks.get("number_of_particles"),
        "error": error,
    }


def _cell(value: Any, digits: int = 0) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def render_live_page(rows: list[Mapping[str, Any]], output_dir: Path) -> str:
    latest = rows[-1] if rows else None
    images = ""
    if latest is not None and not latest.get("error"):
        movie = str(latest["movie_name"])
        for stage, role, caption in (
            ("motion", "snapshot", "micrograph"),
            ("pick", "snapshot", "picks"),
            ("ctf", "diagnostic", "CTF fit"),
        ):
            path = movie_paths(output_dir, stage, movie)[role]
            if path.is_file():
                relative = html.escape(str(Path("..") / path.relative_to(output_dir)))
                images += (
                    f'<figure><img src="{relative}" width="300" alt="{caption}">'
                    f"<figcaption>{caption}</figcaption></figure>"
                )
    table = "".join(
        f"<tr><td>{_cell(r['movie_name'])}</td><td>{_cell(r.get('acquired'))}</td>"
        f"<td>{_cell(r.get('total_motion_angstrom'), 1)}</td>"
        f"<td>{_cell(r.get('defocus_angstrom'), 0)}</td>"
        f"<td>{_cell(r.get('ctf_fit_resolution_angstrom'), 1)}</td>"
        f"<td>{_cell(r.get('particles'))}</td><td>{_cell(r.get('error'))}</td></tr>"
        for r in reversed(rows)
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="{REFRESH_S}"><title>emproc: latest movies</title>'
        "<style>body{font-family:sans-serif;margin:1.5em}td,th{border:1px solid #ccc;"
        "padding:0.2em 0.5em}table{border-collapse:collapse}figure{display:inline-block}"
        "</style></head><body><h1>Latest movies</h1>"
        f"<p>Updated {datetime.now():%Y-%m-%d %H:%M:%S} as each movie is processed; the "
        'session summary, plots and 2D classes are in the <a href="index.html">full report'
        "</a>.</p>"
        f"{images}<table><tr><th>movie</th><th>acquired</th><th>total motion (A)</th>"
        "<th>defocus (A)</th><th>CTF fit (A)</th><th>particles</th><th>error</th></tr>"
        f"{table}</table></body></html>\n"
    )


def update_live_page(
    output_dir: str | Path, movie: str, error: str | None = None
) -> dict[str, Any]:
    """Add `movie` to the latest movies (replacing an earlier row of it) and rewrite the
    page and its data atomically; returns the movie's row."""
    output_dir = Path(output_dir)
    data_path = output_dir / LIVE_DATA
    try:
        rows = json.loads(data_path.read_text())["movies"]
    except (OSError, ValueError, KeyError, TypeError):
        rows = []
    row = movie_row(output_dir, movie, error)
    rows = [r for r in rows if r.get("movie_name") != movie][-(LATEST_MOVIES - 1) :] + [row]
    write_json_atomic(data_path, {"movies": rows})
    write_text_atomic(output_dir / LIVE_PAGE, render_live_page(rows, output_dir))
    return row
