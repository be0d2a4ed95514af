"""The tomography simulator: scheme, determinism, files as SerialEM writes them."""

import json
from dataclasses import replace

import mrcfile
import numpy as np
import pytest
import tifffile

from emproc.simulate.phantom import PhantomParams
from emproc.simulate.tomo import (
    TiltSeriesParams,
    dose_symmetric_order,
    simulate_tilt_series,
    simulate_tomo_session,
)

SMALL = TiltSeriesParams(
    image_size_px=64,
    pixel_size_angstrom=8.0,
    min_tilt_deg=-9.0,
    max_tilt_deg=9.0,
    frames_per_tilt=2,
    phantom=PhantomParams(number_of_particles=5, number_of_vesicles=2, number_of_gold_beads=2),
)


def test_dose_symmetric_order_follows_hagen_scheme():
    order = dose_symmetric_order(np.arange(-9.0, 10.0, 3.0), group_size=2)
    assert order == [0.0, 3.0, -3.0, -6.0, 6.0, 9.0, -9.0]


def test_same_seed_same_series_and_different_seed_differs():
    first, truth, volume = simulate_tilt_series(SMALL, seed=4)
    second, _, _ = simulate_tilt_series(SMALL, seed=4)
    third, _, _ = simulate_tilt_series(SMALL, seed=5)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert not np.array_equal(first[0], third[0])
    assert truth.shifts_px[0] == (0.0, 0.0)
    assert volume.shape == (48, 64, 64)  # slab 384 A at 8 A/px


def test_counts_match_dose_and_blank_tilt_is_dark():
    movies, truth, _ = simulate_tilt_series(SMALL, seed=1, blank_tilts=(6.0,))
    expected = SMALL.dose_per_tilt_e_per_angstrom2 * SMALL.pixel_size_angstrom**2
    counts = movies[0].sum(axis=0).mean()
    assert counts == pytest.approx(expected, rel=0.05)
    blank = truth.tilt_angles_deg.index(6.0)
    assert truth.blank_tilts == [blank]
    assert movies[blank].sum(axis=0).mean() < 0.01 * expected


def test_session_writes_mdoc_movies_and_truth(tmp_path):
    truth_path = simulate_tomo_session(
        tmp_path, params=SMALL, seed=2, missing_tilts=(-6.0,), blank_tilts=(3.0,)
    )
    truth = json.loads(truth_path.read_text())["tilt_series"][0]
    mdoc = (tmp_path / "Position_1.mdoc").read_text()
    assert "[T =     Tilt axis angle = 85.0, binning = 1" in mdoc
    assert mdoc.count("[ZValue =") == 7
    assert "SubFramePath = X:\\Frames\\Position_1_004_-6.00.tif" in mdoc
    assert not (tmp_path / "Position_1_004_-6.00.tif").exists()  # the missing tilt
    frames = tifffile.imread(tmp_path / "Position_1_001_0.00.tif")
    assert frames.shape == (2, 64, 64) and frames.dtype == np.uint16
    assert truth["missing_tilts"] == [3] and truth["blank_tilts"] == [1]
    with mrcfile.open(truth["phantom_path"]) as mrc:
        assert mrc.data.shape == (48, 64, 64)
        assert float(mrc.voxel_size.x) == pytest.approx(8.0)


def test_mdoc_records_calibrated_axis_and_target_defocus_not_the_truth(tmp_path):
    from dataclasses import replace

    params = replace(SMALL, mdoc_tilt_axis_error_deg=3.0)
    truth_path = simulate_tomo_session(tmp_path, params=params, seed=2)
    truth = json.loads(truth_path.read_text())["tilt_series"][0]
    mdoc = (tmp_path / "Position_1.mdoc").read_text()
    assert "Tilt axis angle = 88.0" in mdoc and truth["tilt_axis_angle_deg"] == 85.0
    assert mdoc.count("Defocus = -3.0000") == 7  # the target; the truth spreads around it
    assert np.std(truth["defocus_angstrom"]) > 100.0


def test_gold_beads_sit_on_the_surfaces_and_are_dark_at_any_defocus():
    from emproc.simulate.phantom import make_phantom
    from emproc.simulate.tomo import render_tilt

    phantom = PhantomParams(
        number_of_particles=0, number_of_vesicles=0, number_of_membrane_sheets=0
    )
    beads = make_phantom(
        PhantomParams(**{**phantom.__dict__, "number_of_gold_beads": 4}),
        np.random.default_rng(0),
    )
    half_slab = phantom.slab_thickness_angstrom / 2
    heights = sorted(abs(b.centre_angstrom[2]) for b in beads)
    assert heights == pytest.approx([half_slab - phantom.gold_radius_angstrom] * 4)
    centred = [replace(beads[0], centre_angstrom=(0.0, 0.0, 0.0))]
    params = TiltSeriesParams(image_size_px=64, pixel_size_angstrom=8.0)
    for defocus in (10000.0, 40000.0):
        intensity = render_tilt(centred, params, 0.0, (0.0, 0.0), defocus, 0.0)
        middle = intensity.shape[0] // 2
        # ~50% transmission through the middle of a 10 nm bead (amplitude contrast)
        assert intensity[middle, middle] < 0.7 * np.median(intensity)
