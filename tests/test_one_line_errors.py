"""Failures a user meets end in one line naming the cause; the detail is in the rule's log."""

import re
import sys
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import yaml

from tests.workflow_helpers import emproc_status, simulated_spa_run, snakemake


@pytest.mark.slow
def test_every_movie_failing_stops_the_aggregates_with_one_line_each(tmp_path: Path):
    config_path = simulated_spa_run(tmp_path, movies=2, size=128, frames=2)
    config = yaml.safe_load(config_path.read_text())
    # the gain of another detector (snakemake started by hand: no validate-config first)
    gain = tmp_path / "other_detector_gain.mrc"
    with mrcfile.new(gain) as mrc:
        mrc.set_data(np.ones((64, 96), dtype=np.float32))
    config["microscope"].update(gain_reference=str(gain), gain_rotation_deg=0)
    config_path.write_text(yaml.safe_dump(config))
    # and a text file that matches the movie glob
    movies = sorted((tmp_path / "session").glob("Images-Disc1/GridSquare_*/Data/*.tiff"))
    text = movies[0].with_name("FoilHole_1_Data_2_3_20261129_093000_fractions.tiff")
    text.write_text("not a movie\n")

    processed = tmp_path / "processed"
    stars = [
        str(processed / name) for name in ("corrected_micrographs.star", "micrographs_ctf.star")
    ]
    result = snakemake(config_path, "--keep-going", *stars)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("emproc aggregate")]
    assert len(lines) == 2, result.stderr[-3000:]
    for line, stage in zip(lines, ("motion correction", "CTF estimation"), strict=True):
        assert f"no movie got through {stage}: 3 movie(s) failed, e.g. " in line
        assert f"emproc status {processed}" in line
    assert "KeyError" not in result.stderr and "CtfStarError" not in result.stderr
    assert "Traceback" not in result.stderr
    assert "Traceback" in (processed / "logs" / "corrected_micrographs.log").read_text()
    # emproc status: the text file was never imported; the gain is named for the others
    status = emproc_status(processed)
    counts = dict(re.findall(r"^  (imported|failed movies) +(\d+)$", status, flags=re.M))
    assert counts == {"imported": "2", "failed movies": "3"}, status
    assert f"{text.name}: corrupt TIFF" in status
    assert status.count(f"{gain}: gain reference has shape (64, 96)") == 2


def test_a_run_that_stopped_ends_with_one_line_saying_where_to_look(tmp_path: Path, capsys):
    from emproc.cli import run_session

    assert run_session([sys.executable, "-c", "raise SystemExit(1)"], tmp_path) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("emproc: the workflow stopped with an error (exit status 1)")
    assert "each failed rule's log has the detail" in last
