"""An alignment test bench independent of `emproc.simulate.tomo` and of the aligner.

Tilt series of specimens the aligner was *not* tuned on, with their own shapes and their own
projection code, so that the generator and the aligner cannot agree by construction:

- ``crowded``: a cytoplasm-like slab packed with Gaussian blobs (macromolecules of 2-8 nm)
  and filaments (chains of small blobs along random 3D lines);
- ``sparse_carbon``: a thin sparse slab with a few blobs, on a 12 nm amorphous carbon film
  whose edge crosses the field (the classic trap for correlation: a strong straight edge).
  The film's phase is sigma V0 t with the mean inner potential of amorphous carbon (0.84
  rad through 12 nm at 300 kV), ~10x the blobs' phase per Angstrom, as in real images
  where a carbon edge is the strongest feature; its zero-loss amplitude falls with the
  inelastic mean free path;
- either with gold beads (spheres; some on each surface of the slab, some placed outside the
  field perpendicular to the axis so they leave or enter at high tilt, some in touching pairs).

Projections are exact line integrals on the raw detector grid: a 3D Gaussian projects to a
2D Gaussian, a sphere to its chord length 2 sqrt(R^2 - r^2) (3x3 supersampled per pixel), a
carbon slab cut by a half-plane to the length of a ray segment inside both. Images get a
weak-phase CTF (series defocus drawn per series, +-1000 A rms per tilt), gold's amplitude
contrast, Poisson noise and a per-exposure ice texture, and are returned as contrast
``1 - I/mean`` (dense positive), sorted by tilt angle.

Geometry (IMOD's): specimen (x, y, z) projects at tilt b to aligned (x cos b + z sin b, y);
raw = R(axis) aligned + shift, relative to the image centre (index n/2), shift (x, y) px.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SPECIMENS = ("crowded", "sparse_carbon")
PAD_PX = 24  # the CTF is applied on a padded field so it does not wrap
PHASE_PER_DENSITY = 0.0008  # rad per (density x Angstrom) of blobs and gold
# Amorphous carbon: phase = sigma V0 t, interaction constant sigma = 6.53e-4 rad/(V A) at
# 300 kV, mean inner potential V0 ~ 10.7 V (electron holography of amorphous carbon films,
# 9-11 V in the literature): 0.0070 rad/A, 0.84 rad through 12 nm. Its zero-loss amplitude
# falls as exp(-t / 2000 A) (inelastic mean free path of carbon at 300 kV, energy-filtered).
CARBON_PHASE_PER_ANGSTROM = 6.53e-4 * 10.7
CARBON_INELASTIC_MFP_ANGSTROM = 2000.0


@dataclass(frozen=True)
class SlabSeriesParams:
    specimen: str = "crowded"
    image_size_px: int = 256
    pixel_size_angstrom: float = 4.0
    max_tilt_deg: float = 60.0
    tilt_step_deg: float = 3.0
    shift_rms_px: float = 4.0  # independent random shift per tilt (x and y each)
    axis_range_deg: tuple[float, float] = (-100.0, -80.0)  # true axis drawn uniformly
    mdoc_axis_error_deg: float = 2.0  # the guess handed to the aligner: truth + this
    beads: int = 0  # gold beads in the field (0: none)
    bead_diameter_nm: float = 10.0
    # beam-induced local motion: each bead moves on its own by this rms (px, x and y) per
    # tilt, so a rigid projection model leaves the ~0.3 px residuals tiltalign reports
    bead_jitter_px: float = 0.25
    dose_per_tilt_e_per_angstrom2: float = 3.0
    defocus_range_angstrom: tuple[float, float] = (25000.0, 40000.0)
    slab_thickness_angstrom: float = 0.0  # 0: the specimen type's own


@dataclass(frozen=True)
class SlabSeries:
    images: np.ndarray  # [tilt, y, x] float32 contrast, sorted by tilt angle
    tilt_angles_deg: np.ndarray
    tilt_axis_angle_deg: float  # truth
    axis_guess_deg: float  # what an mdoc would say
    shifts_px: np.ndarray  # [tilt, (x, y)] raw frame, truth
    bead_positions_angstrom: np.ndarray  # [bead, (x, y, z)] specimen frame
    pixel_size_angstrom: float
    specimen: str
    extras: dict = field(default_factory=dict)


def _blobs(params: SlabSeriesParams, rng: np.random.Generator, thickness: float, extent: float):
    """Gaussian blobs (x, y, z, sigma, amplitude) in Angstrom; amplitude = density."""
    # sigma 15-70 A: from small complexes to ribosome-sized (25 nm across) particles
    if params.specimen == "crowded":
        count, sigmas = 450, (15.0, 70.0)
    else:
        count, sigmas = 70, (15.0, 60.0)
    centres = np.column_stack(
        [
            rng.uniform(-extent, extent, count),
            rng.uniform(-extent, extent, count),
            rng.uniform(-thickness / 2, thickness / 2, count),
        ]
    )
    sigma = rng.uniform(*sigmas, count)
    blobs = [np.column_stack([centres, sigma, rng.uniform(0.5, 1.5, count)])]
    if params.specimen == "crowded":  # filaments: chains of small blobs along 3D lines
        for _ in range(12):
            start = np.array(
                [*rng.uniform(-extent, extent, 2), rng.uniform(-thickness / 3, thickness / 3)]
            )
            direction = rng.normal(size=3) * np.array([1.0, 1.0, 0.15])
            direction /= np.linalg.norm(direction)
            steps = np.arange(40)[:, None] * 12.0 * direction
            chain = start + steps
            blobs.append(np.column_stack([chain, np.full(40, 9.0), np.full(40, 1.2)]))
    return np.vstack(blobs)


def _bead_centres(
    params: SlabSeriesParams, rng: np.random.Generator, thickness: float, field_half: float
) -> np.ndarray:
    """Beads on both slab surfaces; a quarter placed past the field edge perpendicular to
    the axis (they enter at high tilt or leave), every sixth touching a neighbour."""
    if params.beads <= 0:
        return np.zeros((0, 3))
    radius = params.bead_diameter_nm * 5.0
    centres = []
    for index in range(params.beads):
        surface = (1 if index % 2 else -1) * (thickness / 2 + radius * 0.6)
        if index % 4 == 3:  # just outside the field in x (perpendicular to the axis)
            x = rng.choice([-1, 1]) * rng.uniform(field_half * 0.95, field_half * 1.2)
        else:
            x = rng.uniform(-0.85, 0.85) * field_half
        y = rng.uniform(-0.85, 0.85) * field_half
        if index % 6 == 5 and centres:  # touching the previous bead
            angle = rng.uniform(0, 2 * np.pi)
            previous = centres[-1]
            x = previous[0] + 2.05 * radius * np.cos(angle)
            y = previous[1] + 2.05 * radius * np.sin(angle)
            surface = previous[2]
        centres.append((x, y, surface))
    return np.asarray(centres)


def _rotation(angle_deg: float) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


def _carbon_path(
    aligned_x: np.ndarray, aligned_y: np.ndarray, beta: float, carbon: dict
) -> np.ndarray:
    """Length (A) of each ray inside the carbon film: |z - z0| < t/2 and n.(x, y) > c.

    The ray through aligned (u, v) is (u cos b - s sin b, v, u sin b + s cos b), s along it.
    """
    z0, t, normal, offset = carbon["z"], carbon["thickness"], carbon["normal"], carbon["offset"]
    cos_b, sin_b = np.cos(beta), np.sin(beta)
    s_low = (z0 - t / 2 - aligned_x * sin_b) / cos_b
    s_high = (z0 + t / 2 - aligned_x * sin_b) / cos_b
    # half-plane along the ray: a + k s > c with a = n.(u cos b, v), k = -n_x sin b
    a = normal[0] * aligned_x * cos_b + normal[1] * aligned_y
    k = -normal[0] * sin_b
    if abs(k) < 1e-12:
        inside = (a > offset).astype(float)
        return inside * (s_high - s_low)
    bound = (offset - a) / k
    if k > 0:
        s_low = np.maximum(s_low, bound)
    else:
        s_high = np.minimum(s_high, bound)
    return np.clip(s_high - s_low, 0.0, None)


def _ctf_filter(shape: tuple[int, int], pixel: float, defocus: float) -> np.ndarray:
    """Weak-phase CTF (300 kV, Cs 2.7 mm, 7% amplitude contrast) with a B 100 envelope."""
    wavelength = 0.01969
    ky = np.fft.fftfreq(shape[0], d=pixel)[:, None]
    kx = np.fft.rfftfreq(shape[1], d=pixel)[None, :]
    k2 = kx**2 + ky**2
    chi = np.pi * wavelength * defocus * k2 - 0.5 * np.pi * 2.7e7 * wavelength**3 * k2**2
    return -(np.sin(chi) + 0.07 * np.cos(chi)) * np.exp(-25.0 * k2)


def simulate_slab_series(params: SlabSeriesParams, seed: int) -> SlabSeries:
    """One tilt series (see the module docstring); reproducible from `seed`."""
    if params.specimen not in SPECIMENS:
        raise ValueError(f"unknown specimen {params.specimen!r}; known: {', '.join(SPECIMENS)}")
    rng = np.random.default_rng(seed)
    n, pixel = params.image_size_px, params.pixel_size_angstrom
    field_half = n / 2 * pixel
    own_thickness = 800.0 if params.specimen == "crowded" else 300.0
    thickness = params.slab_thickness_angstrom or own_thickness
    blobs = _blobs(params, rng, thickness, 1.6 * field_half)
    beads = _bead_centres(params, rng, thickness, field_half)
    bead_radius = params.bead_diameter_nm * 5.0
    carbon = None
    if params.specimen == "sparse_carbon":
        direction = rng.uniform(0, 2 * np.pi)
        carbon = {
            "z": -thickness / 2 - 60.0,
            "thickness": 120.0,
            "normal": (np.cos(direction), np.sin(direction)),
            "offset": rng.uniform(-0.3, 0.3) * field_half,
            "density": CARBON_PHASE_PER_ANGSTROM / PHASE_PER_DENSITY,
        }
    count = int(round(2 * params.max_tilt_deg / params.tilt_step_deg)) + 1
    angles = np.linspace(-params.max_tilt_deg, params.max_tilt_deg, count)
    axis = float(rng.uniform(*params.axis_range_deg))
    shifts = rng.normal(0.0, params.shift_rms_px, size=(count, 2))
    shifts[np.argmin(np.abs(angles))] = 0.0
    size = n + 2 * PAD_PX
    grid = np.arange(size) - size / 2
    ry, rx = np.meshgrid(grid, grid, indexing="ij")
    rotation = _rotation(axis)
    series_defocus = rng.uniform(*params.defocus_range_angstrom)
    images = np.empty((count, n, n), dtype=np.float32)
    electrons = params.dose_per_tilt_e_per_angstrom2 * pixel**2
    for k, angle in enumerate(angles):
        beta = np.deg2rad(angle)
        projection = np.zeros((size, size))
        # aligned centre of each blob, then raw pixel position
        aligned = np.column_stack(
            [blobs[:, 0] * np.cos(beta) + blobs[:, 2] * np.sin(beta), blobs[:, 1]]
        )
        raw = aligned / pixel @ rotation.T + shifts[k] + size / 2
        for (cx, cy), (_, _, _, sigma, density) in zip(raw, blobs, strict=True):
            sigma_px = sigma / pixel
            reach = 4 * sigma_px
            x0, x1 = int(max(cx - reach, 0)), int(min(cx + reach + 1, size))
            y0, y1 = int(max(cy - reach, 0)), int(min(cy + reach + 1, size))
            if x0 >= x1 or y0 >= y1:
                continue
            xs = np.arange(x0, x1) - cx
            ys = np.arange(y0, y1) - cy
            gauss_x = np.exp(-0.5 * (xs / sigma_px) ** 2)
            gauss_y = np.exp(-0.5 * (ys / sigma_px) ** 2)
            projection[y0:y1, x0:x1] += (
                density * sigma * np.sqrt(2 * np.pi) * np.outer(gauss_y, gauss_x)
            )
        gold = np.zeros_like(projection)
        carbon_path = np.zeros_like(projection)
        if carbon is not None or len(beads):
            jitter = rng.normal(0.0, params.bead_jitter_px, size=(len(beads), 2))
            hard, gold, carbon_path = _hard_objects(
                rx, ry, beta, rotation, shifts[k], pixel, beads, bead_radius, carbon, jitter
            )
            projection += hard
        phase = PHASE_PER_DENSITY * projection
        phase += rng.normal(0.0, 0.25 / pixel / np.sqrt(np.cos(beta)), size=phase.shape)
        defocus = series_defocus + rng.normal(0.0, 1000.0)  # autofocus scatter per tilt
        spectrum = np.fft.rfft2(phase) * _ctf_filter(phase.shape, pixel, defocus)
        # gold scatters outside the objective aperture: amplitude contrast, ~50% transmission
        # through the middle of a 10 nm bead
        absorption = np.exp(-0.007 * gold - carbon_path / CARBON_INELASTIC_MFP_ANGSTROM)
        intensity = (1.0 + 2.0 * np.fft.irfft2(spectrum, s=phase.shape)) * absorption
        field_intensity = intensity[PAD_PX : PAD_PX + n, PAD_PX : PAD_PX + n]
        counts = rng.poisson(np.clip(field_intensity, 0.0, None) * electrons)
        images[k] = 1.0 - counts / counts.mean()
    return SlabSeries(
        images=images,
        tilt_angles_deg=angles,
        tilt_axis_angle_deg=axis,
        axis_guess_deg=axis + params.mdoc_axis_error_deg,
        shifts_px=shifts,
        bead_positions_angstrom=beads,
        pixel_size_angstrom=pixel,
        specimen=params.specimen,
        extras={"carbon": carbon, "slab_thickness_angstrom": thickness},
    )


def _hard_objects(
    rx: np.ndarray,
    ry: np.ndarray,
    beta: float,
    rotation: np.ndarray,
    shift: np.ndarray,
    pixel: float,
    beads: np.ndarray,
    bead_radius: float,
    carbon: dict | None,
    jitter_px: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Projected density of the gold spheres and the carbon film, the gold chord length and
    the path through carbon (A), 3x3 supersampled (their edges are sharp)."""
    total = np.zeros_like(rx)
    gold = np.zeros_like(rx)
    carbon_path = np.zeros_like(rx)
    offsets = (np.arange(3) - 1) / 3.0
    inverse = rotation.T
    size = rx.shape[0]
    if carbon is not None:
        for oy in offsets:
            for ox in offsets:
                dx, dy = rx + ox - shift[0], ry + oy - shift[1]
                ax = (inverse[0, 0] * dx + inverse[0, 1] * dy) * pixel
                ay = (inverse[1, 0] * dx + inverse[1, 1] * dy) * pixel
                carbon_path += _carbon_path(ax, ay, beta, carbon) / 9.0
        total += carbon["density"] * carbon_path
    radius_px = bead_radius / pixel
    for (bx, by, bz), jitter in zip(beads, jitter_px, strict=True):
        aligned = np.array([bx * np.cos(beta) + bz * np.sin(beta), by]) / pixel
        cx, cy = rotation @ aligned + shift + size / 2 + jitter
        x0, x1 = int(max(cx - radius_px - 2, 0)), int(min(cx + radius_px + 3, size))
        y0, y1 = int(max(cy - radius_px - 2, 0)), int(min(cy + radius_px + 3, size))
        if x0 >= x1 or y0 >= y1:
            continue
        xs = np.arange(x0, x1) - cx
        ys = np.arange(y0, y1) - cy
        chord = np.zeros((y1 - y0, x1 - x0))
        for oy in offsets:
            for ox in offsets:
                r2 = (xs[None, :] + ox) ** 2 + (ys[:, None] + oy) ** 2
                chord += 2.0 * np.sqrt(np.clip(radius_px**2 - r2, 0.0, None)) * pixel / 9.0
        total[y0:y1, x0:x1] += 12.0 * chord  # gold: ~12x the density of protein
        gold[y0:y1, x0:x1] += chord
    return total, gold, carbon_path
