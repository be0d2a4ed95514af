"""Accuracy against the SPA simulator's ground truth (particles in ice, the true CTF with a
B-factor envelope, Poisson counts): emproc.simulate.spa.simulate_micrograph."""

import numpy as np
import pytest

from emproc.ctf import estimate_ctf
from emproc.simulate.spa import SpaMovieParams, simulate_micrograph

DEFOCUS_TOLERANCE_FRACTION = 0.02
ANGLE_TOLERANCE_DEG = 10.0
PHASE_TOLERANCE_DEG = 10.0


def angle_error_deg(estimated: float, true: float) -> float:
    """Difference of two angles with 180-degree periodicity, in [0, 90]."""
    return abs((estimated - true + 90.0) % 180.0 - 90.0)


def simulated(seed, *, dose_per_frame=1.0, phase_shift_deg=0.0, shape=(1024, 1024)):
    params = SpaMovieParams(
        shape_px=shape,
        number_of_frames=40,
        pixel_size_angstrom=1.0,
        dose_per_frame_e_per_angstrom2=dose_per_frame,
        defocus_range_angstrom=(8000.0, 35000.0),
        max_astigmatism_angstrom=1000.0,
        phase_shift_deg=phase_shift_deg,
    )
    return simulate_micrograph(params, seed)


def check_defocus_and_angle(result, truth):
    true_mean = 0.5 * (truth.defocus_u_angstrom + truth.defocus_v_angstrom)
    mean = 0.5 * (result.defocus_u_angstrom + result.defocus_v_angstrom)
    assert abs(mean - true_mean) / true_mean < DEFOCUS_TOLERANCE_FRACTION, (mean, true_mean)
    if truth.defocus_u_angstrom - truth.defocus_v_angstrom > 300.0:
        error = angle_error_deg(result.astigmatism_angle_deg, truth.astigmatism_angle_deg)
        assert error < ANGLE_TOLERANCE_DEG, (result, truth)


def test_one_simulated_micrograph():
    image, truth = simulated(seed=1)
    result = estimate_ctf(image, pixel_size_angstrom=1.0)
    check_defocus_and_angle(result, truth)
    assert result.fit_resolution_angstrom < 6.0


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(2, 12))
def test_defocus_and_astigmatism_over_seeds(seed):
    image, truth = simulated(seed)
    result = estimate_ctf(image, pixel_size_angstrom=1.0)
    check_defocus_and_angle(result, truth)
    astigmatism = truth.defocus_u_angstrom - truth.defocus_v_angstrom
    assert result.astigmatism_angstrom == pytest.approx(astigmatism, abs=150.0)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [3, 4])
def test_fit_resolution_degrades_as_dose_falls(seed):
    resolutions = []
    for dose_per_frame in (2.0, 0.5, 0.1):
        image, truth = simulated(seed, dose_per_frame=dose_per_frame)
        result = estimate_ctf(image, pixel_size_angstrom=1.0)
        resolutions.append(result.fit_resolution_angstrom)
    assert resolutions[0] < resolutions[1] < resolutions[2], resolutions
    assert resolutions[2] > 1.2 * resolutions[0], resolutions


@pytest.mark.slow
@pytest.mark.parametrize(("seed", "phase"), [(5, 30.0), (6, 60.0), (7, 90.0), (8, 120.0)])
def test_phase_plate_shift(seed, phase):
    image, truth = simulated(seed, phase_shift_deg=phase)
    result = estimate_ctf(image, pixel_size_angstrom=1.0, phase_plate=True)
    check_defocus_and_angle(result, truth)
    # CTF^2 cannot tell phase p from p + 180 degrees
    assert angle_error_deg(result.phase_shift_deg, truth.phase_shift_deg) < PHASE_TOLERANCE_DEG


@pytest.mark.slow
def test_large_micrograph():
    image, truth = simulated(seed=9, shape=(2048, 2048))
    result = estimate_ctf(image, pixel_size_angstrom=1.0, threads=2)
    check_defocus_and_angle(result, truth)
    assert np.isfinite(result.cross_correlation) and result.cross_correlation > 0.2
