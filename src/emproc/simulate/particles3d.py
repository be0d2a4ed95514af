"""Particle stacks of known 3D densities: ground truth for 3D classification and refinement.

Kept apart from `emproc.refine3d` (the code it tests) and from the movie simulator (its blob
models are smooth, so their resolution is set by the blobs, not by a B-factor).

A density is a cloud of point atoms (optionally with Cn symmetry about z). Its Fourier
transform is computed exactly on the box's frequency grid, band-limited at Nyquist, and
multiplied by the applied B-factor envelope exp(-B s^2 / 4): the only fall-off the signal
has, so the Rosenthal-Henderson B-factor of the data is the applied one. A particle image is
the central slice of the rotated cloud (projection-slice theorem, again exact), shifted,
multiplied by a RELION-convention CTF, plus white Gaussian noise, normalised so the noise
has standard deviation 1 (RELION's --norm convention: white particles on a zero background).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import starfile
from scipy.spatial.transform import Rotation

from emproc.io.atomic import atomic_path, write_json_atomic


@dataclass(frozen=True)
class AtomDensity:
    """Point atoms in Angstrom (x, y, z), centroid at the origin."""

    name: str
    atoms_angstrom: np.ndarray
    symmetry: str = "C1"


@dataclass(frozen=True)
class Particles3DParams:
    box_px: int = 40
    pixel_size_angstrom: float = 4.0
    number_of_particles: int = 2000
    bfactor_angstrom2: float = 150.0  # applied to every particle: exp(-B s^2 / 4)
    snr: float = 0.05  # signal variance / noise variance, over the particle circle
    class_fractions: tuple[float, ...] = (1.0,)  # one entry per density
    defocus_range_angstrom: tuple[float, float] = (8000.0, 25000.0)
    voltage_kv: float = 300.0
    spherical_aberration_mm: float = 2.7
    amplitude_contrast: float = 0.1
    max_shift_angstrom: float = 4.0
    seed: int = 0
    particle_diameter_angstrom: float = field(default=0.0)  # 0: 0.7 x box

    @property
    def diameter_angstrom(self) -> float:
        return self.particle_diameter_angstrom or 0.7 * self.box_px * self.pixel_size_angstrom


def make_atom_density(
    kind: str, diameter_angstrom: float, number_of_atoms: int = 300, seed: int = 1
) -> AtomDensity:
    """A density of one of three shapes, distinct at low resolution (so 3D classes separate):

    - "ellipsoid": atoms filling an ellipsoid with semi-axes 0.5, 0.32, 0.22 x diameter (C1);
    - "tetramer": four lobes on a square in the xy-plane plus a stalk along +z (C4);
    - "dumbbell": two unequal balls along x joined by a bar (C1).
    """
    rng = np.random.default_rng(seed)
    radius = 0.5 * diameter_angstrom

    def ball(count: int, centre: tuple[float, float, float], ball_radius: float) -> np.ndarray:
        direction = rng.normal(size=(count, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        distance = ball_radius * rng.random(count) ** (1.0 / 3.0)
        return np.asarray(centre) + direction * distance[:, None]

    symmetry = "C1"
    if kind == "ellipsoid":
        atoms = ball(number_of_atoms, (0, 0, 0), 1.0) * radius * np.array([1.0, 0.64, 0.44])
    elif kind == "tetramer":
        per_unit = number_of_atoms // 5
        unit = ball(per_unit, (0.55 * radius, 0.0, -0.1 * radius), 0.35 * radius)
        stalk = ball(number_of_atoms - 4 * per_unit, (0, 0, 0.45 * radius), 0.3 * radius)
        turns = [Rotation.from_euler("z", 90.0 * k, degrees=True).apply(unit) for k in range(4)]
        atoms = np.concatenate([*turns, stalk])
        symmetry = "C4"
    elif kind == "dumbbell":
        big = ball(number_of_atoms // 2, (-0.45 * radius, 0, 0), 0.45 * radius)
        small = ball(number_of_atoms // 4, (0.6 * radius, 0, 0), 0.3 * radius)
        bar = np.column_stack(
            [
                rng.uniform(-0.2 * radius, 0.4 * radius, number_of_atoms // 4),
                rng.normal(0, 0.08 * radius, number_of_atoms // 4),
                rng.normal(0, 0.08 * radius, number_of_atoms // 4),
            ]
        )
        atoms = np.concatenate([big, small, bar])
    else:
        raise ValueError(f"unknown density kind {kind!r} (ellipsoid, tetramer, dumbbell)")
    return AtomDensity(kind, atoms - atoms.mean(axis=0), symmetry)


def _frequencies(box_px: int, pixel_size_angstrom: float) -> tuple[np.ndarray, np.ndarray]:
    """(full, half) frequency axes in 1/Angstrom, as numpy's fftfreq / rfftfreq order them."""
    return (
        np.fft.fftfreq(box_px, d=pixel_size_angstrom),
        np.fft.rfftfreq(box_px, d=pixel_size_angstrom),
    )


