"""Robustness (issue 9): bad inputs name the file, reruns redo only what changed, bad output dirs.

Cases already covered elsewhere are not repeated: truncated MRC/TIFF, an empty TIFF, a garbage
file and a gain NaN (tests/test_movie_io.py), a gain in the wrong orientation and a single NaN
pixel (tests/test_motion_outputs.py), an mdoc section without TiltAngle (tests/test_mdoc.py),
missing tilts in a reconstructed series (tests/test_tomo.py), a truncated movie in a whole
session (tests/test_workflow.py).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import tifffile
import yaml

from emproc.chunks import movie_paths
from emproc.cli import OutputDirError, check_output_dir
from emproc.io.gain import GainError
from emproc.io.mdoc import MdocError, read_tilt_series_mdoc
from emproc.io.movie import MovieError, MovieFormatError, read_movie
from emproc.motion import motion_correct_movie
from emproc.tomo.pipeline import missing_movies, tilt_series_ready
from tests.workflow_helpers import job_counts, simulated_spa_run, snakemake

MOTION = {"patches_x": 1, "patches_y": 1, "bin_for_alignment": 1, "iterations": 5}
SHAPE = (4, 64, 80)  # frames, ny, nx


def movie_metadata(movie: Path, **changes) -> dict:
    """The Import JSON keys motion_correct_movie reads (docs/architecture.md)."""
    return {
        "movie_name": movie.stem,
        "movie_path": str(movie),
        "pixel_size_angstrom": 1.0,
        "dose_per_frame_e_per_angstrom2": 1.0,
        "voltage_kv": 300.0,
        "gain_reference": "",
        **changes,
    }


def motion_outputs(tmp_path: Path) -> dict[str, str]:
    """The workflow's motion outputs for a movie (emproc.chunks layout)."""
    return {role: str(path) for role, path in movie_paths(tmp_path, "motion", "movie").items()}


def assert_fails_without_outputs(tmp_path: Path, movie: Path, error, match: str, **metadata):
    """The movie's motion correction raises `error` naming the file and leaves no output
    that a later step could mistake for a result."""
    outputs = motion_outputs(tmp_path)
    with pytest.raises(error, match=match) as caught:
        motion_correct_movie(movie, movie_metadata(movie, **metadata), MOTION, outputs)
    assert "\n" not in str(caught.value)
    written = [path for path in outputs.values() if Path(path).exists()]
    assert written == [], written


@pytest.fixture
def counts() -> np.ndarray:
    return np.random.default_rng(0).poisson(3.0, size=SHAPE).astype(np.uint16)


# ---------------------------------------------------------------- movies and gain


