"""Image alignment primitives for 2D classification.

Geometry (images [y, x], centre pixel c = (size//2, size//2), angles counter-clockwise from
+x in (x, y)): a particle with in-plane angle `psi` and shift `s` relative to a class
reference holds the reference feature at p (relative to c) at c + s + R(psi) p.
Rotations are found by polar resampling and FFT correlation along the angle, translations
by FFT cross-correlation with the rotated reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft


@dataclass(frozen=True)
class PolarGrid:
    radii_px: np.ndarray  # (n_rings,)
    angles_rad: np.ndarray  # (n_angles,), uniform from 0

    @property
    def angular_step_deg(self) -> float:
        return 360.0 / len(self.angles_rad)


def make_polar_grid(radius_px: float, angular_step_deg: float) -> PolarGrid:
    n_angles = max(int(round(360.0 / angular_step_deg)), 8)
    return PolarGrid(
        radii_px=np.arange(1.0, max(radius_px, 2.0) + 0.5),
        angles_rad=np.arange(n_angles) * 2.0 * np.pi / n_angles,
    )


def image_centre(size_px: int) -> float:
    return float(size_px // 2)


def bilinear_sample(images: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Sample image i at (x[i, ...], y[i, ...]) bilinearly; 0 outside the image.

    A flat gather with a zero border (so no bounds masks): several times faster than
    `ndimage.map_coordinates` on the 3D stack, which interpolates along the image axis too.
    """
    count, ny, nx = images.shape
    pad = 2
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad)))
    width = nx + 2 * pad
    x = np.clip(np.asarray(x, dtype=np.float32) + pad, 0, nx + pad)
    y = np.clip(np.asarray(y, dtype=np.float32) + pad, 0, ny + pad)
    x0 = np.floor(x)
    y0 = np.floor(y)
    fx = x - x0
    fy = y - y0
    base = (np.arange(count, dtype=np.int64) * (ny + 2 * pad) * width).reshape(
        (count,) + (1,) * (x.ndim - 1)
    )
    index = base + y0.astype(np.int64) * width + x0.astype(np.int64)
    flat = padded.reshape(-1)
    top = flat[index] * (1 - fx) + flat[index + 1] * fx
    bottom = flat[index + width] * (1 - fx) + flat[index + width + 1] * fx
    return (top * (1 - fy) + bottom * fy).astype(images.dtype, copy=False)


def polar_resample(images: np.ndarray, centres_xy: np.ndarray, grid: PolarGrid) -> np.ndarray:
    """(n, n_rings, n_angles) bilinear samples of each image about its centre (x, y)."""
    cos_t, sin_t = np.cos(grid.angles_rad), np.sin(grid.angles_rad)
    x = centres_xy[:, 0, None, None] + grid.radii_px[None, :, None] * cos_t[None, None, :]
    y = centres_xy[:, 1, None, None] + grid.radii_px[None, :, None] * sin_t[None, None, :]
    return bilinear_sample(images, x, y)


def polar_spectra(polar: np.ndarray) -> np.ndarray:
    """FFT along the angle, weighted by sqrt(radius) so products integrate over area."""
    weights = np.sqrt(np.arange(1, polar.shape[-2] + 1, dtype=np.float32))[:, None]
    return (scipy.fft.rfft(polar, axis=-1) * weights).astype(np.complex64)


def rotational_correlation(
    particle_spectra: np.ndarray, reference_spectra: np.ndarray, n_angles: int
) -> np.ndarray:
    """(n, k, n_angles): cc[i, k, j] = <particle i rotated by -j step, reference k> (area sums).

    Both inputs come from `polar_spectra` on the same grid.
    """
    # sum over rings as a batched matrix product per angular frequency (BLAS does the work)
    products = np.matmul(
        np.ascontiguousarray(particle_spectra.transpose(2, 0, 1)),
        np.ascontiguousarray(np.conj(reference_spectra).transpose(2, 1, 0)),
    ).transpose(1, 2, 0)
    # irfft gives sum_t P(t + j) A(t); times dtheta (and dr = 1, r in the weights) an area sum
    return np.fft.irfft(products, n=n_angles, axis=-1) * (2.0 * np.pi / n_angles)


def parabolic_offset(minus: np.ndarray, centre: np.ndarray, plus: np.ndarray) -> np.ndarray:
    """Sub-sample offset (in samples, within +-0.5) of a peak from three neighbours."""
    denominator = minus - 2.0 * centre + plus
    with np.errstate(divide="ignore", invalid="ignore"):
        offset = np.where(denominator < 0, 0.5 * (minus - plus) / denominator, 0.0)
    return np.clip(offset, -0.5, 0.5)


