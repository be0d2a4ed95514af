"""Relative ice thickness of a micrograph from its transmitted intensity (log-ratio method).

Electrons scattered by the ice outside the objective aperture (or, with an energy filter,
inelastically) do not reach the detector, so the mean counts under ice of thickness t fall
as I = I0 * exp(-t / lambda) (Beer-Lambert), with I0 the counts over vacuum. Hence
t / lambda = ln(I0 / I): a thickness in units of the (aperture- or inelastic-) mean free
path lambda, about 300-400 nm at 300 kV. That is the quantity computed here, per patch.

I0 is the electron count a pixel would receive over vacuum: the movie's dose (e-/A^2, the
facility calibrates it over an empty hole) times the pixel area. Detector efficiency and
coincidence losses make I/I0 slightly below 1 over vacuum too, a constant offset for a
session: values are *relative*, comparable between micrographs of one session, as
IceBreaker's are (cryoemservices runs IceBreaker, which summarises the low-passed
intensity of a micrograph; this module summarises its logarithm against the vacuum dose,
so larger means thicker and the unit is lambda).

The micrograph is divided into `patches` x `patches` tiles; each tile's mean counts is a
heavy low-pass (particles and noise average out), and the five-figure summary (minimum,
quartiles, median, maximum) over the tiles describes the ice across the hole, the figures
ISPyB's RelativeIceThickness holds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

DEFAULT_PATCHES = 8
# a tile whose mean is below this fraction of the vacuum counts is taken as opaque (carbon,
# grid bar, detector edge): ln(I0/I) would be huge and says nothing about the ice
OPAQUE_FRACTION = 0.02


class IceThicknessError(ValueError):
    """The micrograph or dose cannot give an ice thickness (empty, non-finite, no dose)."""


@dataclass(frozen=True)
class IceThickness:
    """Five-figure summary of per-tile t/lambda (unitless), and the tiles used."""

    minimum: float
    q1: float
    median: float
    q3: float
    maximum: float
    tiles_used: int
    tiles_opaque: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def tile_means(image: np.ndarray, patches: int) -> np.ndarray:
    """Mean of each of `patches` x `patches` near-equal tiles of `image` (flattened)."""
    ny, nx = image.shape
    if ny < patches or nx < patches:
        raise IceThicknessError(f"micrograph {nx}x{ny} px is smaller than {patches} tiles")
    y_edges = np.linspace(0, ny, patches + 1).astype(int)
    x_edges = np.linspace(0, nx, patches + 1).astype(int)
    rows = np.add.reduceat(np.asarray(image, dtype=np.float64), y_edges[:-1], axis=0)
    sums = np.add.reduceat(rows, x_edges[:-1], axis=1)
    areas = np.outer(np.diff(y_edges), np.diff(x_edges))
    return (sums / areas).ravel()


def relative_ice_thickness(
    micrograph_counts: np.ndarray,
    vacuum_counts_per_pixel: float,
    patches: int = DEFAULT_PATCHES,
) -> IceThickness:
    """Per-tile t/lambda = ln(I0 / mean counts) of an aligned, not dose-weighted frame sum.

    `micrograph_counts` must be in electron counts per pixel (gain-corrected sum of the
    frames); `vacuum_counts_per_pixel` = total dose of those frames (e-/A^2) x pixel area
    (A^2). Opaque tiles (mean below OPAQUE_FRACTION of I0) are left out.
    """
    if not vacuum_counts_per_pixel > 0:
        raise IceThicknessError(
            f"vacuum counts per pixel must be > 0, not {vacuum_counts_per_pixel}"
        )
    image = np.asarray(micrograph_counts)
    if image.ndim != 2 or not np.all(np.isfinite(image)):
        raise IceThicknessError("micrograph must be a finite 2-D image")
    means = tile_means(image, patches)
    transparent = means > OPAQUE_FRACTION * vacuum_counts_per_pixel
    if not transparent.any():
        raise IceThicknessError(
            f"every tile is opaque (mean counts below {OPAQUE_FRACTION:.0%} of the vacuum "
            f"{vacuum_counts_per_pixel:.3g}): is the micrograph in counts and the dose right?"
        )
    thickness = np.log(vacuum_counts_per_pixel / means[transparent])
    q1, median, q3 = np.quantile(thickness, [0.25, 0.5, 0.75])
    return IceThickness(
        minimum=float(thickness.min()),
        q1=float(q1),
        median=float(median),
        q3=float(q3),
        maximum=float(thickness.max()),
        tiles_used=int(transparent.sum()),
        tiles_opaque=int((~transparent).sum()),
    )
