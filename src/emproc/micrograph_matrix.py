"""Test micrographs for picking, written apart from the picker and from `emproc.simulate`.

A *cell* fixes the physical conditions (particle shape and size, pixel size, crowding,
defocus, dose, ice gradient, contamination); `render_cell_micrograph` draws one micrograph
and its ground truth. Everything here is its own code path: particles are unions of solid
balls projected analytically (never `emproc.simulate.density`), the CTF is written out here,
and only numpy/scipy are imported, so a picker tuned against `emproc.simulate` is not
rewarded for agreeing with it.

Image formation (300 kV, weak phase plus amplitude contrast):
- projected protein thickness t(x, y) -> phase = `PHASE_PER_ANGSTROM` * t
  (sigma_e 6.5e-4 rad/(V A) x 2.5 V protein-minus-ice mean inner potential);
- intensity = transmission(x, y) * (1 + 2 * F^-1[Phi * CTF * envelope]),
  CTF = -(sqrt(1 - A^2) sin chi + A cos chi), chi = pi lambda dz k^2 - pi/2 Cs lambda^3 k^4;
- transmission = exp(-ice thickness / 3500 A) (energy-filtered inelastic loss), with a
  linear thickness gradient, crystals (thick ice, sharp polygon edges) or carbon (a
  half-plane, 150 A of carbon with its own phase texture);
- counting detector: sinc MTF on the signal, then Poisson counts at dose * pixel^2.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

WAVELENGTH_300KV_ANGSTROM = 0.019687
SPHERICAL_ABERRATION_ANGSTROM = 2.7e7
AMPLITUDE_CONTRAST = 0.07
PHASE_PER_ANGSTROM = 6.5e-4 * 2.5  # rad per A of protein (sigma_e x delta mean inner potential)
ICE_INELASTIC_MFP_ANGSTROM = 3500.0
CARBON_INELASTIC_MFP_ANGSTROM = 1700.0
CARBON_PHASE_PER_ANGSTROM = 6.5e-4 * 10.0  # amorphous carbon, ~10 V mean inner potential

SHAPES = ("compact", "elongated", "ring", "mixed_size")
CROWDING_AREA_FRACTION = {"sparse": 0.06, "medium": 0.2, "crowded": 0.5}
CONTAMINATION = ("none", "crystals", "carbon", "thick_ice")


@dataclass(frozen=True)
class Cell:
    """Conditions of one micrograph family; lengths in Angstrom unless the name says px."""

    shape: str = "compact"
    diameter_angstrom: float = 150.0  # largest particle dimension (largest size for mixed)
    pixel_size_angstrom: float = 1.0
    crowding: str = "medium"  # sparse | medium | crowded (touching neighbours)
    defocus_um: float = 1.5
    dose_e_per_angstrom2: float = 40.0
    ice_gradient: bool = False  # 300 A of extra ice across the field
    contamination: str = "none"
    size_px: int = 1024
    ice_thickness_angstrom: float = 400.0
    bfactor_angstrom2: float = 80.0  # envelope of the signal (coherence, drift, charging)

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}; one of {SHAPES}")
        if self.crowding not in CROWDING_AREA_FRACTION:
            raise ValueError(f"unknown crowding {self.crowding!r}")
        if self.contamination not in CONTAMINATION:
            raise ValueError(f"unknown contamination {self.contamination!r}")

    @property
    def diameter_range_angstrom(self) -> tuple[float, float]:
        """What a user would type as min/max diameter for this sample."""
        if self.shape == "elongated":
            return self.diameter_angstrom / 3.0, self.diameter_angstrom
        if self.shape == "mixed_size":
            return 0.5 * self.diameter_angstrom, self.diameter_angstrom
        return 0.85 * self.diameter_angstrom, 1.05 * self.diameter_angstrom

    @property
    def name(self) -> str:
        label = (
            f"{self.shape}-{self.diameter_angstrom:g}A-{self.pixel_size_angstrom:g}Apx-"
            f"{self.crowding}-{self.defocus_um:g}um-{self.dose_e_per_angstrom2:g}e"
        )
        if self.ice_gradient:
            label += "-gradient"
        if self.contamination != "none":
            label += f"-{self.contamination}"
        return label


@dataclass
class Truth:
    particles: pd.DataFrame  # x_px, y_px, diameter_angstrom (largest dimension)
    contamination_mask: np.ndarray = field(repr=False)  # True where contamination / carbon
    defocus_angstrom: float = 0.0


# --- particles: unions of solid balls, projected analytically --------------------------------


def _rotation(rng: np.random.Generator, max_tilt_deg: float, min_tilt_deg: float = 0.0):
    """Rotation whose z axis is tilted by [min, max] degrees, random azimuth and spin."""
    tilt = np.deg2rad(rng.uniform(min_tilt_deg, max_tilt_deg))
    azimuth, spin = rng.uniform(0.0, 2.0 * np.pi, 2)

    def about_z(angle: float) -> np.ndarray:
        c, s = np.cos(angle), np.sin(angle)
        return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])

    c, s = np.cos(tilt), np.sin(tilt)
    about_y = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    return about_z(azimuth) @ about_y @ about_z(spin)


def particle_balls(shape: str, diameter: float, rng: np.random.Generator) -> np.ndarray:
    """(n, 4) ball centres x, y, z and radii (Angstrom) of one particle, rotated at random.

    The particle's largest projected extent is about `diameter`.
    """
    if shape in ("compact", "mixed_size"):
        # a globular protein: a core and surface domains filling ~half the enclosing sphere
        # (~0.8 Da/A^3: a 60 A particle is ~50 kDa, a 150 A one ~800 kDa)
        core = np.array([[0.0, 0.0, 0.0, 0.36 * diameter]])
        count = rng.integers(5, 10)
        directions = rng.normal(size=(count, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        radii = rng.uniform(0.14, 0.2, count) * diameter
        centres = directions * (0.5 * diameter - radii)[:, None]
        balls = np.vstack([core, np.column_stack([centres, radii])])
        rotation = _rotation(rng, 180.0)
    elif shape == "elongated":
        # a rod 3:1, mostly side views (elongated particles lie flat in thin ice)
        radius = diameter / 6.0
        z = np.linspace(-0.5 * diameter + radius, 0.5 * diameter - radius, 7)
        wobble = rng.normal(0.0, 0.08 * radius, (7, 2))
        balls = np.column_stack([wobble, z, np.full(7, radius)])
        rotation = _rotation(rng, 90.0, min_tilt_deg=65.0)
    elif shape == "ring":
        # two stacked rings of subunits (a chaperonin or a channel seen near top view)
        count = rng.integers(7, 13)
        angle = np.linspace(0.0, 2.0 * np.pi, count, endpoint=False)
        radius = 0.13 * diameter
        ring = 0.5 * diameter - radius
        layer = np.column_stack(
            [ring * np.cos(angle), ring * np.sin(angle), np.zeros(count), np.full(count, radius)]
        )
        balls = np.vstack([layer, layer + [0.0, 0.0, 1.8 * radius, 0.0]])
        balls[:, 2] -= 0.9 * radius
        rotation = _rotation(rng, 30.0)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    balls[:, :3] = balls[:, :3] @ rotation.T
    return balls


def _project_balls(
    thickness: np.ndarray, balls: np.ndarray, centre_px: tuple[float, float], pixel: float
) -> None:
    """Add the projected thickness (Angstrom) of solid balls, 2 sqrt(r^2 - rho^2), in place."""
    ny, nx = thickness.shape
    cx, cy = centre_px
    for bx, by, _, radius in balls:
        x0, y0, r = cx + bx / pixel, cy + by / pixel, radius / pixel
        xs = slice(max(int(x0 - r - 1), 0), min(int(x0 + r + 2), nx))
        ys = slice(max(int(y0 - r - 1), 0), min(int(y0 + r + 2), ny))
        if xs.start >= xs.stop or ys.start >= ys.stop:
            continue
        yy, xx = np.mgrid[ys, xs]
        rho2 = (xx - x0) ** 2 + (yy - y0) ** 2
        thickness[ys, xs] += 2.0 * pixel * np.sqrt(np.maximum(r * r - rho2, 0.0))


def _place_particles(cell: Cell, rng: np.random.Generator) -> pd.DataFrame:
    """Random sequential addition: discs of the particles' diameters, touching at most."""
    pixel = cell.pixel_size_angstrom
    n = cell.size_px
    area = (n * pixel) ** 2
    target = CROWDING_AREA_FRACTION[cell.crowding] * area
    xs: list[float] = []
    ys: list[float] = []
    ds: list[float] = []
    covered = 0.0
    failures = 0
    while covered < target and failures < 3000:
        diameter = cell.diameter_angstrom
        if cell.shape == "mixed_size":
            diameter *= rng.uniform(0.5, 1.0)
        x, y = rng.uniform(0.0, n, 2)
        if xs:
            gap = np.hypot(np.asarray(xs) - x, np.asarray(ys) - y) * pixel
            if np.any(gap < 0.5 * (np.asarray(ds) + diameter)):
                failures += 1
                continue
        xs.append(float(x))
        ys.append(float(y))
        ds.append(float(diameter))
        covered += np.pi * diameter**2 / 4.0
    return pd.DataFrame({"x_px": xs, "y_px": ys, "diameter_angstrom": ds})


