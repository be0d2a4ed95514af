"""3D density models of the simulated particles, their projections, and the ice background.

Each model is a small set of 3D Gaussian blobs (occupancy, i.e. fraction of solid protein at
the blob centre). Projecting an isotropic Gaussian along z gives a 2D Gaussian at the rotated
centre, so projections are rendered analytically (exact, no 3D volume is ever built).

Units of the projected density: projected protein thickness divided by the particle diameter
(a solid sphere of that diameter would read 1.0 at its centre). Every model has the mass of
that sphere and its mass-weighted centroid at the origin, so the projected centroid of a
particle is exactly its listed position.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft

CANONICAL_SHAPE_NAMES = ("ring", "rod_with_bulge", "tetrahedron")
# Extra shapes (index >= 3) are random blob clouds with these fixed seeds: the same molecule
# for every movie and session, so 2D classification sees a consistent set of species.
_EXTRA_SHAPE_SEED = 20261129


@dataclass(frozen=True)
class DensityModel:
    """A particle as Gaussian blobs; lengths in Angstrom, centroid at the origin."""

    shape_id: int
    name: str
    centres_angstrom: np.ndarray  # (n_blobs, 3) x, y, z
    sigmas_angstrom: np.ndarray  # (n_blobs,)
    occupancies: np.ndarray  # (n_blobs,) peak occupancy of each blob

    def to_dict(self) -> dict:
        return {
            "shape_id": self.shape_id,
            "name": self.name,
            "centres_angstrom": self.centres_angstrom.tolist(),
            "sigmas_angstrom": self.sigmas_angstrom.tolist(),
            "occupancies": self.occupancies.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> DensityModel:
        return cls(
            shape_id=int(data["shape_id"]),
            name=str(data["name"]),
            centres_angstrom=np.asarray(data["centres_angstrom"], dtype=float),
            sigmas_angstrom=np.asarray(data["sigmas_angstrom"], dtype=float),
            occupancies=np.asarray(data["occupancies"], dtype=float),
        )


def _blob_layout(shape_id: int) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    """Blob centres and sigmas in units of the particle radius, plus relative weights."""
    if shape_id == 0:  # donut: 8 blobs on a circle in the xy-plane
        angles = np.arange(8) * 2.0 * np.pi / 8
        centres = np.stack([0.62 * np.cos(angles), 0.62 * np.sin(angles), np.zeros(8)], axis=1)
        return "ring", centres, np.full(8, 0.2), np.ones(8)
    if shape_id == 1:  # rod along z with a big bulge near one end
        z = np.linspace(-0.8, 0.8, 7)
        rod = np.stack([np.zeros(7), np.zeros(7), z], axis=1)
        centres = np.vstack([rod, [[0.3, 0.0, 0.45]]])
        sigmas = np.append(np.full(7, 0.15), 0.3)
        return "rod_with_bulge", centres, sigmas, np.append(np.ones(7), 3.0)
    if shape_id == 2:  # regular tetrahedron of four blobs
        vertices = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3.0)
        return "tetrahedron", 0.62 * vertices, np.full(4, 0.24), np.ones(4)
    rng = np.random.default_rng([_EXTRA_SHAPE_SEED, shape_id])
    n_blobs = int(rng.integers(5, 10))
    directions = rng.normal(size=(n_blobs, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    radii = 0.7 * rng.uniform(0.2, 1.0, n_blobs) ** (1.0 / 3.0)
    sigmas = rng.uniform(0.15, 0.25, n_blobs)
    return f"blob_cloud_{shape_id}", directions * radii[:, None], sigmas, np.ones(n_blobs)


def make_density_model(shape_id: int, particle_diameter_angstrom: float) -> DensityModel:
    """Density model `shape_id` (0 ring, 1 rod with bulge, 2 tetrahedron, >=3 blob clouds)."""
    if shape_id < 0:
        raise ValueError(f"shape_id must be >= 0, got {shape_id}")
    radius = 0.5 * particle_diameter_angstrom
    name, centres, sigmas, weights = _blob_layout(shape_id)
    centres = centres * radius
    sigmas = sigmas * radius
    blob_volumes = (2.0 * np.pi) ** 1.5 * sigmas**3  # volume of a unit-peak Gaussian
    masses = weights * blob_volumes
    centres = centres - (masses[:, None] * centres).sum(axis=0) / masses.sum()
    sphere_volume = np.pi * particle_diameter_angstrom**3 / 6.0
    occupancies = weights * sphere_volume / masses.sum()
    return DensityModel(shape_id, name, centres, sigmas, occupancies)


def make_density_models(
    number_of_shapes: int, particle_diameter_angstrom: float
) -> list[DensityModel]:
    if number_of_shapes < 3:
        raise ValueError(f"number_of_shapes must be >= 3, got {number_of_shapes}")
    return [make_density_model(i, particle_diameter_angstrom) for i in range(number_of_shapes)]


def euler_matrix(rot_deg: float, tilt_deg: float, psi_deg: float) -> np.ndarray:
    """RELION's Euler matrix A = Rz(psi) Ry(tilt) Rz(rot) (ZYZ); model point r projects to A r."""
    rot, tilt, psi = np.deg2rad([rot_deg, tilt_deg, psi_deg])
    ca, sa = np.cos(rot), np.sin(rot)
    cb, sb = np.cos(tilt), np.sin(tilt)
    cg, sg = np.cos(psi), np.sin(psi)
    return np.array(
        [
            [cg * cb * ca - sg * sa, cg * cb * sa + sg * ca, -cg * sb],
            [-sg * cb * ca - cg * sa, -sg * cb * sa + cg * ca, sg * sb],
            [sb * ca, sb * sa, cb],
        ]
    )


