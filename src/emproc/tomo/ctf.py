"""Per-tilt CTF of a tilt series, fitted jointly as CTFFIND/ctfplotter users do.

A low-dose tilt (a few e-/A^2) shows Thon rings too faint for a free defocus search: on a
256 px image at 3 e-/A^2 the search locks onto noise. So:
1. each tilt's amplitude spectrum (tiles averaged, background subtracted: `emproc.ctf.spectrum`);
2. the **series** fit: the sum of all spectra, searched (defocus + astigmatism, `emproc.ctf.fit`)
   within `series_search_angstrom` of the mdoc's defocus; one astigmatism for the series;
3. each **tilt's** defocus: a 1D search within `tilt_search_angstrom` of the series value with
   that astigmatism, against CTF^2 averaged over the tiles' defoci (the defocus gradient of a
   tilted specimen: tiles across the axis sit higher or lower), so high tilts fit as well;
   Each tilt's band stops where radiation damage has faded its rings (amplitude
   exp(-N/2Nc) below 1/4 at the dose N accumulated before it, Grant & Grigorieff): beyond
   that a late, high tilt contributes only noise to its correlation;
4. a fit counts when its correlation is `min_significance` null standard deviations above zero
   (noise correlates as N(0, 1/sqrt(points))); otherwise the tilt takes the series defocus
   (source "series"), or the mdoc's when even the series shows no rings (source "mdoc").

Defocus gradient convention (the simulator uses the same): a point at aligned x (Angstrom,
perpendicular to the tilt axis, image centre on the axis) sits at
defocus_centre - x tan(tilt).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from emproc.ctf.fit import FitPoints, dot, fit_ctf, fit_points, phase_without_shift
from emproc.ctf.model import electron_wavelength_angstrom
from emproc.ctf.resolution import ring_fit
from emproc.ctf.spectrum import (
    average_power_spectrum,
    background_box_size_px,
    subtract_background,
    tile_origins,
)


class TiltCtfError(ValueError):
    """Parameters that leave nothing to fit (box larger than the images, empty band)."""


@dataclass(frozen=True)
class TiltSeriesCtfParams:
    """Search settings; the `ctf:` config keys of the same names feed the first seven."""

    box_size_px: int = 512  # capped at half the smaller image side (>= 9 tiles)
    min_resolution_angstrom: float = 30.0
    max_resolution_angstrom: float = 5.0
    min_defocus_angstrom: float = 5000.0
    max_defocus_angstrom: float = 50000.0
    defocus_step_angstrom: float = 500.0
    expected_astigmatism_angstrom: float = 200.0
    series_search_angstrom: float = 10000.0  # +- around the mdoc defocus for the series
    tilt_search_angstrom: float = 3000.0  # +- around the series defocus for each tilt
    min_significance: float = 4.0  # correlation in null standard deviations (noise: < 2)
    gradient_groups: int = 7  # tile defoci pooled into this many groups for the model


@dataclass(frozen=True)
class SeriesCtf:
    defocus_u_angstrom: float
    defocus_v_angstrom: float
    astigmatism_angle_deg: float
    cross_correlation: float
    significance: float  # correlation / null standard deviation
    fitted: bool  # False: no rings in the summed spectrum, the mdoc's defocus is used


@dataclass(frozen=True)
class TiltCtfFit:
    defocus_angstrom: float  # mean of U and V on the tilt axis, positive = underfocus
    defocus_u_angstrom: float
    defocus_v_angstrom: float
    astigmatism_angle_deg: float
    cross_correlation: float
    significance: float
    fit_resolution_angstrom: float | None  # None unless the tilt's own fit counts
    source: str  # "tilt" (own fit), "series" (series fit) or "mdoc"


def defocus_offset_angstrom(aligned_x_angstrom: np.ndarray, tilt_angle_deg: float) -> np.ndarray:
    """Defocus relative to the tilt axis of points at aligned x (see module docstring)."""
    return -np.asarray(aligned_x_angstrom) * np.tan(np.deg2rad(tilt_angle_deg))


def box_size_for(image_shape: tuple[int, int], box_size_px: int) -> int:
    """The configured box, capped so at least 3 x 3 half-overlapping tiles fit."""
    box = min(int(box_size_px), min(image_shape) // 2)
    box -= box % 2
    if box < 32:
        raise TiltCtfError(f"images of {image_shape} px are too small for CTF estimation")
    return box


def tilt_spectrum(
    image: np.ndarray, box_size_px: int, pixel_size_angstrom: float, min_resolution_angstrom: float
) -> tuple[np.ndarray, np.ndarray]:
    """(background-subtracted amplitude spectrum [box, box], tile centres [tile, (x, y)] in
    pixels from the image centre)."""
    power = average_power_spectrum(np.asarray(image, dtype=np.float32), box_size_px)
    background = background_box_size_px(box_size_px, pixel_size_angstrom, min_resolution_angstrom)
    spectrum = subtract_background(np.sqrt(power), background)
    ny, nx = image.shape
    ys = tile_origins(ny, box_size_px) + box_size_px / 2 - ny / 2
    xs = tile_origins(nx, box_size_px) + box_size_px / 2 - nx / 2
    centres = np.array([(x, y) for y in ys for x in xs], dtype=float)
    return spectrum, centres


def _tile_offsets(
    centres_px: np.ndarray,
    tilt_angle_deg: float,
    tilt_axis_angle_deg: float,
    pixel_size_angstrom: float,
    groups: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(defocus offsets, weights) of the tiles, pooled into at most `groups` groups."""
    axis = np.deg2rad(tilt_axis_angle_deg)
    # aligned x = first row of R(-axis) applied to the raw position
    aligned_x = (np.cos(axis) * centres_px[:, 0] + np.sin(axis) * centres_px[:, 1]) * (
        pixel_size_angstrom
    )
    offsets = defocus_offset_angstrom(aligned_x, tilt_angle_deg)
    if np.ptp(offsets) < 1.0:
        return np.array([float(offsets.mean())]), np.array([1.0])
    edges = np.linspace(offsets.min(), offsets.max() + 1e-6, groups + 1)
    index = np.digitize(offsets, edges) - 1
    counts = np.bincount(index, minlength=groups).astype(float)
    sums = np.bincount(index, weights=offsets, minlength=groups)
    used = counts > 0
    return sums[used] / counts[used], counts[used] / counts.sum()


