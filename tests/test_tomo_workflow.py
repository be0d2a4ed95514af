"""The tomography workflow end to end through Snakemake on a simulated session."""

import json
import os
import subprocess
import sys
from pathlib import Path

import mrcfile
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.mark.slow
def test_snakemake_tomography_session(tmp_path):
    config = tmp_path / "config.yaml"
    subprocess.run(
        [BIN / "emproc", "simulate", "tomo", tmp_path / "session", "--write-config", config],
        check=True,
        capture_output=True,
    )
    run = subprocess.run(
        [
            BIN / "snakemake",
            "--snakefile",
            ROOT / "Snakefile",
            "--configfile",
            config,
            "--cores",
            "2",
            "--quiet",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    table = pd.read_csv(tmp_path / "processed" / "tomograms.csv")
    assert list(table["tilt_series_name"]) == ["Position_1"]
    row = table.iloc[0]
    # the default simulated series has no bad tilt: CTF estimation must not drop any
    assert row["number_of_tilts_used"] == 41
    assert row["number_of_tilts_excluded"] == 0
    assert (row["min_tilt_deg"], row["max_tilt_deg"]) == (-60, 60)
    # the simulated series has gold beads (the demo's default): the fiducial path aligns it
    summary = json.loads(
        (tmp_path / "processed" / "Tomograms" / "Position_1" / "Position_1_tomo.json").read_text()
    )
    assert summary["alignment_method"] == "fiducial", summary["alignment_fallback_reason"]
    assert summary["fiducial_beads_used"] >= 5
    assert summary["alignment_residual_mean_nm"] < 0.5
    assert Path(summary["fiducial_model_path"]).read_bytes()[:8] == b"IMODV1.2"
    with mrcfile.open(row["tomogram_path"]) as mrc:
        assert float(mrc.voxel_size.x) == pytest.approx(8.0)  # 4 A/px x binning 2
        assert mrc.data.shape == (72, 128, 128)
    # denoising is on by default: the denoised tomogram and PATo's images of it, named as
    # Diamond's services name them, from the even/odd frames of the 4-frame movies
    denoised = Path(summary["denoised_tomogram_path"])
    assert denoised.name == "Position_1_rec.denoised.mrc"
    with mrcfile.open(denoised) as mrc:
        assert mrc.data.shape == (72, 128, 128)
        assert float(mrc.voxel_size.x) == pytest.approx(8.0)
    assert summary["denoise_halves"] == "frames"
    assert 0.0 < summary["denoise_half_map_correlation"] < 1.0
    for key in ("denoised_thumbnail_path", "denoised_movie_path"):
        assert Path(summary[key]).stat().st_size > 0
