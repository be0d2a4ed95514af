"""Find the movies of a session directory.

Discovery runs when Snakemake builds the DAG (an input function over a glob, not a
checkpoint): one directory walk per run is cheap even for 20,000 movies, and every
per-movie job is then an ordinary file target that on-the-fly reruns pick up.
"""

from __future__ import annotations

from pathlib import Path

MOVIE_SUFFIXES = (".tiff", ".tif", ".mrc", ".mrcs", ".eer")


class DiscoveryError(ValueError):
    """The session directory or its glob cannot yield movies."""


def movie_id(movie_path: Path, session_dir: Path) -> str:
    """The movie's path relative to the session without its extension: the `{movie}` wildcard."""
    relative = movie_path.relative_to(session_dir)
    return (
        str(relative.with_suffix(""))
        if relative.suffix.lower() in MOVIE_SUFFIXES
        else str(relative)
    )


def _listed_movies(session_dir: Path, movie_list: Path) -> list[Path]:
    try:
        lines = movie_list.read_text().splitlines()
    except FileNotFoundError as error:
        raise DiscoveryError(f"movie list not found: {movie_list}") from error
    return [session_dir / line.strip() for line in lines if line.strip()]


def discover_movies(
    session_dir: str | Path,
    movie_glob: str,
    *,
    allow_empty: bool = False,
    movie_list: str | Path | None = None,
) -> dict[str, Path]:
    """Map `{movie}` ids to movie paths, sorted by id.

    With `movie_list` (a file of paths relative to the session, as `emproc watch` writes
    them once complete) only those movies count; otherwise `movie_glob` is expanded.
    Hidden files (`.name`, e.g. transfers in progress) are skipped.
    """
    session_dir = Path(session_dir)
    if not session_dir.is_dir():
        raise DiscoveryError(f"session directory does not exist: {session_dir}")
    candidates = (
        _listed_movies(session_dir, Path(movie_list))
        if movie_list
        else session_dir.glob(movie_glob)
    )
    movies = {
        movie_id(path, session_dir): path
        for path in candidates
        if path.is_file() and not path.name.startswith(".")
    }
    if not movies and not allow_empty:
        raise DiscoveryError(
            f"no movies match '{movie_glob}' under {session_dir} (check session.movie_glob)"
        )
    return dict(sorted(movies.items()))
