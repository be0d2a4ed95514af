"""Template-free Laplacian-of-Gaussian blob picker (in the spirit of RELION's LoG picker).

The micrograph is Fourier-binned so the smallest particle spans ~20 pixels (which also
low-passes it), inverted so particles (dark at underfocus) are bright, and filtered with the
scale-normalised LoG at a few scales between the minimum and maximum particle diameter. Each
scale's response is expressed in robust standard deviations over the micrograph; the best
scale per pixel is kept. Peaks above `threshold_sigma` survive non-maximum suppression at the
particle radius, edge exclusion and contamination rejection (see `contamination`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.fft
from scipy import ndimage

from emproc.picking.contamination import contamination_mask

PICK_COLUMNS = ("x_px", "y_px", "score_sigma", "diameter_angstrom")


class PickingError(ValueError):
    """The micrograph or the picking parameters cannot be used."""


@dataclass(frozen=True)
class LogPickerParams:
    """Picker settings; diameters and distances in Angstrom."""

    min_diameter_angstrom: float = 120.0
    max_diameter_angstrom: float = 180.0
    threshold_sigma: float = 3.0
    number_of_scales: int = 5
    pixels_per_min_diameter: float = 20.0  # sets the binning
    edge_exclusion_angstrom: float | None = None  # default: half the minimum diameter
    min_separation_fraction: float = 0.5  # NMS distance, fraction of the minimum diameter
    contamination_sigma: float = 6.0  # local-mean / local-variance outliers; <= 0 disables
    contamination_window_diameters: float = 0.75  # local window, in max diameters

    def __post_init__(self) -> None:
        if not 0 < self.min_diameter_angstrom <= self.max_diameter_angstrom:
            raise PickingError(
                f"need 0 < min_diameter_angstrom ({self.min_diameter_angstrom}) <= "
                f"max_diameter_angstrom ({self.max_diameter_angstrom})"
            )
        if self.number_of_scales < 1:
            raise PickingError("number_of_scales must be >= 1")


@dataclass(frozen=True)
class BinnedMicrograph:
    image: np.ndarray  # inverted (particles bright), binned
    pixel_size_angstrom: float
    bin_factor: float  # original pixels per binned pixel


def fourier_bin(image: np.ndarray, bin_factor: float, workers: int = 1) -> tuple[np.ndarray, float]:
    """Fourier-crop `image` by `bin_factor` (>= 1); returns the image and the exact factor used."""
    ny, nx = image.shape
    new_ny = max(int(round(ny / bin_factor)) // 2 * 2, 2)
    new_nx = max(int(round(nx / bin_factor)) // 2 * 2, 2)
    if new_ny >= ny or new_nx >= nx:
        return image.astype(np.float32, copy=True), 1.0
    spectrum = scipy.fft.rfft2(image, workers=workers)
    half = new_ny // 2
    cropped = np.concatenate(
        [spectrum[:half, : new_nx // 2 + 1], spectrum[-half:, : new_nx // 2 + 1]]
    )
    binned = scipy.fft.irfft2(cropped, s=(new_ny, new_nx), workers=workers)
    binned *= (new_ny * new_nx) / (ny * nx)
    return binned.astype(np.float32), nx / new_nx


def bin_and_invert(
    micrograph: np.ndarray, pixel_size_angstrom: float, params: LogPickerParams, workers: int = 1
) -> BinnedMicrograph:
    target_pixel = params.min_diameter_angstrom / params.pixels_per_min_diameter
    factor = max(target_pixel / pixel_size_angstrom, 1.0)
    binned, factor = fourier_bin(micrograph, factor, workers=workers)
    inverted = -(binned - np.float32(binned.mean()))
    return BinnedMicrograph(inverted, pixel_size_angstrom * factor, factor)


def _background_sigma(values: np.ndarray) -> tuple[float, float]:
    """Median and spread of the background from the lower half of the distribution only.

    Particles only add to the upper tail of the response, so the median-to-16th-percentile
    distance measures the noise even on a crowded micrograph.
    """
    low, median = np.percentile(values, [15.87, 50.0])
    spread = float(median - low)
    return float(median), spread if spread > 0 else float(values.std()) or 1.0


def log_response(
    image: np.ndarray,
    diameters_px: np.ndarray,
    background: np.ndarray | None = None,
    workers: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Best LoG response (background sigmas) over scales, and the diameter index achieving it.

    A bright disc of diameter d gives the strongest scale-normalised -LoG at sigma = d/(2 sqrt 2).
    `background` (boolean, optional) selects the pixels the noise statistics come from.
    """
    # mirror padding keeps the opposite edge from wrapping into the filtered border
    pad = int(np.ceil(1.5 * diameters_px.max()))
    padded = np.pad(image, pad, mode="reflect")
    spectrum = scipy.fft.rfft2(padded, workers=workers)
    fy = np.fft.fftfreq(padded.shape[0])[:, None]
    fx = np.fft.rfftfreq(padded.shape[1])[None, :]
    k2 = (fx**2 + fy**2) * (2.0 * np.pi) ** 2
    best = np.full(image.shape, -np.inf, dtype=np.float32)
    best_index = np.zeros(image.shape, dtype=np.int16)
    for index, diameter in enumerate(diameters_px):
        sigma = diameter / (2.0 * np.sqrt(2.0))
        transfer = sigma**2 * k2 * np.exp(-0.5 * sigma**2 * k2)
        response = scipy.fft.irfft2(spectrum * transfer, s=padded.shape, workers=workers)
        response = response[pad:-pad, pad:-pad]
        median, spread = _background_sigma(
            response if background is None or not background.any() else response[background]
        )
        response = (response - median) / spread
        better = response > best
        best[better] = response[better]
        best_index[better] = index
    return best, best_index


