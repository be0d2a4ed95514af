from pathlib import Path

import mrcfile
import numpy as np
import pytest

from emproc.io.movie import MovieError
from emproc.metadata import MetadataMismatchError, build_movie_metadata
from emproc.simulate.spa import SpaMovieParams, load_spa_truth, simulate_spa_session

MICROSCOPE = {
    "voltage_kv": 300.0,
    "spherical_aberration_mm": 2.7,
    "amplitude_contrast": 0.1,
    "pixel_size_angstrom": 1.0,
    "dose_per_frame_e_per_angstrom2": 1.0,
    "pre_exposure_e_per_angstrom2": 0.0,
    "detector": "",
    "gain_reference": "",
    "gain_rotation_deg": 90,
    "gain_flip": "x",
    "defect_map": "",
    "eer_fractions": 40,
    "pixel_size_tolerance_fraction": 0.01,
}


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("session")
    params = SpaMovieParams(shape_px=(128, 128), number_of_frames=3, number_of_particles=2)
    simulate_spa_session(root, number_of_movies=2, params=params, seed=3)
    return root


def test_import_record_carries_epu_metadata_and_config_optics(session: Path):
    truth = load_spa_truth(session)
    movie = truth.movies[0]
    gain = str(truth.gain_reference_path)
    record = build_movie_metadata(
        movie.movie_path, session_dir=session, microscope={**MICROSCOPE, "gain_reference": gain}
    )
    assert record["movie_name"] == movie.movie_name
    assert record["grid_square"] == movie.grid_square
    assert record["foil_hole"] == movie.foil_hole
    assert record["nominal_defocus_angstrom"] == pytest.approx(movie.nominal_defocus_angstrom)
    assert record["timestamp"] == movie.timestamp.isoformat()
    assert record["epu_number_of_frames"] == 3
    assert record["epu_total_dose_e_per_angstrom2"] == pytest.approx(3.0)
    assert record["gain_reference"] == str(Path(gain).resolve())
    assert (record["optics_group"], record["optics_group_name"]) == (1, "opticsGroup1")


def test_wrong_pixel_size_in_config_names_the_metadata_file(session: Path):
    movie = load_spa_truth(session).movies[0]
    with pytest.raises(MetadataMismatchError, match=r"\.xml: pixel size \(A\) is 1 in the EPU"):
        build_movie_metadata(
            movie.movie_path,
            session_dir=session,
            microscope={**MICROSCOPE, "pixel_size_angstrom": 1.06},
        )


def test_missing_gain_reference_is_named(session: Path):
    movie = load_spa_truth(session).movies[0]
    with pytest.raises(FileNotFoundError, match="gain reference not found: /no/gain.mrc"):
        build_movie_metadata(
            movie.movie_path,
            session_dir=session,
            microscope={**MICROSCOPE, "gain_reference": "/no/gain.mrc"},
        )


def test_empty_movie_file_is_named(tmp_path: Path):
    movie = tmp_path / "FoilHole_1_Data_2_3_20261129_120000_fractions.tiff"
    movie.write_bytes(b"")
    with pytest.raises(ValueError, match="movie file is empty"):
        build_movie_metadata(movie, session_dir=tmp_path, microscope=MICROSCOPE)


def test_a_text_file_matching_the_movie_glob_is_not_imported(tmp_path: Path):
    movie = tmp_path / "FoilHole_1_Data_2_3_20261129_120000_fractions.tiff"
    movie.write_text("transfer log: 42 files copied\n")
    with pytest.raises(MovieError, match=f"{movie.name}: corrupt TIFF"):
        build_movie_metadata(movie, session_dir=tmp_path, microscope=MICROSCOPE)


def test_movie_not_named_by_epu_is_imported_without_its_metadata(tmp_path: Path):
    movie = tmp_path / "my_movie.mrc"
    with mrcfile.new(movie) as mrc:
        mrc.set_data(np.zeros((2, 16, 16), dtype=np.float32))
    record = build_movie_metadata(movie, session_dir=tmp_path, microscope=MICROSCOPE)
    assert record["movie_name"] == "my_movie"
    assert record["metadata_path"] is None and record["grid_square"] is None
