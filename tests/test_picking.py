"""LoG picker and picking outputs, checked against the simulator's particle positions."""

from __future__ import annotations

import json
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree

from emproc.picking import LogPickerParams, PickingError, pick_log, pick_micrograph_file
from emproc.picking.cryolo import (
    CryoloError,
    CryoloParams,
    build_cryolo_command,
    cryolo_available,
    parse_cryolo_output,
    run_cryolo,
)
from emproc.picking.io import (
    CoordinateFileError,
    MicrographReadError,
    read_coordinate_star,
    read_micrograph,
    write_coordinate_star,
)
from emproc.simulate.spa_movie import SpaMovieParams, simulate_micrograph

DIAMETER = SpaMovieParams().particle_diameter_angstrom
TOLERANCE_PX = 0.3 * DIAMETER / SpaMovieParams().pixel_size_angstrom


@pytest.fixture(scope="module")
def micrographs():
    return [simulate_micrograph(SpaMovieParams(), seed) for seed in (11, 12, 13)]


def match(picks: pd.DataFrame, truth: pd.DataFrame, tolerance: float) -> tuple[int, int, int]:
    """(true positives among picks, picks, truth particles found)."""
    picked = picks[["x_px", "y_px"]].to_numpy()
    true = truth[["x_px", "y_px"]].to_numpy()
    if len(picked) == 0:
        return 0, 0, 0
    to_truth, _ = cKDTree(true).query(picked)
    to_pick, _ = cKDTree(picked).query(true)
    return int((to_truth < tolerance).sum()), len(picked), int((to_pick < tolerance).sum())


def test_precision_and_recall_on_simulated_micrographs(micrographs):
    # the gate: >= 0.9 within 0.3 particle diameters, with the config's default parameters
    true_positives = picked = found = total = 0
    for image, truth in micrographs:
        picks = pick_log(image, 1.0, LogPickerParams())
        tp, n, f = match(picks, truth.particles, TOLERANCE_PX)
        true_positives, picked, found = true_positives + tp, picked + n, found + f
        total += len(truth.particles)
    assert true_positives / picked >= 0.9
    assert found / total >= 0.9


def test_pick_positions_are_close_to_the_particle_centres(micrographs):
    image, truth = micrographs[0]
    picks = pick_log(image, 1.0)
    distances, _ = cKDTree(truth.particles[["x_px", "y_px"]].to_numpy()).query(
        picks[["x_px", "y_px"]].to_numpy()
    )
    # binned pixel ~6 A: typical error a pixel or two of the binned image
    assert np.median(distances) < 15.0


def test_higher_threshold_picks_fewer(micrographs):
    image, _ = micrographs[0]
    loose = pick_log(image, 1.0, LogPickerParams(threshold_sigma=2.0))
    strict = pick_log(image, 1.0, LogPickerParams(threshold_sigma=6.0))
    assert len(strict) < len(loose)
    assert strict["score_sigma"].min() > 6.0


def test_picks_respect_minimum_separation_and_edges(micrographs):
    image, _ = micrographs[1]
    params = LogPickerParams(threshold_sigma=0.5)  # many picks: stress the suppression
    picks = pick_log(image, 1.0, params)
    xy = picks[["x_px", "y_px"]].to_numpy()
    pairs = cKDTree(xy).query_pairs(0.5 * params.min_diameter_angstrom - 8.0)
    assert not pairs
    edge = 0.5 * params.min_diameter_angstrom - 8.0
    assert np.all((xy > edge) & (xy < np.array(image.shape[::-1]) - edge))


def test_contamination_is_rejected(micrographs):
    image, _ = micrographs[2]
    ny, nx = image.shape
    yy, xx = np.mgrid[:ny, :nx]
    radius = np.hypot(xx - nx / 2, yy - ny / 2)
    # a thick, dark ice contamination 360 A across with a soft rim
    dirty = image * (1.0 - 0.5 * np.clip((180.0 - radius) / 20.0, 0.0, 1.0)).astype(np.float32)
    rejected = pick_log(dirty, 1.0, LogPickerParams())
    kept = pick_log(dirty, 1.0, LogPickerParams(contamination_intensity_change=0.0))

    def inside(picks: pd.DataFrame) -> int:
        return int((np.hypot(picks.x_px - nx / 2, picks.y_px - ny / 2) < 210.0).sum())

    assert inside(kept) > 0  # without rejection the rim is picked
    assert inside(rejected) == 0
    # recall beside contamination: tests/test_picking_matrix.py (the mask reaches about one
    # smoothing width, half the largest diameter, beyond where the absorption crosses 5 %)


