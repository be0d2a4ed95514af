"""Simulated tilt series with known geometry, CTF and dose, written as SerialEM would.

Geometry (IMOD's convention, used throughout `emproc.tomo`):
- a specimen point (x, y, z) (Angstrom, y along the tilt axis) projects at tilt angle b to
  the *aligned* detector point (x cos b + z sin b, y);
- the tilt axis angle `tilt_axis_angle_deg` is the angle of the tilt axis in the raw image,
  counter-clockwise from the +Y axis (as SerialEM writes it in the mdoc title and IMOD's
  tiltxcorr/tiltalign use it);
- raw = R(tilt_axis_angle) @ aligned + shift, coordinates relative to the image centre
  (pixel (N/2, N/2) in [y, x] indexing), shift `(x, y)` in unbinned pixels;
- defocus gradient: a point at aligned x (Angstrom, perpendicular to the axis) is imaged at
  defocus(x) = defocus_centre - x tan(tilt) (`emproc.tomo.ctf.defocus_offset_angstrom`).

What the mdoc records is what the microscope knew, not the truth: `Defocus` is the target
defocus (autofocus errors make the real one differ by `defocus_spread_angstrom`) and the tilt
axis angle is the calibrated one, off by `mdoc_tilt_axis_error_deg`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

import mrcfile
import numpy as np
import scipy.fft
import tifffile

from emproc.ctf.model import ctf_2d
from emproc.io.atomic import atomic_path, write_json_atomic, write_text_atomic
from emproc.simulate.phantom import PhantomParams, make_phantom, project_phantom, rasterise_phantom
from emproc.tomo.ctf import defocus_offset_angstrom
from emproc.tomo.dose import dose_filter

PADDING_PX = 32  # computed around the field so the CTF convolution does not wrap
DEFOCUS_PLANE_STEP_ANGSTROM = 200.0  # gradient sampling: ring phase error < 0.15 rad at 8 A


@dataclass(frozen=True)
class TiltSeriesParams:
    image_size_px: int = 256
    pixel_size_angstrom: float = 4.0
    min_tilt_deg: float = -60.0
    max_tilt_deg: float = 60.0
    tilt_step_deg: float = 3.0
    dose_symmetric_group_size: int = 2
    tilt_axis_angle_deg: float = 85.0
    dose_per_tilt_e_per_angstrom2: float = 3.0
    frames_per_tilt: int = 4
    frame_drift_px: float = 0.3  # rms step of the within-movie random walk
    tilt_shift_step_px: float = 4.0  # rms step of the tilt-to-tilt tracking error
    max_tilt_shift_px: float = 20.0
    nominal_defocus_angstrom: float = 30000.0
    defocus_spread_angstrom: float = 1000.0
    voltage_kv: float = 300.0
    spherical_aberration_mm: float = 2.7
    amplitude_contrast: float = 0.1
    phase_per_density_angstrom_rad: float = 0.0013  # ~2 V potential contrast at 300 kV
    # amorphous ice / crowded cytoplasm: white phase texture, amplitude spectral density in
    # rad x Angstrom (per-pixel rms = this / pixel size at zero tilt, x 1/sqrt(cos tilt) for
    # the longer path). It is what shows Thon rings in a real low-dose tilt; drawn afresh per
    # exposure (at 10-50 A the projections of a 400 A slab 3 deg apart are nearly
    # uncorrelated anyway), so it is noise to the reconstruction, not part of the phantom.
    ice_texture_rad_angstrom: float = 0.32
    envelope_bfactor_angstrom2: float = 50.0
    # False: frames hold the expected counts (float32), the same draws of everything else;
    # the noise-free series a denoiser is scored against
    shot_noise: bool = True
    mdoc_tilt_axis_error_deg: float = 0.0  # mdoc's axis = truth + this (calibration error)
    position_name: str = "Position_1"
    phantom: PhantomParams = field(default_factory=PhantomParams)


@dataclass(frozen=True)
class TiltSeriesTruth:
    """Everything the simulator knows, per tilt in acquisition order."""

    name: str
    tilt_angles_deg: list[float]
    acquisition_order: list[int]  # 0-based position in the collection
    tilt_axis_angle_deg: float
    shifts_px: list[tuple[float, float]]  # (x, y), raw frame, unbinned
    frame_drifts_px: list[list[tuple[float, float]]]
    defocus_angstrom: list[float]
    dose_per_tilt_e_per_angstrom2: float
    prior_dose_e_per_angstrom2: list[float]
    pixel_size_angstrom: float
    image_size_px: int
    slab_thickness_angstrom: float
    blank_tilts: list[int] = field(default_factory=list)  # acquisition indices
    missing_tilts: list[int] = field(default_factory=list)


def tilt_angles(params: TiltSeriesParams) -> np.ndarray:
    count = int(round((params.max_tilt_deg - params.min_tilt_deg) / params.tilt_step_deg)) + 1
    return np.linspace(params.min_tilt_deg, params.max_tilt_deg, count)


def dose_symmetric_order(angles_deg: np.ndarray, group_size: int = 2) -> list[float]:
    """Hagen scheme: start nearest 0, one step to +, then alternate groups of `group_size`."""
    angles = np.sort(np.asarray(angles_deg, dtype=float))
    start = int(np.argmin(np.abs(angles)))
    positive = list(angles[start + 1 :])
    negative = list(angles[:start][::-1])
    order = [float(angles[start])]
    if positive:
        order.append(float(positive.pop(0)))
    side_negative = True
    while positive or negative:
        source = negative if side_negative else positive
        for _ in range(group_size):
            if source:
                order.append(float(source.pop(0)))
        side_negative = not side_negative
    return order


def _rotation(angle_deg: float) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


def _fourier_shift(image: np.ndarray, shift_xy: tuple[float, float]) -> np.ndarray:
    ny, nx = image.shape
    ky = np.fft.fftfreq(ny)[:, None]
    kx = np.fft.rfftfreq(nx)[None, :]
    phase = np.exp(-2j * np.pi * (kx * shift_xy[0] + ky * shift_xy[1]))
    return scipy.fft.irfft2(scipy.fft.rfft2(image) * phase, s=image.shape)


def render_tilt(
    objects: list,
    params: TiltSeriesParams,
    tilt_angle_deg: float,
    shift_px: tuple[float, float],
    defocus_angstrom: float,
    accumulated_dose_e_per_angstrom2: float,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Relative intensity (1 = vacuum-level mean) on the padded raw field, before shot noise.

    `defocus_angstrom` is the defocus on the tilt axis; the gradient across the tilted field
    is sampled on planes `DEFOCUS_PLANE_STEP_ANGSTROM` apart and interpolated linearly.
    `rng` draws the ice texture (none without it).
    """
    size = params.image_size_px + 2 * PADDING_PX
    centre = size / 2
    raw = np.arange(size) - centre
    ry, rx = np.meshgrid(raw, raw, indexing="ij")
    inverse = _rotation(-params.tilt_axis_angle_deg)
    dx, dy = rx - shift_px[0], ry - shift_px[1]
    aligned_x = (inverse[0, 0] * dx + inverse[0, 1] * dy) * params.pixel_size_angstrom
    aligned_y = (inverse[1, 0] * dx + inverse[1, 1] * dy) * params.pixel_size_angstrom
    projection = project_phantom(objects, aligned_x, aligned_y, tilt_angle_deg)
    absorbing = [
        replace(o, density=o.absorption_per_angstrom)
        for o in objects
        if o.absorption_per_angstrom > 0
    ]
    absorption = (
        project_phantom(absorbing, aligned_x, aligned_y, tilt_angle_deg) if absorbing else 0.0
    )
    phase = params.phase_per_density_angstrom_rad * projection
    if rng is not None and params.ice_texture_rad_angstrom > 0:
        path_factor = 1.0 / np.sqrt(np.cos(np.deg2rad(tilt_angle_deg)))
        rms = params.ice_texture_rad_angstrom / params.pixel_size_angstrom * path_factor
        phase = phase + rng.normal(0.0, rms, size=phase.shape)
    spectrum = scipy.fft.rfft2(phase)
    envelope = dose_filter(
        phase.shape,
        params.pixel_size_angstrom,
        accumulated_dose_e_per_angstrom2,
        params.voltage_kv,
        rfft=True,
    )
    offsets = defocus_offset_angstrom(aligned_x, tilt_angle_deg)
    low, high = float(offsets.min()), float(offsets.max())
    planes = max(2, int(np.ceil((high - low) / DEFOCUS_PLANE_STEP_ANGSTROM)) + 1)
    plane_offsets = np.linspace(low, high, planes) if high > low else np.array([low, low + 1.0])
    position = np.clip(
        (offsets - plane_offsets[0]) / (plane_offsets[1] - plane_offsets[0]), 0, None
    )
    position = np.minimum(position, len(plane_offsets) - 1.0)
    contrast = np.zeros_like(phase)
    for index, offset in enumerate(plane_offsets):
        defocus = defocus_angstrom + float(offset)
        transfer = ctf_2d(
            phase.shape,
            params.pixel_size_angstrom,
            defocus,
            defocus,
            0.0,
            params.voltage_kv,
            params.spherical_aberration_mm,
            params.amplitude_contrast,
            bfactor_angstrom2=params.envelope_bfactor_angstrom2,
            rfft=True,
        )
        plane = scipy.fft.irfft2(spectrum * transfer * envelope, s=phase.shape)
        weight = np.clip(1.0 - np.abs(position - index), 0.0, 1.0)
        contrast += weight * plane
    return (1.0 + 2.0 * contrast) * np.exp(-absorption)


