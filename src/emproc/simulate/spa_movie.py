"""Single-particle movies and micrographs with exact ground truth.

Image formation (weak-phase object, one specimen per seed):
1. projected density P = particle projections (thickness / diameter) + amorphous ice;
2. specimen image I0 = IFFT(CTF * FFT(P)) with the true astigmatic CTF and B-factor envelope
   (`emproc.ctf.model.ctf_2d`); particles come out dark at underfocus, as in real data;
3. frame k: I_k = I0 moved by the drift of frame k (exact Fourier shift for the global part,
   cubic-spline warp for the optional local part), optionally low-passed by radiation damage;
4. expected counts E_k = dose_per_frame * pixel_size^2 * (1 + contrast * I_k);
5. raw counts = Poisson(E_k * s) with s = 1 / gain_reference the pixel sensitivity.
The specimen is rendered on a canvas padded by the largest displacement, so features that
drift into the frame are real specimen, not wrapped-around edges.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import scipy.fft

from emproc.ctf.model import ctf_2d, frequency_grid
from emproc.simulate import density, detector, drift

PARTICLE_COLUMNS = ("x_px", "y_px", "shape_id", "shape_name", "rot_deg", "tilt_deg", "psi_deg")


@dataclass(frozen=True)
class SpaMovieParams:
    """Acquisition and specimen parameters of one simulated exposure."""

    shape_px: tuple[int, int] = (1024, 1024)  # (ny, nx)
    number_of_frames: int = 16
    pixel_size_angstrom: float = 1.0
    dose_per_frame_e_per_angstrom2: float = 1.0  # per-pixel mean counts = dose * pixel_size^2
    voltage_kv: float = 300.0
    spherical_aberration_mm: float = 2.7
    amplitude_contrast: float = 0.1
    defocus_range_angstrom: tuple[float, float] = (8000.0, 35000.0)  # mean defocus, uniform
    max_astigmatism_angstrom: float = 1000.0  # |U - V| uniform in [0, max]
    phase_shift_deg: float = 0.0
    bfactor_angstrom2: float = 50.0  # CTF envelope of the specimen image
    number_of_particles: int = 60  # requested; fewer are placed when they do not fit
    particle_diameter_angstrom: float = 150.0
    number_of_shapes: int = 3  # distinct 3D density models (>= 3)
    total_drift_px: float = 8.0  # path length of the smooth global drift
    local_deformation_px: float = 0.0  # largest local shift at the last frame; 0 = none
    dose_damage: bool = False  # high-frequency loss with accumulated dose
    # intensity modulation per unit projected density: 2 x phase shift (rad) through one
    # particle diameter of protein in ice (~0.00065 rad/(V A) x ~1.5 V x 150 A x 2)
    contrast: float = 0.3
    ice_std: float = 0.5  # std of the ice background, same units as the projected density
    ice_correlation_length_angstrom: float = 4.0

    def __post_init__(self) -> None:
        ny, nx = self.shape_px
        problems = []
        if ny < 16 or nx < 16:
            problems.append(f"shape_px {self.shape_px} smaller than 16x16")
        if self.number_of_frames < 1:
            problems.append("number_of_frames < 1")
        if self.pixel_size_angstrom <= 0 or self.dose_per_frame_e_per_angstrom2 <= 0:
            problems.append("pixel size and dose per frame must be positive")
        low, high = self.defocus_range_angstrom
        if not 0 < low <= high:
            problems.append(
                f"defocus_range_angstrom {self.defocus_range_angstrom} not 0 < low <= high"
            )
        if self.max_astigmatism_angstrom < 0 or self.max_astigmatism_angstrom >= 2 * low:
            problems.append("max_astigmatism_angstrom must be in [0, 2 * lowest defocus)")
        if self.number_of_shapes < 3:
            problems.append(f"number_of_shapes must be >= 3, got {self.number_of_shapes}")
        if self.total_drift_px < 0 or self.local_deformation_px < 0:
            problems.append("drift amplitudes must be >= 0")
        if not 0 <= self.amplitude_contrast < 1:
            problems.append("amplitude_contrast must be in [0, 1)")
        if problems:
            raise ValueError("invalid SpaMovieParams: " + "; ".join(problems))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SpaMovieParams:
        values = dict(data)
        for key in ("shape_px", "defocus_range_angstrom"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


@dataclass(frozen=True, eq=False)
class MovieTruth:
    """Ground truth of one simulated exposure (see `emproc.simulate.drift` for the motion model).

    `shifts_px[k]` is the global drift (x, y) of frame k; `local_shift_px(k, x, y)` the local
    part at frame-0 position (x, y); features at p in frame 0 sit at p + both in frame k.
    """

    shape_px: tuple[int, int]
    pixel_size_angstrom: float
    dose_per_frame_e_per_angstrom2: float
    shifts_px: np.ndarray
    local_coefficients_px: np.ndarray  # (2, 5) dx, dy over drift.LOCAL_TERMS
    local_time_profile: np.ndarray  # (number_of_frames,), 0 at frame 0
    defocus_u_angstrom: float
    defocus_v_angstrom: float
    astigmatism_angle_deg: float
    phase_shift_deg: float
    bfactor_angstrom2: float
    particles: pd.DataFrame
    contrast: float
    seed: int
    dose_damage: bool = False
    # on request (keep_images=True): frame-0 specimen image I0 (CTF applied, unitless) and the
    # particle-only projected density (no ice, no CTF), both on the frame grid, float32
    specimen_image: np.ndarray | None = field(default=None, repr=False)
    particle_density: np.ndarray | None = field(default=None, repr=False)

    @property
    def number_of_frames(self) -> int:
        return int(self.shifts_px.shape[0])

    @property
    def defocus_angstrom(self) -> float:
        return 0.5 * (self.defocus_u_angstrom + self.defocus_v_angstrom)

    def local_shift_px(
        self, frame: int, x_px: np.ndarray | float, y_px: np.ndarray | float
    ) -> np.ndarray:
        """Local (dx, dy) at frame-0 position(s); shape (..., 2)."""
        dx, dy = drift.local_shift_px(
            self.local_coefficients_px,
            float(self.local_time_profile[frame]),
            x_px,
            y_px,
            self.shape_px,
        )
        return np.stack(np.broadcast_arrays(dx, dy), axis=-1)

    def shift_px(
        self, frame: int, x_px: np.ndarray | float, y_px: np.ndarray | float
    ) -> np.ndarray:
        """Total (dx, dy) = global + local of a feature at frame-0 position(s); shape (..., 2)."""
        return self.shifts_px[frame] + self.local_shift_px(frame, x_px, y_px)

    def expected_counts(self, frame: int) -> np.ndarray:
        """Noise-free counts of frame `frame` (before gain), from the kept specimen image.

        Global drift only (exact Fourier shift); needs keep_images=True and no dose damage.
        """
        if self.specimen_image is None:
            raise ValueError("expected_counts needs a truth simulated with keep_images=True")
        spectrum = scipy.fft.rfft2(self.specimen_image)
        moved = drift.shifted_image(spectrum, self.shape_px, self.shifts_px[frame])
        dose_px = self.dose_per_frame_e_per_angstrom2 * self.pixel_size_angstrom**2
        return dose_px * (1.0 + self.contrast * moved)

    def to_dict(self) -> dict:
        """JSON-ready dict (no images)."""
        return {
            "shape_px": list(self.shape_px),
            "pixel_size_angstrom": self.pixel_size_angstrom,
            "dose_per_frame_e_per_angstrom2": self.dose_per_frame_e_per_angstrom2,
            "shifts_px": self.shifts_px.tolist(),
            "local_coefficients_px": self.local_coefficients_px.tolist(),
            "local_terms": list(drift.LOCAL_TERMS),
            "local_time_profile": self.local_time_profile.tolist(),
            "defocus_u_angstrom": self.defocus_u_angstrom,
            "defocus_v_angstrom": self.defocus_v_angstrom,
            "astigmatism_angle_deg": self.astigmatism_angle_deg,
            "phase_shift_deg": self.phase_shift_deg,
            "bfactor_angstrom2": self.bfactor_angstrom2,
            "particles": self.particles.to_dict(orient="list"),
            "contrast": self.contrast,
            "seed": self.seed,
            "dose_damage": self.dose_damage,
        }

    @classmethod
    def from_dict(cls, data: dict) -> MovieTruth:
        particles = pd.DataFrame(data["particles"], columns=list(PARTICLE_COLUMNS))
        return cls(
            shape_px=tuple(data["shape_px"]),
            pixel_size_angstrom=float(data["pixel_size_angstrom"]),
            dose_per_frame_e_per_angstrom2=float(data["dose_per_frame_e_per_angstrom2"]),
            shifts_px=np.asarray(data["shifts_px"], dtype=float).reshape(-1, 2),
            local_coefficients_px=np.asarray(data["local_coefficients_px"], dtype=float),
            local_time_profile=np.asarray(data["local_time_profile"], dtype=float),
            defocus_u_angstrom=float(data["defocus_u_angstrom"]),
            defocus_v_angstrom=float(data["defocus_v_angstrom"]),
            astigmatism_angle_deg=float(data["astigmatism_angle_deg"]),
            phase_shift_deg=float(data["phase_shift_deg"]),
            bfactor_angstrom2=float(data["bfactor_angstrom2"]),
            particles=_typed_particles(particles),
            contrast=float(data["contrast"]),
            seed=int(data["seed"]),
            dose_damage=bool(data.get("dose_damage", False)),
        )


def _typed_particles(particles: pd.DataFrame) -> pd.DataFrame:
    return particles.astype(
        {
            "x_px": float,
            "y_px": float,
            "shape_id": int,
            "shape_name": str,
            "rot_deg": float,
            "tilt_deg": float,
            "psi_deg": float,
        }
    )


def _stream(seed: int, purpose: int) -> np.random.Generator:
    # independent sub-streams: changing one part (e.g. drift) leaves the others identical
    return np.random.default_rng([seed, purpose])


@dataclass(frozen=True, eq=False)
class _Specimen:
    spectrum: np.ndarray  # rfft2 of I0 on the canvas (CTF applied), complex64
    canvas_shape: tuple[int, int]
    origin_yx: tuple[int, int]  # canvas pixel of frame pixel (0, 0)
    particle_density: np.ndarray | None  # frame-sized, only when requested


def _margin_px(params: SpaMovieParams) -> int:
    return int(math.ceil(params.total_drift_px + params.local_deformation_px)) + 8


def _draw_ctf(params: SpaMovieParams, seed: int) -> tuple[float, float, float]:
    rng = _stream(seed, 1)
    mean = rng.uniform(*params.defocus_range_angstrom)
    astigmatism = rng.uniform(0.0, params.max_astigmatism_angstrom)
    angle = rng.uniform(-90.0, 90.0)
    return mean + 0.5 * astigmatism, mean - 0.5 * astigmatism, angle


def _draw_particles(params: SpaMovieParams, seed: int) -> pd.DataFrame:
    rng = _stream(seed, 2)
    diameter_px = params.particle_diameter_angstrom / params.pixel_size_angstrom
    edge = 0.5 * diameter_px + _margin_px(params)
    positions = density.place_particles(
        rng, params.shape_px, params.number_of_particles, diameter_px, edge
    )
    count = len(positions)
    shape_ids = rng.integers(0, params.number_of_shapes, count)
    angles = density.random_euler_angles_deg(rng, count)
    models = density.make_density_models(params.number_of_shapes, params.particle_diameter_angstrom)
    names = [models[i].name for i in shape_ids]
    return _typed_particles(
        pd.DataFrame(
            {
                "x_px": positions[:, 0],
                "y_px": positions[:, 1],
                "shape_id": shape_ids,
                "shape_name": names,
                "rot_deg": angles[:, 0],
                "tilt_deg": angles[:, 1],
                "psi_deg": angles[:, 2],
            },
            columns=list(PARTICLE_COLUMNS),
        )
    )


def _render_particles(
    params: SpaMovieParams,
    particles: pd.DataFrame,
    shape: tuple[int, int],
    origin_yx: tuple[int, int],
) -> np.ndarray:
    models = density.make_density_models(params.number_of_shapes, params.particle_diameter_angstrom)
    image = np.zeros(shape, dtype=np.float32)
    for row in particles.itertuples(index=False):
        density.render_projection(
            image,
            models[row.shape_id],
            (row.x_px + origin_yx[1], row.y_px + origin_yx[0]),
            (row.rot_deg, row.tilt_deg, row.psi_deg),
            params.pixel_size_angstrom,
            params.particle_diameter_angstrom,
        )
    return image


def _build_specimen(
    params: SpaMovieParams,
    seed: int,
    defocus: tuple[float, float, float],
    particles: pd.DataFrame,
    keep_density: bool,
    workers: int,
) -> _Specimen:
    ny, nx = params.shape_px
    margin = _margin_px(params)
    canvas = (
        scipy.fft.next_fast_len(ny + 2 * margin, real=True),
        scipy.fft.next_fast_len(nx + 2 * margin, real=True),
    )
    origin = (margin, margin)
    projected = _render_particles(params, particles, canvas, origin)
    kept = None
    if keep_density:
        kept = projected[origin[0] : origin[0] + ny, origin[1] : origin[1] + nx].copy()
    spectrum = scipy.fft.rfft2(projected, workers=workers)
    del projected
    spectrum += density.ice_spectrum(
        _stream(seed, 3),
        canvas,
        params.pixel_size_angstrom,
        params.ice_std,
        params.ice_correlation_length_angstrom,
        workers=workers,
    )
    ctf = ctf_2d(
        canvas,
        params.pixel_size_angstrom,
        defocus[0],
        defocus[1],
        defocus[2],
        voltage_kv=params.voltage_kv,
        spherical_aberration_mm=params.spherical_aberration_mm,
        amplitude_contrast=params.amplitude_contrast,
        phase_shift_deg=params.phase_shift_deg,
        bfactor_angstrom2=params.bfactor_angstrom2,
        rfft=True,
    )
    spectrum *= ctf.astype(np.float32)
    return _Specimen(spectrum.astype(np.complex64, copy=False), canvas, origin, kept)


def dose_damage_filter(
    canvas_shape: tuple[int, int], pixel_size_angstrom: float, accumulated_dose: float
) -> np.ndarray:
    """Amplitude attenuation exp(-N / (2 Ne(k))) on an rfft grid (Grant & Grigorieff 2015).

    Ne(k) = 0.245 k^-1.665 + 2.81 e-/A^2 is the critical exposure at spatial frequency k (1/A).
    """
    frequency, _ = frequency_grid(canvas_shape, pixel_size_angstrom, rfft=True)
    with np.errstate(divide="ignore"):
        critical = 0.245 * frequency**-1.665 + 2.81
    return np.exp(-accumulated_dose / (2.0 * critical)).astype(np.float32)


def _frame_dose(params: SpaMovieParams, frame: int) -> float:
    # dose accumulated up to the middle of the frame
    return (frame + 0.5) * params.dose_per_frame_e_per_angstrom2


def _modulation(
    params: SpaMovieParams,
    specimen: _Specimen,
    frame: int,
    shift_xy: np.ndarray,
    local_coefficients: np.ndarray,
    time_value: float,
    workers: int,
    damage: bool = True,
) -> np.ndarray:
    """Frame-sized I_k (unitless): the specimen image as it sits in frame `frame`."""
    spectrum = specimen.spectrum
    if params.dose_damage and damage:
        spectrum = spectrum * dose_damage_filter(
            specimen.canvas_shape, params.pixel_size_angstrom, _frame_dose(params, frame)
        )
    ny, nx = params.shape_px
    oy, ox = specimen.origin_yx
    shifted = drift.shifted_image(spectrum, specimen.canvas_shape, shift_xy, workers=workers)
    if time_value and np.any(local_coefficients):
        return drift.warp_locally(
            shifted, specimen.origin_yx, params.shape_px, shift_xy, local_coefficients, time_value
        )
    return np.ascontiguousarray(shifted[oy : oy + ny, ox : ox + nx])


def simulate_movie(
    params: SpaMovieParams,
    seed: int,
    gain_reference: np.ndarray | None = None,
    *,
    keep_images: bool = False,
    workers: int = 1,
) -> tuple[np.ndarray, MovieTruth]:
    """Raw movie (n, ny, nx) of integer counts as the detector records them, and its truth.

    Stored as uint8 when every count fits (like EPU K3 TIFFs), else uint16. With a
    `gain_reference` (mean 1, see `make_gain_reference`) pixels have sensitivity 1/gain;
    without one the frames are as if already gain-corrected (uniform sensitivity).
    """
    if gain_reference is not None and tuple(gain_reference.shape) != tuple(params.shape_px):
        raise ValueError(
            f"gain reference shape {tuple(gain_reference.shape)} != movie shape {params.shape_px}"
        )
    defocus = _draw_ctf(params, seed)
    particles = _draw_particles(params, seed)
    specimen = _build_specimen(params, seed, defocus, particles, keep_images, workers)
    shifts = drift.global_drift_px(_stream(seed, 4), params.number_of_frames, params.total_drift_px)
    coefficients = drift.local_deformation_coefficients(
        _stream(seed, 5), params.local_deformation_px
    )
    profile = drift.local_time_profile(params.number_of_frames)
    sensitivity = None
    if gain_reference is not None:
        sensitivity = (1.0 / np.clip(gain_reference, 1e-6, None)).astype(np.float32)
    counts_rng = _stream(seed, 6)
    dose_px = params.dose_per_frame_e_per_angstrom2 * params.pixel_size_angstrom**2
    frames = np.empty((params.number_of_frames, *params.shape_px), dtype=np.uint8)
    specimen_image = None
    for k in range(params.number_of_frames):
        modulation = _modulation(params, specimen, k, shifts[k], coefficients, profile[k], workers)
        if k == 0 and keep_images:
            # I0 without radiation damage: the reference every frame derives from
            specimen_image = _modulation(
                params, specimen, 0, shifts[0], coefficients, 0.0, workers, damage=False
            )
        expected = dose_px * (1.0 + params.contrast * modulation)
        counts = detector.count_electrons(counts_rng, expected, sensitivity)
        if frames.dtype == np.uint8 and counts.max() > np.iinfo(np.uint8).max:
            frames = frames.astype(np.uint16)
        frames[k] = counts
    truth = MovieTruth(
        shape_px=tuple(params.shape_px),
        pixel_size_angstrom=params.pixel_size_angstrom,
        dose_per_frame_e_per_angstrom2=params.dose_per_frame_e_per_angstrom2,
        shifts_px=shifts,
        local_coefficients_px=coefficients,
        local_time_profile=profile,
        defocus_u_angstrom=defocus[0],
        defocus_v_angstrom=defocus[1],
        astigmatism_angle_deg=defocus[2],
        phase_shift_deg=params.phase_shift_deg,
        bfactor_angstrom2=params.bfactor_angstrom2,
        particles=particles,
        contrast=params.contrast,
        seed=seed,
        dose_damage=params.dose_damage,
        specimen_image=specimen_image,
        particle_density=specimen.particle_density,
    )
    return frames, truth


def simulate_micrograph(
    params: SpaMovieParams, seed: int, *, keep_images: bool = False, workers: int = 1
) -> tuple[np.ndarray, MovieTruth]:
    """Full-dose micrograph (float32 counts, gain-corrected, no drift): the fast path.

    Same specimen, CTF and particles as `simulate_movie(params, seed)`; the truth has zero
    shifts. Counts are Poisson with mean number_of_frames * dose_per_frame * pixel_size^2 *
    (1 + contrast * I0) (I0 averaged over the dose-damage filters when dose_damage is on).
    """
    defocus = _draw_ctf(params, seed)
    particles = _draw_particles(params, seed)
    specimen = _build_specimen(params, seed, defocus, particles, keep_images, workers)
    spectrum = specimen.spectrum
    if params.dose_damage:
        average = np.zeros(spectrum.shape, dtype=np.float32)
        for k in range(params.number_of_frames):
            average += dose_damage_filter(
                specimen.canvas_shape, params.pixel_size_angstrom, _frame_dose(params, k)
            )
        spectrum = spectrum * (average / params.number_of_frames)
    ny, nx = params.shape_px
    oy, ox = specimen.origin_yx
    full = scipy.fft.irfft2(spectrum, s=specimen.canvas_shape, workers=workers)
    modulation = np.ascontiguousarray(full[oy : oy + ny, ox : ox + nx], dtype=np.float32)
    total_dose_px = (
        params.number_of_frames
        * params.dose_per_frame_e_per_angstrom2
        * params.pixel_size_angstrom**2
    )
    expected = total_dose_px * (1.0 + params.contrast * modulation)
    image = detector.count_electrons(_stream(seed, 6), expected, None).astype(np.float32)
    truth = MovieTruth(
        shape_px=tuple(params.shape_px),
        pixel_size_angstrom=params.pixel_size_angstrom,
        dose_per_frame_e_per_angstrom2=params.dose_per_frame_e_per_angstrom2,
        shifts_px=np.zeros((params.number_of_frames, 2)),
        local_coefficients_px=np.zeros((2, len(drift.LOCAL_TERMS))),
        local_time_profile=np.zeros(params.number_of_frames),
        defocus_u_angstrom=defocus[0],
        defocus_v_angstrom=defocus[1],
        astigmatism_angle_deg=defocus[2],
        phase_shift_deg=params.phase_shift_deg,
        bfactor_angstrom2=params.bfactor_angstrom2,
        particles=particles,
        contrast=params.contrast,
        seed=seed,
        dose_damage=params.dose_damage,
        specimen_image=modulation if keep_images else None,
        particle_density=specimen.particle_density,
    )
    return image, truth
