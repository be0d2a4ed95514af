"""Fiducial alignment gated on tilt series from `emproc.simulate.slab_series`, a generator
written apart from `emproc.simulate.tomo` and the aligner (own specimens, own projection
code): per-tilt shift error <= 0.3 px rms (gauge removed, unbinned px) and tilt-axis error
<= 0.3 deg on the worst seed, the mdoc's axis 2 deg off."""

import struct

import numpy as np
import pytest

from emproc.simulate.slab_series import SlabSeriesParams, simulate_slab_series
from emproc.tomo.align import AlignmentParams, align_tilt_series
from emproc.tomo.alignment_report import alignment_summary
from emproc.tomo.fiducial import FiducialParams
from emproc.tomo.geometry import rotation_matrix
from emproc.tomo.imod_model import write_fiducial_model
from emproc.tomo.projection_fit import fit_projection_model, remove_gauge

SEEDS = (11, 12, 13)
ALIGNMENT = AlignmentParams(binning=2, patch_size_px=48)


def shift_error_rms(shifts_px, series) -> float:
    error = remove_gauge(
        shifts_px - series.shifts_px, series.tilt_angles_deg, series.tilt_axis_angle_deg
    )
    return float(np.sqrt(np.mean(np.sum(error**2, axis=1))))


def _align_beads(specimen: str, seed: int):
    series = simulate_slab_series(
        SlabSeriesParams(specimen=specimen, beads=25, pixel_size_angstrom=8.0), seed
    )
    result = align_tilt_series(
        series.images,
        series.tilt_angles_deg,
        series.axis_guess_deg,
        ALIGNMENT,
        fiducial=FiducialParams(bead_diameter_nm=10.0),
        pixel_size_angstrom=series.pixel_size_angstrom,
    )
    return series, result


@pytest.fixture(scope="module")
def bead_runs():
    return {
        (specimen, seed): _align_beads(specimen, seed)
        for specimen in ("crowded", "sparse_carbon")
        for seed in SEEDS
    }


def test_fiducial_alignment_gate_on_worst_seed(bead_runs):
    shift_errors, axis_errors = [], []
    for (specimen, seed), (series, result) in bead_runs.items():
        assert result.method == "fiducial", (specimen, seed, result.fallback_reason)
        assert result.fiducial.beads_used >= 5
        shift_errors.append(shift_error_rms(result.shifts_px, series))
        axis_errors.append(abs(result.tilt_axis_angle_deg - series.tilt_axis_angle_deg))
    assert max(shift_errors) <= 0.3, shift_errors
    assert max(axis_errors) <= 0.3, axis_errors


def test_gate_fails_a_misaligned_series(bead_runs):
    # guards the gate: 0.4 px rms of per-tilt error on top of the fit must not pass it
    series, result = bead_runs[("crowded", SEEDS[0])]
    noise = np.random.default_rng(0).normal(0, 0.4 / np.sqrt(2), result.shifts_px.shape)
    assert shift_error_rms(result.shifts_px + noise, series) > 0.3


def test_summary_reports_residuals_beads_and_outputs(bead_runs, tmp_path):
    series, result = bead_runs[("sparse_carbon", SEEDS[0])]
    summary = alignment_summary(result, series.pixel_size_angstrom)
    assert summary["alignment_method"] == "fiducial"
    assert 0 < summary["alignment_residual_mean_px"] < 1.0
    assert summary["alignment_residual_mean_nm"] == pytest.approx(
        summary["alignment_residual_mean_px"] * 0.8
    )
    assert len(summary["tilt_alignment"]) == len(series.tilt_angles_deg)
    assert len(summary["fiducial_beads"]) == summary["fiducial_beads_used"]
    # the beads sit on both surfaces of a 300 A slab, 360 A = 45 px apart at 8 A/px
    heights = sorted(b["z_px"] for b in summary["fiducial_beads"])
    assert heights[-1] - heights[0] == pytest.approx(45.0, abs=3.0)
    path = tmp_path / "series.fid"
    write_fiducial_model(
        path, result.fiducial.observed_px, result.fiducial.fit.used, series.images.shape[1:]
    )
    data = path.read_bytes()
    assert data[:8] == b"IMODV1.2" and data.endswith(b"IEOF")
    assert data.count(b"CONT") == summary["fiducial_beads_used"]
    offset = data.index(b"CONT") + 4
    points = struct.unpack(">i", data[offset : offset + 4])[0]
    assert points == summary["fiducial_beads"][0]["observations"]


