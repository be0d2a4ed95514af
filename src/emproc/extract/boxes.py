"""Particle boxes from a micrograph: cut, Fourier downscale, phase flip, invert, normalise.

Conventions (as RELION): a pick at (x, y) is boxed with its rounded position at box pixel
(box // 2, box // 2); particles come out white on black; the background outside
`bg_radius_px` (in output pixels) has zero mean and unit standard deviation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft

from emproc.ctf.model import ctf_2d


class ExtractionError(ValueError):
    """The boxes or parameters cannot be used (box larger than the micrograph, ...)."""


@dataclass(frozen=True)
class CtfParameters:
    """The micrograph's CTF, as in `CtfFind/{movie}_ctf.json` and the optics group."""

    defocus_u_angstrom: float
    defocus_v_angstrom: float
    astigmatism_angle_deg: float
    voltage_kv: float = 300.0
    spherical_aberration_mm: float = 2.7
    amplitude_contrast: float = 0.1
    phase_shift_deg: float = 0.0


@dataclass(frozen=True)
class ExtractionParams:
    box_size_px: int = 256  # micrograph pixels
    downscale_size_px: int = 64  # output pixels; equal to box_size_px: no downscaling
    bg_radius_px: float = 24.0  # output pixels
    invert_contrast: bool = True
    phase_flip: bool = False

    def __post_init__(self) -> None:
        if self.box_size_px < 8 or self.downscale_size_px < 8:
            raise ExtractionError("box sizes must be >= 8 pixels")
        if self.downscale_size_px > self.box_size_px:
            raise ExtractionError(
                f"downscale_size_px ({self.downscale_size_px}) > box_size_px ({self.box_size_px})"
            )
        if not 0 < self.bg_radius_px < self.downscale_size_px / 2 * np.sqrt(2):
            raise ExtractionError(
                f"bg_radius_px {self.bg_radius_px} leaves no background in a "
                f"{self.downscale_size_px}-pixel box"
            )


def box_origins(coordinates_xy_px: np.ndarray, box_size_px: int) -> np.ndarray:
    """(n, 2) integer (x0, y0) of each box's first pixel."""
    return np.rint(np.asarray(coordinates_xy_px, dtype=float)).astype(int) - box_size_px // 2


def inside_micrograph(
    coordinates_xy_px: np.ndarray, box_size_px: int, shape: tuple[int, int]
) -> np.ndarray:
    """Boolean (n,): the whole box lies inside the micrograph (edge boxes are dropped)."""
    origins = box_origins(coordinates_xy_px, box_size_px).reshape(-1, 2)
    ny, nx = shape
    return (
        (origins[:, 0] >= 0)
        & (origins[:, 1] >= 0)
        & (origins[:, 0] + box_size_px <= nx)
        & (origins[:, 1] + box_size_px <= ny)
    )


def cut_boxes(
    micrograph: np.ndarray, coordinates_xy_px: np.ndarray, box_size_px: int
) -> np.ndarray:
    """(n, box, box) float32 boxes; every box must lie inside (see `inside_micrograph`)."""
    origins = box_origins(coordinates_xy_px, box_size_px).reshape(-1, 2)
    stack = np.empty((len(origins), box_size_px, box_size_px), dtype=np.float32)
    for index, (x0, y0) in enumerate(origins):
        stack[index] = micrograph[y0 : y0 + box_size_px, x0 : x0 + box_size_px]
    return stack


def fourier_downscale(stack: np.ndarray, size_px: int, workers: int = 1) -> np.ndarray:
    """Fourier-crop each (square) box to `size_px`, keeping pixel box//2 at size//2."""
    box = stack.shape[-1]
    if size_px == box:
        return stack.astype(np.float32, copy=True)
    # move the box centre to the origin so cropping about the origin keeps it fixed
    spectrum = scipy.fft.rfft2(
        np.fft.ifftshift(stack, axes=(-2, -1)), axes=(-2, -1), workers=workers
    )
    half = size_px // 2
    rows = np.r_[0 : size_px - half, box - half : box]
    cropped = spectrum[:, rows, : half + 1]
    small = scipy.fft.irfft2(cropped, s=(size_px, size_px), axes=(-2, -1), workers=workers)
    small *= (size_px / box) ** 2
    return np.fft.fftshift(small, axes=(-2, -1)).astype(np.float32)


