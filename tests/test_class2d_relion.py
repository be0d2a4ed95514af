"""relion_refine backend: command building always; a real run when RELION is installed."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from emproc.classify.evaluation import class_purity, shape_agreement
from emproc.classify.relion import (
    RelionError,
    RelionRefineParams,
    build_relion_refine_command,
    parse_relion_2d,
)
from emproc.classify.run import classify_batch_files
from emproc.extract.star import read_particle_star
from emproc.simulate.particle_stacks import (
    ParticleStackConditions,
    simulate_particle_stack,
    write_extracted_stack,
)

PIXEL = 4.0
# measured: purity RELION 0.88, emproc 0.88, agreement 0.867 (2026-12-01, the default); with
# class2d.score_lowpass_angstrom 18: emproc 0.867, agreement 0.853 (chance ~1/3)
PURITY_FLOOR = 0.75
AGREEMENT_FLOOR = 0.7


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


# small enough for relion_refine on 2 cores: 48 px boxes, 6 classes, a few iterations
CLASSES = 6
RELION_ITERATIONS = 6
SMALL = ParticleStackConditions(
    number_of_particles=150,
    box_size_px=48,
    pixel_size_angstrom=4.2,
    shapes=("dumbbell", "open_barrel", "trefoil"),
    snr=0.3,
    neighbour_fraction=0.0,
)


@pytest.mark.slow
def test_relion_and_emproc_backends_agree_on_which_classes_hold_which_shape(tmp_path):
    stack, truth = simulate_particle_stack(SMALL, seed=4)
    star = write_extracted_stack(tmp_path, "m", stack, truth, SMALL)
    members = [{"movie_name": "m", "star_path": str(star), "first": 0, "count": len(stack)}]
    shapes = truth["shape"].to_numpy()
    assigned = {}
    for backend, iterations in (("relion", RELION_ITERATIONS), ("emproc", 10)):
        out = tmp_path / "Class2D" / backend
        summary = classify_batch_files(
            members,
            batch_number=1,
            output_dir=out,
            project_dir=tmp_path,
            class2d={"backend": backend, "number_of_classes": CLASSES, "iterations": iterations},
        )
        assert json.loads((out / "summary.json").read_text()) == summary
        assert summary["number_of_classes"] == CLASSES and summary["number_of_particles"] == 150
        assert sum(c["particles_per_class"] for c in summary["classes"]) == 150
        assert all(c["estimated_resolution_angstrom"] > 0 for c in summary["classes"])
        _, particles = read_particle_star(out / "particles.star")
        assigned[backend] = particles["rlnClassNumber"].to_numpy()
    assert (
        tmp_path / "Class2D" / "relion" / "relion" / f"run_it{RELION_ITERATIONS:03d}_model.star"
    ).is_file()
    scores = {backend: class_purity(classes, shapes) for backend, classes in assigned.items()}
    agreement = shape_agreement(assigned["emproc"], assigned["relion"], shapes)
    print(
        {b: round(score.purity, 3) for b, score in scores.items()}, "agreement", round(agreement, 3)
    )
    for backend, score in scores.items():
        # each backend gives every shape a class of its own, and its classes follow shapes
        assert score.dominant_shapes == set(SMALL.shapes), backend
        assert score.purity >= PURITY_FLOOR, (backend, score.purity)
    # the two class-to-shape maps, compared particle by particle (chance: ~1/3)
    assert agreement >= AGREEMENT_FLOOR, agreement
