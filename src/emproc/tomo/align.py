"""Tilt-series alignment: coarse cross-correlation with cosine stretching (as IMOD's
tiltxcorr), the tilt-axis angle (`emproc.tomo.axis`), then patch tracking and a
tiltalign-like least-squares fit of the projection model that refines the per-tilt shifts,
then projection matching (`emproc.tomo.projection_matching`, as AreTomo) against
reprojections of the other tilts.

All work happens at the alignment binning; results are returned in unbinned pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.fft
from scipy import ndimage

from emproc.tomo.axis import AxisParams, estimate_tilt_axis
from emproc.tomo.fiducial import (
    FiducialAlignmentError,
    FiducialParams,
    FiducialResult,
    align_with_fiducials,
)
from emproc.tomo.geometry import align_image, rotation_matrix, taper_mask
from emproc.tomo.patch_fiducials import PatchFiducialParams, align_with_patch_fiducials
from emproc.tomo.peaks import correlation_peak
from emproc.tomo.projection_matching import ProjectionMatchingParams, refine_shifts
from emproc.tomo.stack import fourier_bin


class AlignmentError(ValueError):
    """The tilt series cannot be aligned (too few tilts or patches)."""


@dataclass(frozen=True)
class AlignmentParams:
    binning: int = 4  # alignment binning relative to the unbinned stack
    # Gaussian low-pass sigma, fraction of Nyquist: 0.2 keeps the CTF band (rings of ice
    # texture, noise to tracking) out; 0.35 left 1.9 px rms shift errors on simulated series
    lowpass_fraction: float = 0.2
    highpass_px: float = 30.0  # remove features larger than this (binned px)
    axis_search_deg: float = 5.0  # an axis estimate further than this from the guess is refused
    patch_size_px: int = 48  # tracked patch size (binned px)
    patches_per_axis: int = 5
    max_patch_shift_px: float = 6.0  # accepted correction of a patch per tilt step
    refine: bool = True  # patch tracking + fit; False: coarse alignment only
    # measure the tilt-axis angle (emproc.tomo.axis, strip profiles along the axis) before
    # tracking: within 0.6 deg of truth on simulated series with the mdoc off by up to 3 deg.
    # (Fitting it in the patch-track model was 1-4 deg wrong: tracks drift tilt by tilt.)
    refine_axis: bool = True
    axis: AxisParams = field(default_factory=AxisParams)
    # after the patch fit (no beads): leave-one-out projection matching, which removes the
    # tilt-to-tilt scatter the patch tracks leave (crowded slab_series seed 1: 1.35 -> 0.63
    # px rms); iterations 0 = off
    projection_matching: ProjectionMatchingParams = field(default_factory=ProjectionMatchingParams)
    # then patches as pseudo-fiducials (emproc.tomo.patch_fiducials), shifts fitted jointly
    # to points located independently in every tilt. Off by default (iterations 0): on
    # slab_series crowded seeds 1-7 it left 0.72-1.26 px against 0.63-1.41 px without it
    # (docs/benchmarks.md), no better on the whole
    patch_fiducials: PatchFiducialParams = field(
        default_factory=lambda: PatchFiducialParams(iterations=0)
    )


@dataclass(frozen=True)
class AlignmentResult:
    tilt_angles_deg: np.ndarray
    tilt_axis_angle_deg: float
    shifts_px: np.ndarray  # [tilt, (x, y)] raw frame, unbinned pixels
    coarse_shifts_px: np.ndarray  # the cross-correlation result, same convention
    residual_rms_px: float  # fit residual at the alignment binning (nan: no refinement)
    residuals_per_tilt_px: np.ndarray  # rms per tilt at the alignment binning
    patches_used: int
    binning: int  # residuals are in pixels at this binning (1 for fiducial alignment)
    method: str = "patch_tracking"  # or "fiducial"
    projection_matching_iterations: int = 0  # run after the patch fit (0: none)
    fallback_reason: str | None = None  # why fiducial alignment was not used, if asked for
    magnifications: np.ndarray | None = None  # per tilt (fiducial fit), None = all 1
    rotations_deg: np.ndarray | None = None  # per-tilt in-plane rotation added to the axis
    fiducial: object | None = None  # emproc.tomo.fiducial.FiducialResult
    # fit residuals [track, tilt, (x, y)] at `binning` (patch or bead tracks), nan = unused
    residuals_px: np.ndarray | None = None


def _bandpass(image: np.ndarray, params: AlignmentParams) -> np.ndarray:
    ny, nx = image.shape
    ky = np.fft.fftfreq(ny)[:, None]
    kx = np.fft.rfftfreq(nx)[None, :]
    k2 = kx**2 + ky**2
    sigma = params.lowpass_fraction * 0.5
    lowpass = np.exp(-k2 / (2 * sigma**2))
    highpass = 1.0 - np.exp(-k2 * (params.highpass_px**2) * 2)
    filtered = scipy.fft.irfft2(scipy.fft.rfft2(image) * lowpass * highpass, s=image.shape)
    return filtered.astype(np.float32)


def _cross_correlate(reference: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """Centred correlation map; its peak at (dx, dy) means moving ~ reference shifted by it."""
    product = np.conj(scipy.fft.rfft2(reference)) * scipy.fft.rfft2(moving)
    return scipy.fft.fftshift(scipy.fft.irfft2(product, s=reference.shape))


def _zero_tilt_index(angles: np.ndarray) -> int:
    return int(np.argmin(np.abs(angles)))


def coarse_align(
    images: np.ndarray, angles_deg: np.ndarray, tilt_axis_angle_deg: float, max_shift_px: float
) -> np.ndarray:
    """Shifts only; see `coarse_align_scored`."""
    return coarse_align_scored(images, angles_deg, tilt_axis_angle_deg, max_shift_px)[0]


def coarse_align_scored(
    images: np.ndarray, angles_deg: np.ndarray, tilt_axis_angle_deg: float, max_shift_px: float
) -> tuple[np.ndarray, float]:
    """Shifts [tilt, (x, y)] in the frame rotated so the axis is vertical, zero tilt = 0.

    Each tilt is stretched perpendicular to the axis by cos(neighbour)/cos(tilt) before it
    is correlated with its neighbour nearer zero tilt; shifts accumulate outwards.
    """
    count = len(angles_deg)
    mask = taper_mask(images.shape[1:], 0.15)
    start = _zero_tilt_index(angles_deg)
    shifts = np.zeros((count, 2))
    cosines = np.cos(np.deg2rad(angles_deg))
    score = 0.0
    for direction in (1, -1):
        index = start + direction
        while 0 <= index < count:
            previous = index - direction
            stretch = cosines[previous] / cosines[index]
            reference = align_image(images[previous], tilt_axis_angle_deg, (0, 0)) * mask
            moving = align_image(images[index], tilt_axis_angle_deg, (0, 0), stretch) * mask
            correlation = _cross_correlate(reference, moving)
            score += float(correlation.max() / (np.linalg.norm(reference) * np.linalg.norm(moving)))
            dx, dy, _ = correlation_peak(correlation, max_shift_px)
            # moving is stretched: its own offset is (dx + previous shift) / stretch in x
            shifts[index, 0] = (dx + shifts[previous, 0]) / stretch
            shifts[index, 1] = dy + shifts[previous, 1]
            index += direction
    return shifts, score / max(count - 1, 1)


def _extract(image: np.ndarray, centre_xy: np.ndarray, size: int, stretch_x: float = 1.0):
    """Patch of `size` px around a sub-pixel centre, stretched by `stretch_x` along x."""
    offsets = np.arange(size) - size / 2
    yy, xx = np.meshgrid(offsets, offsets / stretch_x, indexing="ij")
    ny, nx = image.shape
    coordinates = [yy + centre_xy[1] + ny / 2, xx + centre_xy[0] + nx / 2]
    return ndimage.map_coordinates(image, coordinates, order=1, mode="constant", cval=0.0)


def track_patches(
    images: np.ndarray, angles_deg: np.ndarray, shifts: np.ndarray, params: AlignmentParams
) -> tuple[np.ndarray, np.ndarray]:
    """Positions [patch, tilt, (x, y)] in the axis-vertical frame (relative to the centre)
    and a validity mask [patch, tilt]. Patches start on a grid at zero tilt and follow
    tilt by tilt outwards, each step correlating with the previous tilt's stretched patch."""
    count, ny, nx = images.shape
    size = params.patch_size_px
    half_field = 0.5 * min(ny, nx) - 0.5 * size - params.max_patch_shift_px
    if half_field <= 0:
        raise AlignmentError(f"images of {nx}x{ny} px are too small for {size} px patches")
    grid = np.linspace(-0.6 * half_field, 0.6 * half_field, params.patches_per_axis)
    starts = np.array([(x, y) for y in grid for x in grid])
    cosines = np.cos(np.deg2rad(angles_deg))
    mask = taper_mask((size, size), 0.25)
    start = _zero_tilt_index(angles_deg)
    positions = np.full((len(starts), count, 2), np.nan)
    positions[:, start] = starts + shifts[start]
    for direction in (1, -1):
        index = start + direction
        while 0 <= index < count:
            previous = index - direction
            stretch = cosines[index] / cosines[previous]
            for patch in range(len(starts)):
                last = positions[patch, previous]
                if np.isnan(last[0]):
                    continue
                predicted = np.array(
                    [
                        (last[0] - shifts[previous, 0]) * stretch + shifts[index, 0],
                        last[1] - shifts[previous, 1] + shifts[index, 1],
                    ]
                )
                if np.abs(predicted[0]) > half_field or np.abs(predicted[1]) > half_field:
                    continue
                template = _extract(images[previous], last, size, stretch) * mask
                window = _extract(images[index], predicted, size) * mask
                dx, dy, _ = correlation_peak(
                    _cross_correlate(template, window), params.max_patch_shift_px
                )
                positions[patch, index] = predicted + (dx, dy)
            index += direction
    return positions, ~np.isnan(positions[..., 0])


