"""Patches as pseudo-fiducials (as IMOD's tiltxcorr -patch feeds tiltalign): a grid of
specimen points is located independently in every tilt, and all tracks are fitted together
with the projection model used for gold beads (`emproc.tomo.projection_fit`), which solves
the tilt axis and the per-tilt shifts at once and rejects mis-located points robustly.

Each point (x, y) of the zero-tilt frame appears in the aligned frame of tilt b at
(x cos b, y) under the current alignment. Its true position there is found by correlating
a small patch of the tilt with the same patch of the tilt's reference: the reprojection of
the slab back-projected from the other tilts (`projection_matching.slab_reprojection`), with
the `exclude_neighbours` nearest tilts on each side left out so the reference does not
share the tilt's local drift. Unlike chained tilt-to-tilt tracks, no error accumulates along
a track. A patch whose correlation peak is a ridge (an edge such as a carbon film's: position
known across it only) is dropped; blobs elsewhere carry both components.
Measure, fit, realign: `iterations` times.

Limits (measured, docs/benchmarks.md): at 3 e-/A^2 a 32 px patch localises to ~1 px, so
the points of a tilt average to about what one whole-image match gives; after projection
matching it was no better on slab_series (crowded 0.72-1.26 px vs 0.63-1.41), so the
pipeline leaves it off. The axis is held: points located against a reference that rotates
with the image do not show an axis error (solved, it stayed near its start).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emproc.tomo.geometry import rotation_matrix, taper_mask
from emproc.tomo.projection_fit import ProjectionFitError, fit_projection_model
from emproc.tomo.projection_matching import _aligned, _spectra, slab_reprojection


@dataclass(frozen=True)
class PatchFiducialParams:
    iterations: int = 4  # measure-fit rounds; 0 = off
    patch_size_px: int = 32  # binned px
    patches_per_axis: int = 6
    exclude_neighbours: int = 0  # tilts each side left out of a tilt's reference
    thickness_fraction: float = 0.5  # slab thickness, fraction of the binned width
    max_offset_px: float = 4.0  # accepted local offset (binned px)
    # smallest/largest curvature of the correlation peak below this: a ridge (edge)
    min_peak_isotropy: float = 0.25
    rejection_sigma: float = 3.0
    solve_axis: bool = False


@dataclass(frozen=True)
class PatchFiducialResult:
    tilt_axis_angle_deg: float
    raw_shifts_px: np.ndarray  # [tilt, (x, y)] raw frame, binned px
    observed_px: np.ndarray  # [patch, tilt, (x, y)] raw frame, binned px, last round
    used: np.ndarray  # [patch, tilt] kept by the robust fit, last round
    residuals_px: np.ndarray  # [patch, tilt, 2] fit residuals, binned px
    ridge_fraction: float  # share of patch observations dropped as edge-like


def _locate(reference: np.ndarray, moving: np.ndarray, max_offset: float):
    """(dx, dy, isotropy): moving ~ reference shifted by (dx, dy); isotropy = ratio of the
    peak's smallest to largest curvature (1: round blob, ~0: ridge along an edge)."""
    f = np.conj(np.fft.rfft2(reference)) * np.fft.rfft2(moving)
    c = np.fft.fftshift(np.fft.irfft2(f, s=reference.shape))
    ny, nx = c.shape
    yy, xx = np.ogrid[:ny, :nx]
    allowed = ((yy - ny // 2) ** 2 + (xx - nx // 2) ** 2) <= max_offset**2
    iy, ix = np.unravel_index(int(np.argmax(np.where(allowed, c, -np.inf))), c.shape)
    if iy in (0, ny - 1) or ix in (0, nx - 1):
        return np.nan, np.nan, 0.0
    hxx = c[iy, ix - 1] - 2 * c[iy, ix] + c[iy, ix + 1]
    hyy = c[iy - 1, ix] - 2 * c[iy, ix] + c[iy + 1, ix]
    hxy = 0.25 * (c[iy + 1, ix + 1] - c[iy + 1, ix - 1] - c[iy - 1, ix + 1] + c[iy - 1, ix - 1])
    hessian = np.array([[hxx, hxy], [hxy, hyy]])
    eigen = np.linalg.eigvalsh(-hessian)  # positive at a maximum
    if eigen[0] <= 0:
        return np.nan, np.nan, 0.0
    gradient = np.array([c[iy, ix + 1] - c[iy, ix - 1], c[iy + 1, ix] - c[iy - 1, ix]]) * 0.5
    step = np.linalg.solve(hessian, -gradient)  # Newton step to the quadratic's vertex
    if np.any(np.abs(step) > 1):
        return np.nan, np.nan, 0.0
    return ix + step[0] - nx // 2, iy + step[1] - ny // 2, float(eigen[0] / eigen[1])


def measure_tracks(
    images: np.ndarray,
    angles_deg: np.ndarray,
    axis_deg: float,
    raw_shifts: np.ndarray,
    params: PatchFiducialParams,
) -> tuple[np.ndarray, float]:
    """Observed raw positions [patch, tilt, (x, y)] (binned px from the image centre, nan =
    not located) of a grid of zero-tilt points, and the share dropped as ridges."""
    count, ny, nx = images.shape
    size = params.patch_size_px
    beta = np.deg2rad(angles_deg)
    half = 0.5 * min(ny, nx) - 0.5 * size - params.max_offset_px - 0.1 * min(ny, nx)
    grid = np.linspace(-half, half, params.patches_per_axis)
    points = np.array([(x, y) for y in grid for x in grid])
    aligned = _aligned(images, axis_deg, raw_shifts)
    spectra = _spectra(aligned)
    thickness = params.thickness_fraction * nx
    window = taper_mask((size, size), 0.25)
    rotation = rotation_matrix(axis_deg)
    observed = np.full((len(points), count, 2), np.nan)
    ridges = located = 0
    offsets = np.arange(size) - size // 2
    for k in range(count):
        reference = slab_reprojection(
            spectra, angles_deg, thickness, k, exclude=params.exclude_neighbours
        )
        for p, (x, y) in enumerate(points):
            u = np.array([x * np.cos(beta[k]), y])
            cx, cy = int(round(u[0] + nx / 2)), int(round(u[1] + ny / 2))
            rows = slice(cy + offsets[0], cy + offsets[-1] + 1)
            cols = slice(cx + offsets[0], cx + offsets[-1] + 1)
            ref = reference[rows, cols]
            mov = aligned[k][rows, cols]
            ref = (ref - ref.mean()) * window
            mov = (mov - mov.mean()) * window
            dx, dy, isotropy = _locate(ref, mov, params.max_offset_px)
            located += 1
            if not np.isfinite(dx) or isotropy < params.min_peak_isotropy:
                ridges += 1
                continue
            # the local offset moves the whole patch, wherever its rounded centre
            observed[p, k] = rotation @ (u + (dx, dy)) + raw_shifts[k]
    return observed, ridges / max(located, 1)


def align_with_patch_fiducials(
    images: np.ndarray,
    angles_deg: np.ndarray,
    axis_deg: float,
    raw_shifts: np.ndarray,
    params: PatchFiducialParams,
) -> PatchFiducialResult:
    """Band-passed binned images [tilt, y, x] sorted by angle, a start alignment (axis,
    raw shifts in binned px) close to within a few px; see the module docstring."""
    angles_deg = np.asarray(angles_deg, dtype=float)
    shifts = np.array(raw_shifts, dtype=float)
    axis = float(axis_deg)
    fit = None
    for _ in range(params.iterations):
        observed, ridge_fraction = measure_tracks(images, angles_deg, axis, shifts, params)
        try:
            fit = fit_projection_model(
                observed,
                angles_deg,
                axis,
                initial_shifts_px=shifts,
                rejection_sigma=params.rejection_sigma,
                solve_axis=params.solve_axis,
                min_observations=max(5, len(angles_deg) // 3),
            )
        except ProjectionFitError:
            break
        axis, shifts = fit.tilt_axis_angle_deg, fit.shifts_px
    if fit is None:
        raise ProjectionFitError("no patch could be located in enough tilts")
    return PatchFiducialResult(
        axis, shifts, observed, fit.used, fit.residuals_px, float(ridge_fraction)
    )
