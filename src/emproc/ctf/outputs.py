"""Per-micrograph CTF outputs: the CTFFIND4 4.1 text file, the CTFFIND-style diagnostic
spectrum (`.ctf` MRC, what RELION's rlnCtfImage names) and the diagnostic PNG."""

from __future__ import annotations

import datetime
import os
from typing import TYPE_CHECKING

import mrcfile
import numpy as np
from scipy import ndimage

from emproc.ctf.model import ctf_2d
from emproc.io.atomic import atomic_path, write_text_atomic

if TYPE_CHECKING:
    from emproc.ctf.estimate import CtfResult

CTFFIND_VERSION = "4.1.14"
CTFFIND_COLUMNS = (
    "# Columns: #1 - micrograph number; #2 - defocus 1 [Angstroms]; #3 - defocus 2; "
    "#4 - azimuth of astigmatism; #5 - additional phase shift [radians]; "
    "#6 - cross correlation; #7 - spacing (in Angstroms) up to which CTF rings were fit "
    "successfully"
)


def ctffind_text(
    result: CtfResult,
    *,
    micrograph_path: str | os.PathLike[str],
    pixel_size_angstrom: float,
    voltage_kv: float,
    spherical_aberration_mm: float,
    amplitude_contrast: float,
    box_size_px: int,
    min_resolution_angstrom: float,
    max_resolution_angstrom: float,
    min_defocus_angstrom: float,
    max_defocus_angstrom: float,
    run_time: datetime.datetime | None = None,
) -> str:
    """The CTFFIND4 4.1 output text: five '#' header lines and one 7-column row.

    The header reproduces CTFFIND's, including its quirk of labelling the defocus range
    in "um" although the values are Angstrom, so existing parsers read it unchanged.
    """
    run_time = run_time or datetime.datetime.now()
    header = [
        f"# Output from CTFFind version {CTFFIND_VERSION} (format; written by emproc), "
        f"run on {run_time:%Y-%m-%d %H:%M:%S}",
        f"# Input file: {os.fspath(micrograph_path)} ; Number of micrographs: 1",
        f"# Pixel size: {pixel_size_angstrom:0.3f} Angstroms ; acceleration voltage: "
        f"{voltage_kv:0.1f} keV ; spherical aberration: {spherical_aberration_mm:0.2f} mm ; "
        f"amplitude contrast: {amplitude_contrast:0.2f}",
        f"# Box size: {box_size_px} pixels ; min. res.: {min_resolution_angstrom:0.1f} Angstroms "
        f"; max. res.: {max_resolution_angstrom:0.1f} Angstroms ; min. def.: "
        f"{min_defocus_angstrom:0.1f} um; max. def. {max_defocus_angstrom:0.1f} um",
        CTFFIND_COLUMNS,
    ]
    values = (
        1.0,
        result.defocus_u_angstrom,
        result.defocus_v_angstrom,
        result.astigmatism_angle_deg,
        np.deg2rad(result.phase_shift_deg),
        result.cross_correlation,
        result.fit_resolution_angstrom,
    )
    return "\n".join([*header, " ".join(f"{value:0.6f}" for value in values)]) + "\n"


def write_ctffind_txt(path: str | os.PathLike[str], result: CtfResult, **header) -> None:
    """Write `ctffind_text(result, **header)` atomically."""
    write_text_atomic(path, ctffind_text(result, **header))


def diagnostic_spectrum(result: CtfResult) -> np.ndarray:
    """The centred spectrum (left half, contrast-stretched to [0, 1]) beside the fitted
    CTF^2 (right half), as CTFFIND's diagnostic image shows them."""
    spectrum = result.spectrum
    n = spectrum.shape[0]
    model = np.fft.fftshift(
        ctf_2d(
            (n, n),
            result.spectrum_pixel_size_angstrom,
            result.defocus_u_angstrom,
            result.defocus_v_angstrom,
            result.astigmatism_angle_deg,
            voltage_kv=result.voltage_kv,
            spherical_aberration_mm=result.spherical_aberration_mm,
            amplitude_contrast=result.amplitude_contrast,
            phase_shift_deg=result.phase_shift_deg,
        )
        ** 2
    )
    # a 1-px Gaussian makes the rings visible by eye without moving them
    smoothed = ndimage.gaussian_filter(spectrum, 1.0)
    low, high = np.percentile(smoothed, [2, 98])
    shown = np.clip((smoothed - low) / max(high - low, 1e-12), 0.0, 1.0)
    shown[:, n // 2 :] = model[:, n // 2 :]
    return shown.astype(np.float32)


def write_ctf_image_mrc(path: str | os.PathLike[str], result: CtfResult) -> None:
    """The diagnostic spectrum as an MRC (pixel size: the spectrum's, in Angstrom), the
    file CTFFIND writes as `<micrograph>.ctf` and RELION shows from rlnCtfImage."""
    with atomic_path(path) as temporary:
        with mrcfile.new(temporary, overwrite=True) as mrc:
            mrc.set_data(diagnostic_spectrum(result))
            mrc.voxel_size = result.spectrum_pixel_size_angstrom


def write_diagnostic_png(path: str | os.PathLike[str], result: CtfResult, title: str = "") -> None:
    """Spectrum (left half) beside the fitted CTF^2 (right half), and the 1D ring fit.

    The 1D panel shows the equiphase average, CTF^2 at the mean defocus, the local
    correlation used for the fit resolution, and the fit resolution itself.
    """
    # imported here: matplotlib is slow to import and only the diagnostic needs it
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shown = diagnostic_spectrum(result)

    figure = Figure(figsize=(12, 5.5), dpi=100)
    FigureCanvasAgg(figure)
    image_axes, profile_axes = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.4]})
    nyquist = 0.5 / result.spectrum_pixel_size_angstrom
    image_axes.imshow(
        shown, cmap="gray", origin="lower", extent=(-nyquist, nyquist, -nyquist, nyquist)
    )
    image_axes.set_xlabel("spatial frequency x (1/A)")
    image_axes.set_ylabel("spatial frequency y (1/A)")
    image_axes.set_title("spectrum | fitted CTF$^2$")

    frequency = result.profile_frequency_per_angstrom
    average = result.profile_equiphase_average
    finite = np.isfinite(average)
    scale = np.nanpercentile(np.abs(average[finite]), 95) if finite.any() else 1.0
    profile_axes.plot(
        frequency, 0.5 + 0.5 * average / max(scale, 1e-12), lw=0.8, label="equiphase average"
    )
    profile_axes.plot(frequency, result.profile_ctf_squared, lw=0.8, label="CTF$^2$ fit")
    profile_axes.plot(
        frequency, result.profile_local_correlation, lw=1.2, label="local correlation"
    )
    profile_axes.axvline(
        1.0 / result.fit_resolution_angstrom,
        color="k",
        ls="--",
        label=f"fit resolution {result.fit_resolution_angstrom:.2f} A",
    )
    profile_axes.set_xlim(0, nyquist)
    profile_axes.set_ylim(-0.6, 1.6)
    profile_axes.set_xlabel("spatial frequency (1/A)")
    profile_axes.legend(loc="lower left", fontsize=8)
    profile_axes.set_title(
        f"U {result.defocus_u_angstrom:.0f} A, V {result.defocus_v_angstrom:.0f} A, "
        f"angle {result.astigmatism_angle_deg:.1f} deg, phase {result.phase_shift_deg:.1f} deg, "
        f"CC {result.cross_correlation:.3f}",
        fontsize=9,
    )
    if title:
        figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")