def _fit_model(
    positions: np.ndarray, valid: np.ndarray, angles_deg: np.ndarray, delta_deg: float
) -> tuple[float, np.ndarray, np.ndarray]:
    """Least squares of u = R(delta) (x cos b + z sin b, y) + t for fixed delta.

    Returns (sum of squared residuals, shifts t [tilt, 2], residual [patch, tilt, 2]).
    Gauge: zero-tilt shift = 0 and mean patch height = 0 (the tomogram's z origin).
    """
    patches, count = valid.shape
    start = _zero_tilt_index(angles_deg)
    rotated = positions @ rotation_matrix(-delta_deg).T  # R(-delta) u = model + t'
    beta = np.deg2rad(angles_deg)
    p_index, t_index = np.nonzero(valid)
    observations = len(p_index)
    shift_columns = [k for k in range(count) if k != start]
    column_of = {k: i for i, k in enumerate(shift_columns)}
    # x: x_i cos b + z_i sin b + t_kx ; y: y_i + t_ky
    design_x = np.zeros((observations + 1, 2 * patches + len(shift_columns)))
    design_y = np.zeros((observations, patches + len(shift_columns)))
    rows = np.arange(observations)
    design_x[rows, p_index] = np.cos(beta[t_index])
    design_x[rows, patches + p_index] = np.sin(beta[t_index])
    design_y[rows, p_index] = 1.0
    for row, k in enumerate(t_index):
        if k != start:
            design_x[row, 2 * patches + column_of[k]] = 1.0
            design_y[row, patches + column_of[k]] = 1.0
    design_x[observations, patches : 2 * patches] = 1.0  # sum of heights = 0
    target_x = np.append(rotated[p_index, t_index, 0], 0.0)
    target_y = rotated[p_index, t_index, 1]
    solution_x, *_ = np.linalg.lstsq(design_x, target_x, rcond=None)
    solution_y, *_ = np.linalg.lstsq(design_y, target_y, rcond=None)
    shifts_rotated = np.zeros((count, 2))
    for k in shift_columns:
        shifts_rotated[k, 0] = solution_x[2 * patches + column_of[k]]
        shifts_rotated[k, 1] = solution_y[patches + column_of[k]]
    residual = np.full(positions.shape, np.nan)
    residual[p_index, t_index, 0] = (design_x @ solution_x - target_x)[:observations]
    residual[p_index, t_index, 1] = design_y @ solution_y - target_y
    squared = float(np.nansum(residual**2))
    shifts = shifts_rotated @ rotation_matrix(delta_deg).T
    return squared, shifts, residual