def test_no_beads_falls_back_to_patch_tracking_and_says_why():
    series = simulate_slab_series(SlabSeriesParams(specimen="crowded", image_size_px=128), 3)
    result = align_tilt_series(
        series.images,
        series.tilt_angles_deg,
        series.axis_guess_deg,
        AlignmentParams(binning=2, patch_size_px=32),
        fiducial=FiducialParams(bead_diameter_nm=10.0),
        pixel_size_angstrom=series.pixel_size_angstrom,
    )
    assert result.method == "patch_tracking"
    assert "gold beads" in result.fallback_reason


def test_projection_fit_recovers_magnification_and_rotation():
    rng = np.random.default_rng(5)
    angles = np.arange(-60.0, 61.0, 3.0)
    beads = np.column_stack(
        [rng.uniform(-100, 100, 20), rng.uniform(-100, 100, 20), rng.uniform(-30, 30, 20)]
    )
    beads[:, 2] -= beads[:, 2].mean()  # the fit's z gauge
    axis = -84.0
    shifts = rng.normal(0, 4, (len(angles), 2))
    shifts[20] = 0.0  # the fit's x, y gauge: zero shift at zero tilt
    mags = 1 + rng.normal(0, 0.01, len(angles))
    rotations = rng.normal(0, 0.5, len(angles))
    mags[20], rotations[20] = 1.0, 0.0
    observed = np.empty((20, len(angles), 2))
    for k, angle in enumerate(angles):
        b = np.deg2rad(angle)
        aligned = np.column_stack([beads[:, 0] * np.cos(b) + beads[:, 2] * np.sin(b), beads[:, 1]])
        matrix = mags[k] * rotation_matrix(axis + rotations[k])
        observed[:, k] = aligned @ matrix.T + shifts[k]
    observed += rng.normal(0, 0.05, observed.shape)
    fit = fit_projection_model(
        observed, angles, axis + 2.0, solve_magnification=True, solve_rotation=True
    )
    assert fit.tilt_axis_angle_deg == pytest.approx(axis, abs=0.05)
    np.testing.assert_allclose(fit.magnifications, mags, atol=1e-3)
    np.testing.assert_allclose(fit.rotations_deg, rotations, atol=0.05)
    np.testing.assert_allclose(fit.shifts_px, shifts, atol=0.1)
    np.testing.assert_allclose(fit.beads_xyz_px, beads, atol=0.3)


def test_remove_gauge_removes_only_a_specimen_translation():
    angles = np.arange(-60.0, 61.0, 3.0)
    b = np.deg2rad(angles)
    translation = np.column_stack([3.0 * np.cos(b) - 7.0 * np.sin(b), np.full(len(b), 2.0)])
    gauge = translation @ rotation_matrix(80.0).T
    np.testing.assert_allclose(remove_gauge(gauge, angles, 80.0), 0.0, atol=1e-9)
    # a constant offset perpendicular to the axis (the axis in the wrong place) is an error
    offset = np.tile(rotation_matrix(80.0) @ [1.0, 0.0], (len(angles), 1))
    assert np.sqrt(np.mean(np.sum(remove_gauge(offset, angles, 80.0) ** 2, axis=1))) > 0.1


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="the no-bead path (patch tracking + projection matching) misses the issue-20 gate "
    "(<= 0.6 px, <= 0.5 deg) on slab_series at 8 A/px, seeds 1-5: crowded 0.63-1.41 px rms "
    "(seed 1 here: 0.634), axis up to 0.99 deg; sparse_carbon 6.5-11.7 px: its film edge "
    "fixes only the shift across it, the coarse start is 6-12 px off along it, and matching "
    "from the true alignment leaves 0.7-1.2 px (docs/benchmarks.md)",
)
@pytest.mark.parametrize("specimen", ["crowded", "sparse_carbon"])
def test_patch_tracking_gate_without_beads(specimen):
    series = simulate_slab_series(SlabSeriesParams(specimen=specimen, pixel_size_angstrom=8.0), 1)
    result = align_tilt_series(
        series.images, series.tilt_angles_deg, series.axis_guess_deg, ALIGNMENT
    )
    assert shift_error_rms(result.shifts_px, series) <= 0.6
    assert abs(result.tilt_axis_angle_deg - series.tilt_axis_angle_deg) <= 0.5