def gradient_correlation(
    points: FitPoints,
    defocus_angstrom: float,
    astig_x: float,
    astig_y: float,
    offsets_angstrom: np.ndarray,
    weights: np.ndarray,
) -> float:
    """Correlation of the spectrum with CTF^2 averaged over the tiles' defoci."""
    model = np.zeros_like(points.spectrum_centred)
    for offset, weight in zip(offsets_angstrom, weights, strict=True):
        phase = phase_without_shift(points, defocus_angstrom + offset, astig_x, astig_y)
        model -= weight * np.cos(2.0 * phase)  # sin^2 up to an affine map
    model -= model.mean()
    norm = np.sqrt(dot(model, model)) * points.spectrum_norm
    return dot(points.spectrum_centred, model) / norm if norm > 0 else 0.0


def _search_step_angstrom(points: FitPoints) -> float:
    # a step that moves the highest fitted ring by at most 1/8 of a period
    wavelength = electron_wavelength_angstrom(points.voltage_kv)
    k_max = float(points.frequency_per_angstrom.max())
    return min(250.0, 1.0 / (8.0 * wavelength * k_max**2))


def _fit_defocus_1d(
    points: FitPoints,
    centre_angstrom: float,
    half_range_angstrom: float,
    astig_x: float,
    astig_y: float,
    offsets: np.ndarray,
    weights: np.ndarray,
    lowest_angstrom: float,
) -> tuple[float, float]:
    """(defocus, correlation) maximising `gradient_correlation` on a grid + parabola."""
    step = _search_step_angstrom(points)
    low = max(centre_angstrom - half_range_angstrom, lowest_angstrom)
    grid = np.arange(low, centre_angstrom + half_range_angstrom + 0.5 * step, step)
    scores = np.array(
        [gradient_correlation(points, d, astig_x, astig_y, offsets, weights) for d in grid]
    )
    best = int(np.argmax(scores))
    defocus = float(grid[best])
    if 0 < best < len(grid) - 1:
        minus, centre, plus = scores[best - 1 : best + 2]
        denominator = minus - 2.0 * centre + plus
        if denominator < 0:
            defocus += step * 0.5 * (minus - plus) / denominator
    return defocus, gradient_correlation(points, defocus, astig_x, astig_y, offsets, weights)