def coarse_alignment(
    images: np.ndarray, angles_deg: np.ndarray, tilt_axis_guess_deg: float, params: AlignmentParams
) -> tuple[np.ndarray, float, np.ndarray]:
    """Band-passed binned images, the axis (measured when `params.refine_axis`) and the
    coarse shifts [tilt, (x, y)] in the axis-vertical frame at the alignment binning."""
    if len(angles_deg) < 3:
        raise AlignmentError(f"need at least 3 tilts to align, got {len(angles_deg)}")
    binned = np.stack([_bandpass(fourier_bin(image, params.binning), params) for image in images])
    max_shift = 0.25 * min(binned.shape[1:])
    coarse = coarse_align(binned, angles_deg, tilt_axis_guess_deg, max_shift)
    axis_deg = float(tilt_axis_guess_deg)
    if params.refine_axis:
        raw_binned = coarse @ rotation_matrix(axis_deg).T
        estimate = estimate_tilt_axis(binned, angles_deg, raw_binned, axis_deg, params.axis)
        if abs(estimate.tilt_axis_angle_deg - axis_deg) <= params.axis_search_deg:
            axis_deg = estimate.tilt_axis_angle_deg
            # coarse shifts again in the frame of the measured axis (stretch direction)
            coarse = coarse_align(binned, angles_deg, axis_deg, max_shift)
    return binned, axis_deg, coarse


