"""Particle stacks rendered straight from the simulator's density models (tests, benchmarks).

Each image is a projection of one of `emproc.simulate.density`'s shapes at a random
orientation and a small random shift, modulated by a per-particle CTF, plus white noise,
inverted to white-on-black and background-normalised as extraction would leave it.
Rendering at the final pixel size skips micrograph simulation (~1,000 particles/s).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.fft

from emproc.ctf.model import ctf_2d
from emproc.extract.boxes import normalise_background
from emproc.simulate import density


@dataclass(frozen=True)
class SyntheticStackParams:
    number_of_particles: int = 1000
    box_size_px: int = 64
    pixel_size_angstrom: float = 4.0
    particle_diameter_angstrom: float = 150.0
    number_of_shapes: int = 3
    max_shift_px: float = 2.0
    defocus_range_angstrom: tuple[float, float] = (8000.0, 25000.0)
    noise_std: float = 1.0  # relative to the peak projected density (1 = sphere centre)
    junk_fraction: float = 0.0  # images with noise only (false picks)
    bg_radius_px: float = 24.0


def simulate_particle_stack(
    params: SyntheticStackParams, seed: int
) -> tuple[np.ndarray, pd.DataFrame]:
    """(n, box, box) float32 particles and truth (shape_id (-1 = junk), angles, shift, CTF)."""
    rng = np.random.default_rng(seed)
    count, size = params.number_of_particles, params.box_size_px
    models = density.make_density_models(params.number_of_shapes, params.particle_diameter_angstrom)
    shape_ids = rng.integers(0, params.number_of_shapes, count)
    shape_ids[rng.random(count) < params.junk_fraction] = -1
    angles = density.random_euler_angles_deg(rng, count)
    shifts = rng.uniform(-params.max_shift_px, params.max_shift_px, (count, 2))
    defocus = rng.uniform(*params.defocus_range_angstrom, count)
    centre = size // 2
    stack = np.zeros((count, size, size), dtype=np.float32)
    for index in range(count):
        if shape_ids[index] < 0:
            continue
        density.render_projection(
            stack[index],
            models[shape_ids[index]],
            (centre + shifts[index, 0], centre + shifts[index, 1]),
            tuple(angles[index]),
            params.pixel_size_angstrom,
            params.particle_diameter_angstrom,
        )
    spectra = scipy.fft.rfft2(stack, axes=(-2, -1))
    for index in range(count):
        spectra[index] *= ctf_2d(
            (size, size), params.pixel_size_angstrom, defocus[index], defocus[index], 0.0, rfft=True
        )
    # the CTF is negative at low frequency: the recorded particles are dark, as in micrographs
    images = scipy.fft.irfft2(spectra, s=(size, size), axes=(-2, -1))
    images += rng.normal(0.0, params.noise_std, images.shape)
    stack = normalise_background(-images.astype(np.float32), params.bg_radius_px)
    truth = pd.DataFrame(
        {
            "shape_id": shape_ids,
            "rot_deg": angles[:, 0],
            "tilt_deg": angles[:, 1],
            "psi_deg": angles[:, 2],
            "shift_x_px": shifts[:, 0],
            "shift_y_px": shifts[:, 1],
            "defocus_angstrom": defocus,
        }
    )
    return stack, truth