def transform_images(images: np.ndarray, psi_deg: np.ndarray, shifts_xy: np.ndarray) -> np.ndarray:
    """Bring particles into the reference frame: out(p) = image(c + s + R(psi)(p - c))."""
    size = images.shape[-1]
    centre = image_centre(size)
    grid = np.arange(size, dtype=float) - centre
    px = grid[None, None, :]
    py = grid[None, :, None]
    psi = np.deg2rad(np.asarray(psi_deg, dtype=float))[:, None, None]
    cos_p, sin_p = np.cos(psi), np.sin(psi)
    x = centre + shifts_xy[:, 0, None, None] + cos_p * px - sin_p * py
    y = centre + shifts_xy[:, 1, None, None] + sin_p * px + cos_p * py
    return bilinear_sample(images, x, y)


def rotate_references(references: np.ndarray, psi_deg: np.ndarray) -> np.ndarray:
    """(k, n_psi, size, size): each reference rotated counter-clockwise by each angle."""
    k, size, _ = references.shape
    repeated = np.repeat(references, len(psi_deg), axis=0)
    # rotating the reference by psi: out(q) = ref(c + R(-psi)(q - c))
    angles = -np.tile(np.asarray(psi_deg, dtype=float), k)
    rotated = transform_images(repeated, angles, np.zeros((len(repeated), 2)))
    return rotated.reshape(k, len(psi_deg), size, size)


def shift_images(images: np.ndarray, shifts_xy: np.ndarray, workers: int = 1) -> np.ndarray:
    """Exact Fourier shift: out(p) = image(p - s)."""
    size = images.shape[-1]
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    phase = np.exp(
        -2j
        * np.pi
        * (fx[None] * shifts_xy[:, 0, None, None] + fy[None] * shifts_xy[:, 1, None, None])
    )
    spectrum = scipy.fft.rfft2(images, axes=(-2, -1), workers=workers) * phase
    return scipy.fft.irfft2(spectrum, s=(size, size), axes=(-2, -1), workers=workers)


def translation_search(
    particles: np.ndarray,
    references: np.ndarray,
    max_shift_px: float,
    workers: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shift s (x, y) maximising <particle(. + s), reference>, |s| <= max_shift_px.

    Returns (shifts (n, 2) sub-pixel, peak cc (n,), cc maps (n, size, size) with the zero
    shift at [0, 0]; entries beyond max_shift_px set to -inf).
    """
    size = particles.shape[-1]
    spectrum = scipy.fft.rfft2(particles, axes=(-2, -1), workers=workers)
    spectrum *= np.conj(scipy.fft.rfft2(references, axes=(-2, -1), workers=workers))
    maps = scipy.fft.irfft2(spectrum, s=(size, size), axes=(-2, -1), workers=workers)
    offsets = np.fft.fftfreq(size, d=1.0 / size)
    outside = np.hypot(offsets[None, :], offsets[:, None]) > max_shift_px
    maps[:, outside] = -np.inf
    flat = maps.reshape(len(maps), -1).argmax(axis=1)
    iy, ix = np.unravel_index(flat, (size, size))
    rows = np.arange(len(maps))
    peak = maps[rows, iy, ix]

    def neighbour(dy: int, dx: int) -> np.ndarray:
        values = maps[rows, (iy + dy) % size, (ix + dx) % size]
        return np.where(np.isfinite(values), values, peak)

    sub_x = parabolic_offset(neighbour(0, -1), peak, neighbour(0, 1))
    sub_y = parabolic_offset(neighbour(-1, 0), peak, neighbour(1, 0))
    shifts = np.stack([offsets[ix] + sub_x, offsets[iy] + sub_y], axis=1)
    return shifts, peak, maps


def soft_circular_mask(size_px: int, radius_px: float, edge_px: float = 3.0) -> np.ndarray:
    """1 inside `radius_px` of the centre, raised-cosine fall-off over `edge_px`."""
    coordinates = np.arange(size_px) - image_centre(size_px)
    radius = np.hypot(coordinates[None, :], coordinates[:, None])
    ramp = np.clip((radius - radius_px) / edge_px, 0.0, 1.0)
    return (0.5 * (1.0 + np.cos(np.pi * ramp))).astype(np.float32)


def radial_index(size_px: int) -> np.ndarray:
    """Fourier shell index (rounded |k| in pixels) on an rfft2 grid."""
    fy = np.fft.fftfreq(size_px, d=1.0 / size_px)[:, None]
    fx = np.fft.rfftfreq(size_px, d=1.0 / size_px)[None, :]
    return np.rint(np.hypot(fx, fy)).astype(int)


def centre_of_mass_xy(images: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(n, 2) centre of mass (x, y) of the positive, masked part, relative to the centre."""
    size = images.shape[-1]
    coordinates = np.arange(size) - image_centre(size)
    weights = np.clip(images, 0.0, None) * mask
    total = weights.sum(axis=(1, 2))
    total[total == 0] = 1.0
    x = (weights * coordinates[None, None, :]).sum(axis=(1, 2)) / total
    y = (weights * coordinates[None, :, None]).sum(axis=(1, 2)) / total
    return np.stack([x, y], axis=1)
