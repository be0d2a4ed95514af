"""Single-particle (SPA) simulator: the public entry points.

- `simulate_movie` / `simulate_micrograph`: one exposure and its `MovieTruth`;
- `make_gain_reference`: a counting camera's gain reference (multiply raw frames by it);
- `simulate_spa_session` / `load_spa_truth`: an EPU-like session on disk and its truth.
See docs/simulator.md for the physics and the exact definition of the truth.
"""

from emproc.simulate.detector import gain_file_image, make_gain_reference
from emproc.simulate.spa_movie import (
    MovieTruth,
    SpaMovieParams,
    dose_damage_filter,
    simulate_micrograph,
    simulate_movie,
)
from emproc.simulate.spa_session import (
    SimulationTruthError,
    SpaSessionMovie,
    SpaSessionTruth,
    load_spa_truth,
    simulate_spa_session,
)

__all__ = [
    "MovieTruth",
    "SimulationTruthError",
    "SpaMovieParams",
    "SpaSessionMovie",
    "SpaSessionTruth",
    "dose_damage_filter",
    "gain_file_image",
    "load_spa_truth",
    "make_gain_reference",
    "simulate_micrograph",
    "simulate_movie",
    "simulate_spa_session",
]
