"""Fiducial (gold bead) alignment: beads seeded on the zero tilt, tracked outwards tilt by
tilt with the projection model predicting where each goes, the model fitted to all tracks
(`emproc.tomo.projection_fit`), then every bead searched again at the fitted model's
prediction and the model refitted (as IMOD's autofidseed -> beadtrack -> tiltalign).

Positions are unbinned pixels relative to the image centre, raw frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft

from emproc.tomo.beads import BeadScoreMap, bead_binning, find_seeds, locate_near, score_map
from emproc.tomo.geometry import rotation_matrix
from emproc.tomo.projection_fit import ProjectionFit, ProjectionFitError, fit_projection_model


class FiducialAlignmentError(ValueError):
    """Too few beads found or tracked: the caller falls back to patch tracking."""


@dataclass(frozen=True)
class FiducialParams:
    bead_diameter_nm: float = 10.0
    min_beads: int = 5  # fewer beads tracked and kept by the fit: patch tracking instead
    max_beads: int = 80
    # seeds: a bead correlates >= this many noise sigmas above the score map's median and
    # >= relative_score x the median of the five strongest (gold is ~10x protein contrast)
    min_score_sigma: float = 8.0
    relative_score: float = 0.35
    track_score_fraction: float = 0.3  # a tracked bead keeps >= this x its seed score
    min_tracked_fraction: float = 0.3  # a bead must be found on this fraction of the tilts
    solve_magnification: bool = False
    solve_rotation: bool = False
    rejection_sigma: float = 4.0


@dataclass(frozen=True)
class FiducialResult:
    fit: ProjectionFit
    observed_px: np.ndarray  # [bead, tilt, (x, y)] tracked positions, nan = not found
    seeds_found: int
    beads_used: int
    binning: int  # bead localisation binning


def _predict(xyz: np.ndarray, angle_deg: float, axis_deg: float, shift: np.ndarray):
    beta = np.deg2rad(angle_deg)
    aligned = np.column_stack([xyz[:, 0] * np.cos(beta) + xyz[:, 2] * np.sin(beta), xyz[:, 1]])
    return aligned @ rotation_matrix(axis_deg).T + shift


def _bead_heights(
    observed: np.ndarray, angles: np.ndarray, axis_deg: float, shifts: np.ndarray
) -> np.ndarray:
    """Per bead (x, y, z) from its observations at known axis and shifts (a ridge term worth
    one observation at 2 deg keeps z finite while only the zero tilt is seen)."""
    inverse = rotation_matrix(-axis_deg)
    beta = np.deg2rad(angles)
    xyz = np.zeros((len(observed), 3))
    for bead, track in enumerate(observed):
        seen = np.isfinite(track[:, 0])
        aligned = (track[seen] - shifts[seen]) @ inverse.T
        design = np.column_stack([np.cos(beta[seen]), np.sin(beta[seen])])
        normal = design.T @ design + np.diag([0.0, np.sin(np.deg2rad(2.0)) ** 2])
        xyz[bead, [0, 2]] = np.linalg.solve(normal, design.T @ aligned[:, 0])
        xyz[bead, 1] = aligned[:, 1].mean()
    return xyz


def _find_at_tilt(
    scores: BeadScoreMap,
    predicted: np.ndarray,
    active: np.ndarray,
    seed_scores: np.ndarray,
    diameter_px: float,
    search_px: np.ndarray | float,
    params: FiducialParams,
) -> np.ndarray:
    """Found positions [bead, 2] (nan: not found, ambiguous or off the field), searched
    within `search_px` (per bead or one for all) of the prediction."""
    search = np.broadcast_to(np.asarray(search_px, dtype=float), (len(predicted),))
    found = np.full(predicted.shape, np.nan)
    distances = np.linalg.norm(predicted[:, None] - predicted[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    crowded = distances.min(axis=1) < diameter_px  # discs overlap: ambiguous
    for bead in np.nonzero(active & ~crowded)[0]:
        position, value = locate_near(scores, predicted[bead], float(search[bead]))
        if value >= params.track_score_fraction * seed_scores[bead]:
            found[bead] = position
    return found


def _pattern_offset(
    scores: BeadScoreMap, predicted: np.ndarray, active: np.ndarray, reach_px: float
) -> np.ndarray:
    """Common offset (unbinned px) of all beads at one tilt: the shift within `reach_px`
    that puts the most bead score under the predicted pattern (a correlation of the
    clipped score map with points at the predictions). It makes tracking immune to a tilt
    the coarse cross-correlation got wrong by more than the search window."""
    ny, nx = scores.score.shape
    index = np.round(scores.to_index(predicted[active])).astype(int)
    inside = (index[:, 0] >= 0) & (index[:, 0] < nx) & (index[:, 1] >= 0) & (index[:, 1] < ny)
    pattern = np.zeros((ny, nx))
    np.add.at(pattern, (index[inside, 1], index[inside, 0]), 1.0)
    clipped = np.clip(scores.score, 0.0, None)
    product = scipy.fft.rfft2(clipped) * np.conj(scipy.fft.rfft2(pattern))
    correlation = scipy.fft.fftshift(scipy.fft.irfft2(product, s=(ny, nx)))
    reach = reach_px / scores.binning
    yy, xx = np.ogrid[:ny, :nx]
    allowed = (yy - ny // 2) ** 2 + (xx - nx // 2) ** 2 <= reach**2
    iy, ix = np.unravel_index(int(np.argmax(np.where(allowed, correlation, -np.inf))), (ny, nx))
    return np.array([ix - nx // 2, iy - ny // 2], dtype=float) * scores.binning


def track_beads(
    images: np.ndarray,
    angles_deg: np.ndarray,
    axis_deg: float,
    coarse_shifts_px: np.ndarray,
    pixel_size_angstrom: float,
    params: FiducialParams,
) -> tuple[np.ndarray, np.ndarray, list[BeadScoreMap], int]:
    """Seed beads on the zero tilt and follow them outwards. Returns observations
    [bead, tilt, 2], seed scores, the score maps and the localisation binning."""
    diameter_px = params.bead_diameter_nm * 10.0 / pixel_size_angstrom
    binning = bead_binning(diameter_px)
    maps = [score_map(image, diameter_px, binning) for image in images]
    start = int(np.argmin(np.abs(angles_deg)))
    seeds, seed_scores = find_seeds(
        maps[start],
        diameter_px,
        min_score_sigma=params.min_score_sigma,
        relative_score=params.relative_score,
        max_beads=params.max_beads,
    )
    if len(seeds) < params.min_beads:
        raise FiducialAlignmentError(
            f"{len(seeds)} gold beads of {params.bead_diameter_nm:g} nm found on the zero tilt"
            f" (need {params.min_beads})"
        )
    count = len(angles_deg)
    observed = np.full((len(seeds), count, 2), np.nan)
    observed[:, start] = seeds
    shifts = np.array(coarse_shifts_px, dtype=float)
    shifts = shifts - shifts[start]
    half = 0.5 * np.array(images.shape[:0:-1], dtype=float) - 0.6 * diameter_px
    # wide first search (coarse shifts can be a few px off), then tight after the common
    # offset of all beads is removed
    wide, tight = max(0.6 * diameter_px, 6.0), max(0.25 * diameter_px, 2.0)
    search_px = 0.15 * min(images.shape[1:])  # pattern search: a coarse error up to this
    for direction in (1, -1):
        index = start + direction
        while 0 <= index < count:
            seen = slice(min(start, index - direction), max(start, index - direction) + 1)
            xyz = _bead_heights(observed[:, seen], angles_deg[seen], axis_deg, shifts[seen])
            predicted = _predict(xyz, angles_deg[index], axis_deg, shifts[index])
            active = np.all(np.abs(predicted) < half, axis=1)
            shifts[index] += _pattern_offset(maps[index], predicted, active, search_px)
            predicted = _predict(xyz, angles_deg[index], axis_deg, shifts[index])
            found = _find_at_tilt(
                maps[index], predicted, active, seed_scores, diameter_px, wide, params
            )
            offsets = found - predicted
            if np.isfinite(offsets[:, 0]).sum() >= 3:
                shifts[index] += np.nanmedian(offsets, axis=0)
                predicted = _predict(xyz, angles_deg[index], axis_deg, shifts[index])
                # a bead seen on fewer than 3 tilts has an unknown height: its parallax at
                # the next tilt (z x the step in sin(tilt)) needs the wide window
                known = np.isfinite(observed[:, seen, 0]).sum(axis=1) >= 3
                radius = np.where(known, tight, wide)
                found = _find_at_tilt(
                    maps[index], predicted, active, seed_scores, diameter_px, radius, params
                )
                observed[:, index] = found
            index += direction
    return observed, seed_scores, maps, binning


def align_with_fiducials(
    images: np.ndarray,
    angles_deg: np.ndarray,
    axis_guess_deg: float,
    coarse_shifts_px: np.ndarray,
    pixel_size_angstrom: float,
    params: FiducialParams | None = None,
) -> FiducialResult:
    """Fiducial alignment of an unbinned contrast stack [tilt, y, x] sorted by angle, given
    an axis guess and coarse shifts (raw frame, unbinned px, a few px of error are fine)."""
    params = params or FiducialParams()
    angles = np.asarray(angles_deg, dtype=float)
    observed, seed_scores, maps, binning = track_beads(
        images, angles, axis_guess_deg, coarse_shifts_px, pixel_size_angstrom, params
    )
    diameter_px = params.bead_diameter_nm * 10.0 / pixel_size_angstrom
    min_seen = max(5, int(np.ceil(params.min_tracked_fraction * len(angles))))
    fit = _fit(observed, angles, axis_guess_deg, coarse_shifts_px, params, min_seen)
    # second pass: search every bead at the fitted model's prediction (fills gaps left by
    # the outward walk and replaces mis-tracked points), then refit
    half = 0.5 * np.array(images.shape[:0:-1], dtype=float) - 0.6 * diameter_px
    valid = ~fit.rejected_beads
    xyz = fit.beads_xyz_px
    retracked = np.full(observed.shape, np.nan)
    start = int(np.argmin(np.abs(angles)))
    retracked[:, start] = observed[:, start]
    for k, angle in enumerate(angles):
        predicted = np.full((len(observed), 2), np.nan)
        predicted[valid] = _model_positions(fit, xyz[valid], k, angle)
        active = valid & np.all(np.abs(np.nan_to_num(predicted, nan=1e9)) < half, axis=1)
        if active.any():  # recentre a tilt whose few first-pass beads put it off
            predicted[active] += _pattern_offset(
                maps[k], predicted[active], np.ones(int(active.sum()), bool), 0.5 * diameter_px
            )
        found = _find_at_tilt(
            maps[k],
            np.nan_to_num(predicted, nan=1e9),
            active,
            seed_scores,
            diameter_px,
            max(0.2 * diameter_px, 1.5),
            params,
        )
        retracked[:, k] = found
    fit = _fit(retracked, angles, fit.tilt_axis_angle_deg, fit.shifts_px, params, min_seen)
    beads_used = int((~fit.rejected_beads).sum())
    if beads_used < params.min_beads:
        raise FiducialAlignmentError(
            f"only {beads_used} beads tracked on >= {min_seen} tilts and kept by the fit"
            f" (need {params.min_beads})"
        )
    return FiducialResult(fit, retracked, len(seed_scores), beads_used, binning)


def _model_positions(fit: ProjectionFit, xyz: np.ndarray, k: int, angle_deg: float):
    beta = np.deg2rad(angle_deg)
    aligned = np.column_stack([xyz[:, 0] * np.cos(beta) + xyz[:, 2] * np.sin(beta), xyz[:, 1]])
    matrix = fit.magnifications[k] * rotation_matrix(fit.tilt_axis_angle_deg + fit.rotations_deg[k])
    return aligned @ matrix.T + fit.shifts_px[k]


def _fit(observed, angles, axis_deg, shifts, params: FiducialParams, min_seen: int):
    try:
        return fit_projection_model(
            observed,
            angles,
            axis_deg,
            initial_shifts_px=shifts,
            solve_magnification=params.solve_magnification,
            solve_rotation=params.solve_rotation,
            rejection_sigma=params.rejection_sigma,
            min_observations=min_seen,
        )
    except ProjectionFitError as error:
        raise FiducialAlignmentError(f"fiducial model fit failed: {error}") from error
