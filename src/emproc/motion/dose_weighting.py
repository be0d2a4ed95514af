"""Exposure (dose) weighting after Grant & Grigorieff (2015), eLife 4:e06980.

Critical exposure Ne(k) = 0.245 k^-1.665 + 2.81 e-/A^2 (k in 1/A, measured at 300 kV).
Frame f is weighted per frequency by q_f(k) = exp(-N_f / (2 Ne(k))) with N_f the
accumulated exposure at the middle of the frame (pre-exposure included); at 200 kV the
critical exposure is scaled by 0.8 (G&G 2015, as MotionCor2 and RELION), which we apply
as a 300-kV-equivalent exposure of dose / 0.8. Weights are normalised per frequency so that
sum_f w_f(k)^2 = number of frames: the weighted sum then has the same noise power as the
plain sum at every frequency and equals it at low frequency (RELION normalises to 1
instead, which only rescales the image by 1/sqrt(frames)).
"""

from __future__ import annotations

import numpy as np

from emproc.ctf.model import ELECTRON_REST_ENERGY_EV

CRITICAL_EXPOSURE_A = 0.245
CRITICAL_EXPOSURE_B = -1.665
CRITICAL_EXPOSURE_C = 2.81


def critical_exposure(frequency_per_angstrom: np.ndarray) -> np.ndarray:
    """Ne(k) in e-/A^2 at 300 kV; infinite at k = 0 (no damage at DC)."""
    k = np.asarray(frequency_per_angstrom, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return CRITICAL_EXPOSURE_A * np.power(k, CRITICAL_EXPOSURE_B) + CRITICAL_EXPOSURE_C


def voltage_dose_scale(voltage_kv: float) -> float:
    """Factor turning exposure at `voltage_kv` into damage-equivalent exposure at 300 kV.

    Grant & Grigorieff scale the critical exposure by 0.8 at 200 kV (more damage per
    electron at lower voltage), i.e. the 300-kV-equivalent exposure is dose / 0.8.
    Other voltages use the inelastic cross-section scaling 1/beta^2 relative to 300 kV,
    which gives the same 1/0.8 (1.246) at 200 kV.
    """
    if abs(voltage_kv - 300.0) < 1e-6:
        return 1.0
    if abs(voltage_kv - 200.0) < 1e-6:
        return 1.0 / 0.8

    def beta_squared(kv: float) -> float:
        gamma = 1.0 + kv * 1e3 / ELECTRON_REST_ENERGY_EV
        return 1.0 - 1.0 / gamma**2

    return beta_squared(300.0) / beta_squared(voltage_kv)


def frame_mid_exposures(
    number_of_frames: int,
    dose_per_frame_e_per_angstrom2: float,
    pre_exposure_e_per_angstrom2: float = 0.0,
    voltage_kv: float = 300.0,
) -> np.ndarray:
    """300-kV-equivalent accumulated exposure (e-/A^2) at the middle of each frame."""
    mid = pre_exposure_e_per_angstrom2 + (np.arange(number_of_frames) + 0.5) * (
        dose_per_frame_e_per_angstrom2
    )
    return mid * voltage_dose_scale(voltage_kv)


class DoseWeights:
    """Per-frame exposure filters on one rfft2 grid, computed frame by frame.

    Holds two rfft-sized float32 arrays (1/(2 Ne) and the normaliser) rather than a
    full stack of weights, so 4k x 4k x 40 frames costs ~70 MB, not 1.3 GB.
    """

    def __init__(
        self,
        shape: tuple[int, int],
        pixel_size_angstrom: float,
        exposures_e_per_angstrom2: np.ndarray,
    ) -> None:
        ny, nx = shape
        fy = np.fft.fftfreq(ny, d=pixel_size_angstrom).astype(np.float32)
        fx = np.fft.rfftfreq(nx, d=pixel_size_angstrom).astype(np.float32)
        frequency = np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
        self.half_inverse_ne = (0.5 / critical_exposure(frequency)).astype(np.float32)
        self.exposures = np.asarray(exposures_e_per_angstrom2, dtype=np.float64)
        sum_squares = np.zeros_like(self.half_inverse_ne)
        for exposure in self.exposures:  # float32 throughout: 8M-element grids at 4k
            term = np.multiply(self.half_inverse_ne, np.float32(-2.0 * exposure))
            sum_squares += np.exp(term, out=term)
        self.normaliser = np.sqrt(np.float32(len(self.exposures)) / sum_squares)

    def __call__(self, frame_index: int) -> np.ndarray:
        """Normalised weight w_f(k) for one frame (float32, rfft grid)."""
        weight = np.multiply(self.half_inverse_ne, np.float32(-self.exposures[frame_index]))
        np.exp(weight, out=weight)
        weight *= self.normaliser
        return weight


def dose_weights(
    shape: tuple[int, int],
    pixel_size_angstrom: float,
    exposures_e_per_angstrom2: np.ndarray,
) -> np.ndarray:
    """All normalised weights as a `(frames, ny, nx // 2 + 1)` stack (small images only)."""
    weights = DoseWeights(shape, pixel_size_angstrom, exposures_e_per_angstrom2)
    return np.stack([weights(index) for index in range(len(weights.exposures))])
