"""Global frame alignment by iterative cross-correlation (MotionCor2/RELION scheme).

Frames enter as rfft2 spectra on a small "alignment grid" (Fourier-cropped, B-factor
filtered). Each iteration correlates every frame, shifted by its current estimate,
against the sum of all other shifted frames; the sub-pixel peak is the residual drift.
Shifts are applied exactly as Fourier phase ramps, so the iteration converges to the
point where every residual peak sits at zero, where 3-point peak interpolation has no
bias.

Sign convention (docs/architecture.md): a drift (dx, dy) in frame k means features
sit at p + (dx, dy) in frame k if they sit at p in frame 0. Multiplying a spectrum by
`phase_ramp(shape, (dx, dy))` moves content by (-dx, -dy), i.e. removes that drift.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
from scipy import sparse
from scipy.sparse.linalg import spsolve


def fast_size_at_most(size: int) -> int:
    """Largest even FFT-friendly length (factors 2, 3, 5) not above `size` (minimum 2)."""
    for candidate in range(size - size % 2, 1, -2):
        if scipy.fft.next_fast_len(candidate, real=True) == candidate:
            return candidate
    return 2


def crop_spectrum(spectrum: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Fourier-crop an rfft2 spectrum of a `(ny, nx)` image to a smaller `(ny', nx')` image.

    Keeps frequencies |ky| < ny'/2, 0 <= kx <= nx'/2; the Nyquist row is dropped (set to 0)
    so the cropped image stays real and symmetric.
    """
    ny_out, nx_out = shape
    half_y = ny_out // 2
    cropped = np.zeros((ny_out, nx_out // 2 + 1), dtype=np.complex64)
    cropped[:half_y] = spectrum[:half_y, : nx_out // 2 + 1]
    cropped[ny_out - half_y + 1 :] = spectrum[spectrum.shape[0] - half_y + 1 :, : nx_out // 2 + 1]
    return cropped


def phase_ramp_factors(
    shape: tuple[int, int], shift_xy: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Separable (column, row) factors of `phase_ramp`: ramp = y[:, None] * x[None, :]."""
    ny, nx = shape
    ky = np.fft.fftfreq(ny).astype(np.float32)
    kx = np.fft.rfftfreq(nx).astype(np.float32)
    ramp_y = np.exp((2j * np.pi * shift_xy[1]) * ky).astype(np.complex64)
    ramp_x = np.exp((2j * np.pi * shift_xy[0]) * kx).astype(np.complex64)
    return ramp_y, ramp_x


def phase_ramp(shape: tuple[int, int], shift_xy: tuple[float, float]) -> np.ndarray:
    """rfft2-grid factor that removes a drift of `shift_xy` pixels from an image of `shape`."""
    ramp_y, ramp_x = phase_ramp_factors(shape, shift_xy)
    return ramp_y[:, None] * ramp_x[None, :]


def remove_drift(
    spectrum: np.ndarray,
    shape: tuple[int, int],
    shift_xy: tuple[float, float],
    out: np.ndarray | None = None,
) -> np.ndarray:
    """`spectrum * phase_ramp(shape, shift_xy)` without building the full ramp."""
    ramp_y, ramp_x = phase_ramp_factors(shape, shift_xy)
    out = np.multiply(spectrum, ramp_y[:, None], out=out)
    out *= ramp_x[None, :]
    return out


def bfactor_filter(
    shape: tuple[int, int], pixel_size_angstrom: float, bfactor_angstrom2: float
) -> np.ndarray:
    """exp(-B k^2 / 4) on an rfft2 grid: the amplitude envelope of a B-factor."""
    ny, nx = shape
    ky = np.fft.fftfreq(ny, d=pixel_size_angstrom)
    kx = np.fft.rfftfreq(nx, d=pixel_size_angstrom)
    k2 = ky[:, None] ** 2 + kx[None, :] ** 2
    return np.exp(-bfactor_angstrom2 * k2 / 4.0).astype(np.float32)


def _refine_1d(minus: float, centre: float, plus: float) -> float:
    # Gaussian (log-parabola) fit when possible: exact for Gaussian-shaped peaks
    if minus > 0 and centre > 0 and plus > 0:
        lm, lc, lp = np.log(minus), np.log(centre), np.log(plus)
        denominator = lm - 2.0 * lc + lp
        if denominator < 0:
            return float(np.clip(0.5 * (lm - lp) / denominator, -0.5, 0.5))
    denominator = minus - 2.0 * centre + plus
    if denominator < 0:
        return float(np.clip(0.5 * (minus - plus) / denominator, -0.5, 0.5))
    return 0.0


def find_peak(correlation: np.ndarray, max_shift_px: float | None = None) -> tuple[float, float]:
    """Sub-pixel (x, y) position of the highest peak of a cyclic correlation map.

    Positions are signed (a peak at index ny-1 is y = -1). `max_shift_px` limits the
    search to a square around the origin.
    """
    ny, nx = correlation.shape
    if max_shift_px is not None:
        reach_y = int(min(ny // 2 - 1, np.ceil(max_shift_px)))
        reach_x = int(min(nx // 2 - 1, np.ceil(max_shift_px)))
        rows = np.r_[0 : reach_y + 1, ny - reach_y : ny]
        cols = np.r_[0 : reach_x + 1, nx - reach_x : nx]
        window = correlation[np.ix_(rows, cols)]
        iy, ix = np.unravel_index(int(np.argmax(window)), window.shape)
        iy, ix = int(rows[iy]), int(cols[ix])
    else:
        iy, ix = np.unravel_index(int(np.argmax(correlation)), correlation.shape)
    centre = correlation[iy, ix]
    dy = _refine_1d(correlation[iy - 1, ix], centre, correlation[(iy + 1) % ny, ix])
    dx = _refine_1d(correlation[iy, ix - 1], centre, correlation[iy, (ix + 1) % nx])
    y = iy + dy if iy <= ny // 2 else iy + dy - ny
    x = ix + dx if ix <= nx // 2 else ix + dx - nx
    return float(x), float(y)


def smooth_trajectory(shifts: np.ndarray, smoothing: float) -> np.ndarray:
    """Whittaker smoother: argmin |s - m|^2 + smoothing * |second difference of s|^2.

    A gentle regulariser (smoothing ~ 1) that damps frame-to-frame noise without
    bending a smooth drift; 0 returns the input.
    """
    n = len(shifts)
    if smoothing <= 0 or n < 3:
        return shifts.copy()
    second_difference = sparse.diags([1.0, -2.0, 1.0], [0, 1, 2], shape=(n - 2, n))
    system = sparse.identity(n) + smoothing * (second_difference.T @ second_difference)
    return np.column_stack(
        [spsolve(system.tocsc(), shifts[:, axis]) for axis in range(shifts.shape[1])]
    )


def align_spectra(
    spectra: np.ndarray,
    *,
    iterations: int = 10,
    tolerance_px: float = 0.005,
    smoothing: float = 1.0,
    max_shift_px: float | None = None,
    real_shape: tuple[int, int] | None = None,
    workers: int = 1,
) -> np.ndarray:
    """Drift (n, 2) of each frame in pixels of the spectra's grid; frame 0 is (0, 0).

    `spectra` is `(n, ny, nx // 2 + 1)` complex (already filtered). The reference for
    frame k is the aligned sum without frame k, so its noise is independent of frame k.
    Stops when the trajectory changes by less than `tolerance_px` RMS.
    """
    count, ny, nxh = spectra.shape
    shape = real_shape if real_shape is not None else (ny, 2 * (nxh - 1))
    shifts = np.zeros((count, 2))
    if count < 2:
        return shifts
    aligned = np.empty_like(spectra)
    reference = np.empty_like(spectra[0])
    for _ in range(iterations):
        for k in range(count):
            remove_drift(spectra[k], shape, shifts[k], out=aligned[k])
        total = aligned.sum(axis=0)
        update = np.zeros_like(shifts)
        for k in range(count):
            # frame x conj(sum of the other frames)
            np.subtract(total, aligned[k], out=reference)
            np.conjugate(reference, out=reference)
            reference *= aligned[k]
            reference[0, 0] = 0.0  # drop the means: the correlation peak stands on zero
            correlation = scipy.fft.irfft2(reference, s=shape, workers=workers)
            update[k] = find_peak(correlation, max_shift_px)
        previous = shifts
        shifts = smooth_trajectory(shifts + update, smoothing)
        shifts -= shifts[0]
        # converged when the (regularised) trajectory stops moving; the raw update
        # does not go to zero because the smoother balances it at the fixed point
        if float(np.sqrt(np.mean((shifts - previous) ** 2))) < tolerance_px:
            break
    return shifts