# --- ice, contamination ----------------------------------------------------------------------


def _polygon_mask(shape: tuple[int, int], vertices: np.ndarray, supersample: int = 2) -> np.ndarray:
    """Fraction of each pixel inside a convex polygon (vertices counter-clockwise, px)."""
    ny, nx = shape
    fine_y, fine_x = np.mgrid[0 : ny * supersample, 0 : nx * supersample]
    fine_x = (fine_x + 0.5) / supersample - 0.5
    fine_y = (fine_y + 0.5) / supersample - 0.5
    inside = np.ones(fine_x.shape, dtype=bool)
    for (x0, y0), (x1, y1) in zip(vertices, np.roll(vertices, -1, axis=0), strict=True):
        inside &= (x1 - x0) * (fine_y - y0) - (y1 - y0) * (fine_x - x0) >= 0
    return inside.reshape(ny, supersample, nx, supersample).mean(axis=(1, 3))


def _crystals(cell: Cell, rng: np.random.Generator) -> np.ndarray:
    """Extra ice thickness (A) of 1-2 faceted crystals, 3-6 particle diameters across."""
    n, pixel = cell.size_px, cell.pixel_size_angstrom
    extra = np.zeros((n, n))
    for _ in range(rng.integers(1, 3)):
        radius = rng.uniform(1.5, 3.0) * cell.diameter_angstrom / pixel
        radius = min(radius, 0.3 * n)
        centre = rng.uniform(0.2 * n, 0.8 * n, 2)
        count = rng.integers(5, 9)
        angles = np.sort(rng.uniform(0.0, 2.0 * np.pi, count))
        vertices = centre + radius * rng.uniform(0.7, 1.0, (count, 1)) * np.column_stack(
            [np.cos(angles), np.sin(angles)]
        )
        extra += rng.uniform(1500.0, 5000.0) * _polygon_mask((n, n), vertices)
    return extra


