import json
from pathlib import Path

import pytest

from emproc.failures import clear_all_failures, failure_records
from emproc.scripting import step_logging
from emproc.status import format_status, session_status

MOVIE = "Images-Disc1/GridSquare_1/Data/FoilHole_1_Data_2_3_20261129_120000_fractions"


def test_a_failing_step_records_its_error_and_a_later_success_clears_it(tmp_path: Path):
    record = tmp_path / "failures" / "motion" / f"{MOVIE}.json"
    log = tmp_path / "logs" / "motion.log"
    with pytest.raises(ValueError, match="truncated"):
        with step_logging(log, "motion", record):
            raise ValueError("movie.tiff: truncated after frame 3 of 40")
    assert failure_records(tmp_path) == {
        MOVIE: [json.loads(record.read_text())],
    }
    assert "motion failed: movie.tiff: truncated" in log.read_text()
    with step_logging(log, "motion", record):
        pass
    assert failure_records(tmp_path) == {}


def test_clear_all_failures_counts_movies(tmp_path: Path):
    for stage in ("motion", "ctf"):
        with pytest.raises(OSError):
            with step_logging(None, stage, tmp_path / "failures" / stage / f"{MOVIE}.json"):
                raise OSError("disk full")
    assert len(failure_records(tmp_path)[MOVIE]) == 2
    assert clear_all_failures(tmp_path) == 1
    assert failure_records(tmp_path) == {}


def _write(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def test_status_reports_counts_rates_medians_and_failures(tmp_path: Path):
    for index, (defocus, resolution, motion) in enumerate(
        [(10000, 4.0, 10.0), (20000, 5.0, 20.0), (30000, 9.0, 30.0)]
    ):
        name = f"movie_{index}"
        _write(tmp_path / "Import" / f"{name}.json", {"timestamp": f"2026-11-29T10:{index:02d}:00"})
        _write(tmp_path / "MotionCorr" / f"{name}_motion.json", {"total_motion_angstrom": motion})
        _write(
            tmp_path / "CtfFind" / f"{name}_ctf.json",
            {
                "defocus_u_angstrom": defocus + 100,
                "defocus_v_angstrom": defocus - 100,
                "fit_resolution_angstrom": resolution,
            },
        )
        _write(tmp_path / "Picking" / f"{name}_picks.json", {"number_of_particles": 40 + index})
    _write(tmp_path / "failures" / "motion" / "movie_9.json", {"error": "NaN frames"})
    status = session_status(tmp_path)
    assert status.counts["imported"] == status.counts["CTF estimated"] == 3
    assert status.movies_per_hour == pytest.approx(60.0)  # 3 movies over 2 minutes
    assert status.median_defocus_angstrom == 20000
    assert status.median_fit_resolution_angstrom == 5.0
    assert status.median_total_motion_angstrom == 20.0
    assert status.particles == 123
    text = format_status(status)
    assert "movie_9: motion: NaN frames" in text
    assert "particles picked          123" in text
