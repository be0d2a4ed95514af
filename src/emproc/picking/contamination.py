"""Contamination and carbon rejection by what differs physically from a particle: absorption.

A protein particle changes the transmitted intensity by a few per cent at most, and only
over its own area; averaged over a region wider than the largest particle its darkening is
diluted further. Ethane and ice crystals (hundreds to thousands of Angstrom of extra ice),
carbon support (~100-200 A of carbon, inelastic mean free path ~1700 A) and a thickening
meniscus absorb much more, over areas far beyond a particle, and their edges are sharp.

So the micrograph is low-passed at half the largest particle diameter, its logarithm (the
relative transmission) is compared with a plane through its majority level (a gentle
ice-thickness gradient is a plane and is left alone), and wherever the transmission departs
from that plane by more than `intensity_change` (default 5 %: ~180 A of extra ice or ~90 A of
carbon) the area is rejected, together with a margin of the particle radius plus the smoothing
width (so picks on the sharp edge and its Fresnel fringe go too). Bright departures (a hole in
the ice, vacuum at a broken edge) are rejected the same way.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# the trend is fitted on a coarse grid: a plane needs no more than this many points a side
_TREND_GRID = 48


def _majority_plane(values: np.ndarray, band: float, iterations: int = 10) -> np.ndarray:
    """Plane a + b x + c y through the majority level of a 2D grid.

    Starts flat at the mode of the values (the clean ice, which covers most of a usable
    micrograph) and refits to the points within `band` of the current plane, so a step
    (carbon edge) or a blob (crystal) never tilts it, while a gentle gradient is followed.
    """
    ny, nx = values.shape
    yy, xx = np.mgrid[:ny, :nx]
    design = np.column_stack([np.ones(values.size), xx.ravel() / nx, yy.ravel() / ny])
    target = values.ravel()
    counts, edges = np.histogram(target, bins=max(int(np.ptp(target) / (0.2 * band)), 1))
    mode = 0.5 * (edges[np.argmax(counts)] + edges[np.argmax(counts) + 1])
    model = np.full(target.shape, mode)
    for _ in range(iterations):
        inliers = np.abs(target - model) < band
        if inliers.sum() < 3:
            break
        coefficients, *_ = np.linalg.lstsq(design[inliers], target[inliers], rcond=None)
        updated = design @ coefficients
        if np.allclose(updated, model, atol=1e-4 * band):
            model = updated
            break
        model = updated
    return model.reshape(ny, nx)


def transmission_change(
    image: np.ndarray, max_diameter_px: float, band: float = 0.05
) -> np.ndarray | None:
    """log(local mean / majority plane) of a micrograph in counts (not inverted), per pixel;
    `band` is the log-intensity band taken as clean ice when fitting the plane.

    None when the image is not a positive intensity (mean-subtracted or normalised data):
    absorption cannot be measured then.
    """
    sigma = max(0.5 * max_diameter_px, 1.0)
    local = ndimage.gaussian_filter(image.astype(np.float64), sigma, mode="reflect")
    floor = np.percentile(local, 1.0)
    if not floor > 0:
        return None
    log_local = np.log(np.maximum(local, 0.05 * floor))
    step = max(int(np.ceil(max(image.shape) / _TREND_GRID)), 1)
    coarse = log_local[step // 2 :: step, step // 2 :: step]
    plane = _majority_plane(coarse, band)
    # evaluate the plane at full resolution from its corner values (it is linear)
    ny, nx = image.shape
    cy, cx = coarse.shape
    a = plane[0, 0]
    bx = (plane[0, -1] - a) / max(cx - 1, 1) / step
    by = (plane[-1, 0] - a) / max(cy - 1, 1) / step
    y = np.arange(ny)[:, None] - step // 2
    x = np.arange(nx)[None, :] - step // 2
    return log_local - (a + bx * x + by * y)


def contamination_mask(
    image: np.ndarray,
    max_diameter_px: float,
    intensity_change: float = 0.05,
    margin_px: float = 0.0,
) -> np.ndarray:
    """Boolean mask (True = reject) of areas absorbing unlike ice with particles in it.

    `image` is the binned micrograph in counts (particles dark); `max_diameter_px` the
    largest particle diameter in its pixels; `intensity_change` the fractional departure of
    the local transmission from the micrograph's plane that is rejected (<= 0 disables);
    the mask grows by `margin_px` plus the smoothing width.
    """
    mask = np.zeros(image.shape, dtype=bool)
    if intensity_change <= 0:
        return mask
    # absorption is a large-scale property: judge it on block means of ~1/6 particle
    block = max(int(max_diameter_px // 6), 1)
    ny, nx = image.shape
    cy, cx = -(-ny // block), -(-nx // block)
    padded = np.pad(image, ((0, cy * block - ny), (0, cx * block - nx)), mode="edge")
    coarse = padded.reshape(cy, block, cx, block).mean(axis=(1, 3))
    change = transmission_change(coarse, max_diameter_px / block, np.log1p(intensity_change))
    if change is None:
        return mask
    coarse_mask = np.abs(change) > np.log1p(intensity_change)
    radius = (margin_px + 0.5 * max_diameter_px) / block
    if radius > 0 and coarse_mask.any():
        # distance transform: a disc of any radius at the cost of one pass
        coarse_mask = ndimage.distance_transform_edt(~coarse_mask) <= radius
    return np.repeat(np.repeat(coarse_mask, block, axis=0), block, axis=1)[:ny, :nx]
