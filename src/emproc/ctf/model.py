"""The weak-phase CTF model shared by the simulator and the estimator.

Conventions (as in CTFFIND4 and RELION):
- defocus is positive for underfocus, in Angstrom;
- defocus_u_angstrom lies along `astigmatism_angle_deg`, measured counter-clockwise
  from the image X axis; defocus_v_angstrom is perpendicular to it;
- images are indexed [y, x]; spatial frequency in 1/Angstrom;
- CTF = -sin(chi + phase) with chi the aberration phase; amplitude contrast enters as
  a constant phase offset arcsin(amplitude_contrast).
"""

from __future__ import annotations

import numpy as np

ELECTRON_REST_ENERGY_EV = 510_998.95
PLANCK_TIMES_C_EV_ANGSTROM = 12_398.419843


def electron_wavelength_angstrom(voltage_kv: float) -> float:
    """Relativistic electron wavelength in Angstrom (300 kV -> 0.01969 A)."""
    energy_ev = voltage_kv * 1e3
    momentum_energy = np.sqrt(energy_ev * (2.0 * ELECTRON_REST_ENERGY_EV + energy_ev))
    return float(PLANCK_TIMES_C_EV_ANGSTROM / momentum_energy)


def frequency_grid(
    shape: tuple[int, int], pixel_size_angstrom: float, rfft: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Spatial frequency magnitude (1/A) and azimuth (radians from +X) on an FFT grid.

    With `rfft=True` the grid matches `numpy.fft.rfft2` output (last axis halved).
    """
    ny, nx = shape
    fy = np.fft.fftfreq(ny, d=pixel_size_angstrom)
    fx = (
        np.fft.rfftfreq(nx, d=pixel_size_angstrom)
        if rfft
        else np.fft.fftfreq(nx, d=pixel_size_angstrom)
    )
    gy, gx = np.meshgrid(fy, fx, indexing="ij")
    return np.hypot(gx, gy), np.arctan2(gy, gx)


def astigmatic_defocus_angstrom(
    azimuth_rad: np.ndarray,
    defocus_u_angstrom: float,
    defocus_v_angstrom: float,
    astigmatism_angle_deg: float,
) -> np.ndarray:
    """Defocus seen along each azimuth of the astigmatic ellipse."""
    mean = 0.5 * (defocus_u_angstrom + defocus_v_angstrom)
    half_difference = 0.5 * (defocus_u_angstrom - defocus_v_angstrom)
    return mean + half_difference * np.cos(2.0 * (azimuth_rad - np.deg2rad(astigmatism_angle_deg)))


def ctf_phase(
    frequency_per_angstrom: np.ndarray,
    azimuth_rad: np.ndarray,
    defocus_u_angstrom: float,
    defocus_v_angstrom: float,
    astigmatism_angle_deg: float,
    voltage_kv: float,
    spherical_aberration_mm: float,
    amplitude_contrast: float,
    phase_shift_deg: float = 0.0,
) -> np.ndarray:
    """Total phase (radians) whose negative sine is the CTF."""
    wavelength = electron_wavelength_angstrom(voltage_kv)
    cs_angstrom = spherical_aberration_mm * 1e7
    defocus = astigmatic_defocus_angstrom(
        azimuth_rad, defocus_u_angstrom, defocus_v_angstrom, astigmatism_angle_deg
    )
    k2 = frequency_per_angstrom**2
    chi = np.pi * wavelength * defocus * k2 - 0.5 * np.pi * cs_angstrom * wavelength**3 * k2**2
    return chi + np.arcsin(amplitude_contrast) + np.deg2rad(phase_shift_deg)


def ctf_2d(
    shape: tuple[int, int],
    pixel_size_angstrom: float,
    defocus_u_angstrom: float,
    defocus_v_angstrom: float,
    astigmatism_angle_deg: float,
    voltage_kv: float = 300.0,
    spherical_aberration_mm: float = 2.7,
    amplitude_contrast: float = 0.1,
    phase_shift_deg: float = 0.0,
    bfactor_angstrom2: float = 0.0,
    rfft: bool = False,
) -> np.ndarray:
    """CTF on an FFT grid (DC at [0, 0]); multiply an image's FFT by it to apply it.

    `bfactor_angstrom2` > 0 applies the envelope exp(-B k^2 / 4).
    """
    frequency, azimuth = frequency_grid(shape, pixel_size_angstrom, rfft=rfft)
    phase = ctf_phase(
        frequency,
        azimuth,
        defocus_u_angstrom,
        defocus_v_angstrom,
        astigmatism_angle_deg,
        voltage_kv,
        spherical_aberration_mm,
        amplitude_contrast,
        phase_shift_deg,
    )
    ctf = -np.sin(phase)
    if bfactor_angstrom2:
        ctf = ctf * np.exp(-bfactor_angstrom2 * frequency**2 / 4.0)
    return ctf
