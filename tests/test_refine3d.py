"""The 3D steps: pure parts always; RELION 3.1 runs against the particles3d generator's truth."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import starfile

from emproc.extract.star import read_particle_star, write_particle_star
from emproc.refine3d.bfactor import BFactorParams, fit_bfactor, run_bfactor, subset_sizes
from emproc.refine3d.maps import fsc, lowpass, read_map, resolution_at, solvent_mask
from emproc.refine3d.relion import Compute, relion_command
from emproc.refine3d.selection import merge_selected_particles
from emproc.refine3d.steps import Common3DParams, PostprocessParams, best_class, make_mask
from emproc.simulate.particles3d import Particles3DParams, make_atom_density, write_particles

# The RELION ground-truth gates run in `make test` at small sizes (docs/spa3d.md, "Gates":
# 40-145 CPU s each, measured).


def test_relion_command_threads_mpi_and_nice():
    assert relion_command("relion_refine", ["--i", "a"], Compute(threads=2)) == [
        "relion_refine", "--i", "a", "--j", "2",
    ]  # fmt: skip
    command = relion_command("relion_refine", ["--i", "a"], Compute(1, mpi_ranks=3, nice=5))
    assert command[:3] == ["nice", "-n", "5"]
    assert command[3] == "mpirun" and command[command.index("-np") + 1] == "3"
    assert "relion_refine_mpi" in command and command[-2:] == ["--j", "1"]
    assert "--j" not in relion_command("relion_postprocess", ["--i", "a"], Compute(threads=2))


def test_small_box_options_reach_relion():
    from emproc.refine3d.steps import _common_arguments

    default = _common_arguments(Common3DParams(100.0))
    assert default[default.index("--pad") + 1] == "2" and "--skip_gridding" not in default
    fast = _common_arguments(Common3DParams(100.0, pad=1, skip_gridding=True))
    assert fast[fast.index("--pad") + 1] == "1" and "--skip_gridding" in fast


def test_fsc_and_resolution_at_a_known_filter():
    rng = np.random.default_rng(0)
    volume = rng.normal(size=(32, 32, 32)).astype(np.float32)
    resolution, curve = fsc(volume, volume, 2.0)
    assert np.allclose(curve, 1.0)
    assert resolution[0] == pytest.approx(64.0) and resolution[-1] == pytest.approx(4.0)
    # independent noise of equal power: FSC = SNR / (1 + SNR) with SNR set per shell
    signal = lowpass(volume, 2.0, 8.0)
    noise = signal.std()
    noisy1 = signal + noise * rng.normal(size=signal.shape)
    noisy2 = signal + noise * rng.normal(size=signal.shape)
    resolution, curve = fsc(noisy1, noisy2, 2.0)
    assert curve[0] > 0.9 and abs(curve[-1]) < 0.1
    assert 4.0 < resolution_at(resolution, curve, 0.143) < 16.0
    assert resolution_at(resolution, curve, 0.5) > resolution_at(resolution, curve, 0.143)


def test_solvent_mask_covers_the_particle_softly():
    density = make_atom_density("dumbbell", 80.0, 300, seed=2)
    from emproc.simulate.particles3d import render_volume

    volume = render_volume(density, 40, 4.0, 300.0)
    mask = solvent_mask(volume, 4.0)
    assert mask.min() == 0.0 and mask.max() == 1.0
    assert 0.0 < np.mean((mask > 0) & (mask < 1)) < 0.2  # a soft edge, not a hard step
    # the particle is inside (the rest is the band limit's ringing, spread over the box)
    positive = volume * (volume > 0)
    assert (positive * mask).sum() > 0.9 * positive.sum()
    assert np.mean(mask > 0) < 0.3


@pytest.mark.parametrize("bfactor", [100.0, 400.0, 2000.0])
def test_bfactor_fit_recovers_the_rosenthal_henderson_law(bfactor):
    counts = np.array([500, 1000, 2000, 4000, 8000])
    inverse_d2 = 2.0 / bfactor * np.log(counts) - 0.05
    inverse_d2 = inverse_d2 - inverse_d2.min() + 0.005
    fit = fit_bfactor(counts, 1.0 / np.sqrt(inverse_d2))
    assert fit["bfactor_rosenthal_henderson_angstrom2"] == pytest.approx(bfactor, rel=1e-6)
    # the shell-corrected fit of the same points: the +d^2 it removes makes it smaller
    assert fit["bfactor_angstrom2"] < bfactor
    # points made with the voxel-count term: the corrected fit recovers B exactly
    d = np.linspace(12.0, 7.0, 5)
    counts = np.exp(bfactor / (2 * d**2) - np.log(d) + 3.0)
    assert fit_bfactor(counts, d)["bfactor_angstrom2"] == pytest.approx(bfactor, rel=1e-6)
    with pytest.raises(ValueError):
        fit_bfactor(counts[:1], np.array([5.0]))


def test_subset_sizes_are_geometric_up_to_every_particle():
    assert subset_sizes(8000, BFactorParams(number_of_subsets=4, min_particles=1000)) == [
        1000, 2000, 4000, 8000,
    ]  # fmt: skip
    assert subset_sizes(50, BFactorParams(min_particles=100)) == []


def test_best_class_prefers_resolution_then_size_and_skips_tiny_classes():
    classes = pd.DataFrame(
        {
            "rlnEstimatedResolution": [9.0, 7.0, 7.0, 5.0],
            "rlnClassDistribution": [0.5, 0.2, 0.25, 0.05],
        }
    )
    assert best_class(classes, 0.1) == 3
    assert best_class(classes, 0.0) == 4


def test_selection_grows_with_batches(tmp_path):
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnImagePixelSize": [4.0], "rlnImageSize": [32]})

    def batch(number, count):
        particles = pd.DataFrame(
            {
                "rlnImageName": [f"{i + 1:06d}@Extract/b{number}.mrcs" for i in range(count)],
                "rlnOpticsGroup": 1,
                "rlnClassNumber": 3,
                "rlnAnglePsi": 10.0,
                "rlnOriginXAngst": 1.0,
            }
        )
        path = tmp_path / f"batch_{number}" / "particles_selected.star"
        path.parent.mkdir()
        write_particle_star(path, optics, particles)
        return path

    first = [batch(1, 30)]
    out, summary = tmp_path / "Select/particles_selected.star", tmp_path / "Select/selection.json"
    assert not merge_selected_particles(first, out, summary, 50)["ready_for_3d"]
    grown = merge_selected_particles([*first, batch(2, 25)], out, summary, 50)
    assert grown["number_of_particles"] == 55 and grown["ready_for_3d"]
    _, particles = read_particle_star(out)
    assert len(particles) == 55 and "rlnClassNumber" not in particles
    assert "rlnAnglePsi" not in particles and "rlnOriginXAngst" in particles
    assert json.loads(summary.read_text())["number_of_particles"] == 55


# --- RELION against ground truth ----------------------------------------------------------


def _with_true_angles(directory, star):
    """The particles with the generator's true orientations and origins (RELION's origin is
    minus the particle's offset from the box centre)."""
    optics, particles = read_particle_star(star)
    truth = pd.read_csv(directory / "truth.csv")
    particles["rlnAngleRot"] = truth["rot_deg"]
    particles["rlnAngleTilt"] = truth["tilt_deg"]
    particles["rlnAnglePsi"] = truth["psi_deg"]
    particles["rlnOriginXAngst"] = -truth["shift_x_angstrom"]
    particles["rlnOriginYAngst"] = -truth["shift_y_angstrom"]
    particles["rlnRandomSubset"] = 1 + np.arange(len(particles)) % 2
    path = directory / "true_angles.star"
    write_particle_star(path, optics, particles)
    return path


