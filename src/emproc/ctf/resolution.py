"""Fit resolution: up to which spatial frequency the fitted CTF^2 follows the Thon rings.

As in CTFFIND4, the 2D spectrum is first reduced to an *equiphase average*: every pixel is
binned at the frequency that has the same aberration phase under the mean defocus, which
undoes the astigmatism so that rings add up coherently. The 1D profile is compared with
CTF^2 in a sliding window one CTF oscillation wide (a Fourier-ring-correlation-like local
normalised cross-correlation); the fit resolution is the last frequency before that
correlation drops below a threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emproc.ctf.fit import dot
from emproc.ctf.model import ctf_phase, electron_wavelength_angstrom

FIT_RESOLUTION_THRESHOLD = 0.5  # CTFFIND4's "significance" threshold for its fit FRC
MIN_GOOD_BINS = 3  # bins above the threshold needed before a drop counts
MIN_WINDOW_HALF_WIDTH_BINS = 2


@dataclass(frozen=True)
class RingFit:
    """1D equiphase average, the CTF^2 it is compared with and the local correlation."""

    frequency_per_angstrom: np.ndarray
    equiphase_average: np.ndarray
    ctf_squared: np.ndarray
    local_correlation: np.ndarray
    fit_resolution_angstrom: float


def equiphase_average(
    spectrum: np.ndarray,
    pixel_size_angstrom: float,
    defocus_u_angstrom: float,
    defocus_v_angstrom: float,
    astigmatism_angle_deg: float,
    voltage_kv: float,
    spherical_aberration_mm: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Average a centred square spectrum along lines of equal aberration phase.

    Returns (bin frequencies in 1/A, averages), one bin per Fourier pixel out to Nyquist.
    Bins no pixel falls into are NaN.
    """
    n = spectrum.shape[0]
    bin_width = 1.0 / (n * pixel_size_angstrom)
    centred = (np.arange(n) - n // 2) * bin_width
    fy, fx = np.meshgrid(centred, centred, indexing="ij")
    frequency = np.hypot(fx, fy)
    azimuth = np.arctan2(fy, fx)
    chi = ctf_phase(
        frequency,
        azimuth,
        defocus_u_angstrom,
        defocus_v_angstrom,
        astigmatism_angle_deg,
        voltage_kv,
        spherical_aberration_mm,
        amplitude_contrast=0.0,
    )
    # frequency k' with chi(k', mean defocus) = chi: root of a k'^4 - b k'^2 + chi = 0
    wavelength = electron_wavelength_angstrom(voltage_kv)
    a = 0.5 * np.pi * spherical_aberration_mm * 1e7 * wavelength**3
    b = np.pi * wavelength * 0.5 * (defocus_u_angstrom + defocus_v_angstrom)
    discriminant = b**2 - 4.0 * a * chi
    valid = (discriminant >= 0) & (frequency <= 0.5 / pixel_size_angstrom)
    root = np.sqrt(np.where(valid, discriminant, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        k_squared = np.where(valid, 2.0 * chi / (b + root), 0.0)
    equivalent = np.sqrt(np.maximum(k_squared, 0.0))
    number_of_bins = n // 2 + 1
    bins = np.rint(equivalent / bin_width).astype(np.int64)
    valid &= bins < number_of_bins
    # the central cross is zeroed by the background subtraction: leave it out
    valid &= (fx != 0) & (fy != 0)
    counts = np.bincount(bins[valid], minlength=number_of_bins)
    sums = np.bincount(bins[valid], weights=spectrum[valid], minlength=number_of_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        averages = np.where(counts > 0, sums / counts, np.nan)
    return np.arange(number_of_bins) * bin_width, averages


def ring_fit(
    spectrum: np.ndarray,
    pixel_size_angstrom: float,
    defocus_u_angstrom: float,
    defocus_v_angstrom: float,
    astigmatism_angle_deg: float,
    voltage_kv: float,
    spherical_aberration_mm: float,
    amplitude_contrast: float,
    phase_shift_deg: float,
    min_resolution_angstrom: float,
    threshold: float = FIT_RESOLUTION_THRESHOLD,
    rings_detected: bool = True,
) -> RingFit:
    """Equiphase average, CTF^2 at the mean defocus, their local correlation and the fit
    resolution (Angstrom), scanning outward from `min_resolution_angstrom`.

    With `rings_detected` False (the 2D fit is not significant) no ring counts as fitted and
    the fit resolution is `min_resolution_angstrom`'s bin.
    """
    frequency, average = equiphase_average(
        spectrum,
        pixel_size_angstrom,
        defocus_u_angstrom,
        defocus_v_angstrom,
        astigmatism_angle_deg,
        voltage_kv,
        spherical_aberration_mm,
    )
    mean_defocus = 0.5 * (defocus_u_angstrom + defocus_v_angstrom)
    phase = ctf_phase(
        frequency,
        np.zeros_like(frequency),
        mean_defocus,
        mean_defocus,
        0.0,
        voltage_kv,
        spherical_aberration_mm,
        amplitude_contrast,
        phase_shift_deg,
    )
    ctf_squared = np.sin(phase) ** 2
    half_widths = _half_period_bins(frequency, mean_defocus, voltage_kv, spherical_aberration_mm)
    local = _local_correlation(average, ctf_squared, half_widths)
    start = int(np.searchsorted(frequency, 1.0 / min_resolution_angstrom))
    last_good = _last_good_bin(local, half_widths, start, threshold) if rings_detected else 0
    resolution = 1.0 / frequency[last_good] if last_good > 0 else 1.0 / frequency[max(start, 1)]
    return RingFit(frequency, average, ctf_squared, local, float(resolution))


def _half_period_bins(
    frequency: np.ndarray,
    defocus_angstrom: float,
    voltage_kv: float,
    spherical_aberration_mm: float,
) -> np.ndarray:
    """Half of the local CTF^2 oscillation period (pi of phase), in bins, at each bin."""
    wavelength = electron_wavelength_angstrom(voltage_kv)
    cs_angstrom = spherical_aberration_mm * 1e7
    slope = np.abs(
        2 * np.pi * wavelength * defocus_angstrom * frequency
        - 2 * np.pi * cs_angstrom * wavelength**3 * frequency**3
    )
    bin_width = frequency[1] - frequency[0]
    with np.errstate(divide="ignore"):
        period_bins = np.where(slope > 0, np.pi / np.maximum(slope, 1e-300) / bin_width, np.inf)
    half = np.minimum(np.rint(0.5 * period_bins), frequency.size)
    return np.maximum(half, MIN_WINDOW_HALF_WIDTH_BINS).astype(np.int64)


def _local_correlation(
    profile: np.ndarray, model: np.ndarray, half_widths: np.ndarray
) -> np.ndarray:
    """Pearson correlation of profile and model in a window of +-half_width bins per bin."""
    n = profile.size
    result = np.full(n, np.nan)
    for index in range(n):
        low, high = max(0, index - half_widths[index]), min(n, index + half_widths[index] + 1)
        x, y = profile[low:high], model[low:high]
        keep = np.isfinite(x)
        if keep.sum() < 2 * MIN_WINDOW_HALF_WIDTH_BINS + 1:
            continue
        x = x[keep] - x[keep].mean()
        y = y[keep] - y[keep].mean()
        norm = np.sqrt(dot(x, x) * dot(y, y))
        result[index] = dot(x, y) / norm if norm > 0 else 0.0
    return result


def _last_good_bin(local: np.ndarray, half_widths: np.ndarray, start: int, threshold: float) -> int:
    """Last good bin (correlation >= `threshold`) of the stretch of rings that fit.

    The stretch must begin within one ring of `start` (the lowest ring may be hurt by the
    background subtraction) and have more than MIN_GOOD_BINS good bins; it ends where the
    correlation stays below the threshold for a whole ring, so a single noisy bin does not
    cut it short. Requiring it to begin at low resolution, where the windows span many bins
    and chance correlations are small, keeps noise from posing as rings further out.
    Returns 0 if there is no such stretch.
    """
    start = max(start, 1)
    good = np.isfinite(local) & (local >= threshold)
    ring_bins = 2 * half_widths
    candidates = np.flatnonzero(good[start : start + ring_bins[start] + 1])
    if candidates.size == 0:
        return 0
    last_good = start + int(candidates[0])
    good_bins = 0
    for index in range(last_good, local.size):
        if good[index]:
            good_bins += 1
            last_good = index
        elif index - last_good >= ring_bins[index]:
            break
    return last_good if good_bins > MIN_GOOD_BINS else 0