def test_empty_micrograph_gives_no_picks():
    rng = np.random.default_rng(0)
    noise = rng.poisson(16.0, (512, 512)).astype(np.float32)
    assert len(pick_log(noise, 1.0, LogPickerParams())) <= 1


def test_bad_parameters_and_images_are_refused():
    with pytest.raises(PickingError, match="min_diameter"):
        LogPickerParams(min_diameter_angstrom=200.0, max_diameter_angstrom=100.0)
    with pytest.raises(PickingError, match="2D micrograph"):
        pick_log(np.zeros((4, 64, 64), np.float32), 1.0)
    bad = np.zeros((128, 128), np.float32)
    bad[3, 3] = np.nan
    with pytest.raises(PickingError, match="NaN"):
        pick_log(bad, 1.0)


def write_mrc(path: Path, image: np.ndarray, pixel_size: float) -> None:
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(image.astype(np.float32))
        mrc.voxel_size = pixel_size


def test_file_entry_point_writes_star_json_and_snapshot(tmp_path, micrographs):
    image, truth = micrographs[0]
    micrograph = tmp_path / "MotionCorr" / "movie_DW.mrc"
    micrograph.parent.mkdir()
    write_mrc(micrograph, image, 1.0)
    out = tmp_path / "Picking"
    summary = pick_micrograph_file(
        micrograph,
        movie_name="movie",
        star_path=out / "movie.star",
        summary_path=out / "movie_picks.json",
        snapshot_path=out / "movie_picks.jpg",
        picking={"min_diameter_angstrom": 120.0, "max_diameter_angstrom": 180.0},
    )
    on_disk = json.loads((out / "movie_picks.json").read_text())
    assert on_disk == summary
    assert set(summary) == {
        "movie_name",
        "number_of_particles",
        "particle_diameter_angstrom",
        "summary_image_path",
        "coordinates_star_path",
    }
    assert summary["particle_diameter_angstrom"] == 150.0
    picks = read_coordinate_star(summary["coordinates_star_path"])
    assert len(picks) == summary["number_of_particles"] > 0.8 * len(truth.particles)
    assert "_rlnCoordinateX" in (out / "movie.star").read_text()
    assert (out / "movie_picks.jpg").read_bytes()[:2] == b"\xff\xd8"  # JPEG magic
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_unknown_backend_is_refused(tmp_path):
    write_mrc(tmp_path / "m.mrc", np.ones((64, 64)), 1.0)
    with pytest.raises(PickingError, match="backend"):
        pick_micrograph_file(
            tmp_path / "m.mrc",
            movie_name="m",
            star_path=tmp_path / "m.star",
            summary_path=tmp_path / "m.json",
            snapshot_path=tmp_path / "m.jpg",
            picking={"backend": "magic"},
        )


def test_unreadable_micrographs_name_the_file(tmp_path):
    with pytest.raises(MicrographReadError, match="not found"):
        read_micrograph(tmp_path / "missing.mrc")
    truncated = tmp_path / "truncated.mrc"
    write_mrc(truncated, np.ones((64, 64)), 1.0)
    truncated.write_bytes(truncated.read_bytes()[:1500])
    with pytest.raises(MicrographReadError, match="truncated.mrc"):
        read_micrograph(truncated)
    no_pixel = tmp_path / "nopixel.mrc"
    write_mrc(no_pixel, np.ones((64, 64)), 0.0)
    with pytest.raises(MicrographReadError, match="pixel size"):
        read_micrograph(no_pixel)


