"""Particle extraction: centring against the simulator's truth, normalisation, CTF, files."""

from __future__ import annotations

import json
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import scipy.fft

from emproc.ctf.model import ctf_2d
from emproc.extract import (
    CtfParameters,
    ExtractionError,
    ExtractionParams,
    extract_boxes,
    extract_micrograph_file,
    read_particle_star,
)
from emproc.extract.aggregate import aggregate_particles
from emproc.extract.boxes import background_mask, fourier_downscale
from emproc.extract.run import ExtractionInputError
from emproc.picking import pick_log
from emproc.picking.io import write_coordinate_star
from emproc.simulate import density
from emproc.simulate.spa_movie import SpaMovieParams, simulate_micrograph

PARAMS = SpaMovieParams()


@pytest.fixture(scope="module")
def simulated():
    return simulate_micrograph(PARAMS, 21)


def isolated_particle(truth_row, shape: tuple[int, int]) -> np.ndarray:
    """The particle's projected density alone on an empty micrograph (no CTF, no noise)."""
    image = np.zeros(shape, dtype=np.float32)
    model = density.make_density_model(int(truth_row.shape_id), PARAMS.particle_diameter_angstrom)
    density.render_projection(
        image,
        model,
        (truth_row.x_px, truth_row.y_px),
        (truth_row.rot_deg, truth_row.tilt_deg, truth_row.psi_deg),
        PARAMS.pixel_size_angstrom,
        PARAMS.particle_diameter_angstrom,
    )
    return image


def centroid_offset(box: np.ndarray) -> np.ndarray:
    """(x, y) centre of mass minus the box centre pixel (size // 2)."""
    size = box.shape[-1]
    coordinates = np.arange(size) - size // 2
    weights = np.clip(box, 0.0, None)
    return np.array(
        [
            (weights * coordinates[None, :]).sum() / weights.sum(),
            (weights * coordinates[:, None]).sum() / weights.sum(),
        ]
    )


def test_particles_extracted_at_true_positions_are_centred(simulated):
    # the gate: extracted particle centred within 1 px of truth (the simulator puts each
    # particle's projected centre of mass exactly at its listed position)
    image, truth = simulated
    params = ExtractionParams(256, 64, 24, invert_contrast=False)
    offsets = []
    for row in truth.particles.itertuples():
        alone = isolated_particle(row, image.shape)
        boxes, kept = extract_boxes(alone, [[row.x_px, row.y_px]], 1.0, params)
        if len(kept):
            offsets.append(centroid_offset(boxes[0] - np.median(boxes[0])))
    offsets = np.array(offsets)
    assert len(offsets) >= 10
    assert np.abs(offsets).max() < 1.0  # output pixels (4 A)
    assert np.hypot(*offsets.T).mean() < 0.5


def test_picked_particles_are_offset_by_exactly_the_pick_error(simulated):
    # geometry check through picking: a pick that is off by d holds the particle at -d/scale
    image, truth = simulated
    picks = pick_log(image, 1.0)
    true_xy = truth.particles[["x_px", "y_px"]].to_numpy()
    params = ExtractionParams(256, 64, 24, invert_contrast=False)
    scale = params.box_size_px / params.downscale_size_px
    checked = 0
    for pick in picks.itertuples():
        nearest = np.argmin(np.hypot(*(true_xy - [pick.x_px, pick.y_px]).T))
        row = truth.particles.iloc[nearest]
        alone = isolated_particle(row, image.shape)
        boxes, kept = extract_boxes(alone, [[pick.x_px, pick.y_px]], 1.0, params)
        if not len(kept):
            continue
        expected = (true_xy[nearest] - np.rint([pick.x_px, pick.y_px])) / scale
        np.testing.assert_allclose(
            centroid_offset(boxes[0] - np.median(boxes[0])), expected, atol=1.0
        )
        checked += 1
    assert checked >= 10


def test_background_is_normalised_and_particles_are_white():
    rng = np.random.default_rng(3)
    micrograph = rng.normal(100.0, 5.0, (512, 512)).astype(np.float32)
    yy, xx = np.mgrid[:512, :512]
    centres = [(128.0, 128.0), (300.0, 250.0)]
    for cx, cy in centres:
        micrograph -= 20.0 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 20.0**2))  # dark
    stack, kept = extract_boxes(micrograph, centres, 1.0, ExtractionParams(128, 64, 24))
    assert len(kept) == 2
    background = stack[:, background_mask(64, 24)]
    np.testing.assert_allclose(background.mean(axis=1), 0.0, atol=1e-4)
    np.testing.assert_allclose(background.std(axis=1), 1.0, atol=1e-4)
    assert np.all(stack[:, 30:34, 30:34].mean(axis=(1, 2)) > 2.0)  # white after inversion
    raw, _ = extract_boxes(
        micrograph, centres, 1.0, ExtractionParams(128, 64, 24, invert_contrast=False)
    )
    assert np.all(raw[:, 30:34, 30:34].mean(axis=(1, 2)) < -2.0)


