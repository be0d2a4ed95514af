"""Template-free blob picker (LoG and disc-surround filters) with a per-micrograph threshold.

1. The micrograph is Fourier-binned so the smallest particle spans `pixels_per_min_diameter`
   pixels (which also low-passes it) and inverted so particles (dark at underfocus) are bright.
2. Contamination and carbon are masked by their absorption (`contamination`).
3. The scale-normalised LoG and a disc-minus-surround filter at a few diameters between the
   minimum and maximum (`blob_response`), each in noise sigmas of the unmasked background;
   the best filter and scale per pixel is kept.
4. Local maxima are thresholded per micrograph by false-discovery control (`threshold`)
   unless a fixed `threshold_sigma` is given, thinned by non-maximum suppression, and peaks
   joined by a ridge (the response never dips between them, as along an elongated particle)
   are merged into one pick at their centre.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
import scipy.fft
from scipy import ndimage, special
from scipy.spatial import cKDTree

from emproc.picking.contamination import contamination_mask
from emproc.picking.ctf_weight import MicrographCtf, ctf_weight
from emproc.picking.threshold import (
    MIN_THRESHOLD_SIGMA,
    expected_noise_maxima,
    false_discovery_threshold,
)

PICK_COLUMNS = ("x_px", "y_px", "score_sigma", "diameter_angstrom")


class PickingError(ValueError):
    """The micrograph or the picking parameters cannot be used."""


@dataclass(frozen=True)
class LogPickerParams:
    """Picker settings; diameters and distances in Angstrom."""

    min_diameter_angstrom: float = 120.0
    max_diameter_angstrom: float = 180.0
    threshold_sigma: float | None = None  # None: automatic, from `false_discovery_rate`
    false_discovery_rate: float = 0.05  # expected fraction of picks that are noise peaks
    number_of_scales: int = 5
    pixels_per_min_diameter: float = 16.0  # sets the binning
    edge_exclusion_angstrom: float | None = None  # default: half the minimum diameter
    # NMS distance, fraction of the minimum diameter: no two particle centres are closer than
    # it (touching neighbours sit a diameter apart), while a large particle's rim and fringe
    # answer the filters half a diameter from its centre
    min_separation_fraction: float = 0.8
    ridge_merge_fraction: float = 0.7  # merge peaks whose joining line stays above this
    contamination_intensity_change: float = 0.05  # rejected absorption change; <= 0 disables

    def __post_init__(self) -> None:
        if not 0 < self.min_diameter_angstrom <= self.max_diameter_angstrom:
            raise PickingError(
                f"need 0 < min_diameter_angstrom ({self.min_diameter_angstrom}) <= "
                f"max_diameter_angstrom ({self.max_diameter_angstrom})"
            )
        if self.number_of_scales < 1:
            raise PickingError("number_of_scales must be >= 1")
        if not 0 < self.false_discovery_rate < 1:
            raise PickingError(
                f"false_discovery_rate must be in (0, 1), got {self.false_discovery_rate}"
            )


@dataclass(frozen=True)
class BinnedMicrograph:
    image: np.ndarray  # binned, as recorded (particles dark)
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


def bin_micrograph(
    micrograph: np.ndarray, pixel_size_angstrom: float, params: LogPickerParams, workers: int = 1
) -> BinnedMicrograph:
    """Fourier-binned micrograph, not inverted (contamination is judged on the counts)."""
    target_pixel = params.min_diameter_angstrom / params.pixels_per_min_diameter
    factor = max(target_pixel / pixel_size_angstrom, 1.0)
    binned, factor = fourier_bin(micrograph, factor, workers=workers)
    return BinnedMicrograph(binned, pixel_size_angstrom * factor, factor)


def _background_sigma(values: np.ndarray) -> tuple[float, float]:
    """Median and spread of the background from the lower half of the distribution only.

    Particles only add to the upper tail of the response, so the median-to-16th-percentile
    distance measures the noise even on a crowded micrograph.
    """
    low, median = np.percentile(values, [15.87, 50.0])
    spread = float(median - low)
    return float(median), spread if spread > 0 else float(values.std()) or 1.0


def _jinc(x: np.ndarray) -> np.ndarray:
    """2 J1(x) / x (1 at 0): the Fourier transform of a uniform disc."""
    safe = np.where(x > 0, x, 1.0)
    return np.where(x > 0, 2.0 * special.j1(safe) / safe, 1.0)


class _RadialLookup:
    """Evaluates radial transfer functions on a 2D frequency grid from a fine 1D table:
    every filter depends on |k| only, and a table lookup costs a fraction of the functions."""

    SAMPLES = 8192

    def __init__(self, k: np.ndarray) -> None:
        self.k_table = np.linspace(0.0, float(k.max()) * (1 + 1e-6), self.SAMPLES)
        position = k / self.k_table[1]
        self.index = np.minimum(position.astype(np.int32), self.SAMPLES - 2)
        self.fraction = (position - self.index).astype(np.float32)

    def __call__(self, table: np.ndarray) -> np.ndarray:
        table = table.astype(np.float32)
        low = table[self.index]
        return low + self.fraction * (table[self.index + 1] - low)


@dataclass(frozen=True)
class BlobResponse:
    """Filter responses in background sigmas, best over filters and scales."""

    best: np.ndarray  # float32 [y, x]
    scale_index: np.ndarray  # index of the diameter giving `best`
    log_best: np.ndarray  # best over the LoG filters only (for the ridge test)


def _background_subsample(mask: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """Every 3rd pixel each way (of the background, when given): percentiles of ~10^5
    values are as good as of 10^6 and ten times cheaper."""
    grid = np.zeros(shape, dtype=bool)
    grid[1::3, 1::3] = True
    if mask is not None and (mask & grid).any():
        grid &= mask
    return grid


def blob_response(
    image: np.ndarray,
    diameters_px: np.ndarray,
    background: np.ndarray | None = None,
    workers: int = 1,
    ctf: MicrographCtf | None = None,
    pixel_size_angstrom: float = 1.0,
) -> BlobResponse:
    """Two (with a CTF three) filter families at each diameter d, each response in noise
    sigmas of the background (`background`: boolean, the pixels the statistics come from):

    - the scale-normalised -LoG, sigma = d/(2 sqrt 2): strongest on a bright disc of
      diameter d, its weight concentrated at the centre (compact particles, rods);
    - disc minus surround: the mean over a disc of diameter d minus the mean over the
      annulus out to sqrt(2) d (equal areas), softened at d/16. It weighs the whole disc
      alike, so a ring (mass at its rim, a hole in the middle) scores as a compact particle
      of the same mass does, where the LoG's centre weight sees mostly the hole;
    - with `ctf` (the micrograph's CTF, `pixel_size_angstrom` the image's pixel): disc minus
      surround times the CTF (`ctf_weight`), the filter matched to a disc seen through the
      microscope: it adds up the contrast of every Thon ring with the right sign.
    """
    # mirror padding keeps the opposite edge from wrapping into the filtered border
    pad = int(np.ceil(1.5 * diameters_px.max()))
    padded = np.pad(image.astype(np.float32), pad, mode="reflect")
    spectrum = scipy.fft.rfft2(padded, workers=workers)
    families = ["log", "disc"]
    ctf_spectrum = spectrum
    if ctf is not None:
        ctf_spectrum = spectrum * ctf_weight(padded.shape, pixel_size_angstrom, ctf)
        families.append("ctf_disc")
    fy = np.fft.fftfreq(padded.shape[0]).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(padded.shape[1]).astype(np.float32)[None, :]
    lookup = _RadialLookup(np.float32(2.0 * np.pi) * np.sqrt(fx**2 + fy**2))
    k = lookup.k_table
    statistics = _background_subsample(background, image.shape)
    best = np.full(image.shape, -np.inf, dtype=np.float32)
    log_best = np.full(image.shape, -np.inf, dtype=np.float32)
    scale_index = np.zeros(image.shape, dtype=np.int16)
    better = np.empty(image.shape, dtype=bool)
    for family in families:
        source = ctf_spectrum if family.startswith("ctf") else spectrum
        for index, diameter in enumerate(diameters_px):
            if family == "log":
                sigma2 = (diameter / (2.0 * np.sqrt(2.0))) ** 2
                profile = sigma2 * k**2 * np.exp(-0.5 * sigma2 * k**2)
            else:
                profile = (
                    _jinc(0.5 * diameter * k) - _jinc(0.5 * np.sqrt(2.0) * diameter * k)
                ) * np.exp(-0.5 * (diameter / 16.0) ** 2 * k**2)
            response = scipy.fft.irfft2(source * lookup(profile), s=padded.shape, workers=workers)
            response = response[pad:-pad, pad:-pad]
            median, spread = _background_sigma(response[statistics])
            response -= np.float32(median)
            response /= np.float32(spread)
            np.greater(response, best, out=better)
            np.copyto(best, response, where=better)
            np.copyto(scale_index, np.int16(index), where=better)
            if family == "log":
                np.maximum(log_best, response, out=log_best)
    return BlobResponse(best, scale_index, log_best)


def _local_maxima(response: np.ndarray, size: int, floor: float) -> tuple[np.ndarray, np.ndarray]:
    local_max = ndimage.maximum_filter(response, size=size, mode="nearest")
    return np.nonzero((response == local_max) & (response > floor))


@lru_cache(maxsize=256)
def noise_roughness(
    diameters_px: tuple[float, ...],
    peak_window_px: int,
    ctf: MicrographCtf | None = None,
    pixel_size_angstrom: float = 1.0,
) -> float:
    """Effective lambda_2 (1/px^2) of the filter bank's best response to white noise.

    The maximum over ten correlated filters is not one Gaussian field, so its roughness is
    measured: the bank runs on white noise, the maxima above 2-3 sigma (hundreds of them,
    a usable count) are fitted with the Euler-characteristic formula of `threshold`, which
    then extrapolates to the tail the picks live in. Cached per filter bank.
    """
    diameters = np.asarray(diameters_px)
    size = int(max(512, 12 * diameters.max()))
    noise = np.random.default_rng(0).standard_normal((size, size)).astype(np.float32)
    best = blob_response(noise, diameters, ctf=ctf, pixel_size_angstrom=pixel_size_angstrom).best
    border = int(np.ceil(diameters.max()))
    inner = best[border:-border, border:-border]
    heights = inner[_local_maxima(inner, peak_window_px, 2.0)]
    levels = np.array([2.0, 2.5, 3.0])
    counts = np.array([(heights > level).sum() for level in levels], dtype=float)
    unit = expected_noise_maxima(levels, float(inner.size), 1.0)
    return float(counts.sum() / unit.sum())


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
    if len(order) == 0:
        return order
    tree = cKDTree(np.column_stack([x, y]))
    suppressed = np.zeros(len(x), dtype=bool)
    kept: list[int] = []
    for index in order:
        if suppressed[index]:
            continue
        kept.append(int(index))
        suppressed[tree.query_ball_point((x[index], y[index]), distance - 1e-9)] = True
    return np.asarray(kept, dtype=int)


def _merge_ridges(
    response: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    score: np.ndarray,
    max_distance: float,
    fraction: float,
) -> np.ndarray:
    """Group label per peak: peaks closer than `max_distance` whose straight line never dips
    below `fraction` x the lower peak belong to one particle (elongated particles give a
    ridge of maxima at the small scales; separate particles have a valley between them)."""
    parent = np.arange(len(x))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    if len(x) < 2 or fraction <= 0:
        return parent
    pairs = cKDTree(np.column_stack([x, y])).query_pairs(max_distance, output_type="ndarray")
    if len(pairs) == 0:
        return parent
    steps = np.linspace(0.0, 1.0, 13)[1:-1]
    i, j = pairs[:, 0], pairs[:, 1]
    line_x = x[i, None] + steps[None, :] * (x[j] - x[i])[:, None]
    line_y = y[i, None] + steps[None, :] * (y[j] - y[i])[:, None]
    profile = ndimage.map_coordinates(response, [line_y, line_x], order=1, mode="nearest")
    joined = profile.min(axis=1) >= fraction * np.minimum(score[i], score[j])
    for a, b in pairs[joined]:
        parent[root(int(a))] = root(int(b))
    return np.array([root(k) for k in range(len(x))])


def pick_log(
    micrograph: np.ndarray,
    pixel_size_angstrom: float,
    params: LogPickerParams = LogPickerParams(),
    workers: int = 1,
    ctf: MicrographCtf | None = None,
) -> pd.DataFrame:
    """Particle picks (x_px, y_px in micrograph pixels, score_sigma, diameter_angstrom).

    `ctf`: the micrograph's estimated CTF; given, the filters are matched to it
    (`ctf_weight`), which is what finds small particles and particles close to focus.
    """
    if micrograph.ndim != 2 or min(micrograph.shape) < 16:
        raise PickingError(f"expected a 2D micrograph of at least 16x16, got {micrograph.shape}")
    if not np.all(np.isfinite(micrograph)):
        raise PickingError("micrograph contains NaN or infinite values")
    binned = bin_micrograph(micrograph, pixel_size_angstrom, params, workers)
    pixel = binned.pixel_size_angstrom
    diameters_angstrom = np.geomspace(
        params.min_diameter_angstrom, params.max_diameter_angstrom, params.number_of_scales
    )
    min_radius_px = 0.5 * params.min_diameter_angstrom / pixel
    max_diameter_px = params.max_diameter_angstrom / pixel
    rejected = contamination_mask(
        binned.image,
        max_diameter_px,
        params.contamination_intensity_change,
        margin_px=0.25 * max_diameter_px,
    )
    inverted = np.float32(binned.image.mean()) - binned.image
    blobs = blob_response(
        inverted,
        diameters_angstrom / pixel,
        background=~rejected,
        workers=workers,
        ctf=ctf,
        pixel_size_angstrom=pixel,
    )
    response, scale_index = blobs.best, blobs.scale_index

    allowed = ~rejected
    edge_angstrom = params.edge_exclusion_angstrom
    if edge_angstrom is None:
        edge_angstrom = 0.5 * params.min_diameter_angstrom
    edge = int(np.ceil(edge_angstrom / pixel))
    if edge > 0:
        allowed[:edge] = allowed[-edge:] = False
        allowed[:, :edge] = allowed[:, -edge:] = False

    window = max(int(min_radius_px), 3)
    floor = MIN_THRESHOLD_SIGMA if params.threshold_sigma is None else params.threshold_sigma
    y, x = _local_maxima(response, window, floor)
    inside = allowed[y, x]
    y, x = y[inside], x[inside]
    score = response[y, x].astype(float)
    threshold = params.threshold_sigma
    if threshold is None:
        threshold = false_discovery_threshold(
            score,
            float(allowed.sum()),
            noise_roughness(
                tuple(np.round(diameters_angstrom / pixel, 3)),
                window,
                None if ctf is None else ctf.rounded(),
                round(pixel, 4),
            ),
            params.false_discovery_rate,
        )
    above = score >= threshold
    y, x, score = y[above], x[above], score[above]
    kept = _suppress(
        x.astype(float),
        y.astype(float),
        score,
        params.min_separation_fraction * params.min_diameter_angstrom / pixel,
    )
    y, x, score = y[kept], x[kept], score[kept]
    # sub-pixel peak position: a binned pixel is several A, rounding alone costs half of it
    fx = x + _parabolic_offset(response, y, x, axis=1)
    fy = y + _parabolic_offset(response, y, x, axis=0)
    diameter = diameters_angstrom[scale_index[y, x]]

    group = _merge_ridges(
        blobs.log_best, fx, fy, score, max_diameter_px, params.ridge_merge_fraction
    )
    labels, inverse = np.unique(group, return_inverse=True)
    weight_sum = np.bincount(inverse, weights=score, minlength=len(labels))
    px = np.bincount(inverse, weights=score * fx, minlength=len(labels)) / np.maximum(
        weight_sum, 1e-12
    )
    py = np.bincount(inverse, weights=score * fy, minlength=len(labels)) / np.maximum(
        weight_sum, 1e-12
    )
    best = np.full(len(labels), -np.inf)
    np.maximum.at(best, inverse, score)
    size = np.zeros(len(labels))
    np.maximum.at(size, inverse, diameter)
    # a Fourier-cropped sample i sits at original position i * factor (same grid origin)
    factor = binned.bin_factor
    return pd.DataFrame(
        {
            "x_px": px * factor,
            "y_px": py * factor,
            "score_sigma": best,
            "diameter_angstrom": size,
        },
        columns=list(PICK_COLUMNS),
    ).sort_values("score_sigma", ascending=False, ignore_index=True)
