"""A 3D specimen phantom built from ellipsoids, with exact line integrals.

The phantom is a list of uniform ellipsoids (a shell is an outer ellipsoid plus a
negative inner one). Projections are computed analytically (chord length of each ray
through each ellipsoid), so the simulated tilt series carries no interpolation error
and reconstructions are not scored against the same discretisation that made them.

Coordinates are in Angstrom in the *specimen frame*: x perpendicular to the tilt axis,
y along the tilt axis, z along the beam at zero tilt, origin at the slab centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Ellipsoid:
    """A uniform ellipsoid: density (relative to ice) inside, 0 outside."""

    centre_angstrom: tuple[float, float, float]  # (x, y, z)
    semi_axes_angstrom: tuple[float, float, float]  # along the rotated x, y, z axes
    rotation: tuple[tuple[float, float, float], ...]  # 3x3, columns = ellipsoid axes
    density: float
    # fraction of the beam lost per Angstrom of path (scattering outside the objective
    # aperture): amplitude contrast, which makes gold dark whatever the defocus
    absorption_per_angstrom: float = 0.0

    def shape_matrix(self) -> np.ndarray:
        """M with (p - c)^T M (p - c) <= 1 inside."""
        rotation = np.asarray(self.rotation, dtype=float)
        inverse_squares = np.diag(1.0 / np.asarray(self.semi_axes_angstrom, dtype=float) ** 2)
        return rotation @ inverse_squares @ rotation.T

    def bounding_radius_angstrom(self) -> float:
        return float(max(self.semi_axes_angstrom))


@dataclass(frozen=True)
class PhantomParams:
    """What goes into the slab; lengths in Angstrom."""

    slab_thickness_angstrom: float = 384.0
    lateral_extent_angstrom: float = 1400.0  # square region populated with objects
    number_of_vesicles: int = 6
    vesicle_radius_angstrom: tuple[float, float] = (70.0, 150.0)
    membrane_thickness_angstrom: float = 40.0
    membrane_density: float = 1.2
    lumen_density: float = 0.15
    number_of_particles: int = 30
    particle_radius_angstrom: tuple[float, float] = (40.0, 90.0)
    particle_density: float = 1.0
    number_of_membrane_sheets: int = 1
    number_of_gold_beads: int = 0  # on the slab's two surfaces (alternately)
    gold_radius_angstrom: float = 50.0  # 10 nm beads
    gold_density: float = 8.0
    gold_absorption_per_angstrom: float = 0.007  # ~50% transmission through a 10 nm bead


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    # QR of a Gaussian matrix gives a uniformly distributed rotation
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _as_tuple(matrix: np.ndarray) -> tuple[tuple[float, float, float], ...]:
    return tuple(tuple(float(v) for v in row) for row in matrix)


def make_phantom(params: PhantomParams, rng: np.random.Generator) -> list[Ellipsoid]:
    """Vesicles (membrane shells with a light lumen), membrane sheets, particles, gold."""
    half_slab = params.slab_thickness_angstrom / 2.0
    half_extent = params.lateral_extent_angstrom / 2.0
    identity = _as_tuple(np.eye(3))
    objects: list[Ellipsoid] = []

    def centre_within(radius: float) -> tuple[float, float, float]:
        z_room = max(half_slab - radius, 0.0)
        return (
            float(rng.uniform(-half_extent, half_extent)),
            float(rng.uniform(-half_extent, half_extent)),
            float(rng.uniform(-z_room, z_room)),
        )

    for _ in range(params.number_of_membrane_sheets):
        # a flat, slightly tilted membrane patch crossing part of the field
        tilt = np.deg2rad(rng.uniform(-15, 15))
        rotation = np.array(
            [[np.cos(tilt), 0, np.sin(tilt)], [0, 1, 0], [-np.sin(tilt), 0, np.cos(tilt)]]
        )
        spin = np.deg2rad(rng.uniform(0, 180))
        in_plane = np.array(
            [[np.cos(spin), -np.sin(spin), 0], [np.sin(spin), np.cos(spin), 0], [0, 0, 1]]
        )
        axes = (0.5 * half_extent, 0.25 * half_extent, params.membrane_thickness_angstrom / 2)
        objects.append(
            Ellipsoid(
                centre_within(half_slab * 0.6),
                axes,
                _as_tuple(in_plane @ rotation),
                params.membrane_density,
            )
        )
    for _ in range(params.number_of_vesicles):
        radius = float(rng.uniform(*params.vesicle_radius_angstrom))
        radius = min(radius, half_slab - 2.0)
        centre = centre_within(radius)
        inner = max(radius - params.membrane_thickness_angstrom, 1.0)
        objects.append(Ellipsoid(centre, (radius,) * 3, identity, params.membrane_density))
        objects.append(
            Ellipsoid(
                centre, (inner,) * 3, identity, params.lumen_density - params.membrane_density
            )
        )
    for _ in range(params.number_of_particles):
        low, high = params.particle_radius_angstrom
        axes = tuple(float(a) for a in rng.uniform(low, high, size=3))
        largest = min(max(axes), half_slab - 2.0)
        axes = tuple(min(a, largest) for a in axes)
        objects.append(
            Ellipsoid(
                centre_within(largest),
                axes,
                _as_tuple(_random_rotation(rng)),
                params.particle_density,
            )
        )
    for index in range(params.number_of_gold_beads):
        radius = params.gold_radius_angstrom
        x, y, _ = centre_within(radius)
        surface = (1 if index % 2 else -1) * max(half_slab - radius, 0.0)
        objects.append(
            Ellipsoid(
                (x, y, surface),
                (radius,) * 3,
                identity,
                params.gold_density,
                params.gold_absorption_per_angstrom,
            )
        )
    return objects


def project_phantom(
    objects: list[Ellipsoid],
    aligned_x_angstrom: np.ndarray,
    aligned_y_angstrom: np.ndarray,
    tilt_angle_deg: float,
) -> np.ndarray:
    """Line integrals (density x Angstrom) through the phantom at one tilt.

    `aligned_x/y_angstrom` are detector coordinates in the aligned frame (tilt axis along
    +y, origin on the axis). A specimen point (x, y, z) projects to
    (x cos(tilt) + z sin(tilt), y), IMOD's convention.
    """
    beta = np.deg2rad(tilt_angle_deg)
    direction = np.array([-np.sin(beta), 0.0, np.cos(beta)])
    result = np.zeros(np.broadcast_shapes(aligned_x_angstrom.shape, aligned_y_angstrom.shape))
    ax = np.broadcast_to(aligned_x_angstrom, result.shape)
    ay = np.broadcast_to(aligned_y_angstrom, result.shape)
    for obj in objects:
        centre = np.asarray(obj.centre_angstrom)
        radius = obj.bounding_radius_angstrom()
        projected_centre_x = centre[0] * np.cos(beta) + centre[2] * np.sin(beta)
        # only rays within the bounding sphere's shadow can hit
        window = (np.abs(ax - projected_centre_x) <= radius) & (np.abs(ay - centre[1]) <= radius)
        if not window.any():
            continue
        rows, cols = np.nonzero(window)
        u = ax[rows, cols]
        v = ay[rows, cols]
        # ray base point on the z'=0 plane of the tilted frame, minus the centre
        offset = np.stack([u * np.cos(beta), v, u * np.sin(beta)], axis=-1) - centre
        m = obj.shape_matrix()
        a = direction @ m @ direction
        b = offset @ (m @ direction)
        c = np.einsum("ni,ij,nj->n", offset, m, offset) - 1.0
        discriminant = np.maximum(b * b - a * c, 0.0)
        result[rows, cols] += obj.density * 2.0 * np.sqrt(discriminant) / a
    return result


def rasterise_phantom(
    objects: list[Ellipsoid],
    shape_zyx: tuple[int, int, int],
    voxel_size_angstrom: float,
) -> np.ndarray:
    """Density on a voxel grid [z, y, x] centred on the origin, with 1-voxel soft edges."""
    nz, ny, nx = shape_zyx
    volume = np.zeros(shape_zyx, dtype=np.float32)
    # x, y on the detector grid (pixel i at i - n/2); z centred on the slab like the
    # reconstruction's z grid
    axes = [
        (np.arange(nz) - nz / 2 + 0.5) * voxel_size_angstrom,
        (np.arange(ny) - ny / 2) * voxel_size_angstrom,
        (np.arange(nx) - nx / 2) * voxel_size_angstrom,
    ]
    for obj in objects:
        centre = np.asarray(obj.centre_angstrom)  # (x, y, z)
        radius = obj.bounding_radius_angstrom() + voxel_size_angstrom
        ranges = []
        for axis_values, c in zip(axes, (centre[2], centre[1], centre[0]), strict=True):
            inside = np.nonzero(np.abs(axis_values - c) <= radius)[0]
            ranges.append(inside)
        if any(r.size == 0 for r in ranges):
            continue
        zz, yy, xx = np.meshgrid(
            axes[0][ranges[0]], axes[1][ranges[1]], axes[2][ranges[2]], indexing="ij"
        )
        offset = np.stack([xx - centre[0], yy - centre[1], zz - centre[2]], axis=-1)
        quadratic = np.einsum("...i,ij,...j->...", offset, obj.shape_matrix(), offset)
        # signed distance to the surface, approximated along the smallest axis
        distance = (np.sqrt(quadratic) - 1.0) * min(obj.semi_axes_angstrom)
        occupancy = np.clip(0.5 - distance / voxel_size_angstrom, 0.0, 1.0)
        block = np.ix_(ranges[0], ranges[1], ranges[2])
        volume[block] += (obj.density * occupancy).astype(np.float32)
    return volume