def test_coordinate_star_round_trip_and_errors(tmp_path):
    picks = pd.DataFrame(
        {
            "x_px": [10.5, 20.0],
            "y_px": [30.0, 40.25],
            "score_sigma": [5.0, 4.0],
            "diameter_angstrom": [150.0, 150.0],
        }
    )
    write_coordinate_star(tmp_path / "c.star", picks)
    back = read_coordinate_star(tmp_path / "c.star")
    np.testing.assert_allclose(
        back[["x_px", "y_px", "score_sigma"]], picks[["x_px", "y_px", "score_sigma"]]
    )
    write_coordinate_star(tmp_path / "empty.star", picks.iloc[:0])
    assert len(read_coordinate_star(tmp_path / "empty.star")) == 0
    (tmp_path / "bad.star").write_text("data_\nloop_\n_rlnFoo #1\n1\n")
    with pytest.raises(CoordinateFileError, match="rlnCoordinateX"):
        read_coordinate_star(tmp_path / "bad.star")
    with pytest.raises(CoordinateFileError, match="not found"):
        read_coordinate_star(tmp_path / "none.star")


def test_cryolo_command_and_output_parsing(tmp_path):
    params = CryoloParams(config_path="config.json", weights_path="model.h5", threshold=0.25)
    command = build_cryolo_command(tmp_path / "in", tmp_path / "out", params)
    assert command[0] == "cryolo_predict.py"
    assert command[command.index("-t") + 1] == "0.25"
    assert command[command.index("-w") + 1] == "model.h5"
    assert "--use_cpu" in command
    assert "-g" in build_cryolo_command(tmp_path, tmp_path, CryoloParams("c", "w", gpu="0"))
    # crYOLO's STAR output, as it writes it
    (tmp_path / "out" / "STAR").mkdir(parents=True)
    (tmp_path / "out" / "STAR" / "mic.star").write_text(
        "\ndata_\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n_rlnClassNumber #3\n"
        "_rlnAnglePsi #4\n_rlnAutopickFigureOfMerit #5\n"
        "100.0\t200.0\t-999\t-999.0\t0.81\n300.5\t50.0\t-999\t-999.0\t0.42\n"
    )
    picks = parse_cryolo_output(tmp_path / "out", "mic")
    np.testing.assert_allclose(picks.x_px, [100.0, 300.5])
    np.testing.assert_allclose(picks.score_sigma, [0.81, 0.42])
    with pytest.raises(CryoloError, match="no usable coordinates"):
        parse_cryolo_output(tmp_path / "out", "other")


def test_cryolo_missing_binary_is_a_clear_error(tmp_path):
    if cryolo_available():
        pytest.skip("crYOLO is installed: this checks the not-installed message")
    with pytest.raises(CryoloError, match="not found on PATH"):
        run_cryolo(tmp_path / "m.mrc", tmp_path, CryoloParams("c", "w"))


def test_ctf_for_picking_is_read_from_the_ctf_and_import_json(tmp_path):
    from emproc.picking.run import micrograph_ctf_from_files

    ctf_json = tmp_path / "movie_ctf.json"
    import_json = tmp_path / "movie.json"
    ctf_json.write_text(
        json.dumps(
            {
                "defocus_u_angstrom": 15500.0,
                "defocus_v_angstrom": 14500.0,
                "astigmatism_angle_deg": 30.0,
            }
        )
    )
    import_json.write_text(
        json.dumps({"voltage_kv": 200.0, "spherical_aberration_mm": 2.0, "amplitude_contrast": 0.1})
    )
    ctf = micrograph_ctf_from_files(ctf_json, import_json)
    assert (ctf.defocus_u_angstrom, ctf.voltage_kv, ctf.spherical_aberration_mm) == (
        15500.0,
        200.0,
        2.0,
    )
    assert ctf.rounded().defocus_u_angstrom == ctf.rounded().defocus_v_angstrom == 15000.0
    import_json.write_text(json.dumps({"voltage_kv": 200.0}))
    with pytest.raises(PickingError, match="movie.json: missing keys"):
        micrograph_ctf_from_files(ctf_json, import_json)
    write_mrc(tmp_path / "m.mrc", np.ones((64, 64)), 1.0)
    with pytest.raises(PickingError, match="ctf_filter"):
        pick_micrograph_file(
            tmp_path / "m.mrc",
            movie_name="m",
            star_path=tmp_path / "m.star",
            summary_path=tmp_path / "m.json",
            snapshot_path=tmp_path / "m.jpg",
            picking={"ctf_filter": True},
        )