def _carbon(cell: Cell, rng: np.random.Generator) -> np.ndarray:
    """Carbon thickness (A): a half-plane edge crossing the field, covering 25-45 %."""
    n = cell.size_px
    angle = rng.uniform(0.0, 2.0 * np.pi)
    normal = np.array([np.cos(angle), np.sin(angle)])
    yy, xx = np.mgrid[:n, :n]
    along = (xx - n / 2) * normal[0] + (yy - n / 2) * normal[1]
    # the edge sits where 25-45 % of the field lies beyond it
    cut = np.quantile(along, 1.0 - rng.uniform(0.25, 0.45))
    return 150.0 * np.clip(along - cut + 0.5, 0.0, 1.0)


def ice_thickness(cell: Cell, rng: np.random.Generator) -> np.ndarray:
    n = cell.size_px
    yy, xx = np.mgrid[:n, :n] / n - 0.5
    thickness = np.full((n, n), cell.ice_thickness_angstrom)
    if cell.ice_gradient:
        angle = rng.uniform(0.0, 2.0 * np.pi)
        thickness += 300.0 * (np.cos(angle) * xx + np.sin(angle) * yy)
    if cell.contamination == "thick_ice":
        # the meniscus at a hole edge: ice thickens by 3000 A over the last 40 % of the field
        angle = rng.uniform(0.0, 2.0 * np.pi)
        along = np.cos(angle) * xx + np.sin(angle) * yy
        thickness += 3000.0 * np.clip((along - 0.1) / 0.4, 0.0, None) ** 1.5
    return thickness


