"""Exposure weighting: the Grant & Grigorieff filter and its effect on a real sum."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft

from emproc.motion import motion_correct
from emproc.motion.dose_weighting import (
    DoseWeights,
    critical_exposure,
    dose_weights,
    frame_mid_exposures,
    voltage_dose_scale,
)


def test_critical_exposure_values():
    # Ne(k) = 0.245 k^-1.665 + 2.81 (eLife 2015, eq. 3)
    assert critical_exposure(np.array(0.25)) == pytest.approx(0.245 * 0.25**-1.665 + 2.81)
    assert critical_exposure(np.array(1 / 3.0)) == pytest.approx(4.336, abs=0.001)
    assert np.isinf(critical_exposure(np.array(0.0)))


def test_voltage_scale_and_mid_frame_exposure():
    assert voltage_dose_scale(300) == 1.0
    # G&G: Ne(200 kV) = 0.8 Ne(300 kV), i.e. an electron at 200 kV does 1/0.8 the damage
    assert voltage_dose_scale(200) == pytest.approx(1 / 0.8)
    assert 1 / 0.8 < voltage_dose_scale(120) < 2.0  # still more damage at lower voltage
    exposures = frame_mid_exposures(4, 1.5, pre_exposure_e_per_angstrom2=2.0, voltage_kv=200)
    np.testing.assert_allclose(exposures, (2.0 + np.array([0.75, 2.25, 3.75, 5.25])) / 0.8)


def test_weights_are_normalised_and_decay_with_exposure():
    exposures = frame_mid_exposures(20, 2.0)
    weights = dose_weights((64, 64), 1.0, exposures)
    assert weights.shape == (20, 64, 33)
    np.testing.assert_allclose((weights**2).sum(axis=0), 20.0, rtol=1e-5)
    np.testing.assert_allclose(weights[:, 0, 0], 1.0, rtol=1e-6)  # DC untouched
    # at 1/3 A^-1 the first frame dominates the last
    k = 64 // 3
    assert weights[0, 0, k] > 3 * weights[-1, 0, k]
    # the streaming object gives the same weights
    np.testing.assert_allclose(DoseWeights((64, 64), 1.0, exposures)(5), weights[5], rtol=1e-6)


def test_weighted_sum_power_follows_the_exposure_filter():
    """Frames with identical (static) signal: the power ratio of the weighted to the plain
    sum per frequency shell must be (sum_f w_f)^2 / n^2, from the filter alone."""
    rng = np.random.default_rng(0)
    shape, count, dose, pixel = (256, 256), 16, 3.0, 1.0
    signal = rng.standard_normal(shape).astype(np.float32) + 10.0
    frames = np.repeat(signal[None], count, axis=0)
    result = motion_correct(
        frames,
        pixel_size_angstrom=pixel,
        dose_per_frame_e_per_angstrom2=dose,
        patches_x=1,
        patches_y=1,
        iterations=2,
    )
    assert np.allclose(result.shifts_px, 0.0, atol=1e-3)
    plain = np.abs(scipy.fft.rfft2(result.aligned_sum)) ** 2
    weighted = np.abs(scipy.fft.rfft2(result.dose_weighted_sum)) ** 2
    # the prediction written out from the paper, independently of the module
    ky = np.fft.fftfreq(shape[0], d=pixel)[:, None]
    kx = np.fft.rfftfreq(shape[1], d=pixel)[None, :]
    with np.errstate(divide="ignore"):
        ne = 0.245 * np.hypot(kx, ky) ** -1.665 + 2.81
    mid_dose = (np.arange(count) + 0.5) * dose
    q = np.exp(-mid_dose[:, None, None] / (2 * ne[None]))
    weights = q * np.sqrt(count / (q**2).sum(axis=0))
    predicted = (weights.sum(axis=0) / count) ** 2
    shell = np.minimum((np.hypot(kx, ky) / 0.5 * 20).astype(int), 20)
    for index in range(1, 20):
        inside = shell == index
        measured_ratio = weighted[inside].sum() / plain[inside].sum()
        predicted_ratio = float(np.mean(predicted[inside] * plain[inside]) / np.mean(plain[inside]))
        assert measured_ratio == pytest.approx(predicted_ratio, rel=0.01), index
    # and the filter does bite at high resolution (3 A: ~1/3 of the plain power left)
    high = shell == 13
    assert weighted[high].sum() / plain[high].sum() < 0.6
