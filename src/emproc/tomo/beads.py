"""Gold beads in a tilt image: a bead template, a score map, seeds on the zero tilt and the
sub-pixel position of the score peak near a predicted position.

A gold bead is a sphere: its projection looks the same at every tilt (a disc whose
thickness is the chord 2 sqrt(R^2 - r^2)), so one template serves the whole series. The
score is the correlation of the high-passed image with that zero-mean, unit-norm template,
divided by the image's robust pixel spread: gold (~10x the contrast of protein) stands far above the
specimen, which is what tells a bead from a dense macromolecule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft
from scipy import ndimage


@dataclass(frozen=True)
class BeadScoreMap:
    score: np.ndarray  # [y, x] correlation in robust noise sigmas, at the bead binning
    binning: int
    unbinned_shape: tuple[int, int]

    def _spacing(self) -> np.ndarray:
        # Fourier cropping to n // binning samples spaces them n / (n // binning) apart
        ny, nx = self.unbinned_shape
        my, mx = self.score.shape
        return np.array([nx / mx, ny / my])

    def to_unbinned(self, index_xy: np.ndarray) -> np.ndarray:
        """Binned pixel index (x, y) -> unbinned (x, y) relative to the image centre."""
        ny, nx = self.unbinned_shape
        return np.asarray(index_xy, dtype=float) * self._spacing() - np.array([nx / 2, ny / 2])

    def to_index(self, position_xy: np.ndarray) -> np.ndarray:
        ny, nx = self.unbinned_shape
        centred = np.asarray(position_xy, dtype=float) + np.array([nx / 2, ny / 2])
        return centred / self._spacing()


def bead_template(radius_px: float, size: int) -> np.ndarray:
    """Projected sphere (chord length, 4x4 supersampled), zero-mean, unit norm, centred at
    index size // 2."""
    offsets = (np.arange(4) - 1.5) / 4.0
    grid = np.arange(size) - size // 2
    chord = np.zeros((size, size))
    for oy in offsets:
        for ox in offsets:
            r2 = (grid[None, :] + ox) ** 2 + (grid[:, None] + oy) ** 2
            chord += np.sqrt(np.clip(radius_px**2 - r2, 0.0, None))
    chord -= chord.mean()
    return chord / np.linalg.norm(chord)


