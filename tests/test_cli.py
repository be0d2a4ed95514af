import subprocess
import sys
from pathlib import Path

import yaml

from emproc.cli import _config_overrides, main, snakemake_command, split_config_overrides
from emproc.config import WORKFLOW_ROOT, load_config


def _config_for(tmp_path: Path, session_dir: Path) -> Path:
    config = load_config(WORKFLOW_ROOT / "config" / "config.yaml")
    config["session"]["session_dir"] = str(session_dir)
    config["outputs"]["dir"] = str(tmp_path / "out")
    config["microscope"]["gain_reference"] = ""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_validate_config_reports_a_glob_matching_nothing_in_one_line(tmp_path, capsys):
    (tmp_path / "session").mkdir()
    config = _config_for(tmp_path, tmp_path / "session")
    assert main(["validate-config", str(config)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0
    assert error.startswith("emproc: error: no movies match")


def test_validate_config_reports_a_missing_session_dir(tmp_path, capsys):
    config = _config_for(tmp_path, tmp_path / "absent")
    assert main(["validate-config", str(config)]) == 2
    assert "session directory does not exist" in capsys.readouterr().err


def test_run_refuses_a_bad_config_before_starting_snakemake(tmp_path, capsys):
    config = _config_for(tmp_path, tmp_path)
    text = config.read_text().replace("voltage_kv: 300.0", "voltage_kv: fast")
    config.write_text(text)
    assert main(["run", "--configfile", str(config), "--dry-run"]) == 2
    assert "microscope.voltage_kv" in capsys.readouterr().err


def test_pass_through_arguments_and_overrides():
    assert _config_overrides(
        ["--dry-run", "--config", "session_dir=/x", "output_dir=/y", "-p"]
    ) == {
        "session_dir": "/x",
        "output_dir": "/y",
    }
    # emproc run puts the overrides into the run config and passes the rest on
    assert split_config_overrides(
        ["--dry-run", "--config", "session_dir=rel/x", "-p", "target.star"]
    ) == ({"session_dir": "rel/x"}, ["--dry-run", "-p", "target.star"])
    command = snakemake_command("c.yaml", "profiles/slurm", None, ["--dry-run"])
    assert command[-5:] == ["--configfile", "c.yaml", "--profile", "profiles/slurm", "--dry-run"]


def test_snakemake_itself_stops_with_one_line_on_bad_config(tmp_path):
    config = _config_for(tmp_path, tmp_path / "absent")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(WORKFLOW_ROOT / "Snakefile"),
            "--configfile",
            str(config),
            "--dry-run",
            "--cores",
            "1",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode != 0
    assert "emproc: error: session directory does not exist" in result.stderr
    assert "Traceback" not in result.stderr
