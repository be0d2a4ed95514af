from pathlib import Path

import pytest

from emproc.discovery import DiscoveryError, discover_movies
from emproc.resources import rule_resources


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_movies_are_found_with_ids_mirroring_the_epu_layout(tmp_path: Path):
    square = tmp_path / "Images-Disc1" / "GridSquare_7" / "Data"
    movie = _touch(square / "FoilHole_1_Data_2_3_20261129_120000_fractions.tiff")
    _touch(square / "FoilHole_1_Data_2_3_20261129_120000.xml")
    _touch(square / ".FoilHole_9_Data_2_3_20261129_120100_fractions.tiff")  # in transfer
    movies = discover_movies(tmp_path, "Images-Disc*/GridSquare_*/Data/*_fractions.tiff")
    assert movies == {
        "Images-Disc1/GridSquare_7/Data/FoilHole_1_Data_2_3_20261129_120000_fractions": movie
    }


def test_a_glob_matching_nothing_is_a_clear_error(tmp_path: Path):
    with pytest.raises(DiscoveryError, match=r"no movies match '\*\.eer'"):
        discover_movies(tmp_path, "*.eer")
    assert discover_movies(tmp_path, "*.eer", allow_empty=True) == {}


def test_a_missing_session_dir_is_a_clear_error(tmp_path: Path):
    with pytest.raises(DiscoveryError, match="session directory does not exist"):
        discover_movies(tmp_path / "nowhere", "*.tiff")


def test_rule_resources_most_specific_wins():
    configured = {"default": {"mem_mb": 3000, "runtime": 45}, "ctf_estimate": {"threads": 4}}
    assert rule_resources(configured, "ctf_estimate") == {
        "threads": 4,
        "mem_mb": 4000,
        "runtime": 2,  # minutes per movie: the chunk rule multiplies it by the chunk size
    }
    assert rule_resources(configured, "some_new_rule") == {
        "threads": 1,
        "mem_mb": 3000,
        "runtime": 45,
    }