def bead_binning(diameter_px: float) -> int:
    """Binning that leaves a bead >= 12 px across (at 8 px, 3x binning of a 25 px bead, the
    fit residual was ~0.25 px unbinned against ~0.15 px at 2x)."""
    return max(1, int(diameter_px // 12))


def score_map(image: np.ndarray, diameter_px: float, binning: int) -> BeadScoreMap:
    """Template correlation of one unbinned contrast image (dense positive) at `binning`."""
    from emproc.tomo.stack import fourier_bin

    binned = fourier_bin(image, binning).astype(np.float64)
    radius = 0.5 * diameter_px / binning
    # remove what is larger than a few beads (ice gradients, carbon): a flat disc template
    # would otherwise follow them (Gaussian high-pass, sigma 2.5 bead radii)
    ky = np.fft.fftfreq(binned.shape[0])[:, None]
    kx = np.fft.rfftfreq(binned.shape[1])[None, :]
    highpass = 1.0 - np.exp(-2.0 * (np.pi * 2.5 * radius) ** 2 * (kx**2 + ky**2))
    spectrum = scipy.fft.rfft2(binned) * highpass
    binned = scipy.fft.irfft2(spectrum, s=binned.shape)
    size = int(2 * np.ceil(1.6 * radius) + 1)
    template = bead_template(radius, size)
    padded = np.zeros_like(binned)
    padded[:size, :size] = template
    padded = np.roll(padded, (-(size // 2), -(size // 2)), axis=(0, 1))
    correlation = scipy.fft.irfft2(spectrum * np.conj(scipy.fft.rfft2(padded)), s=binned.shape)
    # unit-norm template: white noise of pixel sigma s correlates with spread s; the pixel
    # spread is robust (MAD), so a field crowded with beads does not inflate it
    spread = 1.4826 * float(np.median(np.abs(binned - np.median(binned)))) + 1e-12
    score = correlation / spread
    return BeadScoreMap(score.astype(np.float32), binning, image.shape)


def subpixel_peak(score: np.ndarray, iy: int, ix: int) -> tuple[float, float]:
    """(x, y) index of a local maximum refined by a 3x3 quadratic fit."""
    ny, nx = score.shape
    if not (0 < iy < ny - 1 and 0 < ix < nx - 1):
        return float(ix), float(iy)
    patch = score[iy - 1 : iy + 2, ix - 1 : ix + 2].astype(np.float64)
    dx_den = patch[1, 0] - 2 * patch[1, 1] + patch[1, 2]
    dy_den = patch[0, 1] - 2 * patch[1, 1] + patch[2, 1]
    dx = 0.5 * (patch[1, 0] - patch[1, 2]) / dx_den if dx_den < 0 else 0.0
    dy = 0.5 * (patch[0, 1] - patch[2, 1]) / dy_den if dy_den < 0 else 0.0
    return ix + float(np.clip(dx, -0.5, 0.5)), iy + float(np.clip(dy, -0.5, 0.5))


def find_seeds(
    scores: BeadScoreMap,
    diameter_px: float,
    *,
    min_score_sigma: float,
    relative_score: float,
    max_beads: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Bead candidates on one (zero-tilt) score map: unbinned (x, y) from the centre and
    their scores. A candidate is a local maximum over a bead diameter, at least
    `min_score_sigma` above the map's noise and `relative_score` x the median of the
    strongest five (beads are alike; the specimen's peaks are much weaker), away from the
    border by a bead radius."""
    score = scores.score
    radius = 0.5 * diameter_px / scores.binning
    local = ndimage.maximum_filter(score, size=max(3, int(round(2 * radius)) | 1))
    peaks = (score == local) & (score >= min_score_sigma)
    margin = int(np.ceil(radius)) + 1
    peaks[:margin] = peaks[-margin:] = False
    peaks[:, :margin] = peaks[:, -margin:] = False
    iy, ix = np.nonzero(peaks)
    values = score[iy, ix]
    if len(values) == 0:
        return np.zeros((0, 2)), np.zeros(0)
    order = np.argsort(values)[::-1]
    iy, ix, values = iy[order], ix[order], values[order]
    reference = float(np.median(values[:5]))
    keep = values >= relative_score * reference
    iy, ix, values = iy[keep][:max_beads], ix[keep][:max_beads], values[keep][:max_beads]
    refined = np.array([subpixel_peak(score, y, x) for y, x in zip(iy, ix, strict=True)])
    return scores.to_unbinned(refined.reshape(-1, 2)), values


def locate_near(
    scores: BeadScoreMap, predicted_xy: np.ndarray, search_radius_px: float
) -> tuple[np.ndarray, float]:
    """Highest score within `search_radius_px` (unbinned) of a predicted unbinned position:
    its sub-pixel position (unbinned, from the centre) and score; (nan, nan), -inf if the
    window leaves the image."""
    centre = scores.to_index(predicted_xy)
    reach = search_radius_px / scores.binning
    ny, nx = scores.score.shape
    x0, x1 = int(np.floor(centre[0] - reach)), int(np.ceil(centre[0] + reach)) + 1
    y0, y1 = int(np.floor(centre[1] - reach)), int(np.ceil(centre[1] + reach)) + 1
    if x0 < 1 or y0 < 1 or x1 > nx - 1 or y1 > ny - 1:
        return np.array([np.nan, np.nan]), -np.inf
    window = scores.score[y0:y1, x0:x1]
    yy, xx = np.mgrid[y0:y1, x0:x1]
    inside = (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= reach**2
    masked = np.where(inside, window, -np.inf)
    wy, wx = np.unravel_index(int(np.argmax(masked)), masked.shape)
    value = float(masked[wy, wx])
    refined = subpixel_peak(scores.score, y0 + wy, x0 + wx)
    return scores.to_unbinned(np.array(refined)), value
