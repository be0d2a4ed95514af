"""Defocus / astigmatism / phase-shift search (emproc.ctf.fit) and estimate_ctf on
CTF-only synthetic micrographs (emproc.ctf.synthetic: known CTF, Poisson noise)."""

import numpy as np
import pytest

from emproc.ctf import CtfParameterError, estimate_ctf
from emproc.ctf.fit import (
    CtfFitError,
    correlation,
    correlation_over_phase_shifts,
    defocus_u_v_angle,
    fit_ctf,
    fit_points,
    phase_without_shift,
)
from emproc.ctf.model import ctf_2d, ctf_phase
from emproc.ctf.synthetic import synthetic_ctf_micrograph

SEARCH = dict(
    min_defocus_angstrom=5000.0,
    max_defocus_angstrom=50000.0,
    defocus_step_angstrom=500.0,
    expected_astigmatism_angstrom=200.0,
    phase_plate=False,
    min_phase_shift_deg=0.0,
    max_phase_shift_deg=180.0,
)


def angle_error_deg(estimated: float, true: float) -> float:
    """Difference of two astigmatism angles modulo 180 degrees, in [0, 90]."""
    return abs((estimated - true + 90.0) % 180.0 - 90.0)


def model_spectrum(n, pixel, u, v, angle, phase=0.0):
    return np.fft.fftshift(ctf_2d((n, n), pixel, u, v, angle, phase_shift_deg=phase)) ** 2


def test_precomputed_phase_equals_the_shared_model():
    points = fit_points(model_spectrum(128, 1.2, 1e4, 1e4, 0), 1.2, 40.0, 3.0, 300.0, 2.7, 0.07)
    u, v, angle = defocus_u_v_angle(15000.0, 300.0, -200.0)
    expected = ctf_phase(
        points.frequency_per_angstrom, points.azimuth_rad, u, v, angle, 300.0, 2.7, 0.07
    )
    np.testing.assert_allclose(phase_without_shift(points, 15000.0, 300.0, -200.0), expected)


def test_astigmatism_vector_conventions():
    u, v, angle = defocus_u_v_angle(10000.0, 0.0, 500.0)  # 2a = 90 deg
    assert (u, v, angle) == pytest.approx((10500.0, 9500.0, 45.0))
    for astig_y in (0.0, -0.0, -1e-9, 1e-9):  # 2a at +-180 deg: the angle wraps into (-90, 90]
        u, v, angle = defocus_u_v_angle(10000.0, -300.0, astig_y)
        assert (u, v) == pytest.approx((10300.0, 9700.0))
        assert -90.0 < angle <= 90.0 and angle_error_deg(angle, 90.0) < 1e-6


def test_phase_shift_shortcut_equals_direct_correlation():
    spectrum = model_spectrum(128, 1.0, 12000, 12000, 0, phase=40.0)
    points = fit_points(spectrum, 1.0, 30.0, 4.0, 300.0, 2.7, 0.1)
    phases = np.array([0.0, 25.0, 40.0, 100.0, 170.0])
    fast = correlation_over_phase_shifts(points, 12000.0, phases)
    direct = [correlation(points, 12000.0, 0.0, 0.0, phase) for phase in phases]
    np.testing.assert_allclose(fast, direct, atol=1e-12)
    assert fast[2] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("u", "v", "angle"), [(9000.0, 9000.0, 0.0), (21000.0, 20200.0, 60.0), (30500, 29700, -35)]
)
def test_noise_free_spectrum_is_fitted_exactly(u, v, angle):
    points = fit_points(model_spectrum(256, 1.0, u, v, angle), 1.0, 30.0, 4.0, 300.0, 2.7, 0.1)
    fitted = fit_ctf(points, **SEARCH)
    assert fitted.defocus_u_angstrom == pytest.approx(u, abs=15.0)
    assert fitted.defocus_v_angstrom == pytest.approx(v, abs=15.0)
    if u - v > 300:
        assert angle_error_deg(fitted.astigmatism_angle_deg, angle) < 1.0
    assert fitted.cross_correlation > 0.999


def test_search_respects_the_defocus_range():
    points = fit_points(model_spectrum(256, 1.0, 20000, 20000, 0), 1.0, 30.0, 4.0, 300.0, 2.7, 0.1)
    fitted = fit_ctf(points, **{**SEARCH, "min_defocus_angstrom": 25000.0})
    mean = 0.5 * (fitted.defocus_u_angstrom + fitted.defocus_v_angstrom)
    assert 25000.0 <= mean <= 50000.0
    assert fitted.cross_correlation < 0.9


def test_astigmatism_restraint_pulls_noise_towards_stigmatic():
    # a spectrum with no rings: the restraint must keep the astigmatism at the prior scale
    rng = np.random.default_rng(3)
    points = fit_points(rng.standard_normal((128, 128)), 1.0, 30.0, 5.0, 300.0, 2.7, 0.1)
    restrained = fit_ctf(points, **{**SEARCH, "expected_astigmatism_angstrom": 1.0})
    assert restrained.defocus_u_angstrom - restrained.defocus_v_angstrom < 50.0


