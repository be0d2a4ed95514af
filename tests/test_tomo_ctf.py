"""Tilt-series CTF (joint series fit + per-tilt defocus) against the simulator's truth."""

import numpy as np
import pytest

from emproc.simulate.tomo import TiltSeriesParams, simulate_tilt_series
from emproc.tomo.ctf import (
    TiltSeriesCtfParams,
    dose_limited_resolution_angstrom,
    estimate_tilt_series_ctf,
)
from emproc.tomo.stack import ExclusionParams, TiltRecord, _flag_ctf_failures

# the band the simulated-session config uses (4 A/px, 256 px images)
PARAMS = TiltSeriesCtfParams(min_resolution_angstrom=50.0, max_resolution_angstrom=10.0)
NOMINAL = 30000.0  # what the simulated mdoc records (the target defocus)


@pytest.fixture(scope="module")
def fitted():
    """The default simulated series (41 tilts, 3 e-/A^2 each, dose-symmetric), fitted."""
    movies, truth, _ = simulate_tilt_series(TiltSeriesParams(), seed=3)
    sums = [movie.sum(axis=0).astype(np.float32) for movie in movies]
    series, fits = estimate_tilt_series_ctf(
        sums,
        truth.tilt_angles_deg,
        truth.tilt_axis_angle_deg,
        truth.pixel_size_angstrom,
        [NOMINAL] * len(sums),
        accumulated_dose_e_per_angstrom2=truth.prior_dose_e_per_angstrom2,
        params=PARAMS,
    )
    return truth, series, fits


def test_per_tilt_defocus_within_five_percent_up_to_30_degrees(fitted):
    truth, series, fits = fitted
    angles = np.array(truth.tilt_angles_deg)
    true_defocus = np.array(truth.defocus_angstrom)
    estimated = np.array([f.defocus_angstrom for f in fits])
    low = np.abs(angles) <= 30.0 + 1e-6
    assert series.fitted
    assert all(f.source == "tilt" for f, is_low in zip(fits, low, strict=True) if is_low)
    relative = np.abs(estimated - true_defocus)[low] / true_defocus[low]
    assert relative.max() < 0.05, relative.max()
    # measured, not copied: far closer than the mdoc's target defocus (spread 1000 A)
    rms = np.sqrt(np.mean((estimated - true_defocus)[low] ** 2))
    nominal_rms = np.sqrt(np.mean((NOMINAL - true_defocus)[low] ** 2))
    assert rms < 0.5 * nominal_rms, (rms, nominal_rms)


def test_pure_noise_claims_no_fit():
    rng = np.random.default_rng(0)
    images = [rng.poisson(48.0, size=(256, 256)).astype(np.float32) for _ in range(15)]
    angles = np.linspace(-21.0, 21.0, 15)
    series, fits = estimate_tilt_series_ctf(
        images, angles, 85.0, 4.0, [NOMINAL] * 15, params=PARAMS
    )
    assert not series.fitted
    assert {f.source for f in fits} == {"mdoc"}
    assert all(f.defocus_angstrom == NOMINAL for f in fits)
    assert max(f.significance for f in fits) < PARAMS.min_significance


def test_dose_limited_resolution():
    assert dose_limited_resolution_angstrom(0.0) == 0.0
    # amplitude exp(-N / 2 Nc) = 1/4 at 60 e-/A^2: Nc = 21.6 -> k ~ 0.074 / A
    assert dose_limited_resolution_angstrom(60.0) == pytest.approx(13.6, abs=0.3)
    assert dose_limited_resolution_angstrom(120.0) > dose_limited_resolution_angstrom(60.0)


def _record(angle: float, resolution: float | None, significance: float) -> TiltRecord:
    return TiltRecord(
        tilt_angle_deg=angle,
        acquisition_index=0,
        movie_name=f"{angle}.tif",
        accumulated_dose_e_per_angstrom2=0.0,
        exposure_dose_e_per_angstrom2=3.0,
        mean_counts=48.0,
        defocus_angstrom=NOMINAL,
        ctf_estimated=True,
        ctf_fit_resolution_angstrom=resolution,
        motion_corrected=True,
        status="used",
        ctf_source="tilt" if resolution else "series",
        ctf_significance=significance,
    )


def test_only_isolated_ctf_failures_are_excluded():
    records = [
        _record(-6.0, 9.0, 15.0),
        _record(-3.0, None, 1.0),  # no rings between two tilts with strong rings: blurred
        _record(0.0, 9.0, 16.0),
        _record(45.0, 18.0, 5.0),
        _record(48.0, None, 3.5),  # faint like its neighbours: late, high tilt, kept
        _record(51.0, 17.0, 4.5),
        _record(54.0, None, 2.0),  # a faint run at the end of the range is kept
        _record(57.0, None, 1.0),
    ]
    flagged = _flag_ctf_failures(records, ExclusionParams())
    assert [r.tilt_angle_deg for r in flagged if r.status == "ctf_fit_failed"] == [-3.0]
