"""A per-micrograph pick threshold from the data: false-discovery control over filter peaks.

Shot noise is white, so after the picker's filters the noise is a smooth Gaussian random
field. Random-field theory (Worsley et al. 1996; Adler) gives the expected number of its
maxima above a height t (in noise sigmas) over an area A as the expected Euler characteristic

    E_noise(t) = A * lambda_2 / (2 pi)^(3/2) * t * exp(-t^2 / 2),

lambda_2 = Var(dR/dx) / Var(R) the field's roughness (for the maximum over the picker's
filter bank it is measured on white noise: `log_picker.noise_roughness`). Peaks are sorted by
height and the lowest height t_k is kept for which E_noise(t_k) <= q * k (Benjamini-Hochberg
on peaks, as in Schwartzman et al.'s STEM procedure): at most a fraction q of the picks are
expected to be noise. A micrograph with many particles thus gets a lower threshold than a
sparse one, and an empty one gets none, without a global sigma.
"""

from __future__ import annotations

import numpy as np

# below ~2 noise sigmas the Euler-characteristic count no longer approximates the maxima
MIN_THRESHOLD_SIGMA = 2.0


def expected_noise_maxima(
    height_sigma: np.ndarray, area_px: float, roughness_per_px2: float
) -> np.ndarray:
    """Expected number of noise maxima above each height, over `area_px` pixels, of a
    unit-variance field of roughness lambda_2 (1/px^2)."""
    lambda_2 = float(roughness_per_px2)
    t = np.asarray(height_sigma, dtype=float)
    density = lambda_2 / (2.0 * np.pi) ** 1.5 * t * np.exp(-0.5 * t * t)
    return area_px * np.where(t > 0, density, np.inf)


def false_discovery_threshold(
    peak_heights_sigma: np.ndarray,
    area_px: float,
    roughness_per_px2: float,
    false_discovery_rate: float = 0.05,
) -> float:
    """Lowest peak height keeping the expected fraction of noise peaks <= the rate.

    Returns +inf when no height qualifies (no particles distinguishable from noise).
    """
    heights = np.sort(np.asarray(peak_heights_sigma, dtype=float))[::-1]
    heights = heights[heights >= MIN_THRESHOLD_SIGMA]
    if heights.size == 0:
        return float("inf")
    expected = expected_noise_maxima(heights, area_px, roughness_per_px2)
    rank = np.arange(1, heights.size + 1)
    passing = np.nonzero(expected <= false_discovery_rate * rank)[0]
    if passing.size == 0:
        return float("inf")
    return float(heights[passing[-1]])
