"""Averaged power spectrum and background subtraction (emproc.ctf.spectrum)."""

import numpy as np
import pytest

from emproc.ctf.model import ctf_2d
from emproc.ctf.spectrum import (
    SpectrumInputError,
    average_power_spectrum,
    background_box_size_px,
    fitting_tile_size_px,
    radial_index,
    subtract_background,
    tile_origins,
)


def test_tiles_overlap_by_half_and_cover_the_edges():
    origins = tile_origins(1000, 256)
    assert origins[0] == 0 and origins[-1] == 1000 - 256
    assert np.all(np.diff(origins) <= 128)
    assert list(tile_origins(512, 256)) == [0, 128, 256]


def test_single_tile_matches_numpy_power_spectrum():
    rng = np.random.default_rng(0)
    image = rng.standard_normal((64, 64))
    expected = np.abs(np.fft.fftshift(np.fft.fft2(image - image.mean()))) ** 2 / 64**2
    np.testing.assert_allclose(average_power_spectrum(image, 64), expected, rtol=1e-4, atol=1e-6)


def test_white_noise_spectrum_is_flat_at_the_variance():
    # Parseval with our normalisation: the mean power of white noise equals its variance
    rng = np.random.default_rng(1)
    image = rng.normal(10.0, 3.0, (1024, 1024))
    power = average_power_spectrum(image, 128)
    centre = 64
    off_dc = np.delete(power.ravel(), centre * 128 + centre)
    assert off_dc.mean() == pytest.approx(9.0, rel=0.02)
    # 49 tiles averaged: relative scatter about 1/sqrt(49 * overlap gain)
    assert off_dc.std() / off_dc.mean() < 0.2


def test_spectrum_is_centro_symmetric():
    rng = np.random.default_rng(2)
    power = average_power_spectrum(rng.standard_normal((300, 300)), 128)
    flipped = np.roll(power[::-1, ::-1], 1, axis=(0, 1))  # k -> -k about the centre pixel
    np.testing.assert_allclose(power, flipped, rtol=1e-5)


def test_background_box_follows_ctffind_rule():
    assert background_box_size_px(512, 1.0, 30.0) == 25  # int(512/30*sqrt 2) = 24 -> odd
    assert background_box_size_px(512, 1.0, 30.0) % 2 == 1
    assert background_box_size_px(64, 1.0, 1000.0) == 3


def test_background_subtraction_keeps_rings_and_drops_a_smooth_background():
    n, pixel = 256, 1.5
    rings = np.fft.fftshift(ctf_2d((n, n), pixel, 20000.0, 20000.0, 0.0)) ** 2
    radius = radial_index(n).astype(float)
    smooth = 50.0 / (1.0 + radius / 5.0)  # a strong falling background, like ice + inelastic
    signal = subtract_background(smooth + rings, background_box_size_px(n, pixel, 30.0))
    annulus = (radius > 20) & (radius < 100)
    ring_correlation = np.corrcoef(signal[annulus], rings[annulus])[0, 1]
    background_correlation = np.corrcoef(signal[annulus], smooth[annulus])[0, 1]
    assert ring_correlation > 0.9
    assert abs(background_correlation) < 0.1


@pytest.mark.parametrize(
    ("image", "box", "message"),
    [
        (np.zeros((100, 100)), 128, "smaller than the box"),
        (np.zeros((2, 64, 64)), 32, "2D"),
        (np.full((64, 64), np.nan), 32, "NaN"),
        (np.zeros((64, 64)), 31, "even"),
    ],
)
def test_bad_input_is_named(image, box, message):
    with pytest.raises(SpectrumInputError, match=message):
        average_power_spectrum(image, box)


def test_larger_tiles_bin_the_spectrum():
    # a cosine of period 8 px: with 1024-px tiles cropped to 512 the spectrum pixel is two
    # micrograph pixels, so its peak sits 512 * 2 / 8 = 128 bins from the centre
    x = np.arange(2048)
    image = np.cos(2 * np.pi * x / 8.0)[None, :] * np.ones((2048, 1))
    power = average_power_spectrum(image, 512, tile_size_px=1024)
    assert power.shape == (512, 512)
    peak = np.unravel_index(np.argmax(power), power.shape)
    assert peak in {(256, 256 + 128), (256, 256 - 128)}


def test_fitting_tile_size_resamples_only_small_pixels():
    assert fitting_tile_size_px(512, 1.5, 5.0, (4096, 4096)) == (512, 1.5)
    tile, pixel = fitting_tile_size_px(512, 0.5, 5.0, (8192, 8192))
    assert tile % 2 == 0 and pixel == pytest.approx(1.4, rel=0.01)
    # never fewer than 3 x 3 tiles, never smaller than the box
    assert fitting_tile_size_px(512, 0.5, 5.0, (1500, 1500))[0] == 750
    assert fitting_tile_size_px(512, 0.5, 5.0, (1024, 1024)) == (512, 0.5)
