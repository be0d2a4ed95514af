"""Particle stacks for testing 2D classification, kept apart from the classifier.

This generator shares nothing with `emproc.classify` (and not the blob models of
`emproc.simulate.density`): its molecules are solid bodies (spheres, cylinders, tubes,
ellipsoids) filled with uniformly random points, all of the same mass. A particle image is:

1. the point cloud rotated by a random orientation (uniform on SO(3), or concentrated about
   one view for preferred orientation), projected along z into a 2x oversampled histogram,
   smoothed, shifted by a sub-pixel offset and binned to the box;
2. optionally a neighbouring particle (another shape) about one diameter off-centre;
3. modulated by an astigmatic CTF with a B-factor envelope (defocus per particle);
4. plus noise scaled to a stated SNR: white shot noise and CTF-modulated ice texture
   (SNR = variance of the noise-free particle image inside the particle's circle over the
   noise variance, as usually quoted for cryo-EM particle images);
5. inverted to white-on-black and normalised on the background ring, as extraction leaves it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.fft
from scipy import ndimage

from emproc.ctf.model import ctf_2d
from emproc.extract.boxes import normalise_background

SHAPE_NAMES = ("dumbbell", "l_bracket", "open_barrel", "trefoil")
POINTS_PER_SHAPE = 30000


@dataclass(frozen=True)
class ParticleStackConditions:
    """Imaging conditions of one stack; lengths in Angstrom, defocus in Angstrom."""

    number_of_particles: int = 1000
    box_size_px: int = 64
    pixel_size_angstrom: float = 3.0
    particle_diameter_angstrom: float = 140.0  # longest extent of every shape
    shapes: tuple[str, ...] = SHAPE_NAMES
    snr: float = 0.05
    defocus_range_angstrom: tuple[float, float] = (8000.0, 28000.0)
    astigmatism_max_angstrom: float = 800.0  # |defocus_u - defocus_v| up to this
    bfactor_angstrom2: float = 80.0
    voltage_kv: float = 300.0
    spherical_aberration_mm: float = 2.7
    amplitude_contrast: float = 0.07
    max_shift_px: float = 3.0  # uniform sub-pixel shifts in [-max, max] along x and y
    ice_noise_fraction: float = 0.3  # share of the noise variance that is CTF-modulated ice
    neighbour_fraction: float = 0.15  # particles with a neighbour at the box edge
    preferred_view_spread_deg: float | None = None  # None: uniform orientations

    def __post_init__(self) -> None:
        unknown = set(self.shapes) - set(SHAPE_NAMES)
        if unknown or len(self.shapes) < 2:
            raise ValueError(f"shapes must be >= 2 of {SHAPE_NAMES}, got {self.shapes}")
        if self.snr <= 0 or self.number_of_particles < 1:
            raise ValueError("snr and number_of_particles must be positive")
        if self.particle_diameter_angstrom / self.pixel_size_angstrom > self.box_size_px:
            raise ValueError("the particle does not fit in the box")


def _inside(name: str, p: np.ndarray) -> np.ndarray:
    """Membership of points p (n, 3), in units of the particle radius, in shape `name`."""
    x, y, z = p.T
    if name == "dumbbell":  # two balls joined by a thin bar along x
        balls = (np.hypot(np.hypot(x - 0.62, y), z) < 0.38) | (
            np.hypot(np.hypot(x + 0.62, y), z) < 0.38
        )
        bar = (np.abs(x) < 0.62) & (np.hypot(y, z) < 0.12)
        return balls | bar
    if name == "l_bracket":  # two perpendicular rods sharing a corner, one twice as thick
        arm_x = (x > -0.7) & (x < 0.7) & (np.hypot(y + 0.45, z) < 0.22)
        arm_y = (y > -0.45) & (y < 0.7) & (np.hypot(x + 0.6, z) < 0.14)
        return arm_x | arm_y
    if name == "open_barrel":  # a tube: a ring seen down its axis, a rectangle from the side
        radial = np.hypot(x, y)
        return (radial < 0.55) & (radial > 0.33) & (np.abs(z) < 0.7)
    if name == "trefoil":  # three flat lobes at 120 degrees, a hub raised on one side
        inside = np.zeros(len(p), dtype=bool)
        for angle in (0.0, 2.0 * np.pi / 3.0, 4.0 * np.pi / 3.0):
            cx, cy = 0.55 * np.cos(angle), 0.55 * np.sin(angle)
            inside |= ((x - cx) ** 2 + (y - cy) ** 2) / 0.3**2 + (z / 0.16) ** 2 < 1.0
        return inside | (np.hypot(x, y) < 0.22) & (z > 0) & (z < 0.4)
    raise ValueError(f"unknown shape {name!r}")


def shape_points(name: str, radius_angstrom: float, seed: int = 0) -> np.ndarray:
    """(POINTS_PER_SHAPE, 3) uniform points filling shape `name`, centroid at the origin."""
    rng = np.random.default_rng([seed, SHAPE_NAMES.index(name)])
    kept: list[np.ndarray] = []
    total = 0
    while total < POINTS_PER_SHAPE:
        candidates = rng.uniform(-1.0, 1.0, (4 * POINTS_PER_SHAPE, 3))
        inside = candidates[_inside(name, candidates)]
        kept.append(inside)
        total += len(inside)
    points = np.concatenate(kept)[:POINTS_PER_SHAPE]
    points -= points.mean(axis=0)
    # scale so the longest extent is the particle diameter
    extent = np.linalg.norm(points, axis=1).max()
    return points * (radius_angstrom / extent)


def random_rotations(
    rng: np.random.Generator, count: int, view_spread_deg: float | None
) -> np.ndarray:
    """(count, 3, 3) rotations: uniform (quaternions), or a tilt about +z within the spread."""
    if view_spread_deg is None:
        q = rng.normal(size=(count, 4))
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        w, x, y, z = q.T
        return np.stack(
            [
                np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
                np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
                np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
            ],
            axis=1,
        )
    tilt = np.deg2rad(np.abs(rng.normal(0.0, view_spread_deg, count)))
    azimuth = rng.uniform(0, 2 * np.pi, count)
    psi = rng.uniform(0, 2 * np.pi, count)

    def about_z(angle: np.ndarray) -> np.ndarray:
        c, s = np.cos(angle), np.sin(angle)
        zero, one = np.zeros_like(c), np.ones_like(c)
        return np.stack(
            [
                np.stack([c, -s, zero], -1),
                np.stack([s, c, zero], -1),
                np.stack([zero, zero, one], -1),
            ],
            axis=1,
        )

    c, s = np.cos(tilt), np.sin(tilt)
    zero, one = np.zeros_like(c), np.ones_like(c)
    about_y = np.stack(
        [np.stack([c, zero, s], -1), np.stack([zero, one, zero], -1), np.stack([-s, zero, c], -1)],
        axis=1,
    )
    return about_z(psi) @ about_y @ about_z(azimuth)


def _project(
    points: np.ndarray, rotation: np.ndarray, centre_xy_px: np.ndarray, size: int, pixel: float
) -> np.ndarray:
    """Projected density on a 2x oversampled (2 size, 2 size) grid, centre at pixel size//2."""
    xy = (points @ rotation.T)[:, :2] / pixel + centre_xy_px
    fine = np.floor(2.0 * (xy + 0.5)).astype(np.int64)  # coarse pixel i = fine 2i and 2i + 1
    inside = (fine >= 0).all(axis=1) & (fine < 2 * size).all(axis=1)
    flat = fine[inside, 1] * (2 * size) + fine[inside, 0]
    return np.bincount(flat, minlength=4 * size * size).reshape(2 * size, 2 * size)