def test_fourier_downscale_keeps_the_centre_and_the_mean():
    yy, xx = np.mgrid[:256, :256] - 128.0
    blob = np.exp(-(xx**2 + yy**2) / (2 * 12.0**2))[None].astype(np.float32)
    small = fourier_downscale(blob, 64)
    assert small.shape == (1, 64, 64)
    np.testing.assert_allclose(centroid_offset(small[0]), 0.0, atol=1e-3)
    np.testing.assert_allclose(small.mean(), blob.mean(), rtol=1e-4)
    assert np.unravel_index(small[0].argmax(), (64, 64)) == (32, 32)


def test_phase_flip_restores_a_white_particle():
    size, pixel = 256, 2.0
    ctf = CtfParameters(25000.0, 23000.0, 30.0)
    yy, xx = np.mgrid[:512, :512] - 256.0
    # a small feature (sigma 3 A): its signal spans several CTF zones up to Nyquist (8 A)
    clean = np.exp(-(xx**2 + yy**2) / (2 * 1.5**2)).astype(np.float32)
    spectrum = scipy.fft.rfft2(clean) * ctf_2d(
        (512, 512), pixel, ctf.defocus_u_angstrom, ctf.defocus_v_angstrom, 30.0, rfft=True
    )
    recorded = 1.0 + scipy.fft.irfft2(spectrum, s=(512, 512)).astype(np.float32)
    recorded += np.random.default_rng(0).normal(0, 1e-3, recorded.shape).astype(np.float32)
    params = ExtractionParams(size, 128, 48)
    flipped_params = ExtractionParams(size, 128, 48, phase_flip=True)
    flipped, _ = extract_boxes(recorded, [[256, 256]], pixel, flipped_params, ctf)
    inverted, _ = extract_boxes(recorded, [[256, 256]], pixel, params)
    target = fourier_downscale(clean[None, 128:384, 128:384], 128)[0]
    correlation = [np.corrcoef(box[0].ravel(), target.ravel())[0, 1] for box in (flipped, inverted)]
    assert correlation[0] > 0.8
    assert correlation[0] > correlation[1] + 0.2
    assert flipped[0, 64, 64] > 0
    with pytest.raises(ExtractionError, match="CTF"):
        extract_boxes(recorded, [[256, 256]], pixel, flipped_params)


def test_edge_boxes_are_dropped():
    micrograph = np.random.default_rng(1).normal(size=(300, 400)).astype(np.float32)
    picks = [[10.0, 150.0], [200.0, 150.0], [399.0, 299.0], [64.0, 64.0], [336.0, 236.0]]
    stack, kept = extract_boxes(micrograph, picks, 1.0, ExtractionParams(128, 64, 24))
    assert kept.tolist() == [1, 3, 4]
    assert stack.shape == (3, 64, 64)


def test_bad_parameters_are_refused():
    with pytest.raises(ExtractionError, match="downscale_size_px"):
        ExtractionParams(64, 128, 24)
    with pytest.raises(ExtractionError, match="no background"):
        ExtractionParams(256, 64, 60)
    with pytest.raises(ExtractionError, match="larger than the micrograph"):
        extract_boxes(np.zeros((100, 100), np.float32), [[50, 50]], 1.0, ExtractionParams(256))


def write_inputs(directory: Path, name: str, image: np.ndarray, truth) -> dict[str, Path]:
    paths = {
        "micrograph": directory / "MotionCorr" / f"{name}_DW.mrc",
        "coordinates": directory / "Picking" / f"{name}.star",
        "ctf": directory / "CtfFind" / f"{name}_ctf.json",
        "metadata": directory / "Import" / f"{name}.json",
    }
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    with mrcfile.new(paths["micrograph"], overwrite=True) as mrc:
        mrc.set_data(image)
        mrc.voxel_size = 1.0
    picks = truth.particles.rename(columns={})[["x_px", "y_px"]].assign(
        score_sigma=5.0, diameter_angstrom=150.0
    )
    write_coordinate_star(paths["coordinates"], picks)
    paths["ctf"].write_text(
        json.dumps(
            {
                "defocus_u_angstrom": truth.defocus_u_angstrom,
                "defocus_v_angstrom": truth.defocus_v_angstrom,
                "astigmatism_angle_deg": truth.astigmatism_angle_deg,
                "phase_shift_deg": 0.0,
            }
        )
    )
    paths["metadata"].write_text(
        json.dumps(
            {
                "voltage_kv": 300.0,
                "spherical_aberration_mm": 2.7,
                "amplitude_contrast": 0.1,
                "optics_group": 1,
                "optics_group_name": "opticsGroup1",
                "timestamp": "2026-11-29T10:00:00",
            }
        )
    )
    return paths


