"""Motion-correction building blocks against exactly known inputs (fast, own generator)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft

from emproc.motion import MotionCorrectionError, NonFiniteFrameError, motion_correct
from emproc.motion.align import (
    align_spectra,
    crop_spectrum,
    find_peak,
    phase_ramp,
    smooth_trajectory,
)
from emproc.motion.correct import accumulated_motion
from emproc.motion.patch import LocalMotionModel, basis_terms, fit_local_model
from emproc.motion.tiles import choose_core_px, tiled_sums


def smooth_image(shape, seed, correlation_px=3.0):
    """Random texture with a Gaussian power fall-off (cyclic, unit variance)."""
    rng = np.random.default_rng(seed)
    ny, nx = shape
    ky = np.fft.fftfreq(ny)[:, None]
    kx = np.fft.rfftfreq(nx)[None, :]
    envelope = np.exp(-2 * (np.pi * correlation_px) ** 2 * (kx**2 + ky**2))
    image = scipy.fft.irfft2(scipy.fft.rfft2(rng.standard_normal(shape)) * envelope, s=shape)
    return image / image.std()


def drifted(image, shift_xy):
    """`image` with features moved by +shift (exact Fourier shift, cyclic)."""
    spectrum = scipy.fft.rfft2(image) * np.conj(phase_ramp(image.shape, shift_xy))
    return scipy.fft.irfft2(spectrum, s=image.shape)


def make_movie(shape, shifts, counts_per_px, seed, contrast=0.5, gain=None):
    """Poisson movie of a drifting texture; `gain` (mean 1) is what corrects it."""
    rng = np.random.default_rng(seed + 1000)
    image = smooth_image(shape, seed)
    frames = []
    for shift in shifts:
        expected = counts_per_px * np.clip(1.0 + contrast * drifted(image, shift), 0, None)
        if gain is not None:
            expected = expected / gain
        frames.append(rng.poisson(expected))
    return np.asarray(frames, dtype=np.uint16), image


def trajectory(frames, total_px, seed):
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, 2 * np.pi)
    steps = np.exp(-np.arange(frames - 1) / 4.0) + 0.2
    steps *= total_px / steps.sum()
    path = np.cumsum(steps[:, None] * [np.cos(angle), np.sin(angle)], axis=0)
    return np.vstack([[0.0, 0.0], path])


def rms_error(estimate, truth):
    error = estimate - truth
    error -= error.mean(axis=0)
    return float(np.sqrt(np.mean(np.sum(error**2, axis=1))))


# ---------------------------------------------------------------- primitives


def test_find_peak_is_sub_pixel_accurate():
    y, x = np.meshgrid(np.fft.fftfreq(64, 1 / 64), np.fft.fftfreq(64, 1 / 64), indexing="ij")
    for true_x, true_y in [(3.3, -2.7), (-10.45, 0.1), (0.0, 0.49)]:
        peak = np.exp(-((x - true_x) ** 2 + (y - true_y) ** 2) / (2 * 1.5**2))
        found = find_peak(peak)
        assert found == pytest.approx((true_x, true_y), abs=0.01)
    # the search window excludes a stronger peak far away
    far = np.exp(-((x - 20) ** 2 + y**2) / 2.0) * 2 + np.exp(-((x - 1) ** 2 + y**2) / 2.0)
    assert find_peak(far, max_shift_px=5)[0] == pytest.approx(1.0, abs=0.05)


def test_crop_spectrum_equals_band_limited_downsampling():
    image = smooth_image((128, 96), seed=3, correlation_px=8.0)  # negligible power above 1/4
    cropped = crop_spectrum(scipy.fft.rfft2(image), (64, 48))
    small = scipy.fft.irfft2(cropped, s=(64, 48)) * (64 * 48) / (128 * 96)
    np.testing.assert_allclose(small, image[::2, ::2], atol=1e-4)


def test_phase_ramp_removes_a_drift():
    image = smooth_image((64, 80), seed=4)
    moved = np.roll(image, shift=(3, -5), axis=(0, 1))  # features at p + (dx=-5, dy=3)
    restored = scipy.fft.irfft2(
        scipy.fft.rfft2(moved) * phase_ramp((64, 80), (-5.0, 3.0)), s=(64, 80)
    )
    np.testing.assert_allclose(restored, image, atol=1e-5)


def test_smooth_trajectory_keeps_straight_lines_and_damps_noise():
    line = np.column_stack([np.linspace(0, 9, 10), np.linspace(0, -4.5, 10)])
    np.testing.assert_allclose(smooth_trajectory(line, 1.0), line, atol=1e-9)
    noise = np.random.default_rng(5).normal(0, 0.3, line.shape)
    assert rms_error(smooth_trajectory(line + noise, 1.0), line) < rms_error(line + noise, line)


def test_align_spectra_recovers_shifts_of_noise_free_frames():
    image = smooth_image((128, 128), seed=6)
    truth = trajectory(8, 7.0, seed=6)
    spectra = np.stack([scipy.fft.rfft2(drifted(image, s)) for s in truth]).astype(np.complex64)
    spectra[:, 0, 0] = 0
    found = align_spectra(spectra, smoothing=0.0)
    np.testing.assert_allclose(found, truth, atol=0.02)


def test_accumulated_motion_is_the_path_length():
    shifts = np.column_stack([np.arange(10.0), np.zeros(10)])  # 1 px per frame
    motion = accumulated_motion(shifts, pixel_size_angstrom=2.0, early_frames=4)
    assert motion.total_angstrom == pytest.approx(18.0)
    assert motion.early_angstrom == pytest.approx(6.0)  # steps into frames 1..3
    assert motion.late_angstrom == pytest.approx(12.0)
    assert motion.average_per_frame_angstrom == pytest.approx(2.0)


# ---------------------------------------------------------------- whole movies


def test_motion_correct_recovers_drift_and_sharpens_the_sum():
    truth = trajectory(12, 8.0, seed=7)
    gain = np.random.default_rng(7).uniform(0.7, 1.3, (192, 224)).astype(np.float32)
    frames, image = make_movie((192, 224), truth, counts_per_px=2.0, seed=7, gain=gain)
    result = motion_correct(
        frames,
        pixel_size_angstrom=1.0,
        dose_per_frame_e_per_angstrom2=2.0,
        gain=gain,
        patches_x=1,
        patches_y=1,
    )
    assert result.shifts_px[0] == pytest.approx((0.0, 0.0))
    assert rms_error(result.shifts_px, truth) < 0.25
    assert result.aligned_sum.dtype == np.float32 and result.aligned_sum.shape == (192, 224)
    assert result.dose_weighted_sum is not None and result.patches_used_x == 1
    # the aligned sum is the frame-0 image: it correlates with the truth far better
    unaligned = (frames * gain).sum(axis=0)

    def correlation(a):
        return np.corrcoef(a.ravel(), image.ravel())[0, 1]

    assert correlation(result.aligned_sum) > 0.9
    assert correlation(result.aligned_sum) > correlation(unaligned) + 0.2
    assert result.total_motion_angstrom == pytest.approx(8.0, rel=0.1)


def test_motion_correct_fails_without_gain_where_gain_correction_passes():
    truth = trajectory(10, 8.0, seed=8)
    rng = np.random.default_rng(8)
    # per-pixel and column-wise sensitivity, as on counting detectors
    gain = rng.uniform(0.7, 1.3, (160, 160)) * (1 + 0.2 * rng.standard_normal(160))[None, :]
    gain = (gain / gain.mean()).astype(np.float32)
    frames, _ = make_movie((160, 160), truth, counts_per_px=1.0, seed=8, contrast=0.15, gain=gain)
    common = dict(
        pixel_size_angstrom=1.0, dose_per_frame_e_per_angstrom2=1.0, patches_x=1, patches_y=1
    )
    with_gain = motion_correct(frames, gain=gain, **common)
    without = motion_correct(frames, **common)
    assert rms_error(with_gain.shifts_px, truth) < 0.25
    assert rms_error(without.shifts_px, truth) > 0.5  # pulled towards zero by the fixed pattern


def test_defect_map_removes_hot_pixels_that_pin_alignment():
    truth = trajectory(10, 8.0, seed=13)
    frames, _ = make_movie((160, 160), truth, counts_per_px=1.0, seed=13, contrast=0.3)
    rng = np.random.default_rng(13)
    defects = np.zeros((160, 160), dtype=bool)
    defects[rng.integers(0, 160, 30), rng.integers(0, 160, 30)] = True
    defects[:, 77] = True  # a hot column
    frames[:, defects] = 60
    common = dict(
        pixel_size_angstrom=1.0, dose_per_frame_e_per_angstrom2=1.0, patches_x=1, patches_y=1
    )
    repaired = motion_correct(frames, defect_mask=defects, **common)
    pinned = motion_correct(frames, **common)
    assert rms_error(repaired.shifts_px, truth) < 0.25
    assert rms_error(pinned.shifts_px, truth) > 1.0


def test_nan_frame_is_reported_with_its_number():
    frames = np.ones((4, 64, 64), dtype=np.float32)
    frames[2, 10, 10] = np.nan
    with pytest.raises(NonFiniteFrameError, match="frame 3"):
        motion_correct(frames, pixel_size_angstrom=1.0, dose_per_frame_e_per_angstrom2=1.0)


def test_gain_of_wrong_shape_is_rejected():
    frames = np.ones((4, 64, 64), dtype=np.uint8)
    with pytest.raises(MotionCorrectionError, match="gain reference"):
        motion_correct(
            frames,
            pixel_size_angstrom=1.0,
            dose_per_frame_e_per_angstrom2=1.0,
            gain=np.ones((64, 32), dtype=np.float32),
        )


# ---------------------------------------------------------------- local model


def test_basis_terms_follow_the_patch_grid():
    assert basis_terms(5, 5) == ("1", "u", "v", "u^2", "u*v", "v^2")
    assert basis_terms(2, 2) == ("1", "u", "v", "u*v")
    assert basis_terms(3, 1) == ("1", "u", "u^2")


def test_fit_local_model_recovers_polynomial_and_rejects_outlier():
    rng = np.random.default_rng(9)
    shape, frames = (1000, 1200), 12
    truth = LocalMotionModel(
        shape_px=shape,
        number_of_frames=frames,
        terms=basis_terms(5, 4),
        coefficients_px=rng.normal(0, 1.0, (2, 6, 3)),
        patch_centres_px=np.zeros((0, 2)),
        patch_shifts_px=np.zeros((0, frames, 2)),
        patches_used=np.zeros(0, dtype=bool),
    )
    xs, ys = np.meshgrid(np.linspace(120, 1080, 5), np.linspace(125, 875, 4))
    centres = np.column_stack([xs.ravel(), ys.ravel()])
    measured = np.stack(
        [np.stack(truth.shift_at(k, centres[:, 0], centres[:, 1]), axis=-1) for k in range(frames)],
        axis=1,
    )
    measured += rng.normal(0, 3.0, (len(centres), 1, 2))  # arbitrary per-patch reference
    measured += rng.normal(0, 0.02, measured.shape)
    measured[7] += rng.normal(0, 5.0, (frames, 2))  # a patch that failed to align
    model = fit_local_model(centres, measured, shape, 5, 4)
    assert not model.patches_used[7] and model.patches_used.sum() == 19
    grid_x, grid_y = np.meshgrid(np.linspace(0, 1199, 7), np.linspace(0, 999, 6))
    for k in (0, 5, 11):
        fitted = np.stack(model.shift_at(k, grid_x, grid_y))
        expected = np.stack(truth.shift_at(k, grid_x, grid_y))
        np.testing.assert_allclose(fitted, expected, atol=0.05)


def test_tiled_sums_follow_a_local_shift_field():
    """Frames warped by a known smooth field come back onto frame 0, without blur."""
    from scipy import ndimage

    shape, count = (600, 700), 3
    image = smooth_image(shape, seed=10, correlation_px=1.5)
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)

    def field(k, xs, ys):  # drift at frame-0 position: global + up to 1.5 px local
        u = 2 * np.asarray(xs) / (shape[1] - 1) - 1
        v = 2 * np.asarray(ys) / (shape[0] - 1) - 1
        return np.stack(np.broadcast_arrays(3.3 * k + 0.75 * u * k, -1.7 * k + 0.5 * u * v * k), -1)

    frames = []
    for k in range(count):
        px = x.copy()
        for _ in range(4):  # frame pixel q shows frame-0 point p with q = p + field(p)
            px = x - field(k, px, y)[..., 0]
        py = y - field(k, px, y)[..., 1]
        frames.append(ndimage.map_coordinates(image, [py, px], order=5, mode="grid-wrap"))
    frames = np.asarray(frames, dtype=np.float32)
    core = choose_core_px(field, count, shape)
    assert core == 64  # steep field: 1.5 px over 700 px needs small cores
    plain, weighted = tiled_sums(lambda k: frames[k], count, shape, field, None, core_px=core)
    assert weighted is None and plain.shape == shape
    inner = (slice(40, -40), slice(40, -40))

    def rms_residual(estimate):
        return np.sqrt(np.mean((estimate[inner] / count - image[inner]) ** 2)) / image.std()

    # one constant shift per frame (the mean of the field) leaves far more behind
    means = [field(k, x, y).reshape(-1, 2).mean(axis=0) for k in range(count)]
    constant = lambda k, xs, ys: np.broadcast_to(means[k], (*np.shape(xs), 2))  # noqa: E731
    global_only, _ = tiled_sums(lambda k: frames[k], count, shape, constant, None, core_px=core)
    assert rms_residual(plain) < 0.08
    assert rms_residual(plain) < 0.4 * rms_residual(global_only)


def test_motion_correct_with_patches_returns_a_model_and_sums():
    truth = trajectory(8, 6.0, seed=12)
    frames, image = make_movie((400, 400), truth, counts_per_px=4.0, seed=12)
    result = motion_correct(
        frames,
        pixel_size_angstrom=1.0,
        dose_per_frame_e_per_angstrom2=4.0,
        patches_x=3,
        patches_y=3,
        bin_for_alignment=1,
    )
    assert (result.patches_used_x, result.patches_used_y) == (2, 2)  # 400 px: 160-px patches
    assert result.local_model is not None
    assert rms_error(result.shifts_px, truth) < 0.25
    assert np.corrcoef(result.aligned_sum.ravel(), image.ravel())[0, 1] > 0.9
    assert result.dose_weighted_sum is not None