def simulate_tilt_series(
    params: TiltSeriesParams,
    seed: int,
    *,
    blank_tilts: tuple[float, ...] = (),
) -> tuple[list[np.ndarray], TiltSeriesTruth, np.ndarray]:
    """Movies (uint16 counts, or float32 expected counts without shot noise; [frame, y, x])
    per tilt in acquisition order, the truth, and the phantom rasterised at the unbinned
    pixel size ([z, y, x], z = slab).

    `blank_tilts` are tilt angles whose exposure was blanked (dark frames).
    """
    rng = np.random.default_rng(seed)
    objects = make_phantom(params.phantom, rng)
    order = dose_symmetric_order(tilt_angles(params), params.dose_symmetric_group_size)
    n = params.image_size_px
    shifts: list[tuple[float, float]] = []
    current = np.zeros(2)
    for index in range(len(order)):
        if index > 0:  # tracking error accumulates from the first (zero-tilt) exposure
            current = current + rng.normal(0.0, params.tilt_shift_step_px, size=2)
            current = np.clip(current, -params.max_tilt_shift_px, params.max_tilt_shift_px)
        shifts.append((float(current[0]), float(current[1])))
    defoci = [
        float(params.nominal_defocus_angstrom + rng.normal(0.0, params.defocus_spread_angstrom))
        for _ in order
    ]
    blank_indices = [i for i, angle in enumerate(order) if _matches(angle, blank_tilts)]
    dose_px = params.dose_per_tilt_e_per_angstrom2 * params.pixel_size_angstrom**2
    movies: list[np.ndarray] = []
    drifts: list[list[tuple[float, float]]] = []
    prior_doses: list[float] = []
    for index, angle in enumerate(order):
        prior = index * params.dose_per_tilt_e_per_angstrom2
        prior_doses.append(prior)
        intensity = render_tilt(
            objects,
            params,
            angle,
            shifts[index],
            defoci[index],
            prior + 0.5 * params.dose_per_tilt_e_per_angstrom2,
            rng,
        )
        steps = rng.normal(0.0, params.frame_drift_px, size=(params.frames_per_tilt, 2))
        steps[0] = 0.0
        frame_drift = np.cumsum(steps, axis=0)
        drifts.append([(float(x), float(y)) for x, y in frame_drift])
        level = dose_px / params.frames_per_tilt * (0.002 if index in blank_indices else 1.0)
        dtype = np.uint16 if params.shot_noise else np.float32
        frames = np.empty((params.frames_per_tilt, n, n), dtype=dtype)
        for k in range(params.frames_per_tilt):
            shifted = _fourier_shift(intensity, tuple(frame_drift[k]))
            crop = shifted[PADDING_PX : PADDING_PX + n, PADDING_PX : PADDING_PX + n]
            expected = np.clip(crop, 0.0, None) * level
            counts = rng.poisson(expected)  # drawn either way: the same random stream
            frames[k] = counts if params.shot_noise else expected
        movies.append(frames)
    truth = TiltSeriesTruth(
        name=params.position_name,
        tilt_angles_deg=[float(a) for a in order],
        acquisition_order=list(range(len(order))),
        tilt_axis_angle_deg=params.tilt_axis_angle_deg,
        shifts_px=shifts,
        frame_drifts_px=drifts,
        defocus_angstrom=defoci,
        dose_per_tilt_e_per_angstrom2=params.dose_per_tilt_e_per_angstrom2,
        prior_dose_e_per_angstrom2=prior_doses,
        pixel_size_angstrom=params.pixel_size_angstrom,
        image_size_px=n,
        slab_thickness_angstrom=params.phantom.slab_thickness_angstrom,
        blank_tilts=blank_indices,
    )
    nz = int(round(params.phantom.slab_thickness_angstrom / params.pixel_size_angstrom))
    volume = rasterise_phantom(objects, (nz, n, n), params.pixel_size_angstrom)
    return movies, truth, volume