def random_euler_angles_deg(rng: np.random.Generator, count: int) -> np.ndarray:
    """(count, 3) rot, tilt, psi uniform on SO(3): rot, psi uniform, cos(tilt) uniform."""
    rot = rng.uniform(-180.0, 180.0, count)
    tilt = np.rad2deg(np.arccos(rng.uniform(-1.0, 1.0, count)))
    psi = rng.uniform(-180.0, 180.0, count)
    return np.stack([rot, tilt, psi], axis=1)


def render_projection(
    image: np.ndarray,
    model: DensityModel,
    centre_xy_px: tuple[float, float],
    euler_deg: tuple[float, float, float],
    pixel_size_angstrom: float,
    particle_diameter_angstrom: float,
) -> None:
    """Add the z-projection of `model`, rotated by `euler_deg`, to `image` (in place)."""
    rotated = model.centres_angstrom @ euler_matrix(*euler_deg).T
    ny, nx = image.shape
    for (x_a, y_a, _), sigma_a, occupancy in zip(
        rotated, model.sigmas_angstrom, model.occupancies, strict=True
    ):
        x0 = centre_xy_px[0] + x_a / pixel_size_angstrom
        y0 = centre_xy_px[1] + y_a / pixel_size_angstrom
        sigma = sigma_a / pixel_size_angstrom
        # peak projected thickness / diameter of an isotropic Gaussian blob
        peak = occupancy * np.sqrt(2.0 * np.pi) * sigma_a / particle_diameter_angstrom
        half = int(np.ceil(5.0 * sigma)) + 1
        xs = np.arange(max(int(x0) - half, 0), min(int(x0) + half + 1, nx))
        ys = np.arange(max(int(y0) - half, 0), min(int(y0) + half + 1, ny))
        if xs.size == 0 or ys.size == 0:
            continue
        gx = np.exp(-0.5 * ((xs - x0) / sigma) ** 2)
        gy = np.exp(-0.5 * ((ys - y0) / sigma) ** 2)
        image[ys[0] : ys[-1] + 1, xs[0] : xs[-1] + 1] += (peak * np.outer(gy, gx)).astype(
            image.dtype
        )


def place_particles(
    rng: np.random.Generator,
    shape_px: tuple[int, int],
    number_of_particles: int,
    min_distance_px: float,
    edge_margin_px: float,
) -> np.ndarray:
    """Up to `number_of_particles` (x, y) centres, pairwise >= min_distance_px apart.

    Random sequential placement: candidates are drawn uniformly inside the margins and kept
    if far enough from every accepted one. Returns fewer when the area is full.
    """
    ny, nx = shape_px
    low = edge_margin_px
    if nx - 2 * low <= 0 or ny - 2 * low <= 0 or number_of_particles <= 0:
        return np.zeros((0, 2))
    accepted: list[np.ndarray] = []
    attempts = 0
    while len(accepted) < number_of_particles and attempts < 400 * number_of_particles:
        candidates = np.stack(
            [rng.uniform(low, nx - low, 256), rng.uniform(low, ny - low, 256)], axis=1
        )
        attempts += 256
        for candidate in candidates:
            if accepted:
                distances = np.hypot(*(np.asarray(accepted) - candidate).T)
                if distances.min() < min_distance_px:
                    continue
            accepted.append(candidate)
            if len(accepted) == number_of_particles:
                break
    return np.asarray(accepted).reshape(-1, 2)


def ice_spectrum(
    rng: np.random.Generator,
    canvas_shape: tuple[int, int],
    pixel_size_angstrom: float,
    ice_std: float,
    correlation_length_angstrom: float = 8.0,
    workers: int = 1,
) -> np.ndarray:
    """rfft2 of an amorphous-ice background: Gaussian noise, power 1/(1 + (k L)^2), std `ice_std`.

    Low frequencies carry more power (thickness variation, clustering) but the spectrum stays
    broad, so the ice carries Thon rings to high resolution as real vitreous ice does.
    """
    white = rng.standard_normal(canvas_shape, dtype=np.float32)
    spectrum = scipy.fft.rfft2(white, workers=workers)
    ny, nx = canvas_shape
    fy = np.fft.fftfreq(ny, d=pixel_size_angstrom)[:, None]
    fx = np.fft.rfftfreq(nx, d=pixel_size_angstrom)[None, :]
    amplitude = (1.0 / np.sqrt(1.0 + (fx**2 + fy**2) * correlation_length_angstrom**2)).astype(
        np.float32
    )
    # variance of the filtered unit white noise, by Parseval over the full (not half) grid
    column_weights = np.full(fx.shape[1], 2.0)
    column_weights[0] = 1.0
    if nx % 2 == 0:
        column_weights[-1] = 1.0
    variance = float((amplitude.astype(np.float64) ** 2 * column_weights).sum() / (ny * nx))
    spectrum *= amplitude * np.float32(ice_std / np.sqrt(variance))
    return spectrum
