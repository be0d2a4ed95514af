"""Specimen motion during a movie: smooth global drift and smooth local deformation.

Convention (docs/architecture.md): a feature at frame-0 position p = (x, y) sits at
p + global_shift[k] + local_shift(k, p) in frame k. The local part is a polynomial in the
normalised frame-0 coordinates (u, v) = (2x/(nx-1) - 1, 2y/(ny-1) - 1) with terms
[u, v, u^2, u v, v^2] (no constant: translation belongs to the global part), scaled in
time by a profile that is 0 at frame 0.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
import scipy.ndimage

LOCAL_TERMS = ("u", "v", "u^2", "u*v", "v^2")


def global_drift_px(
    rng: np.random.Generator, number_of_frames: int, total_drift_px: float
) -> np.ndarray:
    """(n, 2) cumulative (x, y) drift; frame 0 is (0, 0); path length is `total_drift_px`.

    Steps decay with frame number (stage settling and beam-induced motion are largest at the
    start of an exposure) and the direction turns slowly, as in real movies.
    """
    shifts = np.zeros((number_of_frames, 2))
    if number_of_frames < 2 or total_drift_px <= 0:
        return shifts
    steps = np.arange(number_of_frames - 1)
    decay_frames = max(number_of_frames / 4.0, 1.0)
    lengths = np.exp(-steps / decay_frames) + 0.15
    lengths *= total_drift_px / lengths.sum()
    direction = rng.uniform(0.0, 2.0 * np.pi) + rng.uniform(-0.5, 0.5) * np.pi * steps / max(
        number_of_frames - 2, 1
    )
    shifts[1:] = np.cumsum(
        lengths[:, None] * np.stack([np.cos(direction), np.sin(direction)], 1), 0
    )
    return shifts


def local_time_profile(number_of_frames: int) -> np.ndarray:
    """Smooth, monotonic 0 -> 1 over the movie, fastest early (like the global drift)."""
    if number_of_frames < 2:
        return np.zeros(number_of_frames)
    t = np.arange(number_of_frames) / (number_of_frames - 1)
    rate = 3.0
    return (1.0 - np.exp(-rate * t)) / (1.0 - np.exp(-rate))


def local_deformation_coefficients(rng: np.random.Generator, amplitude_px: float) -> np.ndarray:
    """(2, 5) coefficients for (dx, dy) so the largest local shift in the frame is `amplitude_px`."""
    if amplitude_px <= 0:
        return np.zeros((2, len(LOCAL_TERMS)))
    coefficients = rng.normal(size=(2, len(LOCAL_TERMS)))
    u, v = np.meshgrid(np.linspace(-1, 1, 33), np.linspace(-1, 1, 33))
    largest = np.max(np.hypot(*_evaluate(coefficients, u, v)))
    return coefficients * (amplitude_px / largest)


def _evaluate(
    coefficients: np.ndarray, u: np.ndarray, v: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    terms = (u, v, u * u, u * v, v * v)
    dx = sum(c * t for c, t in zip(coefficients[0], terms, strict=True))
    dy = sum(c * t for c, t in zip(coefficients[1], terms, strict=True))
    return dx, dy


def local_shift_px(
    coefficients: np.ndarray,
    time_profile_value: float,
    x_px: np.ndarray | float,
    y_px: np.ndarray | float,
    shape_px: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """Local (dx, dy) in pixels of a feature at frame-0 position (x_px, y_px)."""
    ny, nx = shape_px
    u = 2.0 * np.asarray(x_px, dtype=float) / max(nx - 1, 1) - 1.0
    v = 2.0 * np.asarray(y_px, dtype=float) / max(ny - 1, 1) - 1.0
    dx, dy = _evaluate(coefficients, u, v)
    return time_profile_value * dx, time_profile_value * dy


def fourier_shift_spectrum(
    spectrum: np.ndarray, shape: tuple[int, int], shift_xy: np.ndarray
) -> np.ndarray:
    """Multiply an rfft2 spectrum by the phase ramp that moves image content by (dx, dy) px."""
    ny, nx = shape
    fy = np.fft.fftfreq(ny)[:, None]
    fx = np.fft.rfftfreq(nx)[None, :]
    ramp_y = np.exp(-2j * np.pi * fy * shift_xy[1]).astype(np.complex64)
    ramp_x = np.exp(-2j * np.pi * fx * shift_xy[0]).astype(np.complex64)
    return spectrum * ramp_y * ramp_x


def shifted_image(
    spectrum: np.ndarray, shape: tuple[int, int], shift_xy: np.ndarray, workers: int = 1
) -> np.ndarray:
    """Exact (band-limited, periodic) sub-pixel shift of the image whose rfft2 is `spectrum`."""
    moved = fourier_shift_spectrum(spectrum, shape, shift_xy)
    return scipy.fft.irfft2(moved, s=shape, workers=workers).astype(np.float32, copy=False)


def warp_locally(
    image: np.ndarray,
    origin_yx: tuple[int, int],
    output_shape: tuple[int, int],
    global_shift_xy: np.ndarray,
    coefficients: np.ndarray,
    time_profile_value: float,
) -> np.ndarray:
    """Apply the local deformation to an image already shifted by the global drift.

    `image` is a canvas whose pixel (origin_y + y, origin_x + x) is frame pixel (y, x). For each
    output pixel q the frame-0 position p solves q = p + g + l(p) (three fixed-point steps: l is
    smooth, its gradient tiny); the output samples the globally shifted image at q - l(p) with
    cubic B-splines.
    """
    ny, nx = output_shape
    qy, qx = np.meshgrid(
        np.arange(ny, dtype=np.float64), np.arange(nx, dtype=np.float64), indexing="ij"
    )
    px, py = qx - global_shift_xy[0], qy - global_shift_xy[1]
    dx = dy = 0.0
    for _ in range(3):
        dx, dy = local_shift_px(coefficients, time_profile_value, px, py, output_shape)
        px = qx - global_shift_xy[0] - dx
        py = qy - global_shift_xy[1] - dy
    coordinates = np.stack([qy - dy + origin_yx[0], qx - dx + origin_yx[1]])
    return scipy.ndimage.map_coordinates(image, coordinates, order=3, mode="reflect").astype(
        np.float32, copy=False
    )