def dose_limited_resolution_angstrom(
    accumulated_dose_e_per_angstrom2: float, min_amplitude: float = 0.25
) -> float:
    """Resolution (A) at which exp(-N / (2 Nc(k))) falls to `min_amplitude`, Nc(k) from
    `emproc.tomo.dose` inverted: Nc = 0.245 k^-1.665 + 2.81."""
    critical = accumulated_dose_e_per_angstrom2 / (2.0 * np.log(1.0 / min_amplitude))
    if critical <= 2.81 + 1e-6:
        return 0.0  # every frequency survives
    return float(((critical - 2.81) / 0.245) ** (1.0 / 1.665))


def _astigmatism_vector(
    defocus_u: float, defocus_v: float, angle_deg: float
) -> tuple[float, float]:
    half = 0.5 * (defocus_u - defocus_v)
    angle = np.deg2rad(2.0 * angle_deg)
    return half * float(np.cos(angle)), half * float(np.sin(angle))


def estimate_tilt_series_ctf(
    images: Sequence[np.ndarray],
    tilt_angles_deg: Sequence[float],
    tilt_axis_angle_deg: float,
    pixel_size_angstrom: float,
    nominal_defocus_angstrom: Sequence[float | None],
    *,
    voltage_kv: float = 300.0,
    spherical_aberration_mm: float = 2.7,
    amplitude_contrast: float = 0.1,
    accumulated_dose_e_per_angstrom2: Sequence[float] | None = None,
    params: TiltSeriesCtfParams | None = None,
) -> tuple[SeriesCtf, list[TiltCtfFit]]:
    """Fit the series' astigmatism and every tilt's defocus (see the module docstring).

    `images` are the tilts' frame sums (counts, [y, x], any order); `nominal_defocus_angstrom`
    the mdoc's per-tilt defocus (None where absent: the middle of the configured range);
    `accumulated_dose_e_per_angstrom2` the dose before each tilt (limits its band).
    """
    params = params or TiltSeriesCtfParams()
    if len(images) == 0:
        raise TiltCtfError("no tilt images to estimate the CTF of")
    if params.max_resolution_angstrom < 2.0 * pixel_size_angstrom:
        raise TiltCtfError(
            f"max_resolution_angstrom {params.max_resolution_angstrom} is beyond Nyquist "
            f"({2.0 * pixel_size_angstrom} A)"
        )
    box = box_size_for(images[0].shape, params.box_size_px)
    microscope = (voltage_kv, spherical_aberration_mm, amplitude_contrast)
    spectra, centres = [], None
    for image in images:
        spectrum, centres = tilt_spectrum(
            image, box, pixel_size_angstrom, params.min_resolution_angstrom
        )
        spectra.append(spectrum)
    band = (pixel_size_angstrom, params.min_resolution_angstrom, params.max_resolution_angstrom)
    known = [d for d in nominal_defocus_angstrom if d is not None]
    fallback = 0.5 * (params.min_defocus_angstrom + params.max_defocus_angstrom)
    nominal_mean = float(np.mean(known)) if known else fallback
    nominal = np.array([nominal_mean if d is None else d for d in nominal_defocus_angstrom])

    series_points = fit_points(np.sum(spectra, axis=0), *band, *microscope)
    lowest = max(params.min_defocus_angstrom, 1000.0)
    search_low = max(nominal_mean - params.series_search_angstrom, lowest)
    search_high = min(nominal_mean + params.series_search_angstrom, params.max_defocus_angstrom)
    if not search_low < search_high:  # the mdoc's defocus lies outside the configured range
        search_low, search_high = lowest, params.max_defocus_angstrom
    series_fit = fit_ctf(
        series_points,
        min_defocus_angstrom=search_low,
        max_defocus_angstrom=search_high,
        defocus_step_angstrom=min(
            params.defocus_step_angstrom, _search_step_angstrom(series_points)
        ),
        expected_astigmatism_angstrom=params.expected_astigmatism_angstrom,
        phase_plate=False,
        min_phase_shift_deg=0.0,
        max_phase_shift_deg=0.0,
    )
    series_significance = series_fit.cross_correlation * np.sqrt(
        series_points.spectrum_centred.size
    )
    series_ok = bool(series_significance >= params.min_significance)
    if series_ok:
        series_mean = 0.5 * (series_fit.defocus_u_angstrom + series_fit.defocus_v_angstrom)
        astig_x, astig_y = _astigmatism_vector(
            series_fit.defocus_u_angstrom,
            series_fit.defocus_v_angstrom,
            series_fit.astigmatism_angle_deg,
        )
        series = SeriesCtf(
            series_fit.defocus_u_angstrom,
            series_fit.defocus_v_angstrom,
            series_fit.astigmatism_angle_deg,
            series_fit.cross_correlation,
            float(series_significance),
            True,
        )
    else:
        series_mean, astig_x, astig_y = nominal_mean, 0.0, 0.0
        series = SeriesCtf(
            nominal_mean,
            nominal_mean,
            0.0,
            series_fit.cross_correlation,
            float(series_significance),
            False,
        )
    half_difference = float(np.hypot(astig_x, astig_y))
    angle = series.astigmatism_angle_deg
    doses = accumulated_dose_e_per_angstrom2 or [0.0] * len(spectra)
    # keep at least half the band (in frequency) whatever the dose
    coarsest = 2.0 / (1.0 / params.min_resolution_angstrom + 1.0 / params.max_resolution_angstrom)
    fits = []
    for spectrum, tilt_angle, tilt_nominal, dose in zip(
        spectra, tilt_angles_deg, nominal, doses, strict=True
    ):
        # the mdoc's tilt-to-tilt focus changes are real even when its absolute value is not
        centre = series_mean + (tilt_nominal - nominal_mean)
        limit = min(
            max(params.max_resolution_angstrom, dose_limited_resolution_angstrom(dose)), coarsest
        )
        points = fit_points(spectrum, band[0], band[1], limit, *microscope)
        offsets, weights = _tile_offsets(
            centres,
            float(tilt_angle),
            tilt_axis_angle_deg,
            pixel_size_angstrom,
            params.gradient_groups,
        )
        defocus, correlation = _fit_defocus_1d(
            points, centre, params.tilt_search_angstrom, astig_x, astig_y, offsets, weights, lowest
        )
        significance = correlation * np.sqrt(points.spectrum_centred.size)
        resolution = None
        if significance >= params.min_significance:
            source = "tilt"
            resolution = ring_fit(
                spectrum,
                pixel_size_angstrom,
                defocus + half_difference,
                defocus - half_difference,
                angle,
                *microscope,
                0.0,
                params.min_resolution_angstrom,
            ).fit_resolution_angstrom
        else:
            defocus, source = centre, ("series" if series_ok else "mdoc")
        fits.append(
            TiltCtfFit(
                defocus_angstrom=float(defocus),
                defocus_u_angstrom=float(defocus + half_difference),
                defocus_v_angstrom=float(defocus - half_difference),
                astigmatism_angle_deg=float(angle),
                cross_correlation=float(correlation),
                significance=float(significance),
                fit_resolution_angstrom=None if resolution is None else float(resolution),
                source=source,
            )
        )
    return series, fits