def run_extraction(directory: Path, name: str, paths: dict[str, Path], **config) -> dict:
    return extract_micrograph_file(
        paths["micrograph"],
        paths["coordinates"],
        paths["ctf"],
        paths["metadata"],
        stack_path=directory / "Extract" / f"{name}.mrcs",
        star_path=directory / "Extract" / f"{name}.star",
        summary_path=directory / "Extract" / f"{name}_extract.json",
        movie_name=name,
        project_dir=directory,
        extraction={"box_size_px": 256, "downscale_size_px": 64, "bg_radius_px": 24, **config},
    )


def test_file_entry_point_writes_a_relion_31_star_and_stack(tmp_path, simulated):
    image, truth = simulated
    paths = write_inputs(tmp_path, "movie_a", image, truth)
    summary = run_extraction(tmp_path, "movie_a", paths)
    optics, particles = read_particle_star(tmp_path / "Extract" / "movie_a.star")
    assert summary["number_of_particles"] == len(particles) > 0
    assert summary["timestamp"] == "2026-11-29T10:00:00"
    assert optics["rlnImagePixelSize"].iloc[0] == pytest.approx(4.0)
    assert optics["rlnImageSize"].iloc[0] == 64
    assert optics["rlnVoltage"].iloc[0] == 300.0
    assert particles["rlnImageName"].iloc[0] == "000001@Extract/movie_a.mrcs"
    assert particles["rlnMicrographName"].iloc[0] == "MotionCorr/movie_a_DW.mrc"
    assert particles["rlnDefocusU"].iloc[0] == pytest.approx(truth.defocus_u_angstrom)
    with mrcfile.open(tmp_path / "Extract" / "movie_a.mrcs") as mrc:
        assert mrc.data.shape == (len(particles), 64, 64)
        assert float(mrc.voxel_size.x) == pytest.approx(4.0)
        assert mrc.header.ispg == 0  # an image stack, not a volume
        centre = mrc.data[:, 28:36, 28:36].mean()
    assert centre > 0.2  # white particles


def test_aggregate_particles_star_and_coordinates(tmp_path, simulated):
    image, truth = simulated
    summaries = []
    for name in ("movie_a", "movie_b"):
        paths = write_inputs(tmp_path, name, image, truth)
        run_extraction(tmp_path, name, paths)
        summary = tmp_path / "Picking" / f"{name}_picks.json"
        summary.write_text(
            json.dumps({"movie_name": name, "coordinates_star_path": str(paths["coordinates"])})
        )
        summaries.append(summary)
    count = aggregate_particles(
        [tmp_path / "Extract" / "movie_a.star", tmp_path / "Extract" / "movie_b.star"],
        summaries,
        particles_path=tmp_path / "particles.star",
        coordinates_path=tmp_path / "Picking" / "coordinates.csv",
    )
    optics, particles = read_particle_star(tmp_path / "particles.star")
    assert len(optics) == 1 and count == len(particles)
    assert particles["rlnImageName"].str.endswith("movie_b.mrcs").sum() == count // 2
    text = (tmp_path / "particles.star").read_text()
    assert "data_optics" in text and "data_particles" in text
    coordinates = pd.read_csv(tmp_path / "Picking" / "coordinates.csv")
    assert list(coordinates.columns) == ["movie_name", "x_px", "y_px", "score_sigma"]
    assert len(coordinates) == 2 * len(truth.particles)


def test_missing_or_incomplete_ctf_is_a_clear_error(tmp_path, simulated):
    image, truth = simulated
    paths = write_inputs(tmp_path, "m", image, truth)
    paths["ctf"].write_text(json.dumps({"defocus_u_angstrom": 1.0}))
    with pytest.raises(ExtractionInputError, match="m_ctf.json.*missing keys"):
        run_extraction(tmp_path, "m", paths)
    paths["ctf"].unlink()
    with pytest.raises(ExtractionInputError, match="m_ctf.json: not found"):
        run_extraction(tmp_path, "m", paths)