def _matches(angle: float, candidates: tuple[float, ...]) -> bool:
    return any(abs(angle - c) < 1e-3 for c in candidates)


def movie_file_name(position_name: str, acquisition_index: int, tilt_angle_deg: float) -> str:
    """SerialEM-style frame file name, e.g. Position_1_004_-6.00.tif (1-based order)."""
    return f"{position_name}_{acquisition_index + 1:03d}_{tilt_angle_deg:.2f}.tif"


def format_mdoc(
    truth: TiltSeriesTruth,
    params: TiltSeriesParams,
    movie_names: list[str],
    start_time: datetime,
) -> str:
    """A SerialEM tilt-series .mdoc: sections in acquisition order, defocus in microns
    (negative = underfocus), tilt axis angle in the second title line."""
    n = params.image_size_px
    mdoc_axis = truth.tilt_axis_angle_deg + params.mdoc_tilt_axis_error_deg
    lines = [
        f"PixelSpacing = {params.pixel_size_angstrom:g}",
        f"Voltage = {params.voltage_kv:g}",
        f"ImageFile = {truth.name}.mrc",
        f"ImageSize = {n} {n}",
        "DataMode = 1",
        "",
        f"[T = SerialEM: Digitized on emproc simulator    {start_time:%d-%b-%y  %H:%M:%S}    ]",
        "",
        f"[T =     Tilt axis angle = {mdoc_axis:.1f}, binning = 1  spot = 8  camera = 0]",
        "",
    ]
    frame_dose = params.dose_per_tilt_e_per_angstrom2 / params.frames_per_tilt
    for index, angle in enumerate(truth.tilt_angles_deg):
        when = start_time + timedelta(seconds=30 * index)
        lines += [
            f"[ZValue = {index}]",
            f"TiltAngle = {angle:.4f}",
            "StagePosition = 12.345 -6.789",
            "StageZ = -101.5",
            "Magnification = 53000",
            "Intensity = 0.123456",
            f"ExposureDose = {params.dose_per_tilt_e_per_angstrom2:g}",
            f"PixelSpacing = {params.pixel_size_angstrom:g}",
            "SpotSize = 8",
            f"Defocus = {-params.nominal_defocus_angstrom / 1e4:.4f}",
            "ImageShift = 0 0",
            f"RotationAngle = {mdoc_axis:.1f}",
            "ExposureTime = 2",
            "Binning = 1",
            "MagIndex = 31",
            f"TargetDefocus = {-params.nominal_defocus_angstrom / 1e4:g}",
            f"PriorRecordDose = {truth.prior_dose_e_per_angstrom2[index]:g}",
            f"SubFramePath = X:\\Frames\\{movie_names[index]}",
            f"NumSubFrames = {params.frames_per_tilt}",
            f"FrameDosesAndNumber = {frame_dose:g} {params.frames_per_tilt}",
            f"DateTime = {when:%d-%b-%y  %H:%M:%S}",
            "",
        ]
    return "\n".join(lines) + "\n"


