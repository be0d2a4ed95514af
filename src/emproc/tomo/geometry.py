"""Tilt-series geometry shared by alignment and reconstruction (IMOD's conventions).

A raw image point r and its aligned point a (tilt axis along +Y, origin on the axis),
both relative to the image centre (index n/2 in each axis), are related by
    r = R(tilt_axis_angle) a + shift,      a = R(-tilt_axis_angle) (r - shift),
with R(angle) the counter-clockwise rotation and `shift` (x, y) in pixels. The IMOD `.xf`
line for a tilt is the raw -> aligned map: A = R(-tilt_axis_angle), d = -A @ shift.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def rotation_matrix(angle_deg: float) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


def align_image(
    image: np.ndarray,
    tilt_axis_angle_deg: float,
    shift_xy_px: tuple[float, float] | np.ndarray,
    stretch_x: float = 1.0,
    output_shape: tuple[int, int] | None = None,
    magnification: float = 1.0,
) -> np.ndarray:
    """Resample a raw image into the aligned frame (axis vertical, shift removed),
    optionally stretched by `stretch_x` perpendicular to the axis; `magnification` m of
    the raw image (raw = m R aligned + shift) is undone. Outside: 0 (images are zero-mean
    contrast)."""
    ny, nx = image.shape
    out_ny, out_nx = output_shape or image.shape
    forward = magnification * rotation_matrix(tilt_axis_angle_deg) @ np.diag([1.0 / stretch_x, 1.0])
    # affine_transform maps output index (y, x) -> input index: r = F a + s + centre
    matrix_yx = forward[::-1, ::-1]
    shift = np.asarray(shift_xy_px, dtype=float)
    out_centre = np.array([out_ny / 2, out_nx / 2])
    in_centre = np.array([ny / 2, nx / 2]) + shift[::-1]
    offset = in_centre - matrix_yx @ out_centre
    return ndimage.affine_transform(
        image, matrix_yx, offset=offset, output_shape=(out_ny, out_nx), order=1, cval=0.0
    )


def xf_lines(
    tilt_axis_angle_deg: float,
    shifts_xy_px: np.ndarray,
    rotations_deg: np.ndarray | None = None,
    magnifications: np.ndarray | None = None,
) -> str:
    """IMOD .xf text: `A11 A12 A21 A22 DX DY` per tilt (raw -> aligned, unbinned px);
    per-tilt in-plane rotations (added to the axis angle) and magnifications optional."""
    count = len(shifts_xy_px)
    rotations = np.zeros(count) if rotations_deg is None else np.asarray(rotations_deg)
    mags = np.ones(count) if magnifications is None else np.asarray(magnifications)
    lines = []
    for shift, rotation, mag in zip(
        np.asarray(shifts_xy_px, dtype=float), rotations, mags, strict=True
    ):
        a = rotation_matrix(-(tilt_axis_angle_deg + rotation)) / mag
        d = -a @ shift
        lines.append(
            f"{a[0, 0]:12.7f}{a[0, 1]:12.7f}{a[1, 0]:12.7f}{a[1, 1]:12.7f}{d[0]:12.3f}{d[1]:12.3f}"
        )
    return "\n".join(lines) + "\n"


def read_xf(text: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse .xf text into per-tilt matrices [n, 2, 2] and shifts [n, 2] (DX, DY)."""
    rows = np.array(
        [[float(v) for v in line.split()] for line in text.splitlines() if line.strip()]
    )
    if rows.ndim != 2 or rows.shape[1] != 6:
        raise ValueError("an .xf file has six numbers per line")
    return rows[:, :4].reshape(-1, 2, 2), rows[:, 4:]


def taper_mask(shape: tuple[int, int], fraction: float = 0.1) -> np.ndarray:
    """Cosine edge taper so FFT-based correlation ignores the image border."""
    masks = []
    for n in shape:
        width = max(int(n * fraction), 1)
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, width))
        profile = np.ones(n)
        profile[:width] = ramp
        profile[-width:] = ramp[::-1]
        masks.append(profile)
    return np.outer(masks[0], masks[1])
