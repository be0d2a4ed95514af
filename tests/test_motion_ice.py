"""Relative ice thickness (emproc.motion.ice) against micrographs of known thickness.

The generator here is independent of the estimator: a thickness field t/lambda (a tilted
plane plus a bump, i.e. a meniscus-shaped hole), electrons transmitted with probability
exp(-t/lambda) (Beer-Lambert), a weak specimen contrast, Poisson counts. The truth per tile is
ln(I0 / noise-free tile mean), the quantity the estimator promises; every condition is checked
and the worst error gates.
"""

from __future__ import annotations

import numpy as np
import pytest

from emproc.motion.ice import IceThicknessError, relative_ice_thickness, tile_means

CONDITIONS = [
    # (shape, vacuum counts per pixel, thickness at the centre, gradient across the image)
    ((512, 512), 10.0, 0.3, 0.4),  # 40 e/A^2 on 0.5 A pixels: few counts per pixel
    ((480, 640), 40.0, 0.8, 0.2),
    ((600, 400), 400.0, 1.5, 1.0),  # thick, strongly varying ice
    ((512, 512), 20.0, 0.05, 0.0),  # nearly vacuum, flat
]


def thickness_field(shape, centre, gradient, rng):
    """t/lambda: a tilted plane plus a Gaussian bump at a random place (always >= 0)."""
    ny, nx = shape
    y, x = np.mgrid[0:ny, 0:nx] / max(shape)
    cy, cx = rng.uniform(0.3, 0.7, 2)
    bump = 0.5 * centre * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 0.05)
    return np.clip(centre + gradient * (x - 0.5) + bump, 0.0, None)


def micrograph(shape, vacuum, thickness, rng):
    specimen = 1.0 + 0.05 * rng.standard_normal(shape)  # weak phase-contrast texture
    expected = vacuum * np.exp(-thickness) * specimen
    return rng.poisson(np.clip(expected, 0, None)).astype(np.float32), expected


def true_figures(expected, vacuum, patches=8):
    t = np.log(vacuum / tile_means(expected, patches))
    return np.array([t.min(), *np.quantile(t, [0.25, 0.5, 0.75]), t.max()])


def test_five_figures_match_the_known_thickness_in_every_condition():
    rng = np.random.default_rng(7)
    errors = []
    for shape, vacuum, centre, gradient in CONDITIONS:
        thickness = thickness_field(shape, centre, gradient, rng)
        image, expected = micrograph(shape, vacuum, thickness, rng)
        found = relative_ice_thickness(image, vacuum)
        got = np.array([found.minimum, found.q1, found.median, found.q3, found.maximum])
        errors.append(np.abs(got - true_figures(expected, vacuum)).max())
        assert found.tiles_used == 64 and found.tiles_opaque == 0
        # and the figures follow the field: the median is near the field's median
        assert abs(found.median - np.median(thickness)) < 0.1 + 0.2 * gradient
    # Poisson noise of a tile mean at 10 counts/px over ~4000 px: ~0.01 in t/lambda
    assert max(errors) < 0.03, errors


def test_opaque_tiles_are_left_out_and_bad_input_is_refused():
    rng = np.random.default_rng(1)
    image = rng.poisson(30.0 * np.exp(-0.5), (256, 256)).astype(np.float32)
    image[:, :32] = 0.0  # a grid bar over the first tile column (32 px of 256)
    found = relative_ice_thickness(image, 30.0)
    assert found.tiles_opaque == 8 and found.tiles_used == 56
    assert found.maximum == pytest.approx(0.5, abs=0.05)  # the bar does not count as ice
    with pytest.raises(IceThicknessError, match="every tile is opaque"):
        relative_ice_thickness(np.zeros((64, 64)), 30.0)
    with pytest.raises(IceThicknessError, match="vacuum counts"):
        relative_ice_thickness(image, 0.0)
    with pytest.raises(IceThicknessError, match="finite"):
        relative_ice_thickness(np.full((64, 64), np.nan), 30.0)
