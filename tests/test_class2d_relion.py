"""relion_refine backend: command building always; a real run when RELION is installed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emproc.classify.relion import (
    RelionError,
    RelionRefineParams,
    build_relion_refine_command,
    parse_relion_2d,
)
from emproc.classify.run import classify_batch_files
from emproc.classify.synthetic import SyntheticStackParams, simulate_particle_stack
from emproc.extract.run import write_stack
from emproc.extract.star import OPTICS_COLUMNS, read_particle_star, write_particle_star

PIXEL = 4.0


def test_command_has_the_2d_options():
    params = RelionRefineParams(5, 25, 180.0, phase_flipped=True, threads=2)
    command = build_relion_refine_command("Class2D/b/particles.star", "Class2D/b/run", params)
    assert command[0] == "relion_refine"
    assert command[command.index("--K") + 1] == "5"
    assert command[command.index("--iter") + 1] == "25"
    assert command[command.index("--particle_diameter") + 1] == "180"
    assert command[command.index("--j") + 1] == "2"
    assert "--ref" not in command  # reference-free
    assert "--ctf" in command and "--ctf_phase_flipped" in command
    assert "--ctf" not in build_relion_refine_command(
        "a", "b", RelionRefineParams(2, 1, 1, ctf=False)
    )


def test_missing_output_is_a_clear_error(tmp_path):
    with pytest.raises(RelionError, match="output missing"):
        parse_relion_2d(tmp_path / "run", 3, pd.Series(["000001@x.mrcs"]), PIXEL, 20.0)


def write_batch(tmp_path: Path, count: int) -> tuple[list[dict], pd.DataFrame]:
    stack, truth = simulate_particle_stack(
        SyntheticStackParams(number_of_particles=count, noise_std=0.2), seed=4
    )
    write_stack(tmp_path / "Extract" / "m.mrcs", stack, PIXEL)
    optics = pd.DataFrame(
        [[1, "opticsGroup1", 0.1, 2.7, 300.0, PIXEL, 1.0, 64, 2]], columns=list(OPTICS_COLUMNS)
    )
    defocus = truth["defocus_angstrom"].to_numpy()
    particles = pd.DataFrame(
        {
            "rlnCoordinateX": np.arange(count, dtype=float),
            "rlnCoordinateY": np.arange(count, dtype=float),
            "rlnImageName": [f"{i:06d}@Extract/m.mrcs" for i in range(1, count + 1)],
            "rlnMicrographName": "MotionCorr/m_DW.mrc",
            "rlnOpticsGroup": 1,
            "rlnDefocusU": defocus,
            "rlnDefocusV": defocus,
            "rlnDefocusAngle": 0.0,
            "rlnPhaseShift": 0.0,
        }
    )
    write_particle_star(tmp_path / "Extract" / "m.star", optics, particles)
    member = {"movie_name": "m", "star_path": str(tmp_path / "Extract" / "m.star"), "first": 0,
              "count": count}  # fmt: skip
    return [member], truth


@pytest.mark.slow
def test_relion_backend_writes_the_same_outputs(tmp_path):
    members, truth = write_batch(tmp_path, 150)
    out = tmp_path / "Class2D" / "batch_1"
    summary = classify_batch_files(
        members,
        batch_number=1,
        output_dir=out,
        project_dir=tmp_path,
        class2d={"backend": "relion", "number_of_classes": 3, "iterations": 5},
    )
    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["number_of_classes"] == 3 and summary["number_of_particles"] == 150
    assert sum(c["particles_per_class"] for c in summary["classes"]) == 150
    assert all(c["estimated_resolution_angstrom"] > 0 for c in summary["classes"])
    assert (out / "relion" / "run_it005_model.star").is_file()
    # RELION's classes also follow the shapes (weak check: 5 iterations, 150 particles)
    _, assigned = read_particle_star(out / "particles.star")
    table = pd.crosstab(assigned["rlnClassNumber"], truth["shape_id"])
    assert table.max(axis=1).sum() / len(truth) > 0.5
