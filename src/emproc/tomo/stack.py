"""Tilt-stack assembly: per-tilt sums, bad-tilt exclusion, dose weighting, stack files."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import mrcfile
import numpy as np
import scipy.fft

from emproc.io.atomic import atomic_path, write_text_atomic
from emproc.io.mdoc import TiltSeriesMetadata
from emproc.io.movie import read_movie
from emproc.tomo.ctf import TiltSeriesCtfParams, estimate_tilt_series_ctf
from emproc.tomo.dose import dose_filter
from emproc.tomo.per_tilt import frame_half_sums, motion_corrected_tilt


class TiltStackError(ValueError):
    """Too few usable tilts, or tilts of inconsistent size."""


@dataclass(frozen=True)
class ExclusionParams:
    """Thresholds for dropping tilts; each names its unit."""

    dark_fraction: float = 0.2  # mean counts below this fraction of the median: blank/dark
    intensity_outlier_mad: float = 6.0  # |log mean - median| beyond this many robust sigmas
    # a tilt whose CTF fits worse than this (or not at all) and with under
    # `ctf_failure_significance_fraction` of the ring signal of both neighbours in tilt
    # angle (which fit better than this) is an isolated failure (blur, contamination) and is
    # dropped; faint rings across a run of tilts (late, high tilts) are physics, never dropped
    max_ctf_fit_resolution_angstrom: float = 40.0
    ctf_failure_significance_fraction: float = 0.25
    min_tilts: int = 5


@dataclass(frozen=True)
class TiltRecord:
    """One tilt's fate. `status` is 'used', 'missing', 'dark', 'intensity_outlier' or
    'ctf_fit_failed'."""

    tilt_angle_deg: float
    acquisition_index: int
    movie_name: str | None
    accumulated_dose_e_per_angstrom2: float  # before this exposure, in acquisition order
    exposure_dose_e_per_angstrom2: float
    mean_counts: float | None
    defocus_angstrom: float | None
    ctf_estimated: bool  # defocus measured (own or series fit), not the mdoc's
    ctf_fit_resolution_angstrom: float | None  # None: no own fit
    motion_corrected: bool
    status: str
    ctf_source: str = "mdoc"  # "tilt" (own fit), "series" (series fit) or "mdoc"
    ctf_significance: float | None = None  # fit correlation in null standard deviations
    number_of_frames: int | None = None  # of the tilt movie, once motion-corrected
    total_motion_angstrom: float | None = None  # frame-to-frame drift summed
    average_motion_per_frame_angstrom: float | None = None


@dataclass(frozen=True)
class TiltStack:
    images: np.ndarray  # [tilt, y, x] float32 contrast (mean 0), used tilts by tilt angle
    tilt_angles_deg: np.ndarray
    records: tuple[TiltRecord, ...]  # every tilt of the mdoc, by tilt angle
    pixel_size_angstrom: float
    tilt_axis_angle_deg: float
    # even-frame / odd-frame versions of `images` (same processing, then Fourier-binned by
    # `halves_binning` to save memory), when asked for
    halves_binning: int = 1
    even_images: np.ndarray | None = None
    odd_images: np.ndarray | None = None

    @property
    def used(self) -> list[TiltRecord]:
        return [r for r in self.records if r.status == "used"]


def fourier_bin(image: np.ndarray, factor: int) -> np.ndarray:
    """Bin an image by Fourier cropping (no aliasing); sizes must divide by `factor`."""
    if factor == 1:
        return image.astype(np.float32, copy=False)
    ny, nx = image.shape
    my, mx = ny // factor, nx // factor
    spectrum = scipy.fft.rfft2(image)
    # non-negative frequencies first, then negative ones: (my + 1) // 2 + my // 2 = my rows
    rows = np.r_[0 : (my + 1) // 2, ny - my // 2 : ny]
    cropped = spectrum[rows, : mx // 2 + 1]
    return (scipy.fft.irfft2(cropped, s=(my, mx)) / factor**2).astype(np.float32)


def assemble_tilt_stack(
    metadata: TiltSeriesMetadata,
    *,
    frames_dir: Path | None = None,
    exclusion: ExclusionParams | None = None,
    voltage_kv: float = 300.0,
    ctf_settings: dict | None = None,
    dose_weighting: bool = True,
    motion_settings: dict | None = None,
    microscope: dict | None = None,
    frame_halves_binning: int | None = None,
) -> TiltStack:
    """Read every present tilt movie, sum (motion-correct) it, find its CTF, drop bad tilts,
    dose-weight by accumulated dose and sort by tilt angle. Missing movies are recorded,
    not fatal.

    `ctf_settings` (the `ctf:` config keys of `TiltSeriesCtfParams`) given: the series' CTF
    is fitted (`emproc.tomo.ctf`) with `microscope` (spherical_aberration_mm,
    amplitude_contrast); else the mdoc's defocus is used. `motion_settings`: the `motion:`
    section, passed to per-tilt motion correction. `frame_halves_binning` given: also the
    even/odd-frame stacks (`emproc.tomo.per_tilt.frame_half_sums`), binned by that factor
    (they only feed binned reconstructions); None when a used movie has a single frame."""
    exclusion = exclusion or ExclusionParams()
    frame_halves = frame_halves_binning is not None
    accumulated = 0.0
    records: list[TiltRecord] = []
    images: dict[int, np.ndarray] = {}
    halves: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for tilt in metadata.tilts:  # acquisition order: dose accumulates in this order
        path = metadata.movie_path(tilt, frames_dir)
        record = TiltRecord(
            tilt_angle_deg=tilt.tilt_angle_deg,
            acquisition_index=tilt.acquisition_index,
            movie_name=None if path is None else path.name,
            accumulated_dose_e_per_angstrom2=accumulated,
            exposure_dose_e_per_angstrom2=tilt.exposure_dose_e_per_angstrom2,
            mean_counts=None,
            defocus_angstrom=tilt.defocus_angstrom,
            ctf_estimated=False,
            ctf_fit_resolution_angstrom=None,
            motion_corrected=False,
            status="missing",
        )
        accumulated += tilt.exposure_dose_e_per_angstrom2
        if path is not None and path.is_file():
            frames = read_movie(path)
            dose_per_frame = tilt.exposure_dose_e_per_angstrom2 / max(len(frames), 1)
            image, motion = motion_corrected_tilt(
                frames,
                pixel_size_angstrom=metadata.pixel_size_angstrom,
                dose_per_frame_e_per_angstrom2=dose_per_frame,
                motion_settings=motion_settings,
            )
            images[len(records)] = image
            if frame_halves and len(frames) >= 2:
                # binned at once: full-size halves of every tilt would triple the memory
                halves[len(records)] = tuple(
                    fourier_bin(half, frame_halves_binning)
                    for half in frame_half_sums(frames, motion.shifts_px)
                )
            record = replace(
                record,
                mean_counts=float(image.mean()),
                motion_corrected=True,
                number_of_frames=motion.number_of_frames,
                total_motion_angstrom=motion.total_motion_angstrom,
                average_motion_per_frame_angstrom=motion.average_motion_per_frame_angstrom,
                status="used",
            )
        records.append(record)
    shapes = {image.shape for image in images.values()}
    if len(shapes) > 1:
        raise TiltStackError(f"{metadata.mdoc_path}: tilt movies differ in size: {sorted(shapes)}")
    records = _flag_intensity(records, exclusion)
    if ctf_settings is not None:
        records = _fit_ctf(records, images, metadata, voltage_kv, ctf_settings, microscope or {})
        records = _flag_ctf_failures(records, exclusion)
    order = sorted(range(len(records)), key=lambda i: records[i].tilt_angle_deg)
    used = [i for i in order if records[i].status == "used"]
    if len(used) < exclusion.min_tilts:
        raise TiltStackError(
            f"{metadata.mdoc_path}: only {len(used)} usable tilts "
            f"(need {exclusion.min_tilts}); statuses: {[records[i].status for i in order]}"
        )
    shape = next(iter(shapes))
    stack = np.empty((len(used), *shape), dtype=np.float32)
    even = odd = None
    # a single-frame movie among the used tilts has no halves: none for the series
    frame_halves = frame_halves and all(index in halves for index in used)
    if frame_halves:
        binned_shape = halves[used[0]][0].shape
        even = np.empty((len(used), *binned_shape), dtype=np.float32)
        odd = np.empty_like(even)
    for slot, index in enumerate(used):
        record = records[index]
        mid_exposure = (
            record.accumulated_dose_e_per_angstrom2 + 0.5 * record.exposure_dose_e_per_angstrom2
        )
        weights = None
        if dose_weighting:
            weights = dose_filter(
                shape, metadata.pixel_size_angstrom, mid_exposure, voltage_kv, rfft=True
            )
        stack[slot] = _contrast(images[index], weights)
        if frame_halves:
            # the binned grid has the same frequencies in 1/A: the same dose filter, cropped
            binned_weights = None
            if dose_weighting:
                binned_pixel = metadata.pixel_size_angstrom * frame_halves_binning
                binned_weights = dose_filter(
                    binned_shape, binned_pixel, mid_exposure, voltage_kv, rfft=True
                )
            even[slot] = _contrast(halves[index][0], binned_weights)
            odd[slot] = _contrast(halves[index][1], binned_weights)
    return TiltStack(
        images=stack,
        tilt_angles_deg=np.array([records[i].tilt_angle_deg for i in used]),
        records=tuple(records[i] for i in order),
        pixel_size_angstrom=metadata.pixel_size_angstrom,
        tilt_axis_angle_deg=metadata.tilt_axis_angle_deg,
        halves_binning=frame_halves_binning if frame_halves else 1,
        even_images=even,
        odd_images=odd,
    )


def _contrast(image: np.ndarray, dose_weights: np.ndarray | None) -> np.ndarray:
    """Density convention: dense matter positive at low frequency (images show it dark),
    dose-weighted by the rfft-grid `dose_weights` when given."""
    contrast = 1.0 - image / image.mean()
    if dose_weights is None:
        return contrast
    return scipy.fft.irfft2(scipy.fft.rfft2(contrast) * dose_weights, s=contrast.shape)


def _fit_ctf(
    records: list[TiltRecord],
    images: dict[int, np.ndarray],
    metadata: TiltSeriesMetadata,
    voltage_kv: float,
    ctf_settings: dict,
    microscope: dict,
) -> list[TiltRecord]:
    """Defocus of every usable tilt from the joint tilt-series fit."""
    usable = [i for i, r in enumerate(records) if r.status == "used"]
    if not usable:
        return records
    known = set(TiltSeriesCtfParams.__dataclass_fields__)
    params = TiltSeriesCtfParams(**{k: v for k, v in ctf_settings.items() if k in known})
    # binned tilt series often have Nyquist coarser than the SPA band: fit up to 2.5 px
    finest = 2.5 * metadata.pixel_size_angstrom
    if params.max_resolution_angstrom < finest:
        params = replace(
            params,
            max_resolution_angstrom=finest,
            min_resolution_angstrom=max(params.min_resolution_angstrom, 2.0 * finest),
        )
    _, fits = estimate_tilt_series_ctf(
        [images[i] for i in usable],
        [records[i].tilt_angle_deg for i in usable],
        metadata.tilt_axis_angle_deg,
        metadata.pixel_size_angstrom,
        [records[i].defocus_angstrom for i in usable],
        voltage_kv=voltage_kv,
        spherical_aberration_mm=float(microscope.get("spherical_aberration_mm", 2.7)),
        amplitude_contrast=float(microscope.get("amplitude_contrast", 0.1)),
        accumulated_dose_e_per_angstrom2=[
            records[i].accumulated_dose_e_per_angstrom2
            + 0.5 * records[i].exposure_dose_e_per_angstrom2
            for i in usable
        ],
        params=params,
    )
    updated = list(records)
    for index, fit in zip(usable, fits, strict=True):
        updated[index] = replace(
            records[index],
            defocus_angstrom=fit.defocus_angstrom,
            ctf_estimated=fit.source != "mdoc",
            ctf_fit_resolution_angstrom=fit.fit_resolution_angstrom,
            ctf_source=fit.source,
            ctf_significance=fit.significance,
        )
    return updated


def _flag_ctf_failures(records: list[TiltRecord], exclusion: ExclusionParams) -> list[TiltRecord]:
    """`ctf_fit_failed`: no good fit and a small fraction of the ring signal of the nearest
    usable tilts on both sides (by angle), which fit well. A run of faint tilts is physics
    (dose, thickness), not a bad exposure."""

    def good(record: TiltRecord) -> bool:
        resolution = record.ctf_fit_resolution_angstrom
        return resolution is not None and resolution <= exclusion.max_ctf_fit_resolution_angstrom

    def faint(record: TiltRecord, neighbours: tuple[TiltRecord, TiltRecord]) -> bool:
        weakest = min(n.ctf_significance or 0.0 for n in neighbours)
        return (record.ctf_significance or 0.0) < (
            exclusion.ctf_failure_significance_fraction * weakest
        )

    order = sorted(
        (i for i, r in enumerate(records) if r.status == "used"),
        key=lambda i: records[i].tilt_angle_deg,
    )
    flagged = list(records)
    for slot in range(1, len(order) - 1):
        before, this, after = (records[order[slot + k]] for k in (-1, 0, 1))
        if not good(this) and good(before) and good(after) and faint(this, (before, after)):
            flagged[order[slot]] = replace(this, status="ctf_fit_failed")
    return flagged


def _flag_intensity(records: list[TiltRecord], exclusion: ExclusionParams) -> list[TiltRecord]:
    means = np.array([r.mean_counts for r in records if r.status == "used"])
    if means.size == 0:
        return records
    median = float(np.median(means))
    bright = means[means >= exclusion.dark_fraction * median]
    log_means = np.log(np.maximum(bright, 1e-12))
    centre = float(np.median(log_means))
    spread = 1.4826 * float(np.median(np.abs(log_means - centre))) or 1e-3
    flagged = []
    for record in records:
        if record.status == "used" and record.mean_counts is not None:
            if record.mean_counts < exclusion.dark_fraction * median:
                record = replace(record, status="dark")
            elif abs(np.log(max(record.mean_counts, 1e-12)) - centre) > (
                exclusion.intensity_outlier_mad * spread
            ):
                record = replace(record, status="intensity_outlier")
        flagged.append(record)
    return flagged


def write_stack(stack: TiltStack, stack_path: Path, rawtlt_path: Path) -> None:
    """Stack MRC (IMOD .st-like, sorted by tilt) and the matching `.rawtlt`."""
    with atomic_path(stack_path) as temporary:
        with mrcfile.new(temporary, overwrite=True) as mrc:
            mrc.set_data(stack.images)
            mrc.voxel_size = stack.pixel_size_angstrom
            mrc.header.ispg = 0  # an image stack, not a volume
    write_text_atomic(rawtlt_path, "".join(f"{a:.2f}\n" for a in stack.tilt_angles_deg))
