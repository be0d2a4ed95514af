"""The HTML report: valid markup, every image embedded and decodable, the numbers shown."""

import base64
import json
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib import image as mpimg

from emproc.report import write_report


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.headings: list[str] = []
        self._in_heading = False
        self.open_tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in ("img", "meta", "br"):
            self.open_tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        self._in_heading = tag == "h2"

    def handle_endtag(self, tag):
        assert self.open_tags and self.open_tags[-1] == tag, f"unbalanced </{tag}>"
        self.open_tags.pop()
        self._in_heading = False

    def handle_data(self, data):
        if self._in_heading:
            self.headings.append(data)


def _write(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


@pytest.fixture
def output_dir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    for index in range(12):
        name = f"GridSquare_1/Data/movie_{index:02d}"
        shifts = tmp_path / "MotionCorr" / f"{name}_shifts.csv"
        shifts.parent.mkdir(parents=True, exist_ok=True)
        steps = rng.normal(0, 1, (10, 2)).cumsum(axis=0)
        shifts.write_text(
            "frame,drift_x_px,drift_y_px,drift_x_angstrom,drift_y_angstrom\n"
            + "".join(f"{i + 1},{x},{y},{x},{y}\n" for i, (x, y) in enumerate(steps))
        )
        _write(
            tmp_path / "Import" / f"{name}.json",
            {"movie_name": name, "timestamp": f"2026-11-29T10:{index * 3:02d}:00"},
        )
        _write(
            tmp_path / "MotionCorr" / f"{name}_motion.json",
            {
                "movie_name": name,
                "total_motion_angstrom": 10 + index,
                "shifts_csv_path": str(shifts),
            },
        )
        _write(
            tmp_path / "CtfFind" / f"{name}_ctf.json",
            {
                "movie_name": name,
                "defocus_u_angstrom": 15000 + 500 * index,
                "defocus_v_angstrom": 14800 + 500 * index,
                "astigmatism_angstrom": 200,
                "fit_resolution_angstrom": 4 + index / 4,
            },
        )
        _write(
            tmp_path / "Picking" / f"{name}_picks.json",
            {"movie_name": name, "number_of_particles": 50 + index},
        )
    _write(
        tmp_path / "Class2D" / "batch_1" / "summary.json",
        {"batch_number": 1, "number_of_particles": 500, "number_of_classes": 4, "classes": []},
    )
    gallery = plt.figure(figsize=(4, 1.5))
    gallery.figimage(rng.normal(size=(140, 360)))
    gallery.savefig(tmp_path / "Class2D" / "batch_1" / "classes.png")
    plt.close(gallery)
    _write(
        tmp_path / "failures" / "motion" / "GridSquare_1/Data/movie_99.json",
        {"step": "motion", "error": "movie_99.tiff: truncated after frame 7"},
    )
    return tmp_path


def test_report_is_valid_html_with_embedded_plots_and_the_failures(output_dir: Path):
    report = output_dir / "report" / "index.html"
    write_report(output_dir, report, "emproc report: bi12345-1")
    text = report.read_text()
    parser = _Collector()
    parser.feed(text)
    parser.close()
    assert parser.open_tags == []
    assert {"Summary", "Motion", "CTF", "Particles", "2D classes"} <= set(parser.headings)
    assert len(parser.images) >= 7  # motion x2, CTF x3, particles, the class gallery
    assert "batch 1: 500 particles, 4 classes" in text
    for source in parser.images:
        mime, payload = source.split(",", 1)
        assert mime == "data:image/png;base64"
        pixels = mpimg.imread(__import__("io").BytesIO(base64.b64decode(payload)), format="png")
        assert pixels.shape[0] > 100 and pixels.std() > 0  # a real, non-blank picture
    assert "movie_99.tiff: truncated after frame 7" in text
    assert "particles picked          666" in text  # 50 + 51 + ... + 61


def test_report_of_an_empty_run_says_so(tmp_path: Path):
    write_report(tmp_path, tmp_path / "index.html", "empty")
    assert "No results yet." in (tmp_path / "index.html").read_text()


def test_report_renders_in_headless_chromium(output_dir: Path, tmp_path: Path):
    report = output_dir / "report" / "index.html"
    write_report(output_dir, report, "emproc report")
    screenshot = tmp_path / "report.png"
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={screenshot}",
            "--window-size=1200,2000",
            report.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    pixels = mpimg.imread(screenshot)
    assert pixels.std() > 0.05  # plots drawn, not a blank page