def _phases(frequency: np.ndarray, coordinate: np.ndarray) -> np.ndarray:
    """exp(-2 pi i k x): (atoms, frequencies)."""
    return np.exp(-2j * np.pi * np.outer(coordinate, frequency))


def _envelope(squared_frequency: np.ndarray, bfactor_angstrom2: float) -> np.ndarray:
    return np.exp(-bfactor_angstrom2 * squared_frequency / 4.0)


def render_volume(
    density: AtomDensity, box_px: int, pixel_size_angstrom: float, bfactor_angstrom2: float
) -> np.ndarray:
    """The true map [z, y, x] (centre at box_px // 2, RELION's origin), B-factor applied."""
    full, half = _frequencies(box_px, pixel_size_angstrom)
    centre = (box_px // 2) * pixel_size_angstrom
    atoms = density.atoms_angstrom + centre
    spectrum = np.einsum(
        "jz,jy,jx->zyx",
        _phases(full, atoms[:, 2]),
        _phases(full, atoms[:, 1]),
        _phases(half, atoms[:, 0]),
        optimize=True,
    )
    squared = full[:, None, None] ** 2 + full[None, :, None] ** 2 + half[None, None, :] ** 2
    spectrum *= _envelope(squared, bfactor_angstrom2)
    return np.fft.irfftn(spectrum, s=(box_px,) * 3, axes=(0, 1, 2)).astype(np.float32)


def relion_ctf(
    squared_frequency: np.ndarray,
    defocus_angstrom: float,
    voltage_kv: float,
    spherical_aberration_mm: float,
    amplitude_contrast: float,
) -> np.ndarray:
    """Non-astigmatic CTF with RELION's sign: +amplitude_contrast at zero frequency."""
    volts = voltage_kv * 1e3
    wavelength = 12.2643247 / np.sqrt(volts * (1.0 + volts * 0.978466e-6))
    cs = spherical_aberration_mm * 1e7
    chi = (
        np.pi * wavelength * defocus_angstrom * squared_frequency
        - 0.5 * np.pi * cs * (wavelength**3) * squared_frequency**2
    )
    return np.sin(chi + np.arcsin(amplitude_contrast))


def relion_euler_deg(rotations: np.ndarray) -> np.ndarray:
    """(n, 3) RELION (rot, tilt, psi) of particle rotations: RELION's matrix
    A = Rz(psi) Ry(tilt) Rz(rot) in its passive convention, i.e. the transpose of scipy's
    active intrinsic ZYZ rotation, maps the map onto the particle as `rotations` do."""
    return Rotation.from_matrix(np.transpose(rotations, (0, 2, 1))).as_euler("ZYZ", degrees=True)


@dataclass(frozen=True)
class Particles3DTruth:
    images: np.ndarray  # (n, box, box) float32, noise std 1
    class_index: np.ndarray  # (n,) 0-based index into the densities
    rotations: np.ndarray  # (n, 3, 3): particle = rotations @ density
    shifts_angstrom: np.ndarray  # (n, 2) x, y of the particle centre from the box centre
    defocus_angstrom: np.ndarray  # (n,)
    noise_sigma: float  # in units of the density before normalisation


_BATCH = 100


def _stacked_atoms(densities: list[AtomDensity], index: np.ndarray) -> np.ndarray:
    size = max(len(d.atoms_angstrom) for d in densities)
    padded = np.zeros((len(densities), size, 3))
    for k, density in enumerate(densities):
        padded[k, : len(density.atoms_angstrom)] = density.atoms_angstrom
    return padded[index]


def _stacked_weights(densities: list[AtomDensity], index: np.ndarray) -> np.ndarray:
    """1 for real atoms, 0 for the padding of smaller densities."""
    size = max(len(d.atoms_angstrom) for d in densities)
    weights = np.zeros((len(densities), size))
    for k, density in enumerate(densities):
        weights[k, : len(density.atoms_angstrom)] = 1.0
    return weights[index]


def simulate_particles(
    densities: list[AtomDensity],
    params: Particles3DParams,
    rotations: np.ndarray | None = None,
) -> Particles3DTruth:
    """Images of the densities in `params.class_fractions` proportions, at uniformly random
    orientations unless `rotations` (n, 3, 3) are given."""
    if len(densities) != len(params.class_fractions):
        raise ValueError("one class fraction per density")
    rng = np.random.default_rng(params.seed)
    n, box, pixel = params.number_of_particles, params.box_px, params.pixel_size_angstrom
    fractions = np.asarray(params.class_fractions, dtype=float)
    counts = np.floor(fractions / fractions.sum() * n).astype(int)
    counts[0] += n - counts.sum()
    class_index = rng.permutation(np.repeat(np.arange(len(densities)), counts))
    random_rotations = Rotation.random(n, random_state=rng).as_matrix()
    rotations = random_rotations if rotations is None else np.asarray(rotations, dtype=float)
    shifts = rng.uniform(-1.0, 1.0, size=(n, 2)) * params.max_shift_angstrom
    defocus = rng.uniform(*params.defocus_range_angstrom, size=n)

    full, half = _frequencies(box, pixel)
    squared = full[:, None] ** 2 + half[None, :] ** 2
    envelope = _envelope(squared, params.bfactor_angstrom2)
    centre = (box // 2) * pixel
    clean = np.empty((n, box, box), dtype=np.float32)
    for start in range(0, n, _BATCH):
        batch = np.arange(start, min(start + _BATCH, n))
        # atoms of each particle rotated: (batch, atoms, 3), padded to a common atom count
        atoms = _stacked_atoms(densities, class_index[batch])
        rotated = np.einsum("bij,baj->bai", rotations[batch], atoms)
        x = rotated[..., 0] + centre + shifts[batch, 0, None]
        y = rotated[..., 1] + centre + shifts[batch, 1, None]
        weight = _stacked_weights(densities, class_index[batch])
        phase_y = np.exp(-2j * np.pi * y[..., None] * full) * weight[..., None]
        phase_x = np.exp(-2j * np.pi * x[..., None] * half)
        slices = np.matmul(phase_y.transpose(0, 2, 1), phase_x)  # (batch, ky, kx)
        ctf = relion_ctf(
            squared[None],
            defocus[batch, None, None],
            params.voltage_kv,
            params.spherical_aberration_mm,
            params.amplitude_contrast,
        )
        clean[batch] = np.fft.irfft2(slices * envelope * ctf, s=(box, box))
    yy, xx = np.mgrid[:box, :box] - box // 2
    inside = np.hypot(xx, yy) <= 0.5 * params.diameter_angstrom / pixel
    signal_variance = float(clean[:, inside].var())
    noise_sigma = float(np.sqrt(signal_variance / params.snr))
    noisy = clean + rng.normal(0.0, noise_sigma, size=clean.shape).astype(np.float32)
    noisy -= noisy[:, ~inside].mean(axis=1)[:, None, None]
    return Particles3DTruth(
        images=(noisy / noise_sigma).astype(np.float32),
        class_index=class_index,
        rotations=rotations,
        shifts_angstrom=shifts,
        defocus_angstrom=defocus,
        noise_sigma=noise_sigma,
    )


def write_particles(
    directory: str | os.PathLike[str],
    densities: list[AtomDensity],
    params: Particles3DParams,
) -> Path:
    """Write `Particles/particles.mrcs`, `particles.star` (RELION 3.1, paths relative to
    `directory`), the true maps `truth_<k>.mrc` (k from 1), and `truth.json`/`truth.csv`
    (class per particle, orientation matrix, shift, defocus). Returns the STAR path."""
    directory = Path(directory)
    (directory / "Particles").mkdir(parents=True, exist_ok=True)
    truth = simulate_particles(densities, params)
    stack = directory / "Particles" / "particles.mrcs"
    with atomic_path(stack) as temporary:
        with mrcfile.new(temporary, overwrite=True) as mrc:
            mrc.set_data(truth.images)
            mrc.set_image_stack()
            mrc.voxel_size = params.pixel_size_angstrom
    optics = pd.DataFrame(
        {
            "rlnOpticsGroupName": ["opticsGroup1"],
            "rlnOpticsGroup": [1],
            "rlnMicrographOriginalPixelSize": [params.pixel_size_angstrom],
            "rlnVoltage": [params.voltage_kv],
            "rlnSphericalAberration": [params.spherical_aberration_mm],
            "rlnAmplitudeContrast": [params.amplitude_contrast],
            "rlnImagePixelSize": [params.pixel_size_angstrom],
            "rlnImageSize": [params.box_px],
            "rlnImageDimensionality": [2],
        }
    )
    n = params.number_of_particles
    particles = pd.DataFrame(
        {
            "rlnImageName": [f"{i + 1:06d}@Particles/particles.mrcs" for i in range(n)],
            # 100 particles a "micrograph": RELION groups noise spectra by micrograph
            "rlnMicrographName": [f"Micrographs/mic{i // 100 + 1:04d}.mrc" for i in range(n)],
            "rlnCoordinateX": np.zeros(n),
            "rlnCoordinateY": np.zeros(n),
            "rlnOpticsGroup": np.ones(n, dtype=int),
            "rlnDefocusU": truth.defocus_angstrom,
            "rlnDefocusV": truth.defocus_angstrom,
            "rlnDefocusAngle": np.zeros(n),
            "rlnPhaseShift": np.zeros(n),
            "rlnCtfBfactor": np.zeros(n),
        }
    )
    star = directory / "particles.star"
    with atomic_path(star) as temporary:
        starfile.write({"optics": optics, "particles": particles}, temporary)
    for number, density in enumerate(densities, start=1):
        volume = render_volume(
            density, params.box_px, params.pixel_size_angstrom, params.bfactor_angstrom2
        )
        with atomic_path(directory / f"truth_{number}.mrc") as temporary:
            with mrcfile.new(temporary, overwrite=True) as mrc:
                mrc.set_data(volume)
                mrc.voxel_size = params.pixel_size_angstrom
    table = pd.DataFrame(
        {
            "image_name": particles["rlnImageName"],
            "class_number": truth.class_index + 1,
            "shift_x_angstrom": truth.shifts_angstrom[:, 0],
            "shift_y_angstrom": truth.shifts_angstrom[:, 1],
            "defocus_angstrom": truth.defocus_angstrom,
            **dict(
                zip(
                    ("rot_deg", "tilt_deg", "psi_deg"),
                    relion_euler_deg(truth.rotations).T,
                    strict=True,
                )
            ),
        }
    )
    with atomic_path(directory / "truth.csv") as temporary:
        table.to_csv(temporary, index=False)
    write_json_atomic(
        directory / "truth.json",
        {
            "box_px": params.box_px,
            "pixel_size_angstrom": params.pixel_size_angstrom,
            "number_of_particles": n,
            "bfactor_angstrom2": params.bfactor_angstrom2,
            "snr": params.snr,
            "class_fractions": list(params.class_fractions),
            "densities": [
                {"name": d.name, "symmetry": d.symmetry, "atoms": len(d.atoms_angstrom)}
                for d in densities
            ],
            "particle_diameter_angstrom": params.diameter_angstrom,
            "noise_sigma": truth.noise_sigma,
        },
    )
    return star
