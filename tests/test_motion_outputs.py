"""motion_correct_movie end to end: files, keys, headers, RELION conventions, bad input."""

from __future__ import annotations

import json

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile
import tifffile

from emproc.chunks import movie_paths
from emproc.io.gain import GainError
from emproc.io.movie import MovieError, MovieFormatError
from emproc.motion import (
    PixelSizeMismatchError,
    motion_correct_movie,
    write_corrected_micrographs_star,
)
from tests.test_motion import make_movie, rms_error, trajectory

SUMMARY_KEYS = {
    "movie_name",
    "micrograph_path",
    "micrograph_dw_path",
    "shifts_star_path",
    "shifts_csv_path",
    "snapshot_path",
    "drift_plot_path",
    "drift_json_path",
    "relative_ice_thickness",
    "number_of_frames",
    "first_frame",
    "last_frame",
    "pixel_size_angstrom",
    "dose_per_frame_e_per_angstrom2",
    "total_motion_angstrom",
    "early_motion_angstrom",
    "late_motion_angstrom",
    "average_motion_per_frame_angstrom",
    "patches_used_x",
    "patches_used_y",
    "optics_group",
}
MOTION = {
    "patches_x": 1,
    "patches_y": 1,
    "bin_for_alignment": 1,
    "bfactor_angstrom2": 150,
    "iterations": 10,
    "early_frames": 3,
    "dose_weighting": True,
}


def metadata_for(movie, tmp_path, **changes):
    data = {
        "movie_name": "GridSquare_1/Data/FoilHole_1_fractions",
        "movie_path": str(movie),
        "metadata_path": None,
        "pixel_size_angstrom": 1.06,
        "dose_per_frame_e_per_angstrom2": 1.5,
        "pre_exposure_e_per_angstrom2": 0.0,
        "voltage_kv": 300.0,
        "spherical_aberration_mm": 2.7,
        "amplitude_contrast": 0.1,
        "nominal_defocus_angstrom": None,
        "timestamp": None,
        "grid_square": "GridSquare_1",
        "foil_hole": "FoilHole_1",
        "detector": "K3",
        "gain_reference": "",
        "gain_rotation_deg": 0,
        "gain_flip": "none",
        "defect_map": "",
        "eer_fractions": 40,
        "optics_group": 1,
        "optics_group_name": "opticsGroup1",
    }
    data.update(changes)
    return data


def outputs_for(tmp_path, stem="FoilHole_1_fractions"):
    """The workflow's motion outputs for a movie (emproc.chunks layout)."""
    paths = movie_paths(tmp_path, "motion", f"GridSquare_1/Data/{stem}")
    return {role: str(path) for role, path in paths.items()}


@pytest.fixture(scope="module")
def movie_with_gain(tmp_path_factory):
    """LZW TIFF movie plus a gain file stored rotated by 90 deg and flipped in x."""
    tmp_path = tmp_path_factory.mktemp("movie")
    truth = trajectory(8, 6.0, seed=11)
    rng = np.random.default_rng(11)
    gain = rng.uniform(0.7, 1.3, (128, 160)) * (1 + 0.2 * rng.standard_normal(160))[None, :]
    gain = (gain / gain.mean()).astype(np.float32)
    frames, _ = make_movie((128, 160), truth, counts_per_px=2.0, seed=11, contrast=0.3, gain=gain)
    movie = tmp_path / "FoilHole_1_fractions.tiff"
    tifffile.imwrite(movie, frames.astype(np.uint8), compression="lzw")
    gain_file = tmp_path / "gain.mrc"
    with mrcfile.new(gain_file) as mrc:
        mrc.set_data(np.ascontiguousarray(np.rot90(gain[:, ::-1], k=1)))  # undo flip, rotation
    return movie, gain_file, truth


