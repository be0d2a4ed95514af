"""Equiphase averaging and the fit resolution (emproc.ctf.resolution)."""

import numpy as np
import pytest

from emproc.ctf import estimate_ctf
from emproc.ctf.model import ctf_2d, frequency_grid
from emproc.ctf.resolution import equiphase_average, ring_fit
from emproc.ctf.synthetic import synthetic_ctf_micrograph

N, PIXEL = 512, 1.0


def rings_to(cutoff_angstrom, u, v, angle, noise, seed=0):
    """Centred spectrum: CTF^2 rings out to `cutoff_angstrom`, Gaussian noise everywhere."""
    rings = np.fft.fftshift(ctf_2d((N, N), PIXEL, u, v, angle)) ** 2 - 0.5
    frequency = np.fft.fftshift(frequency_grid((N, N), PIXEL)[0])
    rings[frequency > 1.0 / cutoff_angstrom] = 0.0
    return rings + noise * np.random.default_rng(seed).standard_normal((N, N))


def test_equiphase_average_undoes_astigmatism():
    u, v, angle = 16000.0, 14800.0, 35.0
    spectrum = np.fft.fftshift(ctf_2d((N, N), PIXEL, u, v, angle)) ** 2
    frequency, average = equiphase_average(spectrum, PIXEL, u, v, angle, 300.0, 2.7)
    stigmatic = np.fft.fftshift(ctf_2d((N, N), PIXEL, 15400, 15400, 0.0)) ** 2
    _, plain_average = equiphase_average(stigmatic, PIXEL, 15400, 15400, 0.0, 300.0, 2.7)
    band = (frequency > 1 / 30) & (frequency < 1 / 4)
    assert np.corrcoef(average[band], plain_average[band])[0, 1] > 0.97
    # a plain rotational average of the astigmatic spectrum smears the rings out
    radius = np.rint(np.fft.fftshift(frequency_grid((N, N), PIXEL)[0]) * N * PIXEL).astype(int)
    rotational = np.bincount(radius.ravel(), spectrum.ravel()) / np.bincount(radius.ravel())
    outer = (frequency > 1 / 8) & (frequency < 1 / 4)
    smeared = np.corrcoef(rotational[: N // 2 + 1][outer], plain_average[outer])[0, 1]
    assert smeared < 0.3


@pytest.mark.parametrize(("cutoff", "astigmatism"), [(4.0, 0.0), (6.0, 800.0), (3.0, 400.0)])
def test_fit_resolution_finds_where_the_rings_stop(cutoff, astigmatism):
    u, v, angle = 12000.0 + astigmatism / 2, 12000.0 - astigmatism / 2, -50.0
    spectrum = rings_to(cutoff, u, v, angle, noise=1.0)
    fitted = ring_fit(spectrum, PIXEL, u, v, angle, 300.0, 2.7, 0.1, 0.0, 30.0)
    # the local correlation window is one ring wide: allow about one ring of slack
    assert fitted.fit_resolution_angstrom == pytest.approx(cutoff, rel=0.1)


def test_no_rings_gives_a_poor_fit_resolution():
    spectrum = rings_to(1000.0, 12000, 12000, 0, noise=1.0)
    fitted = ring_fit(spectrum, PIXEL, 12000, 12000, 0.0, 300.0, 2.7, 0.1, 0.0, 30.0)
    assert fitted.fit_resolution_angstrom > 10.0


def test_fit_resolution_degrades_with_lower_dose():
    resolutions = []
    for dose in (40.0, 2.0, 0.4):
        image = synthetic_ctf_micrograph(
            (1024, 1024), 1.0, 15000, 14600, 20, dose_e_per_angstrom2=dose, seed=4
        )
        resolutions.append(estimate_ctf(image, pixel_size_angstrom=1.0).fit_resolution_angstrom)
    assert resolutions[0] < resolutions[1] < resolutions[2], resolutions
    assert resolutions[2] - resolutions[0] > 0.5
