"""Full-resolution sums under a smooth local shift field, by Fourier-shifted tiles.

The frame is cut into square cores (`choose_core_px`); each core is read with a margin from
the frame position its content drifted to (integer part of the global + local shift at
the core centre), Fourier-shifted by the remaining sub-pixel part, and accumulated in
Fourier space (plain and dose-weighted). At the end each tile sum is transformed back
and its core kept. Unlike real-space interpolation this loses no high-frequency signal;
the shift is constant within a core, so the core is chosen small enough that the field
changes by at most MAX_SHIFT_CHANGE_PX across it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.fft

MIN_CORE_PX, MAX_CORE_PX = 64, 512
MAX_SHIFT_CHANGE_PX = 0.2  # largest change of the shift field across one core
TILE_MARGIN_PX = 32  # keeps the wrap-around and edge ringing of each tile out of its core


def choose_core_px(
    shift_at: Callable[[int, np.ndarray, np.ndarray], np.ndarray],
    count: int,
    shape: tuple[int, int],
) -> int:
    """Core size (multiple of 32) over which the shift field changes by <= MAX_SHIFT_CHANGE_PX."""
    ny, nx = shape
    ys, xs = np.meshgrid(np.linspace(0, ny - 1, 17), np.linspace(0, nx - 1, 17), indexing="ij")
    steepest = 0.0
    for k in range(count):
        field = shift_at(k, xs, ys)  # (17, 17, 2)
        gradient_x = np.abs(np.diff(field, axis=1)).max() / (xs[0, 1] - xs[0, 0])
        gradient_y = np.abs(np.diff(field, axis=0)).max() / (ys[1, 0] - ys[0, 0])
        steepest = max(steepest, float(gradient_x), float(gradient_y))
    core = MAX_SHIFT_CHANGE_PX / steepest if steepest > 0 else MAX_CORE_PX
    return int(np.clip(core // 32 * 32, MIN_CORE_PX, MAX_CORE_PX))


def tile_shape(core_px: int) -> tuple[int, int]:
    """Shape of the Fourier grid of one tile (core plus margins)."""
    size = core_px + 2 * TILE_MARGIN_PX
    return size, size


def _remove_tile_drifts(spectra: np.ndarray, tile: int, shifts_xy: np.ndarray) -> None:
    """Multiply each tile spectrum in place by the phase ramp removing its sub-pixel drift."""
    ky = np.fft.fftfreq(tile).astype(np.float32)
    kx = np.fft.rfftfreq(tile).astype(np.float32)
    ramp_y = np.exp(2j * np.pi * shifts_xy[:, 1, None] * ky[None, :]).astype(np.complex64)
    ramp_x = np.exp(2j * np.pi * shifts_xy[:, 0, None] * kx[None, :]).astype(np.complex64)
    spectra *= ramp_y[:, :, None]
    spectra *= ramp_x[:, None, :]


def _read_window(frame: np.ndarray, top: int, left: int, out: np.ndarray) -> None:
    """out = frame[top:top+h, left:left+w], edge pixels repeated outside the frame."""
    ny, nx = frame.shape
    height, width = out.shape
    if top >= 0 and left >= 0 and top + height <= ny and left + width <= nx:
        out[:] = frame[top : top + height, left : left + width]
        return
    rows = np.clip(np.arange(top, top + height), 0, ny - 1)
    cols = np.clip(np.arange(left, left + width), 0, nx - 1)
    out[:] = frame[np.ix_(rows, cols)]


def tiled_sums(
    frame_source: Callable[[int], np.ndarray],
    count: int,
    shape: tuple[int, int],
    shift_at: Callable[[int, np.ndarray, np.ndarray], np.ndarray],
    weights_for: Callable[[int], np.ndarray] | None = None,
    *,
    core_px: int = 256,
    workers: int = 1,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Plain and (optionally) weighted sums of frames aligned by a per-position shift.

    `shift_at(k, x, y)` gives the (n_points, 2) total drift (x, y) in pixels of frame k at
    frame-0 positions; `weights_for(k)` the rfft-grid weights on the `tile_shape(core_px)`
    grid.
    """
    ny, nx = shape
    core, margin = core_px, TILE_MARGIN_PX
    tile = tile_shape(core)[0]
    rows, cols = -(-ny // core), -(-nx // core)
    origin_y, origin_x = np.meshgrid(np.arange(rows) * core, np.arange(cols) * core, indexing="ij")
    origin_y, origin_x = origin_y.ravel(), origin_x.ravel()
    # centre of the part of each core inside the frame
    centre_x = 0.5 * (origin_x + np.minimum(origin_x + core, nx)) - 0.5
    centre_y = 0.5 * (origin_y + np.minimum(origin_y + core, ny)) - 0.5
    plain = np.zeros((len(origin_y), tile, tile // 2 + 1), dtype=np.complex64)
    weighted = np.zeros_like(plain) if weights_for is not None else None
    buffer = np.empty((len(origin_y), tile, tile), dtype=np.float32)
    for k in range(count):
        shifts = shift_at(k, centre_x, centre_y)
        whole = np.round(shifts).astype(int)
        frame = frame_source(k)
        for index, (y0, x0) in enumerate(zip(origin_y, origin_x, strict=True)):
            top = y0 - margin + whole[index, 1]
            left = x0 - margin + whole[index, 0]
            _read_window(frame, top, left, buffer[index])
        del frame
        spectra = scipy.fft.rfft2(buffer, axes=(-2, -1), workers=workers)
        _remove_tile_drifts(spectra, tile, shifts - whole)
        plain += spectra
        if weighted is not None:
            spectra *= weights_for(k)
            weighted += spectra
    plain_image = _assemble(plain, shape, core, rows, cols, workers)
    if weighted is None:
        return plain_image, None
    return plain_image, _assemble(weighted, shape, core, rows, cols, workers)


def _assemble(
    spectra: np.ndarray, shape: tuple[int, int], core: int, rows: int, cols: int, workers: int
) -> np.ndarray:
    margin = TILE_MARGIN_PX
    tile = tile_shape(core)[0]
    tiles = scipy.fft.irfft2(spectra, s=(tile, tile), axes=(-2, -1), workers=workers)
    cores = tiles[:, margin : margin + core, margin : margin + core].astype(np.float32)
    image = (
        cores.reshape(rows, cols, core, core)
        .transpose(0, 2, 1, 3)
        .reshape(rows * core, cols * core)
    )
    return np.ascontiguousarray(image[: shape[0], : shape[1]])