def test_motion_correct_movie_writes_every_output(tmp_path, movie_with_gain):
    movie, gain_file, truth = movie_with_gain
    metadata = metadata_for(
        movie, tmp_path, gain_reference=str(gain_file), gain_rotation_deg=90, gain_flip="x"
    )
    outputs = outputs_for(tmp_path)
    summary = motion_correct_movie(movie, metadata, MOTION, outputs, threads=2)

    assert set(summary) == SUMMARY_KEYS
    assert json.loads(open(outputs["summary"]).read()) == summary
    assert summary["number_of_frames"] == 8 and summary["first_frame"] == 1
    assert summary["last_frame"] == 8 and summary["optics_group"] == 1
    assert summary["micrograph_dw_path"] == outputs["micrograph_dw"]
    assert summary["total_motion_angstrom"] == pytest.approx(6.0 * 1.06, rel=0.1)
    assert summary["total_motion_angstrom"] == pytest.approx(
        summary["early_motion_angstrom"] + summary["late_motion_angstrom"]
    )

    for key in ("micrograph", "micrograph_dw"):
        with mrcfile.open(outputs[key]) as mrc:
            assert mrc.data.dtype == np.float32 and mrc.data.shape == (128, 160)
            assert float(mrc.voxel_size.x) == pytest.approx(1.06, rel=1e-5)

    star = starfile.read(outputs["shifts_star"], always_dict=True)
    general = star["general"]
    assert general["rlnImageSizeX"] == 160 and general["rlnImageSizeY"] == 128
    assert general["rlnImageSizeZ"] == 8
    assert general["rlnMicrographMovieName"] == str(movie)
    assert general["rlnMicrographOriginalPixelSize"] == pytest.approx(1.06)
    assert general["rlnMicrographDoseRate"] == pytest.approx(1.5)
    shifts = star["global_shift"]
    assert list(shifts["rlnMicrographFrameNumber"]) == list(range(1, 9))
    # RELION stores the shift applied to align each frame: minus our drift
    relion = -shifts[["rlnMicrographShiftX", "rlnMicrographShiftY"]].to_numpy()
    assert rms_error(relion, truth) < 0.25

    table = pd.read_csv(outputs["shifts_csv"])
    assert list(table["frame"]) == list(range(1, 9))
    np.testing.assert_allclose(table[["drift_x_px", "drift_y_px"]], relion, atol=1e-3)
    assert table["accumulated_dose_e_per_angstrom2"].iloc[-1] == pytest.approx(12.0)

    with open(outputs["snapshot"], "rb") as handle:
        assert handle.read(3) == b"\xff\xd8\xff"  # JPEG
    with open(outputs["drift_plot"], "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    # the drift as PATo reads it (cryoemservices' layout), in Angstrom
    trace = json.loads(open(summary["drift_json_path"]).read())["data"][0]
    np.testing.assert_allclose(np.c_[trace["x"], trace["y"]], relion * 1.06, atol=2e-3)


def test_gain_in_the_wrong_orientation_is_caught_or_fails_alignment(tmp_path, movie_with_gain):
    movie, gain_file, truth = movie_with_gain
    unrotated = metadata_for(movie, tmp_path, gain_reference=str(gain_file))
    with pytest.raises(GainError, match=r"gain.mrc.*\(160, 128\)"):
        motion_correct_movie(movie, unrotated, MOTION, outputs_for(tmp_path))
    # 270 deg gives the right shape but the wrong pixels: the fixed pattern wins
    wrong = metadata_for(
        movie, tmp_path, gain_reference=str(gain_file), gain_rotation_deg=270, gain_flip="x"
    )
    outputs = outputs_for(tmp_path)
    motion_correct_movie(movie, wrong, MOTION, outputs)
    shifts = starfile.read(outputs["shifts_star"], always_dict=True)["global_shift"]
    drift = -shifts[["rlnMicrographShiftX", "rlnMicrographShiftY"]].to_numpy()
    assert rms_error(drift, truth) > 0.5


def test_pixel_size_mismatch_names_the_movie(tmp_path):
    movie = tmp_path / "movie.mrc"
    with mrcfile.new(movie) as mrc:
        mrc.set_data(np.ones((4, 64, 64), dtype=np.int8))
        mrc.voxel_size = 1.5
    with pytest.raises(PixelSizeMismatchError, match=r"movie.mrc.*1\.5000.*1\.0600"):
        motion_correct_movie(movie, metadata_for(movie, tmp_path), MOTION, outputs_for(tmp_path))


def test_corrupt_movie_and_nan_frames_name_the_movie(tmp_path):
    corrupt = tmp_path / "bad.tiff"
    corrupt.write_bytes(b"II*\x00" + b"\xff" * 40)
    with pytest.raises(MovieFormatError, match="bad.tiff"):
        motion_correct_movie(
            corrupt, metadata_for(corrupt, tmp_path), MOTION, outputs_for(tmp_path)
        )
    nan_movie = tmp_path / "nan.mrc"
    frames = np.ones((4, 64, 64), dtype=np.float32)
    frames[1, 3, 3] = np.nan
    with pytest.warns(RuntimeWarning), mrcfile.new(nan_movie) as mrc:
        mrc.set_data(frames)
    with pytest.raises(MovieError, match="nan.mrc.*frame 2"):
        motion_correct_movie(
            nan_movie, metadata_for(nan_movie, tmp_path), MOTION, outputs_for(tmp_path)
        )


def test_corrected_micrographs_star_round_trips(tmp_path):
    summaries, metadata = [], []
    for index, group in enumerate([1, 2, 1]):
        summaries.append(
            {
                # summaries name files as written (here absolute); the STAR names them
                # relative to its directory, RELION's project directory
                "micrograph_path": str(tmp_path / f"MotionCorr/m{index}.mrc"),
                "micrograph_dw_path": str(tmp_path / f"MotionCorr/m{index}_DW.mrc"),
                "shifts_star_path": str(tmp_path / f"MotionCorr/m{index}.star"),
                "pixel_size_angstrom": 0.83 if group == 1 else 1.1,
                "total_motion_angstrom": 10.0 + index,
                "early_motion_angstrom": 6.0,
                "late_motion_angstrom": 4.0 + index,
                "optics_group": group,
            }
        )
        metadata.append(
            {
                "pixel_size_angstrom": 0.83 if group == 1 else 1.1,
                "voltage_kv": 300.0,
                "spherical_aberration_mm": 2.7,
                "amplitude_contrast": 0.1,
                "optics_group": group,
                "optics_group_name": f"opticsGroup{group}",
            }
        )
    path = tmp_path / "corrected_micrographs.star"
    write_corrected_micrographs_star(summaries, metadata, path)
    star = starfile.read(path, always_dict=True)
    optics, micrographs = star["optics"], star["micrographs"]
    assert list(optics["rlnOpticsGroup"]) == [1, 2]
    assert list(optics["rlnMicrographOriginalPixelSize"]) == pytest.approx([0.83, 1.1])
    assert set(optics.columns) >= {
        "rlnOpticsGroupName",
        "rlnVoltage",
        "rlnSphericalAberration",
        "rlnAmplitudeContrast",
        "rlnMicrographPixelSize",
    }
    names = [f"MotionCorr/m{index}" for index in range(3)]
    assert list(micrographs["rlnMicrographName"]) == [f"{name}_DW.mrc" for name in names]
    assert list(micrographs["rlnMicrographNameNoDW"]) == [f"{name}.mrc" for name in names]
    assert list(micrographs["rlnMicrographMetadata"]) == [f"{name}.star" for name in names]
    assert list(micrographs["rlnOpticsGroup"]) == [1, 2, 1]
    assert list(micrographs["rlnAccumMotionLate"]) == pytest.approx([4.0, 5.0, 6.0])
    with pytest.raises(ValueError, match="2 motion summaries but 3"):
        write_corrected_micrographs_star(summaries[:2], metadata, path)