# --- optics ----------------------------------------------------------------------------------


def ctf_2d(
    shape: tuple[int, int],
    pixel: float,
    defocus_u: float,
    defocus_v: float,
    angle_rad: float,
    bfactor: float,
) -> np.ndarray:
    """CTF x envelope on an rfft2 grid (negative at low frequency: particles dark)."""
    ky = np.fft.fftfreq(shape[0], pixel)[:, None]
    kx = np.fft.rfftfreq(shape[1], pixel)[None, :]
    k2 = kx**2 + ky**2
    azimuth = np.arctan2(ky, kx)
    defocus = 0.5 * (defocus_u + defocus_v) + 0.5 * (defocus_u - defocus_v) * np.cos(
        2.0 * (azimuth - angle_rad)
    )
    wavelength = WAVELENGTH_300KV_ANGSTROM
    chi = (
        np.pi * wavelength * defocus * k2
        - 0.5 * np.pi * SPHERICAL_ABERRATION_ANGSTROM * (wavelength**3) * k2**2
    )
    ctf = -(np.sqrt(1 - AMPLITUDE_CONTRAST**2) * np.sin(chi) + AMPLITUDE_CONTRAST * np.cos(chi))
    return ctf * np.exp(-0.25 * bfactor * k2)


def _expected_counts(
    cell: Cell, seed: int, with_particles: bool = True
) -> tuple[np.ndarray, Truth, np.random.Generator]:
    """Noise-free counts per pixel; the same seed gives the same scene with or without
    the particles (the random draws are made either way)."""
    rng = np.random.default_rng(seed)
    n, pixel = cell.size_px, cell.pixel_size_angstrom
    particles = _place_particles(cell, rng)
    protein = np.zeros((n, n))
    for row in particles.itertuples():
        balls = particle_balls(cell.shape, row.diameter_angstrom, rng)
        if with_particles:
            _project_balls(protein, balls, (row.x_px, row.y_px), pixel)

    ice = ice_thickness(cell, rng)
    carbon = np.zeros((n, n))
    contamination = np.zeros((n, n), dtype=bool)
    if cell.contamination == "crystals":
        crystal = _crystals(cell, rng)
        ice += crystal
        contamination = crystal > 0
    elif cell.contamination == "carbon":
        carbon = _carbon(cell, rng)
        contamination = carbon > 0
    elif cell.contamination == "thick_ice":
        contamination = ice > 2.0 * cell.ice_thickness_angstrom + 300.0

    phase = PHASE_PER_ANGSTROM * protein
    texture = ndimage.gaussian_filter(rng.normal(size=(n, n)), 3.0 / pixel)
    if carbon.any():
        # amorphous carbon: its thickness plus a grainy texture of a few Angstrom
        texture *= 8.0 / max(texture.std(), 1e-12)
        phase += CARBON_PHASE_PER_ANGSTROM * np.where(carbon > 0, carbon + texture, 0.0)
    # crystalline ice contrast: its excess over the vitreous mean inner potential is small,
    # absorption (below) dominates; a weak phase keeps the Fresnel fringe at its edge
    phase += 6.5e-4 * 0.5 * (ice - ice.mean())

    defocus = cell.defocus_um * 1e4
    astigmatism = rng.uniform(0.0, 400.0)
    # mirror padding: a periodic transform would wrap the ice ramp into a fringe at the border
    pad = n // 8
    padded_shape = (n + 2 * pad, n + 2 * pad)
    ctf = ctf_2d(
        padded_shape,
        pixel,
        defocus + astigmatism / 2,
        defocus - astigmatism / 2,
        rng.uniform(0.0, np.pi),
        cell.bfactor_angstrom2,
    )
    # detector MTF (counting): sinc at the pixel
    ky = np.fft.fftfreq(padded_shape[0])[:, None]
    kx = np.fft.rfftfreq(padded_shape[1])[None, :]
    mtf = np.sinc(kx) * np.sinc(ky)
    padded = np.pad(phase, pad, mode="reflect")
    contrast = np.fft.irfft2(np.fft.rfft2(padded) * ctf * mtf, s=padded_shape)[pad:-pad, pad:-pad]
    transmission = np.exp(
        -ice / ICE_INELASTIC_MFP_ANGSTROM - carbon / CARBON_INELASTIC_MFP_ANGSTROM
    )
    expected = cell.dose_e_per_angstrom2 * pixel**2 * transmission * np.maximum(1 + 2 * contrast, 0)
    return expected, Truth(particles, contamination, defocus), rng