def test_bfactor_fit_slope_matches_the_applied_bfactor(tmp_path):
    # C4-shaped particles with B = 500 A^2 (64 px at 2 A/px; C1 reconstruction), at their
    # true orientations: the B fitted over subsets of 200 .. 4000 particles is the applied
    # one within 20 % (measured 551, +10 %; the plain Rosenthal-Henderson fit read 605, +21 %,
    # docs/spa3d.md). 68 s of CPU, one core (28 s of it the 4,000-particle generator):
    # smaller boxes or fewer particles leave too few Fourier shells between the subsets'
    # resolutions for a 20 % slope (40 px, 2,000 particles: +60 %)
    applied = 500.0
    box, pixel = 64, 2.0
    density = make_atom_density("tetramer", 0.6 * box * pixel, 300, seed=1)
    params = Particles3DParams(
        box_px=box, pixel_size_angstrom=pixel, number_of_particles=4000,
        bfactor_angstrom2=applied, snr=0.05, seed=1, particle_diameter_angstrom=0.7 * box * pixel,
    )  # fmt: skip
    star = write_particles(tmp_path, [density], params)
    true_angles = _with_true_angles(tmp_path, star)
    make_mask(tmp_path / "truth_1.mrc", tmp_path / "mask.mrc", PostprocessParams())
    result = run_bfactor(
        true_angles, tmp_path / "truth_1.mrc", tmp_path / "mask.mrc", tmp_path / "BFactor",
        tmp_path, Common3DParams(0.7 * box * pixel), BFactorParams(number_of_subsets=7,
        min_particles=200, seed=1), compute=Compute(),
    )  # fmt: skip
    resolutions = [row["resolution_angstrom"] for row in result["subsets"]]
    assert resolutions[0] > resolutions[-1] > 2 * pixel  # not limited by Nyquist
    assert result["bfactor_angstrom2"] == pytest.approx(applied, rel=0.2)
    assert result["bfactor_rosenthal_henderson_angstrom2"] > result["bfactor_angstrom2"]
    for row in result["subsets"]:
        assert starfile.read(row["postprocess_star"], always_dict=True)["fsc"] is not None