def align_tilt_series(
    images: np.ndarray,
    angles_deg: np.ndarray,
    tilt_axis_guess_deg: float,
    params: AlignmentParams | None = None,
    *,
    fiducial: FiducialParams | None = None,
    pixel_size_angstrom: float | None = None,
) -> AlignmentResult:
    """Align a stack [tilt, y, x] (sorted by tilt angle, zero-mean contrast, unbinned).

    With `fiducial` (and the pixel size, for the bead diameter) gold beads are tracked and
    the projection model fitted to them (`emproc.tomo.fiducial`); if too few beads are
    found or kept, patch tracking runs instead and `fallback_reason` says why."""
    params = params or AlignmentParams()
    angles_deg = np.asarray(angles_deg, dtype=float)
    binned, axis_deg, coarse = coarse_alignment(images, angles_deg, tilt_axis_guess_deg, params)
    guess_rotation = rotation_matrix(axis_deg)
    coarse_raw = coarse @ guess_rotation.T * params.binning
    fallback = None
    if fiducial is not None:
        if pixel_size_angstrom is None:
            raise AlignmentError("fiducial alignment needs the pixel size")
        try:
            return _fiducial_result(
                align_with_fiducials(
                    images, angles_deg, axis_deg, coarse_raw, pixel_size_angstrom, fiducial
                ),
                angles_deg,
                coarse_raw,
            )
        except (FiducialAlignmentError, np.linalg.LinAlgError) as error:
            fallback = str(error)
    if not params.refine:
        return AlignmentResult(
            angles_deg,
            axis_deg,
            coarse_raw,
            coarse_raw,
            float("nan"),
            np.full(len(angles_deg), np.nan),
            0,
            params.binning,
            fallback_reason=fallback,
        )
    # patches are tracked in the frame rotated to the (measured) axis
    rotated = np.stack([align_image(image, axis_deg, (0, 0)) for image in binned])
    positions, valid = track_patches(rotated, angles_deg, coarse, params)
    keep = valid.sum(axis=1) >= max(3, len(angles_deg) // 2)
    if keep.sum() < 3:
        raise AlignmentError(f"only {int(keep.sum())} patches could be tracked")
    positions, valid = positions[keep], valid[keep]
    positions, valid = _reject_outliers(positions, valid, angles_deg)
    _, shifts, residual = _fit_model(positions, valid, angles_deg, 0.0)
    squared = np.sum(residual**2, axis=-1)
    counts = np.sum(np.isfinite(squared), axis=0)
    per_tilt = np.sqrt(np.nansum(squared, axis=0) / np.maximum(counts, 1))
    per_tilt[counts == 0] = np.nan  # a tilt no patch reached
    rms = float(np.sqrt(np.nanmean(np.sum(residual**2, axis=-1))))
    raw_binned = shifts @ guess_rotation.T
    matching = params.projection_matching
    if matching.iterations > 0:
        matched = refine_shifts(binned, angles_deg, axis_deg, raw_binned, matching)
        raw_binned = _zero_tilt_gauge(matched.raw_shifts_px, angles_deg, axis_deg)
    if params.patch_fiducials.iterations > 0:
        pseudo = align_with_patch_fiducials(
            binned, angles_deg, axis_deg, raw_binned, params.patch_fiducials
        )
        axis_deg = pseudo.tilt_axis_angle_deg
        raw_binned = _zero_tilt_gauge(pseudo.raw_shifts_px, angles_deg, axis_deg)
    return AlignmentResult(
        angles_deg,
        axis_deg,
        raw_binned * params.binning,
        coarse_raw,
        rms,
        per_tilt,
        int(keep.sum()),
        params.binning,
        fallback_reason=fallback,
        residuals_px=residual,
        projection_matching_iterations=matching.iterations,
    )


def _zero_tilt_gauge(raw_shifts: np.ndarray, angles_deg: np.ndarray, axis_deg: float):
    """Raw shifts moved by a specimen translation (x cos b, y in the axis frame) so the
    tilt nearest 0 deg has none, the gauge the patch fit uses."""
    beta = np.deg2rad(angles_deg)
    start = _zero_tilt_index(angles_deg)
    in_axis = raw_shifts @ rotation_matrix(-axis_deg).T
    offset = in_axis[start]
    in_axis[:, 0] -= offset[0] * np.cos(beta) / np.cos(beta[start])
    in_axis[:, 1] -= offset[1]
    return in_axis @ rotation_matrix(axis_deg).T


def _fiducial_result(
    result: FiducialResult, angles_deg: np.ndarray, coarse_raw: np.ndarray
) -> AlignmentResult:
    fit = result.fit
    distance = np.linalg.norm(fit.residuals_px, axis=-1)  # unbinned px, nan = unused
    distance = np.where(fit.used, distance, np.nan)
    counts = np.sum(np.isfinite(distance), axis=0)
    with np.errstate(invalid="ignore"):
        per_tilt = np.sqrt(np.nansum(distance**2, axis=0) / counts)
    return AlignmentResult(
        angles_deg,
        fit.tilt_axis_angle_deg,
        fit.shifts_px,
        coarse_raw,
        float(np.sqrt(np.nanmean(distance**2))),
        per_tilt,
        0,
        1,
        method="fiducial",
        magnifications=fit.magnifications,
        rotations_deg=fit.rotations_deg,
        fiducial=result,
        residuals_px=np.where(fit.used[..., None], fit.residuals_px, np.nan),
    )


def _reject_outliers(
    positions: np.ndarray, valid: np.ndarray, angles_deg: np.ndarray, cutoff: float = 4.0
) -> tuple[np.ndarray, np.ndarray]:
    """Drop observations whose residual (at the guessed axis) exceeds `cutoff` robust sigmas:
    a patch that jumped to a wrong feature would otherwise pull the fit."""
    _, _, residual = _fit_model(positions, valid, angles_deg, 0.0)
    distance = np.sqrt(np.sum(residual**2, axis=-1))
    finite = distance[valid]
    scale = 1.4826 * float(np.median(np.abs(finite - np.median(finite)))) + 1e-6
    bad = valid & (distance > np.median(finite) + cutoff * scale)
    cleaned = positions.copy()
    cleaned[bad] = np.nan
    return cleaned, valid & ~bad
