"""The picking test-micrograph generator: its physics and its scoring, checked on their own."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from emproc.micrograph_matrix import (
    FACTORS,
    ICE_INELASTIC_MFP_ANGSTROM,
    Cell,
    ctf_2d,
    ideal_detection_snr,
    match_picks,
    pairwise_cells,
    particle_balls,
    render_cell_micrograph,
)


def test_cells_refuse_unknown_conditions():
    with pytest.raises(ValueError, match="shape"):
        Cell(shape="cube")
    with pytest.raises(ValueError, match="crowding"):
        Cell(crowding="packed")
    with pytest.raises(ValueError, match="contamination"):
        Cell(contamination="dust")


def test_pairwise_design_covers_every_pair_of_levels():
    cells = pairwise_cells()
    rows = [{name: getattr(cell, name) for name in FACTORS} for cell in cells]
    for a, b in itertools.combinations(FACTORS, 2):
        seen = {(row[a], row[b]) for row in rows}
        assert seen == set(itertools.product(FACTORS[a], FACTORS[b])), (a, b)
    # fields hold several particles: at least 4 diameters across, 1k-4k pixels
    for cell in cells:
        assert 1024 <= cell.size_px <= 4096
        assert cell.size_px * cell.pixel_size_angstrom >= 4 * cell.diameter_angstrom


def test_dose_and_ice_set_the_mean_counts():
    cell = Cell(crowding="sparse", dose_e_per_angstrom2=30.0, pixel_size_angstrom=1.2)
    image, _ = render_cell_micrograph(cell, 0)
    expected = 30.0 * 1.2**2 * np.exp(-cell.ice_thickness_angstrom / ICE_INELASTIC_MFP_ANGSTROM)
    # particles take a few per cent at most; shot noise is Poisson
    assert image.mean() == pytest.approx(expected, rel=0.03)
    assert image.var() == pytest.approx(image.mean(), rel=0.25)


def test_ctf_is_negative_at_low_frequency_and_has_its_first_zero_where_expected():
    pixel, defocus = 1.0, 20000.0
    ctf = ctf_2d((512, 512), pixel, defocus, defocus, 0.0, 0.0)
    frequency = np.fft.rfftfreq(512, pixel)
    profile = ctf[0]
    assert profile[1] < 0  # particles (positive phase) come out dark
    first_zero = frequency[np.nonzero(np.diff(np.sign(profile)))[0][0]]
    # sin(pi lambda dz k^2 + arcsin(0.07)) = 0 -> k ~ sqrt((1 - 0.022) / (lambda dz))
    assert first_zero == pytest.approx(np.sqrt(0.978 / (0.019687 * defocus)), rel=0.03)


def test_particles_are_dark_blobs_where_the_truth_says():
    cell = Cell(shape="compact", diameter_angstrom=150.0, crowding="sparse", defocus_um=2.5)
    image, truth = render_cell_micrograph(cell, 1)
    smooth = ndimage.gaussian_filter(image, 20.0)
    at_particles = smooth[truth.particles.y_px.astype(int), truth.particles.x_px.astype(int)]
    assert np.median(at_particles) < np.median(smooth) - 0.5 * smooth.std()


@pytest.mark.parametrize("shape", ["compact", "elongated", "ring", "mixed_size"])
def test_particle_extent_matches_the_diameter(shape):
    rng = np.random.default_rng(2)
    for _ in range(5):
        balls = particle_balls(shape, 200.0, rng)
        reach = np.hypot(balls[:, 0], balls[:, 1]) + balls[:, 3]
        assert 60.0 < reach.max() <= 105.0  # about half the diameter (a tilted ring a bit more)


def test_contamination_truth_marks_dense_areas():
    crystals, truth = render_cell_micrograph(Cell(contamination="crystals"), 3)
    assert 0.02 < truth.contamination_mask.mean() < 0.6
    assert (
        crystals[truth.contamination_mask].mean() < 0.8 * crystals[~truth.contamination_mask].mean()
    )
    carbon, truth = render_cell_micrograph(Cell(contamination="carbon"), 3)
    assert 0.2 < truth.contamination_mask.mean() < 0.5
    assert carbon[truth.contamination_mask].mean() < 0.97 * carbon[~truth.contamination_mask].mean()


def test_ideal_snr_grows_with_dose_and_particle_size():
    low = ideal_detection_snr(Cell(diameter_angstrom=80.0, dose_e_per_angstrom2=20.0), 4)
    high = ideal_detection_snr(Cell(diameter_angstrom=80.0, dose_e_per_angstrom2=60.0), 4)
    big = ideal_detection_snr(Cell(diameter_angstrom=200.0, dose_e_per_angstrom2=20.0), 4)
    # SNR of a matched filter scales with sqrt(dose)
    assert np.median(high) / np.median(low) == pytest.approx(np.sqrt(3.0), rel=0.15)
    assert np.median(big) > 2 * np.median(low)


def test_matching_is_one_to_one_and_respects_tolerance_and_margin():
    truth = pd.DataFrame(
        {"x_px": [100.0, 300.0, 500.0], "y_px": [100.0, 300.0, 5.0], "diameter_angstrom": 100.0}
    )
    picks = np.array([[102.0, 99.0], [104.0, 101.0], [340.0, 300.0], [600.0, 600.0]])
    result = match_picks(picks, truth, 1.0, (1000, 1000), margin_angstrom=20.0)
    # the duplicate at (104, 101) and the far pick are false; 40 px > 0.3 x 100 px misses;
    # the particle at y = 5 lies in the margin and is not scored
    assert result == {"precision": 0.25, "recall": 0.5, "picks": 4, "particles": 2}