# make test size: 32 px at 4 A/px (Nyquist 8 A), particles of ~77 A. Alignment needs the
# signal of a whole particle: a 32-px particle has ~300 pixels where a real one has ~30,000,
# so per-pixel SNR 1 here carries about the alignment information of SNR 0.01 on a real box.
SMALL = dict(box_px=32, pixel_size_angstrom=4.0, snr=1.0, bfactor_angstrom2=150.0)
DIAMETER = 0.75 * 32 * 4.0
QUICK = dict(offset_range_px=2.0, offset_step_px=1.0)
# no Fourier padding of the references, no gridding correction: the M-step (reconstruction)
# costs several times less at these boxes (docs/spa3d.md)
FAST = dict(pad=1, skip_gridding=True)


def test_refined_map_reaches_the_resolution_the_data_support(tmp_path):
    # 600 C4 particles refined from the true map low-passed to 30 A (RELION's --ini_high):
    # the refined map's FSC with the true map reaches 0.143 within 2.5 pixels (10 A) and
    # within 1.3x of the reconstruction at the true orientations (what these particles
    # support: Nyquist, 8 A). Global searches at 15 deg, local from 7.5 deg on. Measured
    # (RELION's CPU: 118 s over two follower ranks, 13 iterations): 8.0 A, post 8.0 A.
    from emproc.refine3d.steps import RefineParams, run_postprocess, run_refine

    density = make_atom_density("tetramer", 0.6 * 32 * 4.0, 300, seed=1)
    params = Particles3DParams(number_of_particles=600, seed=2, **SMALL)
    star = write_particles(tmp_path, [density], params)
    common = Common3DParams(DIAMETER, symmetry="C4", **FAST)
    refined = run_refine(
        star, tmp_path / "truth_1.mrc", tmp_path / "Refine3D", tmp_path, common,
        RefineParams(healpix_order=2, local_healpix_order=3, **QUICK), Compute(),
    )  # fmt: skip
    post = run_postprocess(
        refined["half1_map_path"], tmp_path / "PostProcess", tmp_path, PostprocessParams(),
        mask_from_map=refined["map_path"],
    )  # fmt: skip
    for name in ("run_class001.mrc", "run_model.star", "run_data.star"):
        assert (tmp_path / "Refine3D" / name).is_file()
    assert (tmp_path / "PostProcess" / "postprocess.star").is_file()
    truth, pixel = read_map(tmp_path / "truth_1.mrc")
    mask, _ = read_map(post["mask_path"])
    refined_map, _ = read_map(refined["map_path"])
    resolution, achieved_curve = fsc(refined_map * mask, truth * mask, pixel)
    achieved = resolution_at(resolution, achieved_curve)
    # the resolution these particles support: reconstructed at their true orientations
    import subprocess

    true_angles = _with_true_angles(tmp_path, star)
    subprocess.run(
        ["relion_reconstruct", "--i", true_angles.name, "--o", "ideal.mrc", "--ctf",
         "--sym", "C4"], cwd=tmp_path, check=True, capture_output=True,
    )  # fmt: skip
    ideal_map, _ = read_map(tmp_path / "ideal.mrc")
    supported_curve = fsc(ideal_map * mask, truth * mask, pixel)[1]
    supported = resolution_at(resolution, supported_curve)
    assert supported < 2.2 * pixel  # the data support (almost) Nyquist
    assert achieved <= 2.5 * pixel
    assert achieved <= 1.3 * supported
    # both reach Nyquist (measured 8.0 A each), so also compare the correlation with the
    # truth at the Nyquist shell: measured 0.65 refined vs 0.84 at the true orientations
    # (SNR 0.1 particles, aligned to ~10 deg, gave ~0 here and 17.5 A at 0.143)
    assert achieved_curve[-1] >= 0.6 * supported_curve[-1]
    assert 2 * pixel <= post["resolution_angstrom"] < 4 * pixel
    assert np.isfinite(post["sharpening_bfactor_angstrom2"])


