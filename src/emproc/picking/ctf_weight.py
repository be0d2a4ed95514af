"""The micrograph's CTF as the first half of a matched filter for picking.

A particle's image is its projected potential multiplied, frequency by frequency, by the
CTF. In white (shot) noise the filter that detects a known signal best is the signal itself,
so the blob filters of `log_picker` (the particle's shape) are multiplied by the CTF (its
optics): the particle's contrast adds up with the right sign in every Thon ring, where a
filter at the particle's own scale alone keeps only the low frequencies. That is where the
contrast lives close to focus and for small particles (at 0.5 um defocus the CTF passes
~0.1 at 1/100 A and ~1 at 1/15 A). RELION's LoG does not do this; crYOLO and Topaz learn an
equivalent filter from training data.

The CTF comes from CTF estimation, which runs before picking in the workflow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emproc.ctf.model import ctf_2d


@dataclass(frozen=True)
class MicrographCtf:
    """The estimated CTF of one micrograph (as in `CtfFind/{movie}_ctf.json`)."""

    defocus_u_angstrom: float
    defocus_v_angstrom: float
    astigmatism_angle_deg: float = 0.0
    voltage_kv: float = 300.0
    spherical_aberration_mm: float = 2.7
    amplitude_contrast: float = 0.1
    phase_shift_deg: float = 0.0

    def __post_init__(self) -> None:
        if not (self.defocus_u_angstrom > 0 and self.defocus_v_angstrom > 0):
            raise ValueError(
                f"CTF for picking needs underfocus > 0, got defocus U/V "
                f"{self.defocus_u_angstrom}/{self.defocus_v_angstrom} A"
            )

    @property
    def mean_defocus_angstrom(self) -> float:
        return 0.5 * (self.defocus_u_angstrom + self.defocus_v_angstrom)

    def rounded(self) -> MicrographCtf:
        """Rotationally averaged, defocus to 3 significant digits: the cache key of the filter
        bank's noise statistics, which do not depend on astigmatism or defocus that finely."""
        mean = float(
            np.round(self.mean_defocus_angstrom, -int(np.log10(self.mean_defocus_angstrom)) + 2)
        )
        return MicrographCtf(
            mean,
            mean,
            0.0,
            self.voltage_kv,
            self.spherical_aberration_mm,
            round(self.amplitude_contrast, 3),
            round(self.phase_shift_deg, 0),
        )


def ctf_weight(
    shape: tuple[int, int], pixel_size_angstrom: float, ctf: MicrographCtf
) -> np.ndarray:
    """Weight on an rfft2 grid of `shape` for an image with particles bright (inverted):
    -CTF, positive where the CTF keeps the recorded particle dark, negative where it flips
    it, so a particle's contrast adds with one sign over all frequencies."""
    return -ctf_2d(
        shape,
        pixel_size_angstrom,
        ctf.defocus_u_angstrom,
        ctf.defocus_v_angstrom,
        ctf.astigmatism_angle_deg,
        voltage_kv=ctf.voltage_kv,
        spherical_aberration_mm=ctf.spherical_aberration_mm,
        amplitude_contrast=ctf.amplitude_contrast,
        phase_shift_deg=ctf.phase_shift_deg,
        rfft=True,
    ).astype(np.float32)
