"""Noise2noise tomogram denoising against the simulator's noise-free tomogram and true density.

Two cells (emproc.simulate.tomo_denoise_cases): the demo's vesicle slab at 3 e/A^2 per tilt
and a crowded slab at 0.75 e/A^2 per tilt, 96 px, 41 tilts, 4 frames, binned 2. Measured at
this size (docs/benchmarks.md): NCC with the noise-free tomogram raw 0.951 / 0.865, denoised
0.969 / 0.931, best Gaussian (width chosen with the noise-free reference) 0.966 / 0.926; NCC
with the true density raw 0.607 / 0.494, denoised 0.638 / 0.581.
"""

import mrcfile
import numpy as np
import pytest
import scipy.ndimage
from PIL import Image

from emproc.simulate.tomo_denoise_cases import DenoiseCase, denoise_bench
from emproc.tomo.denoise import (
    DenoiseError,
    DenoiseParams,
    denoise_tomogram,
    noise2noise_filters,
    noise2noise_gaussian_sigma,
)
from emproc.tomo.score import normalised_cross_correlation

CELLS = {
    "vesicles_3e": DenoiseCase(
        specimen="vesicles", image_size_px=96, dose_per_tilt_e_per_angstrom2=3.0
    ),
    "crowded_0.75e": DenoiseCase(
        specimen="crowded", image_size_px=96, dose_per_tilt_e_per_angstrom2=0.75, seed=2
    ),
}
GAUSSIAN_SIGMAS_PX = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0)


@pytest.fixture(scope="module", params=sorted(CELLS))
def bench(request, tmp_path_factory):
    return denoise_bench(CELLS[request.param], tmp_path_factory.mktemp(request.param))


def _ncc(volume, reference, mask):
    return normalised_cross_correlation(volume, reference, mask)


def test_frame_halves_denoising_beats_raw_and_any_gaussian(bench):
    mask = bench.mask
    denoised, report = denoise_tomogram(bench.tomogram, bench.even_frames, bench.odd_frames)
    raw_clean = _ncc(bench.tomogram, bench.noise_free, mask)
    denoised_clean = _ncc(denoised, bench.noise_free, mask)
    # the disagreement with the noise-free tomogram (what denoising can reach) drops by a
    # quarter or more (measured: by 37% and 49%)
    assert 1.0 - denoised_clean <= 0.75 * (1.0 - raw_clean), (raw_clean, denoised_clean)
    # no Gaussian low-pass does better: not the one whose width the half tomograms choose
    # (no truth), nor the best of all widths chosen with the noise-free reference
    sigma = noise2noise_gaussian_sigma(bench.even_frames, bench.odd_frames, GAUSSIAN_SIGMAS_PX)
    chosen = _ncc(scipy.ndimage.gaussian_filter(bench.tomogram, sigma), bench.noise_free, mask)
    assert denoised_clean >= chosen + 0.003, (denoised_clean, chosen, sigma)
    best = max(
        _ncc(scipy.ndimage.gaussian_filter(bench.tomogram, s), bench.noise_free, mask)
        for s in GAUSSIAN_SIGMAS_PX
    )
    assert denoised_clean >= best, (denoised_clean, best)
    # agreement with the true density improves too (measured +0.031 and +0.087)
    raw_truth = _ncc(bench.tomogram, bench.truth, mask)
    assert _ncc(denoised, bench.truth, mask) >= raw_truth + 0.025
    assert 0.0 < report.power_kept_fraction < report.signal_fraction_full < 1.0


def test_tilt_halves_denoise_single_frame_series(bench):
    """The fallback for single-frame movies: even/odd tilts as the halves."""
    denoised, _ = denoise_tomogram(bench.tomogram, bench.even_tilts, bench.odd_tilts)
    raw = _ncc(bench.tomogram, bench.noise_free, bench.mask)
    assert 1.0 - _ncc(denoised, bench.noise_free, bench.mask) <= 0.8 * (1.0 - raw)


def test_filters_match_the_wiener_filter_of_known_signal_and_noise():
    """White signal of power S in halves with white noise N: h_half = S / (S + N) and
    h_full = S / (S + N / 2), whatever the volume."""
    rng = np.random.default_rng(0)
    shape = (24, 40, 32)
    signal = rng.normal(0.0, 1.0, shape)  # S = 1
    even = signal + rng.normal(0.0, np.sqrt(2.0), shape)  # N = 2
    odd = signal + rng.normal(0.0, np.sqrt(2.0), shape)
    h_half, h_full = noise2noise_filters(even, odd, spectral_smoothing_px=3.0)
    assert np.median(h_half) == pytest.approx(1.0 / 3.0, abs=0.03)
    assert np.median(h_full) == pytest.approx(1.0 / 2.0, abs=0.03)


def test_bad_inputs_give_a_clear_error():
    volume = np.zeros((8, 8, 8), dtype=np.float32)
    with pytest.raises(DenoiseError, match="differ in shape"):
        denoise_tomogram(volume, volume, np.zeros((8, 8, 6), dtype=np.float32))
    with pytest.raises(DenoiseError, match="unknown denoising method"):
        denoise_tomogram(volume, volume, volume, DenoiseParams(method="topaz"))


def test_pipeline_falls_back_to_tilt_halves_for_single_frame_movies(tmp_path):
    """A series recorded without frames still gets its denoised tomogram and PATo images."""
    from emproc.simulate.tomo import TiltSeriesParams, simulate_tomo_session
    from emproc.tomo.pipeline import process_tilt_series

    params = TiltSeriesParams(
        image_size_px=128, pixel_size_angstrom=8.0, frames_per_tilt=1, tilt_step_deg=6.0
    )
    simulate_tomo_session(tmp_path / "session", params=params, seed=4)
    tomo = {
        "binning": 2,
        "thickness_px": 24,
        "patch_size_px": 32,
        "bead_diameter_nm": 0,
        "denoise": {"enabled": True, "halves": "frames"},
    }
    summary = process_tilt_series(
        tmp_path / "session" / "Position_1.mdoc",
        tmp_path / "out",
        tomo=tomo,
        microscope={"voltage_kv": 300.0},
    )
    assert summary["denoise_halves"] == "tilts"
    with (
        mrcfile.open(summary["tomogram_path"]) as raw,
        mrcfile.open(summary["denoised_tomogram_path"]) as denoised,
    ):
        assert denoised.data.shape == raw.data.shape == (24, 64, 64)
        assert float(denoised.voxel_size.x) == pytest.approx(float(raw.voxel_size.x))
        # a filter with gains in [0, 1]: never more power than the raw tomogram
        assert 0.0 < denoised.data.std() < raw.data.std()
    assert summary["denoised_tomogram_path"].endswith("_rec.denoised.mrc")
    for key in ("denoised_thumbnail_path", "denoised_movie_path"):
        assert Image.open(summary[key]).size == (64, 64)