def render_cell_micrograph(cell: Cell, seed: int) -> tuple[np.ndarray, Truth]:
    """One micrograph (float32 counts, [y, x]) of `cell` and its ground truth."""
    expected, truth, rng = _expected_counts(cell, seed)
    return rng.poisson(expected).astype(np.float32), truth


def ideal_detection_snr(cell: Cell, seed: int) -> np.ndarray:
    """Per particle: the SNR of an ideal matched filter (knowing the particle, its CTF-filtered
    image and its position) against shot noise, sqrt(sum (E - E0)^2 / E0) over a disc of 1.5x
    the particle's diameter. Below ~5 no picker can find the particle reliably among the
    noise maxima of a micrograph; it measures how hard a cell is, independent of any picker."""
    with_particles, truth, _ = _expected_counts(cell, seed)
    without, _, _ = _expected_counts(cell, seed, with_particles=False)
    signal2 = (with_particles - without) ** 2 / np.maximum(without, 1e-9)
    ny, nx = signal2.shape
    values = []
    for row in truth.particles.itertuples():
        radius = 0.75 * row.diameter_angstrom / cell.pixel_size_angstrom
        ys = slice(max(int(row.y_px - radius), 0), min(int(row.y_px + radius) + 1, ny))
        xs = slice(max(int(row.x_px - radius), 0), min(int(row.x_px + radius) + 1, nx))
        yy, xx = np.mgrid[ys, xs]
        inside = (xx - row.x_px) ** 2 + (yy - row.y_px) ** 2 <= radius**2
        values.append(np.sqrt(signal2[ys, xs][inside].sum()))
    return np.asarray(values)


# --- the matrix and the score ----------------------------------------------------------------

FACTORS: dict[str, tuple] = {
    "shape": SHAPES,
    "diameter_angstrom": (60.0, 150.0, 400.0),
    "pixel_size_angstrom": (0.5, 1.0, 1.5),
    "crowding": ("sparse", "medium", "crowded"),
    "defocus_um": (0.5, 2.0, 3.5),
    "dose_e_per_angstrom2": (20.0, 40.0, 60.0),
    "ice_gradient": (False, True),
}


def pairwise_cells(max_size_px: int = 4096, field_diameters: float = 7.0) -> list[Cell]:
    """A covering design: every pair of levels of any two factors occurs in some cell.

    Built greedily (deterministic). The field holds at least `field_diameters` particle
    diameters across (capped at `max_size_px`, at least 1024 px).
    """
    names = list(FACTORS)
    uncovered = {
        (a, va, b, vb)
        for a, b in itertools.combinations(names, 2)
        for va in FACTORS[a]
        for vb in FACTORS[b]
    }
    rows: list[dict] = []
    candidates = list(itertools.product(*(FACTORS[name] for name in names)))
    while uncovered:
        best, gain = None, -1
        for values in candidates:
            row = dict(zip(names, values, strict=True))
            covered = sum(
                (a, row[a], b, row[b]) in uncovered for a, b in itertools.combinations(names, 2)
            )
            if covered > gain:
                best, gain = row, covered
        assert best is not None
        rows.append(best)
        uncovered -= {(a, best[a], b, best[b]) for a, b in itertools.combinations(names, 2)}
    cells = []
    for row in rows:
        size = field_diameters * row["diameter_angstrom"] / row["pixel_size_angstrom"]
        size_px = int(min(max(1024, 256 * np.ceil(size / 256)), max_size_px))
        cells.append(Cell(**row, size_px=size_px))
    return cells


