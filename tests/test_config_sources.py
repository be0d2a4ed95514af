"""The experiment's physics comes from the user's config file, however the workflow is
started; validate-config checks the files the config names against the session."""

import shutil
import subprocess
import sys
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import yaml

from emproc.cli import main
from emproc.config import WORKFLOW_ROOT, load_config
from tests.workflow_helpers import simulated_spa_run, snakemake

EXAMPLE = WORKFLOW_ROOT / "config" / "config.yaml"


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ("microscope", "pixel_size_angstrom"),
        ("microscope", "gain_reference"),
        ("session", "session_dir"),  # used to become the example's demo/session
    ],
)
def test_snakemake_started_directly_takes_no_physics_from_the_example_config(
    tmp_path: Path, capsys, section: str, key: str
):
    # started as the README shows, from a directory holding the example config/config.yaml:
    # Snakemake used to merge that file under the user's, so a missing pixel size or gain
    # reference silently became the example's 1.0 A/px and no gain correction
    (tmp_path / "config").mkdir()
    shutil.copy(EXAMPLE, tmp_path / "config" / "config.yaml")
    (tmp_path / "session").mkdir()
    config = load_config(EXAMPLE)
    config["session"]["session_dir"] = str(tmp_path / "session")
    config["outputs"]["dir"] = str(tmp_path / "processed")
    del config[section][key]
    path = tmp_path / "session.yaml"
    path.write_text(yaml.safe_dump(config))

    result = snakemake(path, "--dry-run")
    assert result.returncode != 0
    assert f"'{key}' is a required property" in result.stderr
    assert "Traceback" not in result.stderr
    # the same one line as emproc validate-config
    assert main(["validate-config", str(path)]) == 2
    line = capsys.readouterr().err.strip()
    assert line.count("\n") == 0
    assert line in result.stderr


def test_snakemake_without_a_config_file_says_so(tmp_path: Path):
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(WORKFLOW_ROOT / "Snakefile")]
    result = subprocess.run(
        [*command, "--cores", "1", "--dry-run"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "emproc: error: no configuration: pass --configfile FILE" in result.stderr


@pytest.fixture(scope="module")
def session_config(tmp_path_factory) -> Path:
    return simulated_spa_run(tmp_path_factory.mktemp("checks"), movies=1, size=128, frames=2)


def _with(config_path: Path, tmp_path: Path, **microscope) -> Path:
    config = yaml.safe_load(config_path.read_text())
    config["microscope"].update(microscope)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_validate_config_accepts_the_simulated_session(session_config: Path, capsys):
    assert main(["validate-config", str(session_config)]) == 0
    assert "valid (movies found)" in capsys.readouterr().out


def test_validate_config_refuses_a_gain_reference_that_does_not_exist(
    session_config: Path, tmp_path: Path, capsys
):
    missing = tmp_path / "no_such_gain.mrc"
    path = _with(session_config, tmp_path, gain_reference=str(missing))
    assert main(["validate-config", str(path)]) == 2
    line = capsys.readouterr().err.strip()
    assert line == (
        f"emproc: error: config key 'microscope.gain_reference': file not found: {missing}"
    )


def test_validate_config_refuses_a_gain_of_another_shape_than_the_movies(
    session_config: Path, tmp_path: Path, capsys
):
    gain = tmp_path / "gain_other_detector.mrc"
    with mrcfile.new(gain) as mrc:
        mrc.set_data(np.ones((96, 128), dtype=np.float32))
    path = _with(session_config, tmp_path, gain_reference=str(gain), gain_rotation_deg=0)
    assert main(["validate-config", str(path)]) == 2
    line = capsys.readouterr().err.strip()
    assert line.count("\n") == 0
    assert "config key 'microscope.gain_reference'" in line
    assert str(gain) in line and "(96, 128)" in line and "(128, 128)" in line


def test_validate_config_applies_the_gain_rotation_before_comparing(
    session_config: Path, tmp_path: Path, capsys
):
    # a 128 x 96 gain rotated by 90 degrees is 96 x 128: still not the 128 x 128 frames,
    # while the simulated session's own gain, rotated as configured, fits
    config = yaml.safe_load(session_config.read_text())
    assert config["microscope"]["gain_reference"]
    assert main(["validate-config", str(session_config)]) == 0
    gain = tmp_path / "gain_rotated.mrc"
    with mrcfile.new(gain) as mrc:
        mrc.set_data(np.ones((128, 96), dtype=np.float32))
    path = _with(session_config, tmp_path, gain_reference=str(gain), gain_rotation_deg=90)
    assert main(["validate-config", str(path)]) == 2
    assert "(96, 128)" in capsys.readouterr().err