@pytest.mark.parametrize(
    ("u", "v", "angle", "seed"),
    [(8000.0, 7600.0, 20.0, 1), (15500.0, 14700.0, -70.0, 2), (34000.0, 33000.0, 85.0, 3)],
)
def test_estimate_ctf_on_synthetic_micrographs(u, v, angle, seed):
    image = synthetic_ctf_micrograph((1024, 1024), 1.0, u, v, angle, seed=seed)
    result = estimate_ctf(image, pixel_size_angstrom=1.0)
    true_mean, mean = 0.5 * (u + v), 0.5 * (result.defocus_u_angstrom + result.defocus_v_angstrom)
    assert abs(mean - true_mean) / true_mean < 0.01
    assert result.astigmatism_angstrom == pytest.approx(u - v, abs=100.0)
    assert angle_error_deg(result.astigmatism_angle_deg, angle) < 5.0
    assert result.defocus_u_angstrom >= result.defocus_v_angstrom
    assert -90.0 < result.astigmatism_angle_deg <= 90.0
    assert result.cross_correlation > 0.3
    assert 2.0 <= result.fit_resolution_angstrom < 5.0


@pytest.mark.parametrize("phase", [30.0, 90.0, 150.0])
def test_phase_plate_shift_is_recovered(phase):
    image = synthetic_ctf_micrograph((1024, 1024), 1.0, 9000, 8700, 10, phase_shift_deg=phase)
    result = estimate_ctf(image, pixel_size_angstrom=1.0, phase_plate=True)
    assert angle_error_deg(result.phase_shift_deg, phase) < 5.0  # CTF^2 repeats every 180
    assert 0.5 * (result.defocus_u_angstrom + result.defocus_v_angstrom) == pytest.approx(
        8850.0, rel=0.01
    )


def test_without_phase_plate_the_phase_shift_is_zero():
    image = synthetic_ctf_micrograph((512, 512), 1.0, 12000, 12000, 0, seed=5)
    assert estimate_ctf(image, pixel_size_angstrom=1.0, box_size_px=256).phase_shift_deg == 0.0


def test_pixel_size_other_than_one():
    image = synthetic_ctf_micrograph((1024, 1024), 0.65, 14000, 13500, 40, seed=6)
    result = estimate_ctf(image, pixel_size_angstrom=0.65, max_resolution_angstrom=4.0)
    mean = 0.5 * (result.defocus_u_angstrom + result.defocus_v_angstrom)
    assert mean == pytest.approx(13750.0, rel=0.01)


def test_rectangular_micrograph():
    image = synthetic_ctf_micrograph((768, 1280), 1.0, 22000, 21500, 70, seed=8)
    result = estimate_ctf(image, pixel_size_angstrom=1.0)
    mean = 0.5 * (result.defocus_u_angstrom + result.defocus_v_angstrom)
    assert mean == pytest.approx(21750.0, rel=0.01)
    assert angle_error_deg(result.astigmatism_angle_deg, 70.0) < 5.0


def test_pure_noise_gives_a_low_score():
    image = np.random.default_rng(9).poisson(3.0, (1024, 1024)).astype(np.float32)
    result = estimate_ctf(image, pixel_size_angstrom=1.0)
    assert abs(result.cross_correlation) < 0.1
    assert result.fit_resolution_angstrom > 8.0


def test_small_pixels_are_fitted_on_a_binned_spectrum():
    # 0.5 A/px at 3 um: unbinned, a 512 box samples the rings beyond ~9 A at < 2 px per ring
    image = synthetic_ctf_micrograph((2048, 2048), 0.5, 30400, 29600, -20, seed=7)
    result = estimate_ctf(image, pixel_size_angstrom=0.5)
    assert result.spectrum_pixel_size_angstrom == pytest.approx(1.0)
    mean = 0.5 * (result.defocus_u_angstrom + result.defocus_v_angstrom)
    assert mean == pytest.approx(30000.0, rel=0.01)
    assert angle_error_deg(result.astigmatism_angle_deg, -20.0) < 5.0


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"pixel_size_angstrom": 0.0}, CtfParameterError, "pixel_size"),
        ({"max_resolution_angstrom": 40.0}, CtfParameterError, "finer"),
        ({"max_resolution_angstrom": 1.5}, CtfParameterError, "Nyquist"),
        ({"box_size_px": 2048}, CtfParameterError, "smaller than box_size_px"),
        ({"min_defocus_angstrom": 6e4}, CtfFitError, "min_defocus"),
        (
            {"phase_plate": True, "min_phase_shift_deg": 90.0, "max_phase_shift_deg": 10.0},
            CtfFitError,
            "phase",
        ),
    ],
)
def test_bad_parameters_raise_clear_errors(kwargs, error, message):
    image = np.random.default_rng(0).poisson(5.0, (600, 600)).astype(np.float32)
    with pytest.raises(error, match=message):
        estimate_ctf(image, **{"pixel_size_angstrom": 1.0, **kwargs})
