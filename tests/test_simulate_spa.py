"""The SPA simulator's ground truth is consistent with the data it writes."""

from __future__ import annotations

import json
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import scipy.fft
import scipy.ndimage
import tifffile

from emproc.ctf.model import ctf_2d, frequency_grid
from emproc.io.epu import parse_epu_movie_name, read_epu_movie_xml
from emproc.io.gain import orient_to_movie
from emproc.simulate import density, drift
from emproc.simulate.spa import (
    SimulationTruthError,
    SpaMovieParams,
    dose_damage_filter,
    gain_file_image,
    load_spa_truth,
    make_gain_reference,
    simulate_micrograph,
    simulate_movie,
    simulate_spa_session,
)

MOVIE = SpaMovieParams(
    shape_px=(512, 512),
    number_of_frames=8,
    pixel_size_angstrom=1.5,
    dose_per_frame_e_per_angstrom2=1.0,
    total_drift_px=12.0,
    number_of_particles=12,
)


@pytest.fixture(scope="module")
def gain() -> np.ndarray:
    return make_gain_reference(MOVIE.shape_px, seed=5)


@pytest.fixture(scope="module")
def movie(gain):
    return simulate_movie(MOVIE, seed=11, gain_reference=gain, keep_images=True)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def _peak_shift(reference: np.ndarray, moved: np.ndarray) -> np.ndarray:
    """Integer (dx, dy) mapping `reference` onto `moved`: cross-correlation with B = 500 A^2."""
    f = scipy.fft.rfft2(moved - moved.mean()) * np.conj(
        scipy.fft.rfft2(reference - reference.mean())
    )
    frequency, _ = frequency_grid(reference.shape, MOVIE.pixel_size_angstrom, rfft=True)
    xcorr = scipy.fft.irfft2(f * np.exp(-500.0 * frequency**2 / 4), s=reference.shape)
    dy, dx = np.unravel_index(np.argmax(xcorr), xcorr.shape)
    ny, nx = reference.shape
    return np.array([(dx + nx // 2) % nx - nx // 2, (dy + ny // 2) % ny - ny // 2])


def test_params_are_validated() -> None:
    with pytest.raises(ValueError, match="number_of_shapes"):
        SpaMovieParams(number_of_shapes=2)
    with pytest.raises(ValueError, match="defocus_range"):
        SpaMovieParams(defocus_range_angstrom=(5000.0, 1000.0))
    with pytest.raises(ValueError, match="gain reference shape"):
        simulate_movie(MOVIE, 0, np.ones((10, 10), np.float32))


def test_density_models_distinct_centred_and_of_equal_mass() -> None:
    models = density.make_density_models(4, 150.0)
    sphere = np.pi * 150.0**3 / 6
    projections = []
    for model in models:
        masses = model.occupancies * (2 * np.pi) ** 1.5 * model.sigmas_angstrom**3
        assert masses.sum() == pytest.approx(sphere, rel=1e-9)
        centroid = (masses[:, None] * model.centres_angstrom).sum(0) / masses.sum()
        assert np.allclose(centroid, 0, atol=1e-9)
        image = np.zeros((128, 128), np.float32)
        density.render_projection(image, model, (64.0, 64.0), (0.0, 90.0, 0.0), 2.0, 150.0)
        # mass is conserved by the projection: integral = V / D in A^2, here per (2 A)^2 pixel
        assert image.sum() * 4.0 == pytest.approx(sphere / 150.0, rel=2e-3)
        projections.append(image)
    assert [model.name for model in models[:3]] == ["ring", "rod_with_bulge", "tetrahedron"]
    for i in range(3):  # the canonical three look different in projection
        for j in range(i):
            assert _correlation(projections[i], projections[j]) < 0.85


def test_euler_angles_uniform_on_so3() -> None:
    angles = density.random_euler_angles_deg(np.random.default_rng(0), 20000)
    matrices = np.array([density.euler_matrix(*a) for a in angles[:500]])
    assert np.allclose(matrices @ matrices.transpose(0, 2, 1), np.eye(3), atol=1e-12)
    assert np.allclose(np.linalg.det(matrices), 1.0)
    # viewing directions (third row of A) cover the sphere uniformly: cos(tilt) ~ U(-1, 1)
    cos_tilt = np.cos(np.deg2rad(angles[:, 1]))
    histogram, _ = np.histogram(cos_tilt, bins=10, range=(-1, 1))
    assert np.all(np.abs(histogram - 2000) < 4 * np.sqrt(2000))


def test_global_drift_is_smooth_and_has_requested_path_length() -> None:
    shifts = drift.global_drift_px(np.random.default_rng(3), 40, 15.0)
    steps = np.hypot(*np.diff(shifts, axis=0).T)
    assert np.all(shifts[0] == 0)
    assert steps.sum() == pytest.approx(15.0, rel=1e-12)
    assert steps[0] > 3 * steps[-1]  # big early, small late
    assert np.all(np.diff(steps) <= 1e-12)


def test_movie_dtype_mean_counts_and_truth(movie, gain) -> None:
    frames, truth = movie
    assert frames.dtype == np.uint8 and frames.shape == (8, 512, 512)
    corrected = frames * gain
    dose_px = MOVIE.dose_per_frame_e_per_angstrom2 * MOVIE.pixel_size_angstrom**2
    expected_mean = dose_px * (1.0 + truth.contrast * truth.specimen_image.mean())
    assert corrected.mean() == pytest.approx(expected_mean, rel=0.003)
    assert truth.shifts_px.shape == (8, 2) and np.all(truth.shifts_px[0] == 0)
    assert MOVIE.defocus_range_angstrom[0] <= truth.defocus_angstrom <= 35000.0
    assert 0 <= truth.defocus_u_angstrom - truth.defocus_v_angstrom <= 1000.0
    assert len(truth.particles) == 12
    assert list(truth.particles.columns)[:3] == ["x_px", "y_px", "shape_id"]


def test_true_drift_reproduces_each_frame_within_poisson_noise(movie, gain) -> None:
    frames, truth = movie
    sensitivity = 1.0 / gain
    for k in (3, 7):
        expected = truth.expected_counts(k) * sensitivity
        chi2 = np.mean((frames[k] - expected) ** 2 / expected)
        assert chi2 == pytest.approx(1.0, abs=0.02)
        corrected = frames[k] * gain
        at_truth = _correlation(corrected, truth.expected_counts(k))
        spectrum = scipy.fft.rfft2(truth.specimen_image)
        for error in ([0.5, 0], [0, -0.5], [2.0, 1.0]):
            wrong = drift.shifted_image(spectrum, MOVIE.shape_px, truth.shifts_px[k] + error)
            assert _correlation(corrected, wrong) < at_truth - 0.002


def test_gain_flattens_statistics_and_is_needed_for_alignment(movie, gain) -> None:
    frames, truth = movie
    raw_sum = frames.sum(axis=0, dtype=np.float64)
    corrected_sum = (frames * gain).sum(axis=0, dtype=np.float64)
    blank = SpaMovieParams(shape_px=(256, 256), number_of_frames=16, contrast=0.0)
    blank_frames, _ = simulate_movie(blank, 2, make_gain_reference((256, 256), 1))
    blank_raw = blank_frames.sum(0, dtype=np.float64)
    blank_corrected = (blank_frames * make_gain_reference((256, 256), 1)).sum(0, dtype=np.float64)
    # Poisson: variance = mean once corrected; the fixed pattern inflates the raw sum's variance
    assert blank_corrected.var() / blank_corrected.mean() == pytest.approx(1.0, abs=0.03)
    assert blank_raw.var() / blank_raw.mean() > 1.12
    assert raw_sum.std() > corrected_sum.std()
    # half-movie alignment: corrected frames find the drift, raw frames lock onto the gain
    late = slice(6, 8)  # late frames barely move relative to each other
    true_shift = truth.shifts_px[late].mean(0)
    assert np.hypot(*true_shift) > 3
    found = _peak_shift(frames[0] * gain, (frames[late] * gain).sum(0))
    assert np.all(np.abs(found - true_shift) <= 1.0)
    found_raw = _peak_shift(frames[0].astype(float), frames[late].sum(0, dtype=float))
    assert np.all(found_raw == 0)


def test_thon_rings_sit_where_true_defocus_predicts() -> None:
    params = SpaMovieParams(
        shape_px=(768, 768),
        number_of_frames=30,
        number_of_particles=10,
        defocus_range_angstrom=(8000.0, 25000.0),
    )
    image, truth = simulate_micrograph(params, seed=4)
    box = 256
    tiles = [
        image[y : y + box, x : x + box] for y in range(0, 513, 128) for x in range(0, 513, 128)
    ]
    power = np.mean([np.abs(np.fft.fft2(t - t.mean())) ** 2 for t in tiles], axis=0)
    frequency, _ = frequency_grid((box, box), 1.0)
    band = (frequency > 1 / 25) & (frequency < 1 / 8)
    rings = np.digitize(frequency[band], np.linspace(1 / 25, 1 / 8, 40))
    signal = power[band].copy()
    for ring in np.unique(rings):  # remove the smooth background ring by ring
        signal[rings == ring] -= signal[rings == ring].mean()
    astigmatism = truth.defocus_u_angstrom - truth.defocus_v_angstrom

    def score(mean_defocus: float) -> float:
        ctf = ctf_2d(
            (box, box),
            1.0,
            mean_defocus + astigmatism / 2,
            mean_defocus - astigmatism / 2,
            truth.astigmatism_angle_deg,
        )
        return _correlation(signal, ctf[band] ** 2)

    candidates = truth.defocus_angstrom + np.arange(-3000.0, 3001.0, 250.0)
    scores = [score(d) for d in candidates]
    assert abs(candidates[int(np.argmax(scores))] - truth.defocus_angstrom) <= 250.0
    assert max(scores) > 0.04
    assert max(scores) > 3 * max(scores[0], scores[-1])  # +-3000 A off: rings out of phase


def test_particles_are_where_the_table_says() -> None:
    params = SpaMovieParams(shape_px=(640, 640), number_of_frames=20, number_of_particles=20)
    image, truth = simulate_micrograph(params, seed=8, keep_images=True)
    assert len(truth.particles) >= 6
    yy, xx = np.mgrid[0:640, 0:640]
    radius = 0.5 * params.particle_diameter_angstrom
    models = density.make_density_models(params.number_of_shapes, params.particle_diameter_angstrom)
    rebuilt = np.zeros((640, 640), np.float32)
    for row in truth.particles.itertuples():
        alone = np.zeros((640, 640), np.float32)
        angles = (row.rot_deg, row.tilt_deg, row.psi_deg)
        density.render_projection(
            alone, models[row.shape_id], (row.x_px, row.y_px), angles, 1.0, 150.0
        )
        centroid = (alone * xx).sum() / alone.sum(), (alone * yy).sum() / alone.sum()
        assert np.hypot(centroid[0] - row.x_px, centroid[1] - row.y_px) < 0.01
        rebuilt += alone
    # the projected density in the image is exactly the listed particles, nothing else
    assert np.allclose(truth.particle_density, rebuilt, atol=1e-5)
    # in the noisy image, particles are dark blobs (underfocus) at the listed positions
    smooth = scipy.ndimage.gaussian_filter(image, 8.0)
    at_particles = smooth[
        truth.particles.y_px.round().astype(int), truth.particles.x_px.round().astype(int)
    ]
    far = scipy.ndimage.distance_transform_edt(truth.particle_density < 1e-3) > radius
    assert at_particles.mean() < smooth[far].mean() - 3 * smooth[far].std()


def test_local_deformation_truth() -> None:
    params = SpaMovieParams(
        shape_px=(384, 384),
        number_of_frames=6,
        pixel_size_angstrom=2.0,
        dose_per_frame_e_per_angstrom2=2.0,
        total_drift_px=0.0,
        local_deformation_px=4.0,
        number_of_particles=8,
    )
    frames, truth = simulate_movie(params, 21, keep_images=True)
    corner = np.array([[20.0, 20.0], [360.0, 360.0], [20.0, 360.0], [360.0, 20.0]])
    assert np.allclose(truth.local_shift_px(0, corner[:, 0], corner[:, 1]), 0)
    last = truth.local_shift_px(5, corner[:, 0], corner[:, 1])
    grid = np.linspace(0, 383, 33)
    everywhere = truth.local_shift_px(5, *np.meshgrid(grid, grid))
    assert np.max(np.hypot(everywhere[..., 0], everywhere[..., 1])) == pytest.approx(4.0, rel=1e-9)
    spectrum = scipy.fft.rfft2(truth.specimen_image)
    checked = 0
    for (x, y), local in zip(corner, last, strict=True):
        y0, x0 = int(np.clip(y - 32, 0, 320)), int(np.clip(x - 32, 0, 320))
        patch = np.s_[y0 : y0 + 64, x0 : x0 + 64]
        observed = frames[4:, patch[0], patch[1]].sum(0).astype(float)
        moved_true = drift.shifted_image(spectrum, params.shape_px, truth.shift_px(5, x, y))
        if np.hypot(*local) > 1.5:
            checked += 1
            assert _correlation(observed, moved_true[patch]) > _correlation(
                observed, truth.specimen_image[patch]
            )
    assert checked >= 2


def test_dose_damage_removes_high_frequencies() -> None:
    filt = dose_damage_filter((64, 64), 1.0, 30.0)
    frequency, _ = frequency_grid((64, 64), 1.0, rfft=True)
    assert filt[0, 0] == 1.0
    assert filt[frequency > 0.3].max() < filt[(frequency > 0.05) & (frequency < 0.06)].min()
    # e^(-N/2Ne) at 1/4 A after 30 e/A^2 (Grant & Grigorieff critical exposure)
    critical = 0.245 * 0.25**-1.665 + 2.81
    near = np.argmin(np.abs(frequency - 0.25))
    assert filt.ravel()[near] == pytest.approx(
        np.exp(-30 / (2 * (0.245 * frequency.ravel()[near] ** -1.665 + 2.81))), rel=1e-5
    )
    assert critical > 2.81
    params = SpaMovieParams(shape_px=(256, 256), number_of_frames=40, number_of_particles=2)
    _, intact = simulate_micrograph(params, 3, keep_images=True)
    damaged_params = SpaMovieParams(**{**params.to_dict(), "dose_damage": True})
    _, damaged = simulate_micrograph(damaged_params, 3, keep_images=True)

    def high_power(image):
        f, _ = frequency_grid(image.shape, 1.0, rfft=True)
        return (np.abs(np.fft.rfft2(image))[f > 0.2] ** 2).sum()

    assert high_power(damaged.specimen_image) < 0.5 * high_power(intact.specimen_image)


def test_deterministic_for_a_seed(gain) -> None:
    small = SpaMovieParams(
        shape_px=(128, 160),
        number_of_frames=3,
        number_of_particles=2,
        particle_diameter_angstrom=60,
    )
    a_frames, a_truth = simulate_movie(small, 7, gain[:128, :160])
    b_frames, b_truth = simulate_movie(small, 7, gain[:128, :160])
    c_frames, c_truth = simulate_movie(small, 8, gain[:128, :160])
    assert np.array_equal(a_frames, b_frames)
    assert a_truth.to_dict() == b_truth.to_dict()
    assert not np.array_equal(a_frames, c_frames)
    assert a_truth.defocus_u_angstrom != c_truth.defocus_u_angstrom


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
@pytest.mark.parametrize("flip", ["none", "x", "y"])
def test_gain_file_orientation_inverts_pipeline_convention(rotation: int, flip: str) -> None:
    gain = make_gain_reference((6, 10), seed=1)
    stored = gain_file_image(gain, rotation, flip)
    assert np.array_equal(orient_to_movie(stored, rotation, flip), gain)


def test_gain_reference_statistics() -> None:
    gain = make_gain_reference((512, 512), seed=0, spread=0.1)
    assert gain.dtype == np.float32
    assert gain.mean() == pytest.approx(1.0, abs=1e-6)
    assert 0.09 < gain.std() < 0.15
    assert not np.array_equal(gain, make_gain_reference((512, 512), seed=1))


@pytest.mark.parametrize("movie_format", ["tiff", "mrc"])
def test_session_layout_metadata_and_truth(tmp_path: Path, movie_format: str) -> None:
    params = SpaMovieParams(
        shape_px=(128, 192),
        number_of_frames=4,
        number_of_particles=3,
        particle_diameter_angstrom=50,
    )
    truth_path = simulate_spa_session(
        tmp_path / "session",
        number_of_movies=3,
        params=params,
        seed=3,
        movie_format=movie_format,
        grid_squares=2,
    )
    assert truth_path == tmp_path / "session" / "ground_truth.json"
    session = load_spa_truth(truth_path)
    assert len(session.movies) == 3
    assert len({m.grid_square for m in session.movies}) == 2
    gain_stored = mrcfile.read(session.gain_reference_path)
    gain = orient_to_movie(gain_stored, session.gain_rotation_deg, session.gain_flip)
    assert gain_stored.shape == (192, 128)  # stored rotated by 90 degrees
    for entry in session.movies:
        assert entry.movie_path.name.endswith(f"_fractions.{movie_format}")
        name = parse_epu_movie_name(entry.movie_path)
        assert (name.grid_square, name.foil_hole) == (entry.grid_square, entry.foil_hole)
        metadata = read_epu_movie_xml(entry.metadata_path)
        assert metadata.pixel_size_angstrom == pytest.approx(1.0)
        assert metadata.number_of_frames == 4
        assert metadata.dose_e_per_angstrom2 == pytest.approx(4.0)
        assert metadata.timestamp == name.timestamp
        assert abs(metadata.nominal_defocus_angstrom - entry.truth.defocus_angstrom) <= 500
        if movie_format == "tiff":
            with tifffile.TiffFile(entry.movie_path) as tif:
                assert tif.pages[0].compression == tifffile.COMPRESSION.LZW
                frames = tif.asarray()
        else:
            frames = mrcfile.read(entry.movie_path)
        assert frames.shape == (4, 128, 192)
        again, again_truth = simulate_movie(params, entry.truth.seed, gain)
        assert np.array_equal(frames, again)
        assert np.allclose(again_truth.shifts_px, entry.truth.shifts_px)
        assert session.movie(entry.movie_name) is entry
    raw = json.loads(truth_path.read_text())
    assert raw["gain"]["rotation_deg"] == 90 and raw["seed"] == 3


def test_load_truth_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="ground_truth.json"):
        load_spa_truth(tmp_path)
    bad = tmp_path / "ground_truth.json"
    bad.write_text("{not json")
    with pytest.raises(SimulationTruthError, match=str(bad)):
        load_spa_truth(bad)
    bad.write_text(json.dumps({"format": "emproc-spa-truth", "movies": []}))
    with pytest.raises(SimulationTruthError, match="incomplete"):
        load_spa_truth(bad)


@pytest.mark.slow
def test_default_session_end_to_end(tmp_path: Path) -> None:
    """A session at default parameters: every movie regenerates and matches its truth."""
    truth_path = simulate_spa_session(tmp_path, number_of_movies=4, seed=1)
    session = load_spa_truth(truth_path)
    gain = orient_to_movie(
        mrcfile.read(session.gain_reference_path), session.gain_rotation_deg, session.gain_flip
    )
    defoci = []
    for entry in session.movies:
        frames = tifffile.imread(entry.movie_path)
        assert frames.shape == (16, 1024, 1024) and frames.dtype == np.uint8
        _, kept = simulate_movie(session.params, entry.truth.seed, gain, keep_images=True)
        # amplitude contrast: particles remove a little intensity at zero frequency
        predicted_mean = 1.0 + kept.contrast * kept.specimen_image.mean()
        assert predicted_mean < 0.999
        assert (frames * gain).mean() == pytest.approx(predicted_mean, rel=0.002)
        for k in (0, 15):
            expected = kept.expected_counts(k) / gain
            chi2 = np.mean((frames[k] - expected) ** 2 / expected)
            assert chi2 == pytest.approx(1.0, abs=0.01)
        defoci.append(entry.truth.defocus_angstrom)
    assert len(set(defoci)) == 4


def test_high_dose_frames_are_stored_as_uint16() -> None:
    bright = SpaMovieParams(
        shape_px=(64, 64),
        number_of_frames=2,
        dose_per_frame_e_per_angstrom2=200.0,
        number_of_particles=0,
        total_drift_px=1.0,
    )
    frames, _ = simulate_movie(bright, 0)
    assert frames.dtype == np.uint16
    assert frames.mean() == pytest.approx(200.0, rel=0.01)