def phase_flip(
    stack: np.ndarray, pixel_size_angstrom: float, ctf: CtfParameters, workers: int = 1
) -> np.ndarray:
    """Multiply each box's spectrum by sign(CTF): undoes the CTF's contrast reversals."""
    box = stack.shape[-1]
    sign = np.sign(
        ctf_2d(
            (box, box),
            pixel_size_angstrom,
            ctf.defocus_u_angstrom,
            ctf.defocus_v_angstrom,
            ctf.astigmatism_angle_deg,
            voltage_kv=ctf.voltage_kv,
            spherical_aberration_mm=ctf.spherical_aberration_mm,
            amplitude_contrast=ctf.amplitude_contrast,
            phase_shift_deg=ctf.phase_shift_deg,
            rfft=True,
        )
    ).astype(np.float32)
    # the image carries CTF * density; times sign(CTF) it carries |CTF| * density: particles
    # turn white, so a phase-flipped box needs no further contrast inversion
    spectrum = scipy.fft.rfft2(stack, axes=(-2, -1), workers=workers) * sign
    return scipy.fft.irfft2(spectrum, s=(box, box), axes=(-2, -1), workers=workers).astype(
        np.float32
    )


def background_mask(size_px: int, bg_radius_px: float) -> np.ndarray:
    """True outside the circle of radius `bg_radius_px` about pixel (size//2, size//2)."""
    coordinates = np.arange(size_px) - size_px // 2
    return np.hypot(coordinates[None, :], coordinates[:, None]) > bg_radius_px


def normalise_background(stack: np.ndarray, bg_radius_px: float) -> np.ndarray:
    """Zero mean, unit standard deviation in the background of each box (as RELION)."""
    mask = background_mask(stack.shape[-1], bg_radius_px)
    background = stack[:, mask]
    mean = background.mean(axis=1, dtype=np.float64)
    std = background.std(axis=1, dtype=np.float64)
    std[std == 0] = 1.0
    return ((stack - mean[:, None, None]) / std[:, None, None]).astype(np.float32)


def extract_boxes(
    micrograph: np.ndarray,
    coordinates_xy_px: np.ndarray,
    pixel_size_angstrom: float,
    params: ExtractionParams = ExtractionParams(),
    ctf: CtfParameters | None = None,
    workers: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised particle stack (n_kept, size, size) and the indices of the kept picks.

    Phase flipping (needs `ctf`) is applied at the full pixel size, before downscaling; with
    it the CTF's sign is removed and particles are white without a further inversion.
    """
    if micrograph.ndim != 2:
        raise ExtractionError(f"expected a 2D micrograph, got shape {micrograph.shape}")
    if params.box_size_px > min(micrograph.shape):
        raise ExtractionError(
            f"box_size_px {params.box_size_px} larger than the micrograph {micrograph.shape}"
        )
    coordinates = np.asarray(coordinates_xy_px, dtype=float).reshape(-1, 2)
    kept = np.flatnonzero(inside_micrograph(coordinates, params.box_size_px, micrograph.shape))
    size = params.downscale_size_px
    if kept.size == 0:
        return np.zeros((0, size, size), dtype=np.float32), kept
    stack = cut_boxes(micrograph, coordinates[kept], params.box_size_px)
    stack -= stack.mean(axis=(1, 2), keepdims=True)  # no DC leaking through the filters
    if params.phase_flip:
        if ctf is None:
            raise ExtractionError("phase_flip needs the micrograph's CTF parameters")
        stack = phase_flip(stack, pixel_size_angstrom, ctf, workers)
    elif params.invert_contrast:
        stack = -stack
    stack = fourier_downscale(stack, size, workers)
    return normalise_background(stack, params.bg_radius_px), kept