def test_class3d_separates_two_densities_in_known_proportions(tmp_path):
    # a 70:30 mixture of two shapes (24 px at 6 A/px), classified into K = 2 from one
    # low-passed reference (the majority's true map at 40 A): >= 90 % of particles in the
    # class of their density, and the class sizes as mixed within 0.1. Measured: 0.952,
    # 0.70/0.30, 43 s of RELION CPU; the classes separate slowly from one reference (0.78 at
    # iteration 10, 0.92 from iteration 21), hence 25 cheap iterations at healpix order 1.
    # Another 500-particle draw: 0.996; an 800-particle draw stayed at 0.61: not every draw
    # passes (docs/spa3d.md)
    from emproc.refine3d.steps import Class3DParams, run_class3d

    box, pixel = 24, 6.0
    densities = [
        make_atom_density("tetramer", 0.6 * box * pixel, 300, seed=1),
        make_atom_density("dumbbell", 0.6 * box * pixel, 300, seed=2),
    ]
    params = Particles3DParams(
        box_px=box, pixel_size_angstrom=pixel, number_of_particles=500, snr=1.0,
        bfactor_angstrom2=150.0, class_fractions=(0.7, 0.3), seed=3,
    )  # fmt: skip
    star = write_particles(tmp_path, densities, params)
    result = run_class3d(
        star, tmp_path / "truth_1.mrc", tmp_path / "Class3D", tmp_path,
        Common3DParams(0.75 * box * pixel, **FAST),
        Class3DParams(number_of_classes=2, iterations=25, healpix_order=1,
                      offset_range_px=1.0, offset_step_px=1.0),
        Compute(),
    )  # fmt: skip
    _, data = read_particle_star(result["data_star"])
    truth = pd.read_csv(tmp_path / "truth.csv").set_index("image_name")
    true_class = truth.loc[data["rlnImageName"], "class_number"].to_numpy()
    found = data["rlnClassNumber"].to_numpy()
    agreement = max(np.mean(found == true_class), np.mean(found == 3 - true_class))
    assert agreement >= 0.9
    assert len(result["classes"]) == 2
    assert sum(c["particles_per_class"] for c in result["classes"]) == 500
    fractions = sorted(c["particles_per_class"] / 500 for c in result["classes"])
    assert fractions == pytest.approx([0.3, 0.7], abs=0.1)
    assert (tmp_path / "Class3D" / "best_class_particles.star").is_file()


def test_report_section_shows_maps_fsc_and_bfactor(tmp_path):
    from emproc.io.atomic import write_json_atomic
    from emproc.refine3d.maps import write_map
    from emproc.report.page import render_report

    volume = np.random.default_rng(0).normal(size=(16, 16, 16)).astype(np.float32)
    write_map(tmp_path / "map.mrc", volume, 4.0)
    steps = {
        "initial_model": {"map_path": str(tmp_path / "map.mrc"), "resolution_angstrom": 20.0},
        "refine": {"map_path": str(tmp_path / "map.mrc"), "number_of_particles": 900},
        "postprocess": {
            "resolution_angstrom": 9.5,
            "sharpening_bfactor_angstrom2": -310.0,
            "fsc": {
                "resolution_angstrom": [999.0, 64.0, 32.0, 16.0, 8.0],
                "fsc_corrected": [1.0, 0.99, 0.9, 0.3, 0.01],
                "fsc_unmasked": [1.0, 0.98, 0.8, 0.2, 0.0],
            },
        },
        "bfactor": {
            "bfactor_angstrom2": 400.0,
            "slope_per_angstrom2": 0.005,
            "intercept_per_angstrom2": -0.02,
            "subsets": [
                {"number_of_particles": n, "resolution_angstrom": d}
                for n, d in ((200, 14.0), (400, 12.0), (800, 10.5))
            ],
        },
    }
    paths = {}
    for step, summary in steps.items():
        paths[step] = str(tmp_path / f"{step}.json")
        write_json_atomic(paths[step], summary)
    write_json_atomic(
        tmp_path / "spa3d.json",
        {"number_of_selected_particles": 900, "min_particles_for_3d": 500, "steps": paths},
    )
    page = render_report(tmp_path, "t")
    assert "<h2>3D</h2>" in page and "9.50 A" in page and "B-factor fit: 400" in page
    assert page.count("data:image/png") >= 4  # initial model, refined map, FSC, B-factor


