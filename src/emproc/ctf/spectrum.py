"""Averaged amplitude spectrum of a micrograph and its background subtraction.

Periodogram averaging (Welch's method): the micrograph is cut into overlapping square tiles,
each tile's power spectrum is computed and the powers are averaged, which trades spectral
resolution (the tile size) for variance. CTFFIND4 fits the square root of that average, the
amplitude spectrum, after subtracting a smooth background.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
from scipy import ndimage


class SpectrumInputError(ValueError):
    """The micrograph cannot give a spectrum (wrong shape, too small, not finite)."""


def tile_origins(length_px: int, box_size_px: int) -> np.ndarray:
    """Start indices of tiles overlapping by half a box that cover [0, length_px)."""
    if length_px < box_size_px:
        raise SpectrumInputError(
            f"micrograph dimension {length_px} px is smaller than the box size {box_size_px} px"
        )
    step = max(box_size_px // 2, 1)
    origins = np.arange(0, length_px - box_size_px + 1, step)
    if origins[-1] != length_px - box_size_px:  # cover the far edge too
        origins = np.append(origins, length_px - box_size_px)
    return origins


FITTING_PIXEL_SIZE_ANGSTROM = 1.4  # finer pixels are resampled to this, as CTFFIND4 does


def fitting_tile_size_px(
    box_size_px: int,
    pixel_size_angstrom: float,
    max_resolution_angstrom: float,
    micrograph_shape: tuple[int, int],
) -> tuple[int, float]:
    """(tile size in micrograph pixels, pixel size of the spectrum in Angstrom).

    Small pixels (super-resolution, high magnification) put most of a `box_size_px`
    spectrum beyond any Thon ring and sample the rings coarsely, so that close rings at high
    defocus alias. Cutting larger tiles and keeping the central `box_size_px` of their
    spectra is Fourier binning: the spectrum then reaches Nyquist at the fitting pixel size
    min(1.4 A, max_resolution / 2.5) and samples the rings more finely.
    """
    target = min(FITTING_PIXEL_SIZE_ANGSTROM, max_resolution_angstrom / 2.5)
    if pixel_size_angstrom >= target:
        return box_size_px, pixel_size_angstrom
    tile = int(scipy.fft.next_fast_len(int(round(box_size_px * target / pixel_size_angstrom))))
    while tile % 2:
        tile = int(scipy.fft.next_fast_len(tile + 1))
    # keep at least 3 x 3 half-overlapping tiles: one huge tile gives a useless spectrum
    largest = min(micrograph_shape) // 2
    tile = max(min(tile, largest - largest % 2), box_size_px)
    return tile, pixel_size_angstrom * tile / box_size_px


def average_power_spectrum(
    micrograph: np.ndarray, box_size_px: int, threads: int = 1, tile_size_px: int | None = None
) -> np.ndarray:
    """Mean power spectrum of half-overlapping tiles, centred (DC at [n//2, n//2]).

    Tiles are `tile_size_px` (default `box_size_px`) square; each tile's mean is removed so
    the DC term does not leak, and the central `box_size_px` of the averaged spectrum is
    returned: a float64 (box, box) array in the fftshift layout.
    """
    if micrograph.ndim != 2:
        raise SpectrumInputError(f"expected a 2D micrograph, got shape {micrograph.shape}")
    if box_size_px < 16 or box_size_px % 2:
        raise SpectrumInputError(f"box_size_px must be even and >= 16, got {box_size_px}")
    if not np.all(np.isfinite(micrograph)):
        raise SpectrumInputError("micrograph contains NaN or infinite values")
    tile = tile_size_px or box_size_px
    if tile < box_size_px or tile % 2:
        raise SpectrumInputError(f"tile_size_px must be even and >= the box, got {tile}")
    ys = tile_origins(micrograph.shape[0], tile)
    xs = tile_origins(micrograph.shape[1], tile)
    half_power = np.zeros((tile, tile // 2 + 1))
    # one row of tiles per FFT batch keeps memory at ~(tiles per row) x tile^2
    for y in ys:
        strip = micrograph[y : y + tile].astype(np.float32, copy=False)
        tiles = np.stack([strip[:, x : x + tile] for x in xs])
        tiles = tiles - tiles.mean(axis=(1, 2), keepdims=True)
        transform = scipy.fft.rfft2(tiles, workers=threads)
        half_power += (transform.real**2 + transform.imag**2).sum(axis=0)
    half_power /= len(ys) * len(xs) * tile**2
    centre, half_box = tile // 2, box_size_px // 2
    full = np.fft.fftshift(_full_from_half(half_power))
    return full[centre - half_box : centre + half_box, centre - half_box : centre + half_box]


def _full_from_half(half: np.ndarray) -> np.ndarray:
    """Full FFT-layout array from an rfft2-layout one, using P(-k) = P(k) for real input."""
    n = half.shape[0]
    full = np.empty((n, n), dtype=half.dtype)
    full[:, : n // 2 + 1] = half
    mirrored_rows = (-np.arange(n)) % n
    mirrored_columns = n - np.arange(n // 2 + 1, n)
    full[:, n // 2 + 1 :] = half[mirrored_rows][:, mirrored_columns]
    return full


def background_box_size_px(
    box_size_px: int, pixel_size_angstrom: float, min_resolution_angstrom: float
) -> int:
    """Box-car width (odd, px) for the background: the spectrum radius of `min_resolution`
    times sqrt(2), as in CTFFIND4, so the smoothing spans about one low-resolution ring."""
    width = int(box_size_px * pixel_size_angstrom / min_resolution_angstrom * np.sqrt(2.0))
    width = max(width, 3)
    return width + 1 if width % 2 == 0 else width


def radial_index(box_size_px: int) -> np.ndarray:
    """Integer distance (px) of each pixel from the centre of a centred (box, box) spectrum."""
    centred = np.arange(box_size_px) - box_size_px // 2
    return np.rint(np.hypot(*np.meshgrid(centred, centred, indexing="ij"))).astype(np.int64)


def subtract_background(
    amplitude_spectrum: np.ndarray, background_box_px: int, central_cross_px: int = 1
) -> np.ndarray:
    """Thon-ring signal: amplitude minus its box-car average, divided by the radial rms.

    The division by the rms in each 1-px shell gives rings at all resolutions similar
    weight, so the fit follows ring positions rather than the envelope. The central
    cross (tile-edge artefact along kx = 0 and ky = 0) is replaced by the background
    before smoothing and set to zero after.
    """
    n = amplitude_spectrum.shape[0]
    centre = n // 2
    spectrum = amplitude_spectrum.copy()
    cross = np.zeros_like(spectrum, dtype=bool)
    cross[centre - central_cross_px : centre + central_cross_px + 1, :] = True
    cross[:, centre - central_cross_px : centre + central_cross_px + 1] = True
    # fill the cross with the shell median so its bright streak does not leak into the box-car
    radius = radial_index(n)
    shell_median = ndimage.median(spectrum, labels=radius, index=np.arange(radius.max() + 1))
    spectrum[cross] = np.asarray(shell_median)[radius[cross]]
    background = ndimage.uniform_filter(spectrum, size=background_box_px, mode="nearest")
    signal = spectrum - background
    signal[cross] = 0.0
    counts = np.bincount(radius.ravel())
    shell_power = np.bincount(radius.ravel(), weights=(signal**2).ravel())
    shell_rms = np.sqrt(shell_power / np.maximum(counts, 1))
    shell_rms[shell_rms == 0] = 1.0
    normalised = signal / shell_rms[radius]
    # a few hot pixels (ice crystals, detector artefacts) must not dominate the correlation
    return np.clip(normalised, -4.0, 4.0)