def match_picks(
    picks_xy: np.ndarray,
    truth: pd.DataFrame,
    pixel_size_angstrom: float,
    image_shape: tuple[int, int],
    margin_angstrom: float,
    tolerance_fraction: float = 0.3,
    exclude: np.ndarray | None = None,
) -> dict[str, float]:
    """One-to-one matching of picks to particle centres.

    A pick matches a particle when within `tolerance_fraction` x its largest dimension.
    Particles and picks closer than `margin_angstrom` to the border, or on `exclude`
    (boolean [y, x], e.g. contamination), are not scored. Returns precision, recall, counts.
    """
    ny, nx = image_shape
    margin = margin_angstrom / pixel_size_angstrom

    def scored(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        keep = (x >= margin) & (x < nx - margin) & (y >= margin) & (y < ny - margin)
        if exclude is not None:
            xi = np.clip(np.round(x).astype(int), 0, nx - 1)
            yi = np.clip(np.round(y).astype(int), 0, ny - 1)
            keep &= ~exclude[yi, xi]
        return keep

    true_xy = truth[["x_px", "y_px"]].to_numpy(dtype=float)
    tolerance = tolerance_fraction * truth["diameter_angstrom"].to_numpy() / pixel_size_angstrom
    picks_xy = np.asarray(picks_xy, dtype=float).reshape(-1, 2)
    matched_pick = np.zeros(len(picks_xy), dtype=bool)
    matched_true = np.zeros(len(true_xy), dtype=bool)
    if len(picks_xy) and len(true_xy):
        distance = np.hypot(
            picks_xy[:, None, 0] - true_xy[None, :, 0], picks_xy[:, None, 1] - true_xy[None, :, 1]
        )
        allowed = distance <= tolerance[None, :]
        cost = np.where(allowed, distance, 1e9)
        rows, cols = linear_sum_assignment(cost)
        good = allowed[rows, cols]
        matched_pick[rows[good]] = True
        matched_true[cols[good]] = True
    pick_scored = scored(picks_xy[:, 0], picks_xy[:, 1])
    true_scored = scored(true_xy[:, 0], true_xy[:, 1])
    picks = int(pick_scored.sum())
    particles = int(true_scored.sum())
    true_positive_picks = int((matched_pick & pick_scored).sum())
    found = int((matched_true & true_scored).sum())
    return {
        "precision": true_positive_picks / picks if picks else 1.0,
        "recall": found / particles if particles else 1.0,
        "picks": picks,
        "particles": particles,
    }


def score_cell(
    cell: Cell, picks_per_micrograph: list[np.ndarray], micrographs: list[tuple[np.ndarray, Truth]]
) -> dict[str, float]:
    """Precision and recall pooled over a cell's micrographs (`match_picks` each, margin half
    the largest diameter); precision is NaN when nothing was picked."""
    true_positives = picks = found = particles = 0.0
    for xy, (image, truth) in zip(picks_per_micrograph, micrographs, strict=True):
        result = match_picks(
            xy,
            truth.particles,
            cell.pixel_size_angstrom,
            image.shape,
            0.5 * cell.diameter_range_angstrom[1],
        )
        true_positives += result["precision"] * result["picks"]
        picks += result["picks"]
        found += result["recall"] * result["particles"]
        particles += result["particles"]
    return {
        "precision": true_positives / picks if picks else float("nan"),
        "recall": found / particles if particles else float("nan"),
        "picks": int(picks),
        "particles": int(particles),
    }