def simulate_tomo_session(
    output_dir: str | Path,
    *,
    number_of_tilt_series: int = 1,
    params: TiltSeriesParams | None = None,
    seed: int = 0,
    missing_tilts: tuple[float, ...] = (),
    blank_tilts: tuple[float, ...] = (),
) -> Path:
    """Write `Position_<i>.mdoc` + frame TIFFs under `output_dir`, the phantom volumes
    (`truth/Position_<i>_phantom.mrc`) and `truth/tomo_truth.json`; return the JSON path.

    `missing_tilts` (angles) are listed in the mdoc but their movie is not written;
    `blank_tilts` are written as dark exposures.
    """
    output_dir = Path(output_dir)
    params = params or TiltSeriesParams()
    truth_dir = output_dir / "truth"
    start = datetime(2026, 11, 29, 9, 0, 0)
    series_truth = []
    for series_index in range(number_of_tilt_series):
        series_params = _with_name(params, f"Position_{series_index + 1}")
        movies, truth, volume = simulate_tilt_series(
            series_params, seed + 1000 * series_index, blank_tilts=blank_tilts
        )
        names = [
            movie_file_name(truth.name, i, angle) for i, angle in enumerate(truth.tilt_angles_deg)
        ]
        missing = [
            i for i, angle in enumerate(truth.tilt_angles_deg) if _matches(angle, missing_tilts)
        ]
        for index, (name, frames) in enumerate(zip(names, movies, strict=True)):
            if index in missing:
                continue
            with atomic_path(output_dir / name) as temporary:
                tifffile.imwrite(temporary, frames, photometric="minisblack")
        mdoc_text = format_mdoc(truth, series_params, names, start + timedelta(hours=series_index))
        write_text_atomic(output_dir / f"{truth.name}.mdoc", mdoc_text)
        volume_path = truth_dir / f"{truth.name}_phantom.mrc"
        with atomic_path(volume_path) as temporary:
            with mrcfile.new(temporary, overwrite=True) as mrc:
                mrc.set_data(volume)
                mrc.voxel_size = params.pixel_size_angstrom
        record = asdict(truth)
        record["missing_tilts"] = missing
        record["mdoc_path"] = str((output_dir / f"{truth.name}.mdoc").resolve())
        record["movie_names"] = names
        record["phantom_path"] = str(volume_path.resolve())
        record["phantom_voxel_size_angstrom"] = params.pixel_size_angstrom
        series_truth.append(record)
    truth_path = truth_dir / "tomo_truth.json"
    write_json_atomic(
        truth_path,
        {
            "seed": seed,
            "params": json.loads(json.dumps(asdict(params))),
            "tilt_series": series_truth,
        },
    )
    return truth_path


def _with_name(params: TiltSeriesParams, name: str) -> TiltSeriesParams:
    return replace(params, position_name=name)