def test_every_step_runs_from_the_config_and_writes_relion_files(tmp_path):
    # the whole chain through emproc.refine3d.pipeline at a tiny size (24 px, coarse
    # settings): RELION's standard files and every summary key the ISPyB ingest reads.
    # 144 CPU s (serial SGD and class3d, 2-rank refine): the one test of config -> RELION
    import yaml

    from emproc.config import WORKFLOW_ROOT, validate_config
    from emproc.refine3d.pipeline import run_step

    config = validate_config(yaml.safe_load((WORKFLOW_ROOT / "config/config.yaml").read_text()))
    spa3d = config["spa3d"]
    spa3d.update(pad=1, skip_gridding=True)
    spa3d["initial_model"].update(
        iterations_initial=2, iterations_inbetween=2, iterations_final=2,
        subset_initial=50, subset_final=100, offset_range_px=2.0, offset_step_px=1.0,
    )  # fmt: skip
    # centred particles (no shifts): a 2-px translation search, not the 5-6 px of real boxes,
    # which made each class3d iteration ~40 CPU s here
    quick = dict(offset_range_px=2.0, offset_step_px=1.0)
    spa3d["class3d"].update(number_of_classes=2, iterations=2, healpix_order=1, **quick)
    spa3d["refine"].update(healpix_order=1, local_healpix_order=2, **quick)
    spa3d["bfactor"].update(number_of_subsets=3, min_particles=100)
    density = make_atom_density("dumbbell", 80.0, 200, seed=1)
    params = Particles3DParams(
        box_px=24, pixel_size_angstrom=6.0, number_of_particles=400, snr=0.3,
        bfactor_angstrom2=300.0, max_shift_angstrom=0.0,
    )  # fmt: skip
    star = write_particles(tmp_path, [density], params)

    def step(name, **inputs):
        summary = tmp_path / name / "summary.json"
        run_step(
            name, {k: str(v) for k, v in inputs.items()}, tmp_path / name, summary, tmp_path,
            spa3d, default_diameter_angstrom=100.0,
        )  # fmt: skip
        return json.loads(summary.read_text())

    initial = step("initial_model", particles=star)
    assert initial["number_of_particles"] == 400 and (tmp_path / "initial_model").is_dir()
    classes = step("class3d", particles=star, reference=initial["map_path"])
    assert {c["class_number"] for c in classes["classes"]} == {1, 2}
    assert sum(c["selected"] for c in classes["classes"]) == 1
    for key in ("rotation_accuracy_deg", "translation_accuracy_angstrom",
                "estimated_resolution_angstrom", "overall_fourier_completeness",
                "class_distribution", "particles_per_class", "class_map_path"):  # fmt: skip
        assert key in classes["classes"][0]
    refined = step(
        "refine", particles=classes["best_class_particles_star"],
        reference=classes["best_class_map"],
    )  # fmt: skip
    assert (tmp_path / "refine" / "run_class001.mrc").is_file()
    assert (tmp_path / "refine" / "run_model.star").is_file()
    post = step("postprocess", refine_summary=tmp_path / "refine" / "summary.json")
    assert (tmp_path / "postprocess" / "postprocess.star").is_file()
    assert post["resolution_angstrom"] >= 12.0  # Nyquist
    bfactor = step(
        "bfactor", refine_summary=tmp_path / "refine" / "summary.json",
        postprocess_summary=tmp_path / "postprocess" / "summary.json",
    )  # fmt: skip
    assert len(bfactor["subsets"]) >= 2
    assert {"number_of_particles", "particle_batch_size", "resolution_angstrom"} <= set(
        bfactor["subsets"][0]
    )
    assert refined["number_of_particles"] == bfactor["number_of_particles"]