def _bin2(fine: np.ndarray) -> np.ndarray:
    n = fine.shape[-1] // 2
    return fine.reshape(n, 2, n, 2).sum(axis=(1, 3))


def simulate_particle_stack(
    conditions: ParticleStackConditions, seed: int
) -> tuple[np.ndarray, pd.DataFrame]:
    """(n, box, box) float32 white-on-black particles and their truth, one row per particle.

    Truth columns: shape_id (index into conditions.shapes), shape, psi_deg (in-plane angle
    of the rotation), shift_x_px, shift_y_px, defocus_u/v_angstrom, astigmatism_angle_deg,
    has_neighbour.
    """
    c = conditions
    rng = np.random.default_rng(seed)
    count, size, pixel = c.number_of_particles, c.box_size_px, c.pixel_size_angstrom
    radius = 0.5 * c.particle_diameter_angstrom
    clouds = [shape_points(name, radius) for name in c.shapes]
    shape_ids = rng.integers(0, len(c.shapes), count)
    rotations = random_rotations(rng, count, c.preferred_view_spread_deg)
    shifts = rng.uniform(-c.max_shift_px, c.max_shift_px, (count, 2))
    neighbour = rng.random(count) < c.neighbour_fraction
    centre = np.full(2, float(size // 2))
    smooth_px = 0.5  # of the fine grid: keeps the Monte Carlo point noise below the pixel
    images = np.empty((count, size, size), dtype=np.float32)
    for index in range(count):
        fine = _project(
            clouds[shape_ids[index]], rotations[index], centre + shifts[index], size, pixel
        ).astype(np.float32)
        if neighbour[index]:
            direction = rng.uniform(0, 2 * np.pi)
            distance = rng.uniform(1.0, 1.25) * c.particle_diameter_angstrom / pixel
            offset = distance * np.array([np.cos(direction), np.sin(direction)])
            other = rng.integers(0, len(c.shapes))
            fine += _project(
                clouds[other], random_rotations(rng, 1, None)[0], centre + offset, size, pixel
            )
        images[index] = _bin2(ndimage.gaussian_filter(fine, smooth_px))
    images /= POINTS_PER_SHAPE  # unit mass per particle

    defocus_mean = rng.uniform(*c.defocus_range_angstrom, count)
    astigmatism = rng.uniform(0.0, c.astigmatism_max_angstrom, count)
    defocus_u = defocus_mean + astigmatism / 2
    defocus_v = defocus_mean - astigmatism / 2
    angle = rng.uniform(-180.0, 180.0, count)
    ctfs = np.stack(
        [
            ctf_2d(
                (size, size),
                pixel,
                defocus_u[i],
                defocus_v[i],
                angle[i],
                c.voltage_kv,
                c.spherical_aberration_mm,
                c.amplitude_contrast,
                bfactor_angstrom2=c.bfactor_angstrom2,
                rfft=True,
            )  # fmt: skip
            for i in range(count)
        ]
    ).astype(np.float32)
    clean = scipy.fft.irfft2(scipy.fft.rfft2(images) * ctfs, s=(size, size))

    coordinates = np.arange(size) - size // 2
    disc = np.hypot(coordinates[None, :], coordinates[:, None]) <= radius / pixel
    noise_std = np.sqrt(clean[:, disc].var(axis=1).mean() / c.snr)
    ice = rng.normal(size=(count, size, size)).astype(np.float32)
    ice = scipy.fft.irfft2(scipy.fft.rfft2(ice) * ctfs, s=(size, size))
    ice /= ice.std(axis=(1, 2), keepdims=True)
    shot = rng.normal(size=(count, size, size)).astype(np.float32)
    noisy = clean + noise_std * (
        np.sqrt(c.ice_noise_fraction) * ice + np.sqrt(1.0 - c.ice_noise_fraction) * shot
    )
    stack = normalise_background(-noisy.astype(np.float32), radius / pixel)
    psi = np.rad2deg(np.arctan2(rotations[:, 1, 0], rotations[:, 0, 0]))
    truth = pd.DataFrame(
        {
            "shape_id": shape_ids,
            "shape": np.asarray(c.shapes)[shape_ids],
            "psi_deg": psi,
            "shift_x_px": shifts[:, 0],
            "shift_y_px": shifts[:, 1],
            "defocus_u_angstrom": defocus_u,
            "defocus_v_angstrom": defocus_v,
            "astigmatism_angle_deg": angle,
            "has_neighbour": neighbour,
        }
    )
    return stack, truth


def write_extracted_stack(
    project_dir: Path,
    name: str,
    stack: np.ndarray,
    truth: pd.DataFrame,
    conditions: ParticleStackConditions,
) -> Path:
    """Write the stack as extraction would (`Extract/{name}.mrcs` and `.star`, RELION 3.1
    optics block, per-particle defocus); returns the STAR path. For relion_refine runs."""
    from emproc.extract.run import write_stack
    from emproc.extract.star import OPTICS_COLUMNS, write_particle_star

    c, count = conditions, len(stack)
    write_stack(project_dir / "Extract" / f"{name}.mrcs", stack, c.pixel_size_angstrom)
    optics = pd.DataFrame(
        [[1, "opticsGroup1", c.amplitude_contrast, c.spherical_aberration_mm, c.voltage_kv,
          c.pixel_size_angstrom, 1.0, c.box_size_px, 2]],
        columns=list(OPTICS_COLUMNS),
    )  # fmt: skip
    particles = pd.DataFrame(
        {
            "rlnCoordinateX": np.arange(count, dtype=float),
            "rlnCoordinateY": np.zeros(count),
            "rlnImageName": [f"{i:06d}@Extract/{name}.mrcs" for i in range(1, count + 1)],
            "rlnMicrographName": f"MotionCorr/{name}_DW.mrc",
            "rlnOpticsGroup": 1,
            "rlnDefocusU": truth["defocus_u_angstrom"].to_numpy(),
            "rlnDefocusV": truth["defocus_v_angstrom"].to_numpy(),
            "rlnDefocusAngle": truth["astigmatism_angle_deg"].to_numpy(),
            "rlnPhaseShift": 0.0,
        }
    )
    star = project_dir / "Extract" / f"{name}.star"
    write_particle_star(star, optics, particles)
    return star
