"""Tilt-axis angle measurement (issue 5 gate: < 1 deg) on simulated tilt series."""

import numpy as np
import pytest
import scipy.fft

from emproc.simulate.tomo import TiltSeriesParams, simulate_tilt_series
from emproc.tomo.align import AlignmentParams, align_tilt_series
from emproc.tomo.axis import AxisEstimationError, estimate_tilt_axis
from emproc.tomo.dose import dose_filter

TRUE_AXIS_DEG = 85.0
BINNING = 2


def _stack(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Default 256 px, 41-tilt series as the stack step makes it: frame sums as contrast
    1 - I/mean, dose-weighted, sorted by tilt angle (no CTF fit: not needed here)."""
    params = TiltSeriesParams()
    movies, truth, _ = simulate_tilt_series(params, seed)
    images = []
    for frames, prior in zip(movies, truth.prior_dose_e_per_angstrom2, strict=True):
        total = frames.sum(axis=0, dtype=np.float64)
        contrast = 1.0 - total / total.mean()
        mid_exposure = prior + 0.5 * params.dose_per_tilt_e_per_angstrom2
        weights = dose_filter(contrast.shape, params.pixel_size_angstrom, mid_exposure, rfft=True)
        images.append(scipy.fft.irfft2(scipy.fft.rfft2(contrast) * weights, s=contrast.shape))
    order = np.argsort(truth.tilt_angles_deg)
    return np.asarray(images, dtype=np.float32)[order], np.asarray(truth.tilt_angles_deg)[order]


@pytest.fixture(scope="module", params=[6, 7, 8])
def series(request):
    return _stack(request.param)


@pytest.mark.parametrize("mdoc_error_deg", [-3.0, 0.0, 3.0])
def test_axis_within_one_degree_of_truth(series, mdoc_error_deg):
    images, angles = series
    # the axis is measured before patch tracking, which this test skips for speed
    params = AlignmentParams(binning=BINNING, refine=False)
    result = align_tilt_series(images, angles, TRUE_AXIS_DEG + mdoc_error_deg, params)
    assert abs(result.tilt_axis_angle_deg - TRUE_AXIS_DEG) < 1.0, result.tilt_axis_angle_deg


def test_wrong_axis_is_not_kept(series):
    # guards the test above: without the measurement a 3 deg mdoc error stays 3 deg
    images, angles = series
    params = AlignmentParams(binning=BINNING, refine_axis=False, refine=False)
    result = align_tilt_series(images, angles, TRUE_AXIS_DEG + 3.0, params)
    assert abs(result.tilt_axis_angle_deg - TRUE_AXIS_DEG) == pytest.approx(3.0)


def test_too_few_tilts_is_a_clear_error():
    images = np.zeros((2, 64, 64), dtype=np.float32)
    with pytest.raises(AxisEstimationError, match="3 tilts"):
        estimate_tilt_axis(images, np.array([0.0, 3.0]), np.zeros((2, 2)), 85.0)
