"""Motion correction of one movie: gain/defects, global + local alignment, (weighted) sums.

Two streaming passes over the frames, each frame converted to float32 on its own:
1. gain-correct, rfft2 at full size, Fourier-crop to the alignment grid (binned by
   `bin_for_alignment`), B-factor filter; only these small spectra are kept;
2. after alignment, gain-correct again, shift at full resolution (a whole-frame Fourier
   phase ramp for global-only correction; Fourier-shifted tiles following the global +
   local shift field when a patch model is used, see `emproc.motion.tiles`), and
   accumulate the plain and dose-weighted sums in Fourier space.
Memory: the small spectra plus a few full-size arrays, never a float copy of the movie.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft

from emproc.io.gain import DefectRepair
from emproc.motion.align import (
    align_spectra,
    bfactor_filter,
    crop_spectrum,
    fast_size_at_most,
    remove_drift,
)
from emproc.motion.dose_weighting import DoseWeights, frame_mid_exposures
from emproc.motion.patch import (
    MIN_PATCH_PX,
    LocalMotionModel,
    fit_local_model,
    measure_patch_shifts,
)
from emproc.motion.tiles import choose_core_px, tile_shape, tiled_sums

MIN_FRAMES_FOR_LOCAL = 4  # the cubic time model needs at least this many frames


class MotionCorrectionError(ValueError):
    """The frames cannot be motion-corrected (bad values, shapes or parameters)."""


class NonFiniteFrameError(MotionCorrectionError):
    """A frame holds NaN or infinite values."""


@dataclass(frozen=True, eq=False)
class MotionResult:
    """Sums and trajectories of one movie. Shifts follow docs/architecture.md: drift (x, y)
    in unbinned pixels, features at p in frame 0 sit at p + shifts_px[k] in frame k."""

    aligned_sum: np.ndarray  # float32 (ny, nx), aligned to frame 0
    dose_weighted_sum: np.ndarray | None  # float32, or None without dose weighting
    shifts_px: np.ndarray  # (n, 2) global drift, frame 0 = (0, 0)
    local_model: LocalMotionModel | None
    pixel_size_angstrom: float
    total_motion_angstrom: float
    early_motion_angstrom: float
    late_motion_angstrom: float
    average_motion_per_frame_angstrom: float
    patches_used_x: int
    patches_used_y: int

    @property
    def number_of_frames(self) -> int:
        return int(self.shifts_px.shape[0])


@dataclass(frozen=True)
class AccumulatedMotion:
    total_angstrom: float
    early_angstrom: float
    late_angstrom: float
    average_per_frame_angstrom: float


def accumulated_motion(
    shifts_px: np.ndarray, pixel_size_angstrom: float, early_frames: int
) -> AccumulatedMotion:
    """Path length of the global trajectory (RELION's rlnAccumMotion*), in Angstrom.

    "Early" is the motion within the first `early_frames` frames (steps into frames
    1 .. early_frames - 1, 0-based), "late" the rest; total = early + late.
    """
    steps = np.hypot(*np.diff(shifts_px, axis=0).T) * pixel_size_angstrom
    early = float(steps[: max(early_frames - 1, 0)].sum())
    total = float(steps.sum())
    average = total / len(steps) if len(steps) else 0.0
    return AccumulatedMotion(total, early, total - early, average)


def _alignment_shape(shape: tuple[int, int], bin_factor: int) -> tuple[int, int]:
    # even, FFT-friendly sizes: the cropped spectrum stays symmetric and the many
    # correlations per iteration stay fast (4092 / 2 = 2046 = 2 x 3 x 11 x 31 is not)
    return tuple(fast_size_at_most(max(int(round(size / bin_factor)), 2)) for size in shape)  # type: ignore[return-value]


class _FrameSource:
    """Hands out gain-corrected, defect-repaired float32 frames one at a time."""

    def __init__(self, frames: np.ndarray, gain: np.ndarray | None, defect_mask) -> None:
        self.frames = frames
        self.gain = None if gain is None else np.asarray(gain, dtype=np.float32)
        self.repair = None
        if defect_mask is not None and np.any(defect_mask):
            self.repair = DefectRepair(defect_mask)
        self.check_finite = not np.issubdtype(frames.dtype, np.integer)

    def __call__(self, index: int) -> np.ndarray:
        frame = np.array(self.frames[index], dtype=np.float32)
        if self.check_finite and not np.isfinite(frame).all():
            raise NonFiniteFrameError(f"frame {index + 1} contains NaN or infinite values")
        if self.gain is not None:
            frame *= self.gain
        if self.repair is not None:
            self.repair(frame)
        return frame


def _validate(frames, gain, defect_mask, bin_for_alignment, pixel_size_angstrom) -> None:
    if frames.ndim != 3 or frames.shape[0] < 1:
        raise MotionCorrectionError(f"frames must be (n, ny, nx) with n >= 1, got {frames.shape}")
    if frames.shape[1] < 32 or frames.shape[2] < 32:
        raise MotionCorrectionError(f"frames of {frames.shape[1:]} px are too small to align")
    for name, image in (("gain reference", gain), ("defect map", defect_mask)):
        if image is not None and tuple(np.shape(image)) != tuple(frames.shape[1:]):
            raise MotionCorrectionError(
                f"{name} has shape {tuple(np.shape(image))}, frames are {tuple(frames.shape[1:])}"
            )
    if bin_for_alignment < 1:
        raise MotionCorrectionError(f"bin_for_alignment must be >= 1, got {bin_for_alignment}")
    if pixel_size_angstrom <= 0:
        raise MotionCorrectionError(f"pixel size must be positive, got {pixel_size_angstrom}")


def _patch_grid(
    patches_x: int, patches_y: int, alignment_shape: tuple[int, int], frames: int
) -> tuple[int, int]:
    """Patches actually used: fewer when patches would be tiny; (1, 1) means global only."""
    if frames < MIN_FRAMES_FOR_LOCAL:
        return 1, 1
    used_x = max(1, min(patches_x, alignment_shape[1] // MIN_PATCH_PX))
    used_y = max(1, min(patches_y, alignment_shape[0] // MIN_PATCH_PX))
    if used_x * used_y < 4:  # too few patches to constrain a deformation
        return 1, 1
    return used_x, used_y


def _global_sums(
    source: _FrameSource,
    shifts: np.ndarray,
    shape: tuple[int, int],
    pixel_size_angstrom: float,
    exposures: np.ndarray,
    dose_weighting: bool,
    threads: int,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Plain and dose-weighted sums with whole-frame Fourier shifts."""
    weights = DoseWeights(shape, pixel_size_angstrom, exposures) if dose_weighting else None
    plain = np.zeros((shape[0], shape[1] // 2 + 1), dtype=np.complex64)
    weighted = np.zeros_like(plain) if weights is not None else None
    for k in range(len(shifts)):
        spectrum = scipy.fft.rfft2(source(k), workers=threads)
        remove_drift(spectrum, shape, shifts[k], out=spectrum)
        plain += spectrum
        if weighted is not None:
            spectrum *= weights(k)
            weighted += spectrum
    aligned = scipy.fft.irfft2(plain, s=shape, workers=threads).astype(np.float32)
    if weighted is None:
        return aligned, None
    return aligned, scipy.fft.irfft2(weighted, s=shape, workers=threads).astype(np.float32)


def motion_correct(
    frames: np.ndarray,
    *,
    pixel_size_angstrom: float,
    dose_per_frame_e_per_angstrom2: float,
    pre_exposure_e_per_angstrom2: float = 0.0,
    voltage_kv: float = 300.0,
    gain: np.ndarray | None = None,
    defect_mask: np.ndarray | None = None,
    patches_x: int = 5,
    patches_y: int = 5,
    bin_for_alignment: int = 2,
    bfactor_angstrom2: float = 150.0,
    iterations: int = 10,
    early_frames: int = 4,
    dose_weighting: bool = True,
    threads: int = 1,
) -> MotionResult:
    """Align the frames of one movie and return the aligned and dose-weighted sums.

    `frames` is (n, ny, nx) raw counts in any dtype (a memmap is read frame by frame);
    `gain` multiplies each frame; pixels where `defect_mask` is true are replaced by
    the mean of good neighbours. Patch alignment runs when patches_x * patches_y > 1.
    """
    frames = np.asarray(frames) if not isinstance(frames, np.ndarray) else frames
    _validate(frames, gain, defect_mask, bin_for_alignment, pixel_size_angstrom)
    count, ny, nx = frames.shape
    source = _FrameSource(frames, gain, defect_mask)
    align_shape = _alignment_shape((ny, nx), bin_for_alignment)
    scale = np.array([nx / align_shape[1], ny / align_shape[0]])
    envelope = bfactor_filter(align_shape, pixel_size_angstrom * scale.mean(), bfactor_angstrom2)

    # pass 1: small filtered spectra for alignment
    spectra = np.empty((count, align_shape[0], align_shape[1] // 2 + 1), dtype=np.complex64)
    for k in range(count):
        spectrum = scipy.fft.rfft2(source(k), workers=threads)
        spectra[k] = crop_spectrum(spectrum, align_shape) * envelope
        spectra[k, 0, 0] = 0.0
    del spectrum
    drift_aligned_grid = align_spectra(
        spectra, iterations=iterations, real_shape=align_shape, workers=threads
    )
    shifts = drift_aligned_grid * scale

    model = None
    used_x, used_y = _patch_grid(patches_x, patches_y, align_shape, count)
    if used_x * used_y > 1:
        aligned = np.empty((count, *align_shape), dtype=np.float32)
        for k in range(count):
            moved = remove_drift(spectra[k], align_shape, drift_aligned_grid[k])
            aligned[k] = scipy.fft.irfft2(moved, s=align_shape, workers=threads)
        del spectra
        centres, patch_shifts = measure_patch_shifts(
            aligned, used_x, used_y, iterations=iterations, workers=threads
        )
        del aligned
        model = fit_local_model(
            (centres + 0.5) * scale - 0.5,  # alignment-grid pixel centres -> unbinned
            patch_shifts * scale[None, None, :],
            (ny, nx),
            used_x,
            used_y,
        )
    else:
        del spectra
        used_x = used_y = 1

    # pass 2: full-resolution sums
    exposures = frame_mid_exposures(
        count, dose_per_frame_e_per_angstrom2, pre_exposure_e_per_angstrom2, voltage_kv
    )
    if model is not None:

        def total_shift(k: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
            return shifts[k] + np.stack(model.shift_at(k, x, y), axis=-1)

        core = choose_core_px(total_shift, count, (ny, nx))
        weights_for = None
        if dose_weighting:
            weights_for = DoseWeights(tile_shape(core), pixel_size_angstrom, exposures)
        aligned_sum, dose_weighted_sum = tiled_sums(
            source, count, (ny, nx), total_shift, weights_for, core_px=core, workers=threads
        )
    else:
        aligned_sum, dose_weighted_sum = _global_sums(
            source, shifts, (ny, nx), pixel_size_angstrom, exposures, dose_weighting, threads
        )

    motion = accumulated_motion(shifts, pixel_size_angstrom, early_frames)
    return MotionResult(
        aligned_sum=aligned_sum,
        dose_weighted_sum=dose_weighted_sum,
        shifts_px=shifts,
        local_model=model,
        pixel_size_angstrom=float(pixel_size_angstrom),
        total_motion_angstrom=motion.total_angstrom,
        early_motion_angstrom=motion.early_angstrom,
        late_motion_angstrom=motion.late_angstrom,
        average_motion_per_frame_angstrom=motion.average_per_frame_angstrom,
        patches_used_x=used_x,
        patches_used_y=used_y,
    )
