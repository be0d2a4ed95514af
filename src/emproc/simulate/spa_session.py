"""A simulated EPU single-particle session on disk, with its ground truth.

Layout (as EPU writes it):
    <session>/gain_ref.mrc                       gain reference, stored rotated/flipped
    <session>/Images-Disc1/GridSquare_<gs>/Data/
        FoilHole_<fh>_Data_<tpl>_<acq>_<YYYYMMDD>_<HHMMSS>_fractions.tiff   (or .mrc)
        FoilHole_<fh>_Data_<tpl>_<acq>_<YYYYMMDD>_<HHMMSS>.xml              EPU metadata
    <session>/ground_truth.json                  everything needed to score a pipeline run
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import mrcfile
import numpy as np
import tifffile

from emproc.io.atomic import atomic_path, write_json_atomic
from emproc.io.epu import epu_movie_name, write_epu_movie_xml
from emproc.simulate import density, detector
from emproc.simulate.spa_movie import MovieTruth, SpaMovieParams, simulate_movie

TRUTH_FILE_NAME = "ground_truth.json"
GAIN_FILE_NAME = "gain_ref.mrc"
TRUTH_FORMAT = "emproc-spa-truth"
TRUTH_VERSION = 1
MOVIE_FORMATS = {"tiff": "tiff", "mrc": "mrc"}
SESSION_START = datetime(2026, 11, 29, 9, 0, 0)
SECONDS_BETWEEN_MOVIES = 37


class SimulationTruthError(ValueError):
    """A ground-truth file is unreadable or not an emproc SPA truth file."""


@dataclass(frozen=True, eq=False)
class SpaSessionMovie:
    """One movie of a simulated session: where it is, what EPU says, and the truth."""

    movie_path: Path  # absolute
    movie_name: str  # relative to the session without extension (architecture's {movie})
    metadata_path: Path
    grid_square: int
    foil_hole: int
    timestamp: datetime
    nominal_defocus_angstrom: float
    truth: MovieTruth


@dataclass(frozen=True, eq=False)
class SpaSessionTruth:
    """Parsed ground_truth.json of a simulated session."""

    session_dir: Path
    seed: int
    params: SpaMovieParams
    movie_format: str
    gain_reference_path: Path | None
    gain_rotation_deg: int  # set microscope.gain_rotation_deg to this
    gain_flip: str  # set microscope.gain_flip to this
    shapes: list[density.DensityModel]
    movies: list[SpaSessionMovie]

    def movie(self, name_or_path: str | os.PathLike[str]) -> SpaSessionMovie:
        """Look a movie up by absolute path, path relative to the session, or {movie} name."""
        key = Path(name_or_path)
        for movie in self.movies:
            relative = movie.movie_path.relative_to(self.session_dir)
            if key in (movie.movie_path, relative, Path(movie.movie_name)):
                return movie
        raise KeyError(f"{name_or_path}: no such movie in {self.session_dir / TRUTH_FILE_NAME}")


def _write_movie(path: Path, frames: np.ndarray, movie_format: str, pixel_size: float) -> None:
    with atomic_path(path) as temporary:
        if movie_format == "tiff":
            # EPU writes K3 fractions as LZW-compressed, non-gain-normalised 8-bit TIFF pages
            tifffile.imwrite(temporary, frames, compression="lzw", photometric="minisblack")
        else:
            with mrcfile.new(temporary, overwrite=True) as mrc:
                mrc.set_data(frames)
                mrc.voxel_size = pixel_size


def _write_gain(path: Path, image: np.ndarray, pixel_size: float) -> None:
    with atomic_path(path) as temporary:
        with mrcfile.new(temporary, overwrite=True) as mrc:
            mrc.set_data(image.astype(np.float32))
            mrc.voxel_size = pixel_size


def simulate_spa_session(
    output_dir: str | os.PathLike[str],
    *,
    number_of_movies: int = 4,
    params: SpaMovieParams = SpaMovieParams(),  # noqa: B008 - frozen, safe as a default
    seed: int = 0,
    movie_format: str = "tiff",
    grid_squares: int = 2,
    with_gain: bool = True,
    gain_rotation_deg: int = 90,
    gain_flip: str = "x",
    gain_spread: float = 0.1,
    workers: int = 1,
) -> Path:
    """Write an EPU-like session of `number_of_movies` movies; return the truth file path.

    Movies are spread over `grid_squares` grid squares. With `with_gain` the frames carry the
    detector's fixed pattern and `gain_ref.mrc` holds the gain stored so that the pipeline must
    rotate it by `gain_rotation_deg` (counter-clockwise, y up) and flip it by `gain_flip` to
    match the frames (emproc.io.gain.orient_to_movie). Deterministic for a seed.
    """
    if movie_format not in MOVIE_FORMATS:
        raise ValueError(
            f"movie_format must be one of {sorted(MOVIE_FORMATS)}, got {movie_format!r}"
        )
    if number_of_movies < 1 or grid_squares < 1:
        raise ValueError("number_of_movies and grid_squares must be >= 1")
    root = Path(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    ids = np.random.default_rng([seed, 0xE9])
    square_ids = np.sort(ids.choice(np.arange(1_000_000, 9_999_999), grid_squares, replace=False))
    template_id = int(ids.integers(1_000_000, 9_999_999))
    movie_seeds = np.random.SeedSequence(seed).generate_state(number_of_movies)

    gain = None
    gain_path = None
    if with_gain:
        gain = detector.make_gain_reference(params.shape_px, seed, gain_spread)
        gain_path = root / GAIN_FILE_NAME
        stored = detector.gain_file_image(gain, gain_rotation_deg, gain_flip)
        _write_gain(gain_path, stored, params.pixel_size_angstrom)

    movies = []
    for index in range(number_of_movies):
        square = int(square_ids[index * grid_squares // number_of_movies])
        foil_hole = int(ids.integers(1_000_000, 9_999_999))
        timestamp = SESSION_START + timedelta(seconds=SECONDS_BETWEEN_MOVIES * index)
        movie_seed = int(movie_seeds[index])
        frames, truth = simulate_movie(params, movie_seed, gain, workers=workers)
        data_dir = root / "Images-Disc1" / f"GridSquare_{square}" / "Data"
        movie_path = data_dir / epu_movie_name(
            foil_hole, template_id, index + 1, timestamp, movie_format
        )
        metadata_path = data_dir / epu_movie_name(
            foil_hole, template_id, index + 1, timestamp, "xml", fractions=False
        )
        _write_movie(movie_path, frames, movie_format, params.pixel_size_angstrom)
        # EPU's applied defocus is the nominal target; the true defocus scatters around it
        nominal = 1000.0 * round(truth.defocus_angstrom / 1000.0)
        write_epu_movie_xml(
            metadata_path,
            pixel_size_angstrom=params.pixel_size_angstrom,
            voltage_kv=params.voltage_kv,
            dose_e_per_angstrom2=params.dose_per_frame_e_per_angstrom2 * params.number_of_frames,
            number_of_frames=params.number_of_frames,
            nominal_defocus_angstrom=nominal,
            timestamp=timestamp,
        )
        relative = movie_path.relative_to(root)
        movies.append(
            {
                "movie_path": relative.as_posix(),
                "movie_name": relative.with_suffix("").as_posix(),
                "metadata_path": metadata_path.relative_to(root).as_posix(),
                "grid_square": square,
                "foil_hole": foil_hole,
                "timestamp": timestamp.isoformat(),
                "nominal_defocus_angstrom": nominal,
                "dtype": str(frames.dtype),
                "truth": truth.to_dict(),
            }
        )

    truth_path = root / TRUTH_FILE_NAME
    write_json_atomic(
        truth_path,
        {
            "format": TRUTH_FORMAT,
            "version": TRUTH_VERSION,
            "seed": seed,
            "params": params.to_dict(),
            "movie_format": movie_format,
            "gain": {
                "path": None if gain_path is None else gain_path.name,
                "rotation_deg": gain_rotation_deg if with_gain else 0,
                "flip": gain_flip if with_gain else "none",
                "spread": gain_spread if with_gain else 0.0,
                "convention": "raw * orient_to_movie(file, rotation_deg, flip) = corrected",
            },
            "conventions": {
                "shifts": "feature at p in frame 0 sits at p + shifts_px[k] + local shift in frame k",
                "defocus": "Angstrom, positive underfocus, U along astigmatism_angle_deg from +X",
                "particles": "x_px, y_px: centre in frame-0 (aligned sum) pixels; Euler ZYZ RELION",
            },
            "shapes": [
                model.to_dict()
                for model in density.make_density_models(
                    params.number_of_shapes, params.particle_diameter_angstrom
                )
            ],
            "movies": movies,
        },
    )
    return truth_path


def load_spa_truth(path: str | os.PathLike[str]) -> SpaSessionTruth:
    """Read a session's ground_truth.json (or the session directory holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / TRUTH_FILE_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ground-truth file does not exist")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SimulationTruthError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(data, dict) or data.get("format") != TRUTH_FORMAT:
        raise SimulationTruthError(f"{path}: not an {TRUTH_FORMAT} file")
    root = path.parent
    try:
        gain = data["gain"]
        movies = [
            SpaSessionMovie(
                movie_path=root / entry["movie_path"],
                movie_name=entry["movie_name"],
                metadata_path=root / entry["metadata_path"],
                grid_square=int(entry["grid_square"]),
                foil_hole=int(entry["foil_hole"]),
                timestamp=datetime.fromisoformat(entry["timestamp"]),
                nominal_defocus_angstrom=float(entry["nominal_defocus_angstrom"]),
                truth=MovieTruth.from_dict(entry["truth"]),
            )
            for entry in data["movies"]
        ]
        return SpaSessionTruth(
            session_dir=root,
            seed=int(data["seed"]),
            params=SpaMovieParams.from_dict(data["params"]),
            movie_format=str(data["movie_format"]),
            gain_reference_path=None if gain["path"] is None else root / gain["path"],
            gain_rotation_deg=int(gain["rotation_deg"]),
            gain_flip=str(gain["flip"]),
            shapes=[density.DensityModel.from_dict(shape) for shape in data["shapes"]],
            movies=movies,
        )
    except (KeyError, TypeError, ValueError) as error:
        raise SimulationTruthError(
            f"{path}: incomplete or invalid ground truth ({error!r})"
        ) from error
