"""CTF-only test micrographs: a random phase object imaged through `model.ctf_2d`.

No particles and no motion, only what CTF estimation sees: Thon rings under a B-factor
envelope, a smooth non-CTF background and Poisson shot noise. Used by the CTF tests and
benchmark; the full movie simulator lives in `emproc.simulate`.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from emproc.ctf.model import ctf_2d, frequency_grid


def synthetic_ctf_micrograph(
    shape_px: tuple[int, int],
    pixel_size_angstrom: float,
    defocus_u_angstrom: float,
    defocus_v_angstrom: float,
    astigmatism_angle_deg: float,
    *,
    phase_shift_deg: float = 0.0,
    bfactor_angstrom2: float = 100.0,
    dose_e_per_angstrom2: float = 40.0,
    contrast: float = 0.3,
    voltage_kv: float = 300.0,
    spherical_aberration_mm: float = 2.7,
    amplitude_contrast: float = 0.1,
    seed: int = 0,
) -> np.ndarray:
    """Counts image (float32, [y, x]) of a coloured-noise object through the CTF.

    `contrast` is the rms of the CTF-modulated modulation relative to the mean intensity;
    a further unmodulated 1/k-like background (as from ice and inelastic scattering) of
    equal rms is added so the estimator must subtract a background.
    """
    rng = np.random.default_rng(seed)
    frequency, _ = frequency_grid(shape_px, pixel_size_angstrom, rfft=True)
    # object power falls with frequency like a real specimen: coloured, not white
    colour = 1.0 / np.sqrt(1.0 + (frequency * 20.0) ** 2)
    ctf = ctf_2d(
        shape_px,
        pixel_size_angstrom,
        defocus_u_angstrom,
        defocus_v_angstrom,
        astigmatism_angle_deg,
        voltage_kv=voltage_kv,
        spherical_aberration_mm=spherical_aberration_mm,
        amplitude_contrast=amplitude_contrast,
        phase_shift_deg=phase_shift_deg,
        bfactor_angstrom2=bfactor_angstrom2,
        rfft=True,
    )
    specimen = scipy.fft.rfft2(rng.standard_normal(shape_px))
    modulated = scipy.fft.irfft2(specimen * colour * ctf, s=shape_px)
    background = scipy.fft.irfft2(
        scipy.fft.rfft2(rng.standard_normal(shape_px)) * colour**2, s=shape_px
    )
    modulation = contrast * (
        modulated / modulated.std() + background / max(background.std(), 1e-12)
    )
    mean_counts = dose_e_per_angstrom2 * pixel_size_angstrom**2
    intensity = np.clip(mean_counts * (1.0 + modulation), 0.0, None)
    return rng.poisson(intensity).astype(np.float32)
