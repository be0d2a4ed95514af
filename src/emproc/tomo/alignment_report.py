"""Alignment quality for the tilt series' summary (`_tomo.json`) and ISPyB: residual
mean/SD, z shift, per-tilt shifts and residuals, per-bead residuals (keys in
docs/architecture.md)."""

from __future__ import annotations

import numpy as np

from emproc.tomo.align import AlignmentResult
from emproc.tomo.geometry import rotation_matrix


def z_shift_px(alignment: AlignmentResult) -> float:
    """Height (unbinned px) of the tomogram's z origin (mean bead / patch height) above the
    height the tilt series' shifts hold still: the sin(tilt) part of the shifts
    perpendicular to the axis, which a specimen at that height would show."""
    angles = np.deg2rad(alignment.tilt_angles_deg)
    across = (alignment.shifts_px @ rotation_matrix(-alignment.tilt_axis_angle_deg).T)[:, 0]
    basis = np.column_stack([np.cos(angles), np.sin(angles)])
    coefficients, *_ = np.linalg.lstsq(basis, across, rcond=None)
    return float(coefficients[1])


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def alignment_summary(alignment: AlignmentResult, pixel_size_angstrom: float) -> dict:
    """JSON-ready alignment quality; lengths in unbinned px and nm."""
    nm_per_px = pixel_size_angstrom / 10.0
    residuals = alignment.residuals_px
    if residuals is None:
        distances = np.full((0, len(alignment.tilt_angles_deg)), np.nan)
    else:
        distances = np.linalg.norm(residuals, axis=-1) * alignment.binning
    values = distances[np.isfinite(distances)]
    mean = float(values.mean()) if values.size else float("nan")
    spread = float(values.std()) if values.size else float("nan")
    z_shift = z_shift_px(alignment)
    count = len(alignment.tilt_angles_deg)
    rotations = np.zeros(count) if alignment.rotations_deg is None else alignment.rotations_deg
    mags = np.ones(count) if alignment.magnifications is None else alignment.magnifications
    per_tilt = []
    for k, angle in enumerate(alignment.tilt_angles_deg):
        column = distances[:, k]
        seen = column[np.isfinite(column)]
        per_tilt.append(
            {
                "tilt_angle_deg": float(angle),
                "shift_x_px": float(alignment.shifts_px[k, 0]),
                "shift_y_px": float(alignment.shifts_px[k, 1]),
                "tilt_axis_angle_deg": float(alignment.tilt_axis_angle_deg + rotations[k]),
                "magnification": float(mags[k]),
                "residual_mean_px": _finite(seen.mean()) if seen.size else None,
                "residual_sd_px": _finite(seen.std()) if seen.size else None,
                "observations": int(seen.size),
            }
        )
    summary = {
        "alignment_method": alignment.method,
        "alignment_fallback_reason": alignment.fallback_reason,
        "alignment_residual_mean_px": _finite(mean),
        "alignment_residual_sd_px": _finite(spread),
        "alignment_residual_mean_nm": _finite(mean * nm_per_px),
        "alignment_residual_sd_nm": _finite(spread * nm_per_px),
        "z_shift_px": z_shift,
        "z_shift_nm": z_shift * nm_per_px,
        "tilt_alignment": per_tilt,
        "fiducial_beads_found": 0,
        "fiducial_beads_used": 0,
        "fiducial_beads": [],
    }
    fiducial = alignment.fiducial
    if fiducial is not None:
        fit = fiducial.fit
        beads = []
        for index, row in enumerate(distances):
            seen = row[np.isfinite(row)]
            if fit.rejected_beads[index] or not seen.size:
                continue
            x, y, z = (float(v) for v in fit.beads_xyz_px[index])
            beads.append(
                {
                    "bead": index,
                    "x_px": x,
                    "y_px": y,
                    "z_px": z,
                    "residual_mean_px": float(seen.mean()),
                    "residual_sd_px": float(seen.std()),
                    "observations": int(seen.size),
                }
            )
        summary.update(
            fiducial_beads_found=fiducial.seeds_found,
            fiducial_beads_used=fiducial.beads_used,
            fiducial_beads=beads,
        )
    return summary
