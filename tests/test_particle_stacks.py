"""The independent particle-stack generator (emproc.simulate.particle_stacks) and purity."""

from __future__ import annotations

import numpy as np
import pytest

from emproc.classify.evaluation import class_purity, shape_agreement
from emproc.simulate.particle_stacks import (
    SHAPE_NAMES,
    ParticleStackConditions,
    random_rotations,
    shape_points,
    simulate_particle_stack,
)


@pytest.mark.parametrize("name", SHAPE_NAMES)
def test_shapes_have_the_stated_extent_and_centre(name):
    points = shape_points(name, 70.0)
    assert np.abs(points.mean(axis=0)).max() < 1e-9
    assert np.linalg.norm(points, axis=1).max() == pytest.approx(70.0)
    # solid bodies: most points well inside, not a shell at the extent
    assert np.median(np.linalg.norm(points, axis=1)) < 0.8 * 70.0


def test_rotations_are_proper_and_preferred_views_cluster():
    rng = np.random.default_rng(1)
    for spread in (None, 10.0):
        rotations = random_rotations(rng, 500, spread)
        identity = np.einsum("nij,nkj->nik", rotations, rotations)
        assert np.allclose(identity, np.eye(3), atol=1e-9)
        assert np.allclose(np.linalg.det(rotations), 1.0)
    uniform_z = random_rotations(rng, 4000, None)[:, 2, 2]
    assert abs(np.mean(uniform_z)) < 0.05 and np.mean(np.abs(uniform_z)) == pytest.approx(
        0.5, abs=0.03
    )
    assert np.mean(random_rotations(rng, 500, 10.0)[:, 2, 2] > np.cos(np.deg2rad(30))) > 0.95


def correlation_in_disc(first: np.ndarray, second: np.ndarray, radius_px: float) -> np.ndarray:
    size = first.shape[-1]
    coordinates = np.arange(size) - size // 2
    disc = np.hypot(coordinates[None, :], coordinates[:, None]) <= radius_px
    a = first[:, disc] - first[:, disc].mean(axis=1, keepdims=True)
    b = second[:, disc] - second[:, disc].mean(axis=1, keepdims=True)
    return (a * b).sum(axis=1) / np.sqrt((a**2).sum(axis=1) * (b**2).sum(axis=1))


@pytest.mark.parametrize("snr", [0.05, 0.3])
def test_noise_follows_the_stated_snr(snr):
    conditions = ParticleStackConditions(number_of_particles=300, snr=snr, neighbour_fraction=0.0)
    noisy, truth = simulate_particle_stack(conditions, seed=3)
    clean, clean_truth = simulate_particle_stack(
        ParticleStackConditions(number_of_particles=300, snr=1e9, neighbour_fraction=0.0), seed=3
    )
    assert truth.equals(clean_truth)  # the seed fixes everything but the noise level
    radius = 0.5 * conditions.particle_diameter_angstrom / conditions.pixel_size_angstrom
    # for signal + independent noise, E[corr^2] ~ SNR / (1 + SNR) (per-particle SNR varies)
    r2 = np.mean(correlation_in_disc(noisy, clean, radius) ** 2)
    assert r2 == pytest.approx(snr / (1 + snr), rel=0.35)


def test_stack_is_normalised_and_truth_complete():
    conditions = ParticleStackConditions(
        number_of_particles=200, box_size_px=48, pixel_size_angstrom=4.2, max_shift_px=2.0
    )
    stack, truth = simulate_particle_stack(conditions, seed=0)
    assert stack.shape == (200, 48, 48) and stack.dtype == np.float32
    coordinates = np.arange(48) - 24
    background = np.hypot(coordinates[None, :], coordinates[:, None]) > 70.0 / 4.2
    assert np.allclose(stack[:, background].std(axis=1), 1.0, atol=1e-3)
    assert set(truth["shape"]) == set(SHAPE_NAMES)
    assert truth[["shift_x_px", "shift_y_px"]].abs().to_numpy().max() <= 2.0
    assert (truth["defocus_u_angstrom"] >= truth["defocus_v_angstrom"]).all()
    assert truth["has_neighbour"].mean() == pytest.approx(0.15, abs=0.07)


def test_particle_centre_is_the_stated_shift():
    # noise-free, no CTF blur beyond the envelope: the projected centroid sits at the shift
    conditions = ParticleStackConditions(
        number_of_particles=40, snr=1e9, neighbour_fraction=0.0, max_shift_px=3.0,
        defocus_range_angstrom=(0.0, 0.0), astigmatism_max_angstrom=0.0, amplitude_contrast=1.0,
        bfactor_angstrom2=0.0,
    )  # fmt: skip
    stack, truth = simulate_particle_stack(conditions, seed=2)
    weights = stack - np.median(stack, axis=(1, 2), keepdims=True)
    coordinates = np.arange(64) - 32
    x = (weights * coordinates[None, None, :]).sum(axis=(1, 2)) / weights.sum(axis=(1, 2))
    y = (weights * coordinates[None, :, None]).sum(axis=(1, 2)) / weights.sum(axis=(1, 2))
    assert np.abs(x - truth["shift_x_px"]).max() < 0.3
    assert np.abs(y - truth["shift_y_px"]).max() < 0.3


def test_bad_conditions_are_refused():
    with pytest.raises(ValueError, match="shapes"):
        ParticleStackConditions(shapes=("dumbbell", "cube"))
    with pytest.raises(ValueError, match="fit"):
        ParticleStackConditions(box_size_px=32, pixel_size_angstrom=3.0)


def test_purity_charges_mixing_not_splitting():
    shapes = np.array(["a"] * 6 + ["b"] * 4)
    # shape a split over classes 1 and 2 (free); class 3 mixes two b with one a (costs 1)
    classes = np.array([1, 1, 1, 2, 2, 3, 3, 3, 4, 4])
    score = class_purity(classes, shapes)
    assert score.purity == pytest.approx(0.9)
    assert score.shape_purity == {"a": pytest.approx(5 / 6), "b": 1.0}
    assert score.class_shape == {1: "a", 2: "a", 3: "b", 4: "b"}
    assert score.worst_shape_purity == pytest.approx(5 / 6)
    # one class per particle would be "pure": small classes count, a singleton costs nothing,
    # but one class holding everything costs every minority particle
    assert class_purity(np.zeros(10), shapes).purity == pytest.approx(0.6)
    assert class_purity(np.zeros(10), shapes).shape_purity["b"] == 0.0
    with pytest.raises(ValueError):
        class_purity(np.zeros(3), shapes)


def test_shape_agreement_compares_class_labels_not_numbers():
    shapes = np.array(["a", "a", "b", "b", "c", "c"])
    first = np.array([1, 1, 2, 2, 3, 3])
    second = np.array([7, 8, 9, 9, 5, 5])  # other numbers, same shapes
    assert shape_agreement(first, second, shapes) == 1.0
    merged = np.array([1, 1, 1, 1, 3, 3])  # b lost into a's class
    assert shape_agreement(first, merged, shapes) == pytest.approx(4 / 6)
