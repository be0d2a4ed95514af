"""Checks of a validated config against the disk, before any job starts.

The schema checks types and ranges; these check that the files the config names exist and
that the gain reference (and defect map) fits the session's movies, so a wrong path or the
gain of another detector is one line from `emproc validate-config` / `emproc run` instead
of every movie failing in motion correction.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from emproc.config import PATH_KEYS, ConfigError

# the files a config names (not directories); crYOLO's only with the crYOLO backend
DIRECTORY_KEYS = (("session", "session_dir"), ("outputs", "dir"))
CRYOLO_FILES = (("picking", "cryolo_config"), ("picking", "cryolo_weights"))
REFERENCED_FILES = tuple(
    key for key in PATH_KEYS if key not in DIRECTORY_KEYS and key not in CRYOLO_FILES
)


def check_referenced_files(config: Mapping[str, Any]) -> None:
    """ConfigError naming the first key whose file does not exist (empty keys are unset)."""
    keys = list(REFERENCED_FILES)
    if config.get("picking", {}).get("backend") == "cryolo":
        keys += CRYOLO_FILES
    for section, key in keys:
        value = config.get(section, {}).get(key) or ""
        if value and not Path(value).is_file():
            raise ConfigError(f"config key '{section}.{key}': file not found: {value}")


def check_detector_references(config: Mapping[str, Any], movie_path: str | Path) -> None:
    """ConfigError when the gain reference or defect map, rotated and flipped as configured,
    does not have the frame shape of `movie_path` (the session's first movie)."""
    from emproc.io.gain import GainError, load_defect_map, load_gain_reference
    from emproc.io.movie import MovieError, movie_header

    microscope = config["microscope"]
    if not (microscope.get("gain_reference") or microscope.get("defect_map")):
        return
    try:
        shape = movie_header(movie_path, eer_fractions=int(microscope["eer_fractions"])).shape
    except (MovieError, OSError) as error:
        raise ConfigError(
            f"cannot read the first movie to check the gain against: {error}"
        ) from None
    orientation = {
        "rotation_deg": int(microscope["gain_rotation_deg"]),
        "flip": microscope["gain_flip"],
    }
    for key, load in (("gain_reference", load_gain_reference), ("defect_map", load_defect_map)):
        if microscope.get(key):
            try:
                load(microscope[key], expected_shape=shape, **orientation)
            except (GainError, OSError) as error:
                raise ConfigError(f"config key 'microscope.{key}': {error}") from None
