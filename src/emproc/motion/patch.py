"""Patch-based local alignment and a smooth deformation model (MotionCor2 style).

After global alignment the frame is cut into `patches_x` x `patches_y` patches; each
patch stack is aligned with the same iterative scheme as the whole frame, giving a
residual trajectory per patch. These are fitted with a polynomial that is quadratic in
the normalised position (u, v) in [-1, 1] and cubic in normalised time t = k / (n - 1),
with no t^0 term (the local shift is zero at frame 0, where the global drift is also
zero) plus a free offset per patch (each patch's own reference is arbitrary):

    local(u, v, t) = sum_j sum_{m=1..3} c_jm b_j(u, v) t^m,
    b = [1, u, v, u^2, u v, v^2] (fewer terms when there are too few patches).

Shifts follow the global convention: features at p in frame 0 sit at
p + global(k) + local(p, k) in frame k; all model values are in unbinned pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft

from emproc.motion.align import align_spectra, fast_size_at_most

MIN_PATCH_PX = 160  # on the alignment grid; smaller patches hold too little signal to align


@dataclass(frozen=True)
class LocalMotionModel:
    """Fitted local deformation; evaluate with `shift_at`."""

    shape_px: tuple[int, int]  # (ny, nx) unbinned
    number_of_frames: int
    terms: tuple[str, ...]  # spatial basis names, e.g. ("1", "u", "v", "u^2", "u*v", "v^2")
    coefficients_px: np.ndarray  # (2, len(terms), 3): axis (x, y), spatial term, t^1..t^3
    patch_centres_px: np.ndarray  # (P, 2) (x, y) unbinned
    patch_shifts_px: np.ndarray  # (P, n, 2) measured residual trajectories (offset removed)
    patches_used: np.ndarray  # (P,) bool: kept by outlier rejection

    def shift_at(self, frame: int, x_px: np.ndarray, y_px: np.ndarray) -> tuple:
        """Local (dx, dy) in unbinned pixels at frame-0 positions (x_px, y_px)."""
        ny, nx = self.shape_px
        u = 2.0 * np.asarray(x_px, dtype=np.float32) / max(nx - 1, 1) - 1.0
        v = 2.0 * np.asarray(y_px, dtype=np.float32) / max(ny - 1, 1) - 1.0
        t = frame / max(self.number_of_frames - 1, 1)
        powers = np.array([t, t * t, t * t * t])
        weights = self.coefficients_px @ powers  # (2, terms): per-term amplitude at this t
        basis = spatial_basis(self.terms, u, v)
        dx = sum(w * b for w, b in zip(weights[0], basis, strict=True))
        dy = sum(w * b for w, b in zip(weights[1], basis, strict=True))
        return dx, dy


def basis_terms(patches_x: int, patches_y: int) -> tuple[str, ...]:
    """Spatial terms the patch grid can constrain (quadratic needs 3 patches along an axis)."""
    terms = ["1"]
    if patches_x >= 2:
        terms.append("u")
    if patches_y >= 2:
        terms.append("v")
    if patches_x >= 3:
        terms.append("u^2")
    if patches_x >= 2 and patches_y >= 2:
        terms.append("u*v")
    if patches_y >= 3:
        terms.append("v^2")
    return tuple(terms)


def spatial_basis(terms: tuple[str, ...], u, v) -> list:
    values = {
        "1": np.ones_like(u * v),
        "u": u,
        "v": v,
        "u^2": u * u,
        "u*v": u * v,
        "v^2": v * v,
    }
    return [values[term] for term in terms]


def _taper(length: int, edge: int) -> np.ndarray:
    window = np.ones(length, dtype=np.float32)
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(edge) + 0.5) / edge)
    window[:edge] = ramp
    window[length - edge :] = ramp[::-1]
    return window


def measure_patch_shifts(
    aligned_frames: np.ndarray,
    patches_x: int,
    patches_y: int,
    *,
    iterations: int = 10,
    max_shift_px: float = 8.0,
    smoothing: float = 1.0,
    workers: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Residual trajectories of each patch of globally aligned (binned) frames.

    Returns centres (P, 2) as (x, y) on the alignment grid and shifts (P, n, 2) in
    alignment-grid pixels. Patches tile the frame without overlap; edges are tapered
    so the cyclic correlation does not see the patch border.
    """
    count, ny, nx = aligned_frames.shape
    height, width = fast_size_at_most(ny // patches_y), fast_size_at_most(nx // patches_x)
    window = np.outer(_taper(height, max(height // 8, 2)), _taper(width, max(width // 8, 2)))
    centres, shifts = [], []
    for row in range(patches_y):
        for col in range(patches_x):
            y0 = row * (ny // patches_y) + (ny // patches_y - height) // 2
            x0 = col * (nx // patches_x) + (nx // patches_x - width) // 2
            stack = aligned_frames[:, y0 : y0 + height, x0 : x0 + width]
            stack = stack - stack.mean(axis=(1, 2), keepdims=True)
            spectra = scipy.fft.rfft2(stack * window, workers=workers).astype(np.complex64)
            shifts.append(
                align_spectra(
                    spectra,
                    iterations=iterations,
                    max_shift_px=min(height / 4, width / 4, max_shift_px),
                    smoothing=smoothing,
                    workers=workers,
                )
            )
            centres.append((x0 + (width - 1) / 2, y0 + (height - 1) / 2))
    return np.asarray(centres), np.asarray(shifts)


def fit_local_model(
    centres_px: np.ndarray,
    patch_shifts_px: np.ndarray,
    shape_px: tuple[int, int],
    patches_x: int,
    patches_y: int,
    *,
    outlier_factor: float = 4.0,
) -> LocalMotionModel:
    """Least-squares fit of the polynomial model; patches fitting far worse than the rest
    (residual RMS > outlier_factor x median, and > 0.5 px) are dropped and the fit repeated.

    `centres_px` (P, 2) and `patch_shifts_px` (P, n, 2) in unbinned pixels.
    """
    ny, nx = shape_px
    patch_count, count, _ = patch_shifts_px.shape
    terms = basis_terms(patches_x, patches_y)
    u = 2.0 * centres_px[:, 0] / max(nx - 1, 1) - 1.0
    v = 2.0 * centres_px[:, 1] / max(ny - 1, 1) - 1.0
    t = np.arange(count) / max(count - 1, 1)
    basis = np.stack(spatial_basis(terms, u, v), axis=1)  # (P, terms)
    time_powers = np.stack([t, t**2, t**3], axis=1)  # (n, 3)
    model_columns = (basis[:, None, :, None] * time_powers[None, :, None, :]).reshape(
        patch_count * count, -1
    )
    offset_columns = np.repeat(np.eye(patch_count), count, axis=0)
    design = np.hstack([model_columns, offset_columns])
    model_size = model_columns.shape[1]

    def solve(used: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = np.repeat(used, count)
        columns = np.r_[0:model_size, model_size + np.flatnonzero(used)]
        solution, *_ = np.linalg.lstsq(
            design[rows][:, columns], patch_shifts_px.reshape(-1, 2)[rows], rcond=None
        )
        offsets = np.zeros((patch_count, 2))
        offsets[used] = solution[model_size:]
        model_part = (model_columns @ solution[:model_size]).reshape(patch_count, count, 2)
        residual = patch_shifts_px - model_part - offsets[:, None]
        return solution[:model_size], offsets, np.sqrt(np.mean(residual**2, axis=(1, 2)))

    used = np.ones(patch_count, dtype=bool)
    for attempt in range(3):
        solution, offsets, rms = solve(used)
        keep = rms <= max(outlier_factor * float(np.median(rms[used])), 0.5)
        if attempt == 2 or np.array_equal(keep, used) or keep.sum() < len(terms) + 1:
            break
        used = keep
    coefficients = solution.reshape(len(terms), 3, 2).transpose(2, 0, 1)
    return LocalMotionModel(
        shape_px=(int(ny), int(nx)),
        number_of_frames=int(count),
        terms=terms,
        coefficients_px=np.ascontiguousarray(coefficients),
        patch_centres_px=centres_px,
        patch_shifts_px=patch_shifts_px - offsets[:, None],
        patches_used=used,
    )
