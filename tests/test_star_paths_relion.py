"""The STAR files of one output directory name micrographs the same way (relative to the
output directory, RELION's project directory), so RELION's own programs join them: checked
with Debian's RELION 3.1 (relion_star_handler, relion_preprocess --reextract_data_star)."""

import shutil
import subprocess
from pathlib import Path

import pytest
import starfile
import yaml

from emproc.simulate.cli import spa_config
from emproc.simulate.spa import SpaMovieParams, simulate_spa_session
from tests.workflow_helpers import snakemake

pytestmark = pytest.mark.slow


def _relion(program: str, *arguments: str, cwd: Path) -> str:
    if shutil.which(program) is None:  # the setup installs RELION (tools/bootstrap.sh)
        pytest.fail(f"{program} not on PATH: install Debian's relion (tools/bootstrap.sh)")
    result = subprocess.run(
        [program, *arguments], cwd=cwd, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout


@pytest.fixture(scope="module", params=[True, False], ids=["dose_weighted", "plain_sums"])
def processed(tmp_path_factory, request) -> Path:
    """Two movies run to the STAR tables, with and without dose weighting (RELION names the
    plain sum rlnMicrographName then)."""
    root = tmp_path_factory.mktemp("relion")
    # 2 A/px: 150 A particles are 75 px, so a 320 px movie holds several
    params = SpaMovieParams(
        shape_px=(320, 320),
        number_of_frames=4,
        pixel_size_angstrom=2.0,
        number_of_particles=8,
        total_drift_px=2.0,
    )
    truth = simulate_spa_session(root / "session", number_of_movies=2, params=params, seed=3)
    config = spa_config(truth, root / "session", root / "processed")
    config["extraction"].update(box_size_px=64, downscale_size_px=32, bg_radius_px=12)
    config["motion"]["dose_weighting"] = request.param
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    stars = ("corrected_micrographs.star", "micrographs_ctf.star", "particles.star")
    result = snakemake(path, *(str(root / "processed" / name) for name in stars))
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "processed"


def test_every_star_file_names_micrographs_relative_to_the_output_directory(processed):
    tables = {
        name: starfile.read(processed / name, always_dict=True)
        for name in ("corrected_micrographs.star", "micrographs_ctf.star", "particles.star")
    }
    particles = tables["particles.star"]["particles"]
    assert len(particles) > 0
    for name, blocks in tables.items():
        table = blocks["particles" if name == "particles.star" else "micrographs"]
        for column in ("rlnMicrographName", "rlnMicrographNameNoDW", "rlnCtfImage"):
            for value in table.get(column, []):
                file = str(value).removesuffix(":mrc")
                assert not Path(file).is_absolute(), (name, column, value)
                assert (processed / file).is_file(), (name, column, value)
    micrographs = set(tables["micrographs_ctf.star"]["micrographs"]["rlnMicrographName"])
    assert set(particles["rlnMicrographName"]) <= micrographs


def test_relion_joins_particles_to_micrographs(processed, tmp_path):
    # micrograph tables agree entry by entry on rlnMicrographName
    report = _relion(
        "relion_star_handler",
        "--i",
        "micrographs_ctf.star",
        "--compare",
        "corrected_micrographs.star",
        "--label1",
        "rlnMicrographName",
        "--o",
        str(tmp_path / "compare.star"),
        cwd=processed,
    )
    assert "2 entries occur in both input STAR files" in report
    assert "0 entries occur only in the 1st" in report
    assert "0 entries occur only in the 2nd" in report
    # re-extraction finds each particle's micrograph by rlnMicrographName (as polishing and
    # CTF refinement do): every particle of particles.star comes back
    expected = len(starfile.read(processed / "particles.star")["particles"])
    _relion(
        "relion_preprocess",
        "--i",
        "micrographs_ctf.star",
        "--reextract_data_star",
        "particles.star",
        "--part_star",
        str(tmp_path / "reextracted.star"),
        "--part_dir",
        f"{tmp_path.name}_Reextract/",
        "--extract",
        "--extract_size",
        "64",
        cwd=processed,
    )
    # no match writes a STAR without a particles block
    reextracted = starfile.read(tmp_path / "reextracted.star", always_dict=True)
    assert len(reextracted.get("particles", [])) == expected > 0