def _parabolic_offset(response: np.ndarray, y: np.ndarray, x: np.ndarray, axis: int) -> np.ndarray:
    """Offset (within +-0.5 px) of the parabola through each peak and its two neighbours."""
    step_y, step_x = (1, 0) if axis == 0 else (0, 1)
    ny, nx = response.shape
    before = response[np.clip(y - step_y, 0, ny - 1), np.clip(x - step_x, 0, nx - 1)]
    centre = response[y, x]
    after = response[np.clip(y + step_y, 0, ny - 1), np.clip(x + step_x, 0, nx - 1)]
    curvature = before - 2.0 * centre + after
    with np.errstate(divide="ignore", invalid="ignore"):
        offset = np.where(curvature < 0, 0.5 * (before - after) / curvature, 0.0)
    return np.clip(offset, -0.5, 0.5)


def _suppress(x: np.ndarray, y: np.ndarray, score: np.ndarray, distance: float) -> np.ndarray:
    """Greedy non-maximum suppression: indices kept, best first."""
    order = np.argsort(-score)
    kept: list[int] = []
    for index in order:
        if kept:
            dx = x[kept] - x[index]
            dy = y[kept] - y[index]
            if np.min(dx * dx + dy * dy) < distance * distance:
                continue
        kept.append(int(index))
    return np.asarray(kept, dtype=int)


def pick_log(
    micrograph: np.ndarray,
    pixel_size_angstrom: float,
    params: LogPickerParams = LogPickerParams(),
    workers: int = 1,
) -> pd.DataFrame:
    """Particle picks (x_px, y_px in micrograph pixels, score_sigma, diameter_angstrom)."""
    if micrograph.ndim != 2 or min(micrograph.shape) < 16:
        raise PickingError(f"expected a 2D micrograph of at least 16x16, got {micrograph.shape}")
    if not np.all(np.isfinite(micrograph)):
        raise PickingError("micrograph contains NaN or infinite values")
    binned = bin_and_invert(micrograph, pixel_size_angstrom, params, workers)
    pixel = binned.pixel_size_angstrom
    diameters_angstrom = np.linspace(
        params.min_diameter_angstrom, params.max_diameter_angstrom, params.number_of_scales
    )
    radius_px = 0.5 * params.min_diameter_angstrom / pixel
    rejected = np.zeros(binned.image.shape, dtype=bool)
    if params.contamination_sigma > 0:
        window = params.contamination_window_diameters * params.max_diameter_angstrom / pixel
        rejected = contamination_mask(
            binned.image, window, params.contamination_sigma, dilation_px=radius_px
        )
    response, scale_index = log_response(
        binned.image, diameters_angstrom / pixel, background=~rejected, workers=workers
    )

    local_max = ndimage.maximum_filter(response, size=max(int(radius_px), 3), mode="nearest")
    peaks = (response == local_max) & (response > params.threshold_sigma) & ~rejected

    edge_angstrom = params.edge_exclusion_angstrom
    if edge_angstrom is None:
        edge_angstrom = 0.5 * params.min_diameter_angstrom
    edge = int(np.ceil(edge_angstrom / pixel))
    if edge > 0:
        peaks[:edge] = peaks[-edge:] = False
        peaks[:, :edge] = peaks[:, -edge:] = False

    y, x = np.nonzero(peaks)
    score = response[y, x]
    kept = _suppress(
        x.astype(float),
        y.astype(float),
        score,
        params.min_separation_fraction * params.min_diameter_angstrom / pixel,
    )
    y, x, score = y[kept], x[kept], score[kept]
    # sub-pixel peak position: a binned pixel is ~6 A, so rounding alone costs up to 3 A
    sub_x = _parabolic_offset(response, y, x, axis=1)
    sub_y = _parabolic_offset(response, y, x, axis=0)
    # a Fourier-cropped sample i sits at original position i * factor (same grid origin)
    factor = binned.bin_factor
    return pd.DataFrame(
        {
            "x_px": (x + sub_x) * factor,
            "y_px": (y + sub_y) * factor,
            "score_sigma": score.astype(float),
            "diameter_angstrom": diameters_angstrom[scale_index[y, x]],
        },
        columns=list(PICK_COLUMNS),
    )
