"""Search for the defocus, astigmatism and phase shift whose CTF^2 best matches a spectrum.

The score is the normalised cross-correlation (Pearson) between the background-subtracted
amplitude spectrum and CTF^2 over the pixels of one half-plane (the spectrum of a real image
is centro-symmetric) between `min_resolution` and `max_resolution`.

Astigmatism is searched as the vector (astig_x, astig_y) = half_difference * (cos 2a, sin 2a)
with a the angle of defocus U: the score is smooth in it, it has no angle wrap-around and
U >= V holds by construction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from emproc.ctf.model import electron_wavelength_angstrom

PHASE_SHIFT_GRID_STEP_DEG = 10.0
DEFOCUS_CANDIDATES = 3  # local maxima of the 1D defocus search refined further
# A correlation over N pixels of pure noise has a standard deviation of 1/sqrt(N); the best
# of the search's many trial CTFs reached 5.1/sqrt(N) on pure-noise micrographs, weak real
# data (4 e/A^2) 8.3/sqrt(N) or more.
SIGNIFICANT_CORRELATION_SIGMAS = 7.0


class CtfFitError(ValueError):
    """The search range or the resolution band leaves nothing to fit."""


@dataclass(frozen=True)
class FitPoints:
    """The spectrum pixels used for fitting, flattened, with the parts of the CTF phase that
    do not depend on the fitted parameters precomputed (the fit evaluates it thousands of
    times; `model.ctf_phase` gives the same numbers, see the tests)."""

    frequency_per_angstrom: np.ndarray
    azimuth_rad: np.ndarray
    spectrum_centred: np.ndarray  # values minus their mean
    spectrum_norm: float
    voltage_kv: float
    spherical_aberration_mm: float
    amplitude_contrast: float
    defocus_phase_per_angstrom: np.ndarray  # pi lambda k^2
    spherical_phase: np.ndarray  # pi/2 Cs lambda^3 k^4
    cos_2_azimuth: np.ndarray
    sin_2_azimuth: np.ndarray


@dataclass(frozen=True)
class CtfFit:
    defocus_u_angstrom: float
    defocus_v_angstrom: float
    astigmatism_angle_deg: float  # of defocus U, counter-clockwise from +X, in (-90, 90]
    phase_shift_deg: float
    cross_correlation: float


def fit_points(
    spectrum: np.ndarray,
    pixel_size_angstrom: float,
    min_resolution_angstrom: float,
    max_resolution_angstrom: float,
    voltage_kv: float,
    spherical_aberration_mm: float,
    amplitude_contrast: float,
) -> FitPoints:
    """Select the half-plane annulus [1/min_res, 1/max_res] of a centred square spectrum."""
    n = spectrum.shape[0]
    centred = (np.arange(n) - n // 2) / (n * pixel_size_angstrom)
    fy, fx = np.meshgrid(centred, centred, indexing="ij")
    frequency = np.hypot(fx, fy)
    half_plane = (fy > 0) | ((fy == 0) & (fx > 0))
    # the central cross is the tile-edge artefact zeroed by the background subtraction
    off_axis = (fx != 0) & (fy != 0)
    band = (frequency >= 1.0 / min_resolution_angstrom) & (
        frequency <= 1.0 / max_resolution_angstrom
    )
    mask = half_plane & off_axis & band
    if mask.sum() < 50:
        raise CtfFitError(
            f"only {int(mask.sum())} spectrum pixels lie between {min_resolution_angstrom} A and "
            f"{max_resolution_angstrom} A with box {n} px at {pixel_size_angstrom} A/px"
        )
    values = spectrum[mask].astype(np.float64)
    values = values - values.mean()
    k = frequency[mask]
    azimuth = np.arctan2(fy[mask], fx[mask])
    wavelength = electron_wavelength_angstrom(voltage_kv)
    return FitPoints(
        frequency_per_angstrom=k,
        azimuth_rad=azimuth,
        spectrum_centred=values,
        spectrum_norm=float(np.sqrt(dot(values, values))),
        voltage_kv=voltage_kv,
        spherical_aberration_mm=spherical_aberration_mm,
        amplitude_contrast=amplitude_contrast,
        defocus_phase_per_angstrom=np.pi * wavelength * k**2,
        spherical_phase=0.5 * np.pi * spherical_aberration_mm * 1e7 * wavelength**3 * k**4,
        cos_2_azimuth=np.cos(2.0 * azimuth),
        sin_2_azimuth=np.sin(2.0 * azimuth),
    )


def dot(a: np.ndarray, b: np.ndarray) -> float:
    """Inner product of two 1D arrays without BLAS: OpenBLAS threads a plain dot product and,
    on a loaded machine, its spinning threads made the search ten times slower."""
    return float(np.einsum("i,i->", a, b))


def defocus_u_v_angle(
    mean_defocus_angstrom: float, astig_x: float, astig_y: float
) -> tuple[float, float, float]:
    """(defocus U, defocus V, angle of U in (-90, 90] degrees) from the astigmatism vector."""
    half_difference = float(np.hypot(astig_x, astig_y))
    angle = 0.5 * float(np.degrees(np.arctan2(astig_y, astig_x)))
    if angle <= -90.0:
        angle += 180.0
    return mean_defocus_angstrom + half_difference, mean_defocus_angstrom - half_difference, angle


def phase_without_shift(
    points: FitPoints, mean_defocus_angstrom: float, astig_x: float, astig_y: float
) -> np.ndarray:
    """`model.ctf_phase` at the fit points for a zero additional phase shift.

    The defocus along azimuth p is mean + h cos 2(p - a) = mean + astig_x cos 2p + astig_y sin 2p.
    """
    defocus = (
        mean_defocus_angstrom + astig_x * points.cos_2_azimuth + astig_y * points.sin_2_azimuth
    )
    return (
        points.defocus_phase_per_angstrom * defocus
        - points.spherical_phase
        + np.arcsin(points.amplitude_contrast)
    )


def correlation(
    points: FitPoints,
    mean_defocus_angstrom: float,
    astig_x: float = 0.0,
    astig_y: float = 0.0,
    phase_shift_deg: float = 0.0,
) -> float:
    """Normalised cross-correlation of the spectrum with CTF^2 for these parameters."""
    phase = phase_without_shift(points, mean_defocus_angstrom, astig_x, astig_y)
    # sin^2 = (1 - cos 2x)/2: the affine map does not change a correlation coefficient
    model = -np.cos(2.0 * (phase + np.deg2rad(phase_shift_deg)))
    model -= model.mean()
    norm = np.sqrt(dot(model, model)) * points.spectrum_norm
    return dot(points.spectrum_centred, model) / norm if norm > 0 else 0.0


def correlation_over_phase_shifts(
    points: FitPoints, mean_defocus_angstrom: float, phase_shifts_deg: np.ndarray
) -> np.ndarray:
    """`correlation` without astigmatism for many phase shifts at the cost of one:
    cos 2(x + p) = cos 2x cos 2p - sin 2x sin 2p, so only three dot products are needed."""
    phase = phase_without_shift(points, mean_defocus_angstrom, 0.0, 0.0)
    cosine, sine = np.cos(2.0 * phase), np.sin(2.0 * phase)
    cosine -= cosine.mean()
    sine -= sine.mean()
    cos_p, sin_p = (
        np.cos(2.0 * np.deg2rad(phase_shifts_deg)),
        np.sin(2.0 * np.deg2rad(phase_shifts_deg)),
    )
    numerator = (
        -dot(points.spectrum_centred, cosine) * cos_p + dot(points.spectrum_centred, sine) * sin_p
    )
    model_power = (
        dot(cosine, cosine) * cos_p**2
        + dot(sine, sine) * sin_p**2
        - 2.0 * dot(cosine, sine) * cos_p * sin_p
    )
    denominator = np.sqrt(np.maximum(model_power, 0.0)) * points.spectrum_norm
    return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), 0.0)


def is_significant(points: FitPoints, cross_correlation: float) -> bool:
    """Whether the fitted CTF^2 matches the spectrum better than the search matches noise."""
    return cross_correlation * np.sqrt(points.spectrum_centred.size) >= (
        SIGNIFICANT_CORRELATION_SIGMAS
    )


def astigmatism_grid_step_angstrom(points: FitPoints) -> float:
    """Half-difference step that changes the phase at the highest fitted frequency by pi/8,
    fine enough that the grid cannot step over a ring."""
    wavelength = electron_wavelength_angstrom(points.voltage_kv)
    k_max = float(points.frequency_per_angstrom.max())
    return 1.0 / (8.0 * wavelength * k_max**2)


def fit_ctf(
    points: FitPoints,
    *,
    min_defocus_angstrom: float,
    max_defocus_angstrom: float,
    defocus_step_angstrom: float,
    expected_astigmatism_angstrom: float,
    phase_plate: bool,
    min_phase_shift_deg: float,
    max_phase_shift_deg: float,
) -> CtfFit:
    """Coarse 1D search over mean defocus (and phase shift), a 2D astigmatism grid around the
    best few candidates, then Nelder-Mead refinement of all parameters together.

    The astigmatism restraint is a Gaussian prior on |U - V| of width
    `expected_astigmatism_angstrom` (0 disables it): 0.5 (|U - V| / width)^2 divided by the
    number of fitted pixels, because the correlation times that number is on the scale of a
    log-likelihood. It settles what the data leave open and lets real astigmatism through.
    """
    if not 0 <= min_defocus_angstrom < max_defocus_angstrom:
        raise CtfFitError(
            f"need 0 <= min_defocus ({min_defocus_angstrom}) < max_defocus ({max_defocus_angstrom})"
        )
    if defocus_step_angstrom <= 0:
        raise CtfFitError(f"defocus_step_angstrom must be > 0, got {defocus_step_angstrom}")
    if phase_plate and not min_phase_shift_deg <= max_phase_shift_deg:
        raise CtfFitError(
            f"min_phase_shift_deg ({min_phase_shift_deg}) > max_phase_shift_deg "
            f"({max_phase_shift_deg})"
        )
    number_of_points = points.spectrum_centred.size

    def cost(mean: float, astig_x: float, astig_y: float, phase: float) -> float:
        # outside the allowed ranges the cost rises with the distance so Nelder-Mead returns
        excess = max(0.0, min_defocus_angstrom - mean, mean - max_defocus_angstrom) / 1000.0
        if phase_plate:
            excess += max(0.0, min_phase_shift_deg - phase, phase - max_phase_shift_deg) / 10.0
        if excess > 0:
            return 1.0 + excess
        penalty = 0.0
        if expected_astigmatism_angstrom > 0:
            astigmatism = 2.0 * np.hypot(astig_x, astig_y)
            penalty = 0.5 * (astigmatism / expected_astigmatism_angstrom) ** 2 / number_of_points
        return -correlation(points, mean, astig_x, astig_y, phase) + penalty

    phases = (
        _phase_grid(min_phase_shift_deg, max_phase_shift_deg) if phase_plate else np.array([0.0])
    )
    means = np.arange(
        min_defocus_angstrom,
        max_defocus_angstrom + 0.5 * defocus_step_angstrom,
        defocus_step_angstrom,
    )
    # no astigmatism, so the restraint is zero; the defocus and phase ranges hold on the grid
    coarse = -np.array([correlation_over_phase_shifts(points, mean, phases) for mean in means])
    best_phase_index = coarse.argmin(axis=1)
    best_cost = coarse.min(axis=1)
    candidates = _local_minima(best_cost)[:DEFOCUS_CANDIDATES]

    half_range = max(1.5 * expected_astigmatism_angstrom, 1000.0)
    # at most 21 x 21 grid points: finer steps are left to the refinement
    step = max(astigmatism_grid_step_angstrom(points), half_range / 10.0)
    offsets = np.arange(-half_range, half_range + 0.5 * step, step)
    best: tuple[float, np.ndarray] | None = None
    for index in candidates:
        mean, phase = float(means[index]), float(phases[best_phase_index[index]])
        grid = [(cost(mean, ax, ay, phase), ax, ay) for ax in offsets for ay in offsets]
        _, astig_x, astig_y = min(grid)
        start = np.array([mean, astig_x, astig_y, phase])
        refined = _refine(cost, start, defocus_step_angstrom, step, phase_plate)
        value = cost(*refined)
        if best is None or value < best[0]:
            best = (value, refined)
    assert best is not None
    mean, astig_x, astig_y, phase = best[1]
    defocus_u, defocus_v, angle = defocus_u_v_angle(mean, astig_x, astig_y)
    return CtfFit(
        defocus_u_angstrom=defocus_u,
        defocus_v_angstrom=defocus_v,
        astigmatism_angle_deg=angle,
        phase_shift_deg=float(phase) if phase_plate else 0.0,
        cross_correlation=correlation(points, mean, astig_x, astig_y, phase),
    )


def _phase_grid(min_phase_shift_deg: float, max_phase_shift_deg: float) -> np.ndarray:
    # CTF^2 repeats every 180 degrees of phase, so a wider grid only repeats itself
    stop = min(max_phase_shift_deg, min_phase_shift_deg + 180.0 - PHASE_SHIFT_GRID_STEP_DEG / 2)
    return np.arange(min_phase_shift_deg, stop + 1e-9, PHASE_SHIFT_GRID_STEP_DEG)


def _local_minima(values: np.ndarray) -> list[int]:
    """Indices of local minima (edges count), best first."""
    padded = np.concatenate([[np.inf], values, [np.inf]])
    is_minimum = (padded[1:-1] <= padded[:-2]) & (padded[1:-1] <= padded[2:])
    indices = np.flatnonzero(is_minimum)
    return [int(i) for i in indices[np.argsort(values[indices])]]


def _refine(
    cost: Callable[[float, float, float, float], float],
    start: np.ndarray,
    defocus_step: float,
    astig_step: float,
    phase_plate: bool,
) -> np.ndarray:
    """Nelder-Mead on scaled parameters (about 1 unit = one grid step in each)."""
    scale = np.array([defocus_step, astig_step, astig_step, PHASE_SHIFT_GRID_STEP_DEG])
    free = 4 if phase_plate else 3
    fixed = start[free:]

    def scaled_cost(x: np.ndarray) -> float:
        return cost(*(np.concatenate([x * scale[:free], fixed])))

    x0 = start[:free] / scale[:free]
    simplex = np.vstack([x0, x0 + 0.5 * np.eye(free)])
    result = optimize.minimize(
        scaled_cost,
        x0,
        method="Nelder-Mead",
        options={"initial_simplex": simplex, "xatol": 1e-3, "fatol": 1e-7, "maxiter": 600},
    )
    return np.concatenate([result.x * scale[:free], fixed])
