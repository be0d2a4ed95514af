"""Least-squares fit of the tilt-series projection model to tracked fiducial positions
(what IMOD's tiltalign does), with robust rejection of mis-tracked observations and beads.

Model, per bead i at (x_i, y_i, z_i) (unbinned px, specimen frame, y along the tilt axis)
and tilt k at angle b_k:
    raw_ik = m_k R(theta + rho_k) (x_i cos b_k + z_i sin b_k, y_i) + s_k
theta: the tilt-axis angle (IMOD convention, CCW from +Y); s_k (x, y): per-tilt shift;
m_k, rho_k: per-tilt magnification and in-plane rotation (optional, 1 and 0 otherwise).

Gauge (what the data cannot tell): a translation of the whole specimen by (dx, dy, dz) is
absorbed by s_k -> s_k - R(theta)(dx cos b_k + dz sin b_k, dy). It is fixed by s = 0 at the
tilt nearest zero (x, y: the specimen origin is the zero-tilt image centre) and by the mean
bead height = 0 (z: the tomogram is centred on the beads). m and rho are 1 and 0 at that
tilt. `remove_gauge` projects the same three terms out of a shift error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from emproc.tomo.geometry import rotation_matrix

_J = np.array([[0.0, -1.0], [1.0, 0.0]])  # d R(a) / da = J R(a)


class ProjectionFitError(ValueError):
    """Too few observations to fit the projection model."""


@dataclass(frozen=True)
class ProjectionFit:
    tilt_axis_angle_deg: float
    shifts_px: np.ndarray  # [tilt, (x, y)] raw frame
    beads_xyz_px: np.ndarray  # [bead, 3]
    magnifications: np.ndarray  # [tilt]
    rotations_deg: np.ndarray  # [tilt]
    residuals_px: np.ndarray  # [bead, tilt, 2], nan where not observed / rejected
    used: np.ndarray  # [bead, tilt] observations kept by the robust fit
    rejected_beads: np.ndarray  # [bead] bool


def _unpack(vector, count, beads, reference, solve_magnification, solve_rotation):
    theta = vector[0]
    position = 1
    shifts = np.zeros((count, 2))
    free = [k for k in range(count) if k != reference]
    shifts[free] = vector[position : position + 2 * len(free)].reshape(-1, 2)
    position += 2 * len(free)
    xyz = vector[position : position + 3 * beads].reshape(-1, 3)
    position += 3 * beads
    log_mag = np.zeros(count)
    rotation = np.zeros(count)
    if solve_magnification:
        log_mag[free] = vector[position : position + len(free)]
        position += len(free)
    if solve_rotation:
        rotation[free] = vector[position : position + len(free)]
    return theta, shifts, xyz, log_mag, rotation, free


def fit_projection_model(
    observed_px: np.ndarray,
    angles_deg: np.ndarray,
    tilt_axis_guess_deg: float,
    *,
    initial_shifts_px: np.ndarray | None = None,
    solve_magnification: bool = False,
    solve_rotation: bool = False,
    solve_axis: bool = True,
    rejection_sigma: float = 4.0,
    min_observations: int = 5,
) -> ProjectionFit:
    """Fit `observed_px` [bead, tilt, (x, y)] (raw frame, unbinned px from the image centre,
    nan = not observed). Observations beyond `rejection_sigma` robust sigmas are dropped,
    then beads whose rms residual is an outlier among beads, and the fit repeated."""
    observed = np.asarray(observed_px, dtype=float)
    angles = np.asarray(angles_deg, dtype=float)
    used = np.isfinite(observed[..., 0])
    rejected_beads = np.zeros(len(observed), dtype=bool)
    theta = np.deg2rad(tilt_axis_guess_deg)
    shifts = (
        np.zeros((len(angles), 2)) if initial_shifts_px is None else np.array(initial_shifts_px)
    )

    def solve_kept() -> tuple[np.ndarray, ProjectionFit]:
        keep = ~rejected_beads & (used.sum(axis=1) >= min_observations)
        if keep.sum() < 3:
            raise ProjectionFitError(
                f"only {int(keep.sum())} beads with >= {min_observations} observations"
            )
        solved = _solve(
            observed[keep],
            used[keep],
            angles,
            theta,
            shifts,
            solve_magnification,
            solve_rotation,
            solve_axis,
        )
        return keep, solved

    for _ in range(4):
        keep_beads, fit = solve_kept()
        theta = np.deg2rad(fit.tilt_axis_angle_deg)
        shifts = fit.shifts_px
        distance = np.full(used.shape, np.nan)
        distance[keep_beads] = np.linalg.norm(fit.residuals_px, axis=-1)
        kept_distances = distance[used & keep_beads[:, None]]
        # median |d| of a 2D Gaussian is 1.1774 sigma (per axis); floor 0.1 px: beads
        # centred to a few hundredths of a pixel must not make 0.2 px a rejection
        sigma = max(float(np.median(kept_distances)) / 1.1774, 0.1)
        bad = used & keep_beads[:, None] & (distance > rejection_sigma * sigma)
        seen = np.where(used & keep_beads[:, None], distance, np.nan)
        per_bead = np.full(len(observed), np.nan)
        has = np.isfinite(seen).any(axis=1)
        per_bead[has] = np.sqrt(np.nanmean(seen[has] ** 2, axis=1))
        centre = np.nanmedian(per_bead[keep_beads])
        spread = 1.4826 * np.nanmedian(np.abs(per_bead[keep_beads] - centre))
        # a bead is mis-tracked when its rms stands out among beads *and* is large against
        # the localisation noise (a steady 0.3 px bias of a bead next to another is not)
        limit = max(centre + rejection_sigma * spread, 2.0 * centre, rejection_sigma * sigma)
        bad_beads = keep_beads & (per_bead > limit)
        if not bad.any() and not bad_beads.any():
            break
        used = used & ~bad
        rejected_beads |= bad_beads
    keep_beads, fit = solve_kept()
    residuals = np.full(observed.shape, np.nan)
    beads_xyz = np.full((len(observed), 3), np.nan)
    residuals[keep_beads] = fit.residuals_px
    beads_xyz[keep_beads] = fit.beads_xyz_px
    final_used = used & keep_beads[:, None]
    return ProjectionFit(
        fit.tilt_axis_angle_deg,
        fit.shifts_px,
        beads_xyz,
        fit.magnifications,
        fit.rotations_deg,
        residuals,
        final_used,
        ~keep_beads,
    )


def _solve(
    observed, used, angles, theta, shifts, solve_magnification, solve_rotation, solve_axis=True
):
    count, beads = len(angles), len(observed)
    reference = int(np.argmin(np.abs(angles)))
    beta = np.deg2rad(angles)
    cos_b, sin_b = np.cos(beta), np.sin(beta)
    bead_index, tilt_index = np.nonzero(used)
    points = observed[bead_index, tilt_index]
    # starting bead positions: back-project each observation at the first guess (z = 0)
    inverse = rotation_matrix(-np.rad2deg(theta))
    aligned = (points - shifts[tilt_index]) @ inverse.T
    xyz0 = np.zeros((beads, 3))
    for axis, values in ((0, aligned[:, 0] / cos_b[tilt_index]), (1, aligned[:, 1])):
        sums = np.bincount(bead_index, values, minlength=beads)
        xyz0[:, axis] = sums / np.maximum(np.bincount(bead_index, minlength=beads), 1)
    free = [k for k in range(count) if k != reference]
    vector = [np.array([theta]), shifts[free].ravel(), xyz0.ravel()]
    if solve_magnification:
        vector.append(np.zeros(len(free)))
    if solve_rotation:
        vector.append(np.zeros(len(free)))
    x0 = np.concatenate(vector)
    column_of_tilt = np.full(count, -1)
    column_of_tilt[free] = np.arange(len(free))
    n_obs = len(points)
    n_shift = 2 * len(free)
    n_params = len(x0)
    gauge_weight = 1.0 / beads

    def model(vector):
        theta_v, shift_v, xyz, log_mag, rotation, _ = _unpack(
            vector, count, beads, reference, solve_magnification, solve_rotation
        )
        b, k = bead_index, tilt_index
        proj = np.column_stack([xyz[b, 0] * cos_b[k] + xyz[b, 2] * sin_b[k], xyz[b, 1]])
        angle = theta_v + rotation[k]
        c, s = np.cos(angle), np.sin(angle)
        mag = np.exp(log_mag[k])
        rotated = np.column_stack(
            [c * proj[:, 0] - s * proj[:, 1], s * proj[:, 0] + c * proj[:, 1]]
        )
        return proj, c, s, mag, mag[:, None] * rotated + shift_v[k]

    def residuals(vector):
        _, _, _, _, predicted = model(vector)
        xyz = vector[1 + n_shift : 1 + n_shift + 3 * beads].reshape(-1, 3)
        return np.concatenate([(predicted - points).ravel(), [gauge_weight * xyz[:, 2].sum()]])

    def jacobian(vector):
        proj, c, s, mag, predicted = model(vector)
        jac = np.zeros((2 * n_obs + 1, n_params))
        rows_x = 2 * np.arange(n_obs)
        rows_y = rows_x + 1
        rotated = predicted - _shift_of(vector)
        d_angle = rotated @ _J.T  # J (m R p)
        if solve_axis:  # else the column stays 0 and the axis at its guess
            jac[rows_x, 0] = d_angle[:, 0]
            jac[rows_y, 0] = d_angle[:, 1]
        k = tilt_index
        has = column_of_tilt[k] >= 0
        columns = 1 + 2 * column_of_tilt[k[has]]
        jac[rows_x[has], columns] = 1.0
        jac[rows_y[has], columns + 1] = 1.0
        # d/d(x, y, z) of m R (x cos + z sin, y)
        base = 1 + n_shift + 3 * bead_index
        for offset, (px, py) in enumerate(((cos_b[k], 0.0), (0.0, 1.0), (sin_b[k], 0.0))):
            px = np.broadcast_to(px, c.shape)
            py = np.broadcast_to(py, c.shape)
            jac[rows_x, base + offset] = mag * (c * px - s * py)
            jac[rows_y, base + offset] = mag * (s * px + c * py)
        position = 1 + n_shift + 3 * beads
        if solve_magnification:
            jac[rows_x[has], position + column_of_tilt[k[has]]] = rotated[has, 0]
            jac[rows_y[has], position + column_of_tilt[k[has]]] = rotated[has, 1]
            position += len(free)
        if solve_rotation:
            jac[rows_x[has], position + column_of_tilt[k[has]]] = d_angle[has, 0]
            jac[rows_y[has], position + column_of_tilt[k[has]]] = d_angle[has, 1]
        jac[-1, 1 + n_shift + 2 : 1 + n_shift + 3 * beads : 3] = gauge_weight
        return jac

    def _shift_of(vector):
        _, shift_v, *_ = _unpack(vector, count, beads, reference, False, False)
        return shift_v[tilt_index]

    solution = least_squares(residuals, x0, jac=jacobian, method="lm", xtol=1e-10, ftol=1e-10)
    theta_v, shift_v, xyz, log_mag, rotation, _ = _unpack(
        solution.x, count, beads, reference, solve_magnification, solve_rotation
    )
    residual = np.full(observed.shape, np.nan)
    residual[bead_index, tilt_index] = solution.fun[: 2 * n_obs].reshape(-1, 2)
    return ProjectionFit(
        float(np.rad2deg(theta_v)),
        shift_v,
        xyz,
        np.exp(log_mag),
        np.rad2deg(rotation),
        residual,
        used,
        np.zeros(beads, dtype=bool),
    )


def remove_gauge(
    shift_error_px: np.ndarray, angles_deg: np.ndarray, tilt_axis_angle_deg: float
) -> np.ndarray:
    """Shift errors [tilt, (x, y)] minus their least-squares part R(axis)(a cos b + c sin b,
    d): the shift change a translation of the whole specimen makes (see the module
    docstring). What remains is what misaligns a reconstruction."""
    error = np.asarray(shift_error_px, dtype=float)
    beta = np.deg2rad(np.asarray(angles_deg, dtype=float))
    in_axis_frame = error @ rotation_matrix(-tilt_axis_angle_deg).T
    basis = np.column_stack([np.cos(beta), np.sin(beta)])
    coefficients, *_ = np.linalg.lstsq(basis, in_axis_frame[:, 0], rcond=None)
    cleaned = in_axis_frame.copy()
    cleaned[:, 0] -= basis @ coefficients
    cleaned[:, 1] -= cleaned[:, 1].mean()
    return cleaned @ rotation_matrix(tilt_axis_angle_deg).T
