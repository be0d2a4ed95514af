"""rules/particles.smk end to end under Snakemake: picking -> extraction -> batches -> 2D.

Upstream products (dose-weighted sum, CTF and import JSON) are written by the test, so only
rules/common.smk and rules/particles.smk are included.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mrcfile
import pytest

from emproc.simulate.spa_movie import SpaMovieParams, simulate_micrograph

REPO = Path(__file__).resolve().parents[1]
MOVIE_DIR = "Images-Disc1/GridSquare_1/Data"


def add_movie(tmp_path: Path, index: int) -> str:
    name = f"{MOVIE_DIR}/FoilHole_{index}_Data_1_{index}_20261129_1000{index}_fractions"
    movie = tmp_path / "session" / f"{name}.tiff"
    movie.parent.mkdir(parents=True, exist_ok=True)
    movie.write_bytes(b"placeholder")  # discovered only; never read by these rules
    image, truth = simulate_micrograph(SpaMovieParams(), 300 + index)
    out = tmp_path / "out"
    micrograph = out / "MotionCorr" / f"{name}_DW.mrc"
    micrograph.parent.mkdir(parents=True, exist_ok=True)
    with mrcfile.new(micrograph, overwrite=True) as mrc:
        mrc.set_data(image)
        mrc.voxel_size = 1.0
    ctf = out / "CtfFind" / f"{name}_ctf.json"
    ctf.parent.mkdir(parents=True, exist_ok=True)
    ctf.write_text(
        json.dumps(
            {
                "defocus_u_angstrom": truth.defocus_u_angstrom,
                "defocus_v_angstrom": truth.defocus_v_angstrom,
                "astigmatism_angle_deg": truth.astigmatism_angle_deg,
                "phase_shift_deg": 0.0,
            }
        )
    )
    metadata = out / "Import" / f"{name}.json"
    metadata.parent.mkdir(parents=True, exist_ok=True)
    metadata.write_text(
        json.dumps(
            {
                "voltage_kv": 300.0,
                "spherical_aberration_mm": 2.7,
                "amplitude_contrast": 0.1,
                "optics_group": 1,
                "optics_group_name": "opticsGroup1",
                "timestamp": f"2026-11-29T10:0{index}:00",
            }
        )
    )
    return name


def add_chunk(tmp_path: Path, chunk: str, movies: list[str]) -> None:
    """Manifests of the stages these rules follow, as the import/motion/CTF chunk jobs write them."""
    for stage in ("import", "motion", "ctf"):
        path = tmp_path / "out" / "Chunks" / chunk / f"{stage}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps({"chunk": chunk, "stage": stage, "members": movies, "succeeded": movies})
        )


def run_snakemake(tmp_path: Path) -> str:
    result = subprocess.run(
        [
            sys.executable, "-m", "snakemake", "--snakefile", str(tmp_path / "Snakefile"),
            "--directory", str(tmp_path), "--cores", "2",
            "--configfile", str(REPO / "config" / "config.yaml"), str(tmp_path / "override.yaml"),
        ],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stderr


@pytest.mark.slow
def test_particle_rules_run_and_full_batches_stay_frozen(tmp_path):
    (tmp_path / "Snakefile").write_text(
        f'include: "{REPO}/rules/common.smk"\n'
        f'include: "{REPO}/rules/particles.smk"\n\n'
        "rule all:\n    default_target: True\n    input: PARTICLE_TARGETS\n"
    )
    (tmp_path / "override.yaml").write_text(
        f"session: {{session_dir: {tmp_path / 'session'}}}\n"
        f"outputs: {{dir: {tmp_path / 'out'}}}\n"
        "class2d: {batch_size: 30, number_of_classes: 3, iterations: 3}\n"
    )
    add_chunk(tmp_path, "00001", [add_movie(tmp_path, index) for index in range(2)])
    run_snakemake(tmp_path)
    out = tmp_path / "out"
    manifest = json.loads((out / "Class2D" / "batches.json").read_text())
    assert manifest["batches"][0]["complete"]
    summary_path = out / "Class2D" / "batch_1" / "summary.json"
    summary = json.loads(summary_path.read_text())
    assert summary["batch_number"] == 1 and summary["number_of_particles"] == 30
    index = json.loads((out / "Class2D" / "class2d_batches.json").read_text())
    complete = [b["batch_number"] for b in manifest["batches"] if b["complete"]]
    assert [s["batch_number"] for s in index] == complete  # the partial batch waits
    assert (out / "particles.star").read_text().count("@Extract/") == manifest["total_particles"]
    picks = json.loads(next((out / "Picking" / MOVIE_DIR).glob("*_picks.json")).read_text())
    assert picks["number_of_particles"] > 15

    # a new movie arrives: batch 1 keeps its members and is not classified again
    first_batch = manifest["batches"][0]
    written = summary_path.stat().st_mtime_ns
    add_chunk(tmp_path, "00002", [add_movie(tmp_path, 2)])  # a new chunk: chunk 1 is imported
    log = run_snakemake(tmp_path)
    manifest = json.loads((out / "Class2D" / "batches.json").read_text())
    assert manifest["batches"][0] == first_batch
    assert summary_path.stat().st_mtime_ns == written
    assert "pick_particles" in log