@pytest.mark.parametrize("compression", ["zlib", "lzw"])
def test_tiff_with_a_corrupt_strip_names_the_file(tmp_path, counts, compression):
    # same length, intact header: only the pixel data of frame 3 is damaged
    movie = tmp_path / "broken_strip.tiff"
    tifffile.imwrite(movie, counts, compression=compression, photometric="minisblack")
    with tifffile.TiffFile(movie) as tif:
        offset, length = tif.pages[2].dataoffsets[0], tif.pages[2].databytecounts[0]
    data = bytearray(movie.read_bytes())
    noise = np.random.default_rng(1).integers(0, 256, length // 2, dtype=np.uint8)
    data[offset + length // 4 : offset + length // 4 + noise.size] = noise.tobytes()
    movie.write_bytes(bytes(data))
    with pytest.raises(MovieFormatError, match="broken_strip.tiff.*cannot decode"):
        read_movie(movie)
    assert_fails_without_outputs(tmp_path, movie, MovieFormatError, "broken_strip.tiff")


def test_empty_mrc_movie_names_the_file(tmp_path):
    movie = tmp_path / "empty.mrc"
    movie.write_bytes(b"")
    assert_fails_without_outputs(tmp_path, movie, MovieFormatError, "empty.mrc.*empty")


def test_missing_movie_names_the_file(tmp_path):
    movie = tmp_path / "gone.tiff"
    assert_fails_without_outputs(tmp_path, movie, FileNotFoundError, "gone.tiff.*does not exist")


def test_nan_filled_frame_names_the_file_and_the_frame(tmp_path):
    movie = tmp_path / "nan_frames.mrc"
    frames = np.random.default_rng(2).poisson(3.0, size=SHAPE).astype(np.float32)
    frames[2] = np.nan  # a whole frame lost by the detector software
    with pytest.warns(RuntimeWarning), mrcfile.new(movie) as mrc:
        mrc.set_data(frames)
    assert_fails_without_outputs(tmp_path, movie, MovieError, "nan_frames.mrc.*frame 3.*NaN")


def test_frames_of_different_sizes_name_the_file(tmp_path, counts):
    movie = tmp_path / "mixed.tiff"
    with tifffile.TiffWriter(movie) as tif:
        for frame in counts[:2]:
            tif.write(frame, contiguous=False)
        tif.write(counts[2, :48, :48], contiguous=False)
    assert_fails_without_outputs(tmp_path, movie, MovieFormatError, r"mixed.tiff.*frame 3")


def test_gain_of_another_detector_size_names_the_gain_and_both_shapes(tmp_path, counts):
    movie = tmp_path / "movie.mrc"
    with mrcfile.new(movie) as mrc:
        mrc.set_data(counts)
    gain = tmp_path / "gain_K2.mrc"
    with mrcfile.new(gain) as mrc:
        mrc.set_data(np.ones((64, 64), dtype=np.float32))
    assert_fails_without_outputs(
        tmp_path,
        movie,
        GainError,
        r"gain_K2.mrc.*\(64, 64\).*\(64, 80\)",
        gain_reference=str(gain),
    )


# ---------------------------------------------------------------- mdoc

MDOC_HEADER = """PixelSpacing = 2.125
Voltage = 300
ImageFile = TS_01.mrc
ImageSize = 80 64

[T =     Tilt axis angle = 85.0, binning = 1  spot = 8  camera = 0]
"""


def mdoc_section(z_value: int, tilt_deg: float) -> str:
    return (
        f"\n[ZValue = {z_value}]\nTiltAngle = {tilt_deg}\nExposureDose = 3.0\n"
        f"SubFramePath = D:\\frames\\TS_01_{z_value:03d}_{tilt_deg:.1f}.tif\n"
    )


def test_mdoc_with_a_missing_tilt_is_read_and_the_gap_reported(tmp_path):
    mdoc = tmp_path / "TS_01.mrc.mdoc"
    # ZValue 2 was never written (aborted exposure), and the +6 deg movie never arrived
    mdoc.write_text(
        MDOC_HEADER + mdoc_section(0, 0.0) + mdoc_section(1, 3.0) + mdoc_section(3, 6.0)
    )
    metadata = read_tilt_series_mdoc(mdoc)
    assert [tilt.z_value for tilt in metadata.tilts] == [0, 1, 3]
    for tilt in metadata.tilts[:2]:
        metadata.movie_path(tilt).write_bytes(b"movie")
    missing = metadata.movie_path(metadata.tilts[2])
    assert missing_movies(metadata) == [missing]
    newest = max(path.stat().st_mtime for path in tmp_path.iterdir())
    assert not tilt_series_ready(metadata, timeout_s=60, now=newest + 1)
    assert tilt_series_ready(metadata, timeout_s=60, now=newest + 61)  # processed without it


@pytest.mark.parametrize(
    ("bad_section", "match"),
    [
        ("\n[ZValue = 1]\nTiltAngle = 3.0\nExposureDose 3.0\n", r"line \d+.*ExposureDose 3.0"),
        ("\n[ZValue = 1\nTiltAngle = 3.0\n", r"line \d+.*\[ZValue = 1"),
        ("\n[ZValue = 1]\nTiltAngle = 3.0\n\x00\x00\xff\xfe\n", r"line \d+"),
        ("\n[ZValue = 1]\nTiltAngle = three\n", r"TiltAngle.*three"),
        ("\n[ZValue = one]\nTiltAngle = 3.0\n", r"ZValue.*one"),
    ],
    ids=["no-equals", "unclosed-section", "binary", "bad-number", "bad-zvalue"],
)
def test_mdoc_with_malformed_lines_is_one_clear_error(tmp_path, bad_section, match):
    mdoc = tmp_path / "TS_02.mrc.mdoc"
    mdoc.write_bytes((MDOC_HEADER + mdoc_section(0, 0.0) + bad_section).encode("latin-1"))
    with pytest.raises(MdocError, match=f"TS_02.mrc.mdoc.*{match}") as caught:
        read_tilt_series_mdoc(mdoc)
    assert "\n" not in str(caught.value)


# ---------------------------------------------------------------- output directory


def test_output_dir_under_a_regular_file_is_a_clear_error(tmp_path):
    (tmp_path / "not_a_dir").write_text("x")
    with pytest.raises(OutputDirError, match="not_a_dir/processed.*cannot be created"):
        check_output_dir(tmp_path / "not_a_dir" / "processed")


def test_output_dir_check_creates_the_dir_and_leaves_nothing_behind(tmp_path):
    output_dir = tmp_path / "new" / "processed"
    check_output_dir(output_dir)
    assert output_dir.is_dir() and list(output_dir.iterdir()) == []


@pytest.mark.slow
def test_emproc_run_with_an_unwritable_output_dir_stops_with_one_line(tmp_path):
    config_path = simulated_spa_run(tmp_path, movies=1, size=128, frames=3)
    (tmp_path / "blocker").write_text("a regular file where a directory should be")
    config = yaml.safe_load(config_path.read_text())
    config["outputs"]["dir"] = str(tmp_path / "blocker" / "processed")
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = subprocess.run(
        [sys.executable, "-m", "emproc.cli", "run", "--configfile", str(config_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert str(tmp_path / "blocker" / "processed") in lines[0]


# ---------------------------------------------------------------- reruns


@pytest.fixture(scope="module")
def finished_session(tmp_path_factory) -> Path:
    config = simulated_spa_run(tmp_path_factory.mktemp("rerun"), movies=2, size=256, frames=4)
    result = snakemake(config)
    assert result.returncode == 0, result.stderr[-3000:]
    return config


def ispyb_rows(config_path: Path, query: str) -> list[tuple]:
    database = sqlite3.connect(config_path.parent / "processed" / "ispyb.sqlite")
    try:
        return database.execute(query).fetchall()
    finally:
        database.close()


@pytest.mark.slow
def test_rerunning_a_finished_session_does_nothing(finished_session: Path):
    again = snakemake(finished_session, "--dry-run")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.slow
def test_changing_ctf_max_resolution_reruns_ctf_only_and_updates_ispyb(finished_session: Path):
    processed = finished_session.parent / "processed"
    motion_files = sorted((processed / "MotionCorr").rglob("*.mrc"))
    assert motion_files
    motion_times = [os.stat(path).st_mtime_ns for path in motion_files]
    before = ispyb_rows(finished_session, "SELECT COUNT(*), MAX(maxResolution) FROM CTF")[0]
    assert before == (2, pytest.approx(5.0))

    config = yaml.safe_load(finished_session.read_text())
    config["ctf"]["max_resolution_angstrom"] = 6.0
    finished_session.write_text(yaml.safe_dump(config, sort_keys=False))

    plan = snakemake(finished_session, "--dry-run", "--quiet", "rules")
    assert plan.returncode == 0, plan.stderr[-3000:]
    counts = job_counts(plan.stdout + plan.stderr)
    assert counts.get("ctf_estimate") == 1, counts  # the one chunk of both movies
    upstream = {"import_movies", "motion_correct", "corrected_micrographs_star", "pick_particles"}
    # picking reads the motion-corrected sums (the CTF only with picking.ctf_filter: true)
    assert not upstream & set(counts), counts
    assert counts.get("ispyb_ingest") == 1, counts

    result = snakemake(finished_session)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [os.stat(path).st_mtime_ns for path in motion_files] == motion_times
    rows = ispyb_rows(finished_session, "SELECT maxResolution FROM CTF")
    assert sorted(row[0] for row in rows) == [pytest.approx(6.0)] * 2  # updated, not added
    for table in ("Movie", "MotionCorrection"):
        assert ispyb_rows(finished_session, f"SELECT COUNT(*) FROM {table}")[0][0] == 2, table
