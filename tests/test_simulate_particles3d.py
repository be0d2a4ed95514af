"""The 3D particle generator against first principles (no RELION): projection-slice
consistency of images and true map, the applied B-factor, class proportions, the CTF sign."""

from __future__ import annotations

import numpy as np
import pytest
import starfile

from emproc.simulate.particles3d import (
    Particles3DParams,
    make_atom_density,
    relion_ctf,
    render_volume,
    simulate_particles,
    write_particles,
)

BOX, PIXEL = 32, 4.0


@pytest.mark.parametrize("kind", ["ellipsoid", "tetramer", "dumbbell"])
def test_noise_free_image_is_the_projection_of_the_true_map(kind):
    # identity orientation, no shift, CTF = 1 (zero defocus and Cs, amplitude contrast 1):
    # the image must be the true map summed along z, pixel for pixel
    density = make_atom_density(kind, 0.6 * BOX * PIXEL, 200, seed=3)
    volume = render_volume(density, BOX, PIXEL, 200.0)
    params = Particles3DParams(
        box_px=BOX, pixel_size_angstrom=PIXEL, number_of_particles=1, bfactor_angstrom2=200.0,
        snr=1e9, defocus_range_angstrom=(0.0, 0.0), spherical_aberration_mm=0.0,
        amplitude_contrast=1.0, max_shift_angstrom=0.0,
    )  # fmt: skip
    truth = simulate_particles([density], params, rotations=np.eye(3)[None])
    # undo the generator's normalisation (noise std 1, zero background) before comparing
    image = truth.images[0] * truth.noise_sigma
    projection = volume.sum(axis=0)
    projection -= projection.mean()
    image -= image.mean()
    correlation = np.corrcoef(image.ravel(), projection.ravel())[0, 1]
    assert correlation > 0.999
    assert np.ptp(image) == pytest.approx(np.ptp(projection), rel=0.05)


def test_applied_bfactor_is_the_only_fall_off():
    # two noise-free images of the same view with B and B + 400: their power ratio at each
    # frequency is exp(-400 s^2 / 2) (amplitudes fall as exp(-B s^2 / 4))
    density = make_atom_density("ellipsoid", 0.6 * BOX * PIXEL, 300, seed=4)
    base = dict(
        box_px=BOX, pixel_size_angstrom=PIXEL, number_of_particles=1, snr=1e9,
        defocus_range_angstrom=(0.0, 0.0), spherical_aberration_mm=0.0,
        amplitude_contrast=1.0, max_shift_angstrom=0.0, seed=9,
    )  # fmt: skip
    sharp = simulate_particles([density], Particles3DParams(bfactor_angstrom2=50.0, **base))
    blurred = simulate_particles([density], Particles3DParams(bfactor_angstrom2=450.0, **base))
    f_sharp = np.fft.rfft2(sharp.images[0] * sharp.noise_sigma)
    f_blurred = np.fft.rfft2(blurred.images[0] * blurred.noise_sigma)
    squared = np.add.outer(np.fft.fftfreq(BOX, PIXEL) ** 2, np.fft.rfftfreq(BOX, PIXEL) ** 2)
    strong = np.abs(f_sharp) > 1e-3 * np.abs(f_sharp).max()
    strong[0, 0] = False  # the background subtraction changes the mean only
    measured = np.log(np.abs(f_blurred[strong]) ** 2 / np.abs(f_sharp[strong]) ** 2)
    np.testing.assert_allclose(measured, -400.0 * squared[strong] / 2.0, atol=0.03)


def test_relion_ctf_sign_and_zeros():
    squared = np.array([0.0])
    assert relion_ctf(squared, 15000.0, 300.0, 2.7, 0.07)[0] == pytest.approx(0.07)
    # first zero of a non-astigmatic CTF without Cs: pi lambda df s^2 + asin(Q) = pi
    wavelength = 0.019687
    s2 = (np.pi - np.arcsin(0.1)) / (np.pi * wavelength * 20000.0)
    assert abs(relion_ctf(np.array([s2]), 20000.0, 300.0, 0.0, 0.1)[0]) < 1e-3


def test_class_proportions_noise_and_files(tmp_path):
    densities = [
        make_atom_density("tetramer", 100.0, 150, seed=1),
        make_atom_density("dumbbell", 100.0, 150, seed=2),
    ]
    params = Particles3DParams(
        box_px=BOX, pixel_size_angstrom=PIXEL, number_of_particles=400,
        class_fractions=(0.7, 0.3), snr=0.1, seed=5,
    )  # fmt: skip
    star = write_particles(tmp_path, densities, params)
    blocks = starfile.read(star, always_dict=True)
    assert len(blocks["particles"]) == 400
    assert blocks["optics"]["rlnImageSize"].iloc[0] == BOX
    truth = simulate_particles(densities, params)
    assert np.mean(truth.class_index == 0) == pytest.approx(0.7, abs=0.005)
    # corner pixels are noise only: standard deviation 1
    assert truth.images[:, :3, :3].std() == pytest.approx(1.0, abs=0.05)
    assert (tmp_path / "truth_1.mrc").is_file() and (tmp_path / "truth_2.mrc").is_file()
    assert densities[0].symmetry == "C4"
