"""Noise2noise denoising of a tomogram from its even-frame and odd-frame reconstructions.

Two tomograms reconstructed from the even and the odd frames of every tilt movie see the same
specimen with independent shot noise (cryoCARE's training pair). A filter `h` that predicts
one half from the other (the noise2noise loss |h * even - odd|^2 + |h * odd - even|^2) can
only learn the signal, because the other half's noise is unpredictable.

The model here is a linear, shift-invariant 3D filter (a convolution kernel as large as the
volume) fitted in closed form: per Fourier voxel k, the loss's minimiser is the ratio of the
half-maps' cross-spectrum to their mean power, both averaged over a Gaussian neighbourhood of
`spectral_smoothing_px` Fourier samples (the regularisation; it confines the kernel's extent
in real space). With cross-spectrum C = S (signal power) and mean half power P = S + N:

    h_half(k) = C / P = S / (S + N)           the Wiener filter of one half (noise N)
    h_full(k) = 2 C / (C + P) = S / (S + N/2)  the Wiener filter of the full tomogram

and the full tomogram (both halves' counts, noise N/2) is filtered with `h_full`. The 3D
filter adapts to what a tomogram's spectrum looks like (the missing wedge, the CTF-flipped
band, the dose-weighted fall-off along each direction), which an isotropic low-pass cannot.

What it is not: a CNN (cryoCARE's U-Net, Topaz-Denoise 3D). A linear filter cannot keep an
edge sharp while smoothing flat regions; a CNN can, at the price of a GPU (Topaz's 3D model on
this project's CPUs: ~1 CPU-minute per 96^3 patch, 8 GB; docs/tomo.md). Structure common to
both halves (ice texture drawn once per exposure, gold, carbon) is signal to any noise2noise
method, this one included.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft
import scipy.ndimage

METHODS = ("noise2noise_wiener",)


class DenoiseError(ValueError):
    """Inconsistent inputs to denoising."""


@dataclass(frozen=True)
class DenoiseParams:
    method: str = "noise2noise_wiener"
    # Gaussian width (Fourier samples) of the averaging of the half-maps' spectra: larger
    # is a steadier, smoother filter with a more compact kernel
    spectral_smoothing_px: float = 2.0


@dataclass(frozen=True)
class DenoiseReport:
    """What the fitted filter did, for the summary and the log."""

    method: str
    half_map_correlation: float  # Pearson correlation of the even and odd tomograms
    signal_fraction_full: float  # estimated signal / total power of the full tomogram
    power_kept_fraction: float  # power of the denoised / full tomogram


def noise2noise_filters(
    even: np.ndarray, odd: np.ndarray, spectral_smoothing_px: float = 2.0
) -> tuple[np.ndarray, np.ndarray]:
    """(h_half, h_full) on the rfftn grid of the [z, y, x] half tomograms, in [0, 1].

    The closed-form minimisers of the noise2noise loss for a linear filter per Fourier voxel,
    with the spectra averaged over a Gaussian of `spectral_smoothing_px` samples (see the
    module docstring)."""
    if even.shape != odd.shape:
        raise DenoiseError(f"half tomograms differ in shape: {even.shape} vs {odd.shape}")
    if even.ndim != 3:
        raise DenoiseError(f"half tomograms must be 3D [z, y, x], got {even.shape}")
    even_ft = scipy.fft.rfftn(even.astype(np.float32, copy=False))
    odd_ft = scipy.fft.rfftn(odd.astype(np.float32, copy=False))
    cross = np.real(even_ft * np.conj(odd_ft)).astype(np.float32)
    power = (0.5 * (np.abs(even_ft) ** 2 + np.abs(odd_ft) ** 2)).astype(np.float32)
    del even_ft, odd_ft
    if spectral_smoothing_px > 0:
        # z and y wrap around (full FFT axes); x is the half axis of the rfft: mirror
        modes = ("wrap", "wrap", "mirror")
        cross = scipy.ndimage.gaussian_filter(cross, spectral_smoothing_px, mode=modes)
        power = scipy.ndimage.gaussian_filter(power, spectral_smoothing_px, mode=modes)
    tiny = np.float32(1e-12 * max(float(power.max()), 1e-30))
    signal = np.clip(cross, 0.0, power)  # 0 <= S <= S + N
    h_half = signal / np.maximum(power, tiny)
    h_full = 2.0 * signal / np.maximum(signal + power, tiny)
    return h_half.astype(np.float32), h_full.astype(np.float32)


def apply_filter(volume: np.ndarray, spectral_filter: np.ndarray) -> np.ndarray:
    """`volume` [z, y, x] filtered by an rfftn-grid filter of the same volume shape."""
    spectrum = scipy.fft.rfftn(volume.astype(np.float32, copy=False))
    if spectrum.shape != spectral_filter.shape:
        raise DenoiseError(
            f"filter {spectral_filter.shape} does not match the volume's spectrum {spectrum.shape}"
        )
    spectrum *= spectral_filter
    return scipy.fft.irfftn(spectrum, s=volume.shape).astype(np.float32)


def denoise_tomogram(
    tomogram: np.ndarray,
    even: np.ndarray,
    odd: np.ndarray,
    params: DenoiseParams | None = None,
) -> tuple[np.ndarray, DenoiseReport]:
    """The full `tomogram` denoised by the filter fitted on its even/odd-frame halves (same
    shape, same reconstruction), and a report. The halves' scale must be the full one's
    (each is a contrast tomogram: the full is their mean, not their sum)."""
    params = params or DenoiseParams()
    if params.method not in METHODS:
        raise DenoiseError(f"unknown denoising method {params.method!r} ({' | '.join(METHODS)})")
    if tomogram.shape != even.shape:
        raise DenoiseError(f"tomogram {tomogram.shape} and halves {even.shape} differ in shape")
    h_half, h_full = noise2noise_filters(even, odd, params.spectral_smoothing_px)
    del h_half
    denoised = apply_filter(tomogram, h_full)
    # S / (S + N/2) averaged with the full tomogram's power as weight
    full_power = np.abs(scipy.fft.rfftn(tomogram.astype(np.float32, copy=False))) ** 2
    total = float(full_power.sum()) or 1.0
    report = DenoiseReport(
        method=params.method,
        half_map_correlation=_correlation(even, odd),
        signal_fraction_full=float((full_power * h_full).sum()) / total,
        power_kept_fraction=float((full_power * h_full**2).sum()) / total,
    )
    return denoised, report


def noise2noise_gaussian_sigma(
    even: np.ndarray,
    odd: np.ndarray,
    sigmas_px: tuple[float, ...] = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0),
) -> float:
    """The Gaussian low-pass width (voxels) that best predicts one half from the other (the
    noise2noise loss, no truth needed): the simple baseline denoising is checked against."""
    losses = []
    for sigma in sigmas_px:
        blurred_even = scipy.ndimage.gaussian_filter(even, sigma)
        blurred_odd = scipy.ndimage.gaussian_filter(odd, sigma)
        losses.append(float(np.sum((blurred_even - odd) ** 2) + np.sum((blurred_odd - even) ** 2)))
    return float(sigmas_px[int(np.argmin(losses))])


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a = a.ravel() - a.mean()
    b = b.ravel() - b.mean()
    return float(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b)))
