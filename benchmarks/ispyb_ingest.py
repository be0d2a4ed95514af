"""Time ISPyB ingest against movie count: first ingest, unchanged rerun, one changed movie.

Run by hand:  .venv/bin/python benchmarks/ispyb_ingest.py [--mysql URL] [--movies 100 400]
Uses the test suite's output-directory builder (tests/ispyb/ispyb_fixtures.py). Results go in
docs/benchmarks.md under "ISPyB ingest".
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "ispyb"))
from ispyb_fixtures import VISIT, make_config, movie_name, write_spa_outputs  # noqa: E402

from emproc.ispyb.connect import DatabaseTarget  # noqa: E402
from emproc.ispyb.ingest import ingest_output_dir  # noqa: E402
from emproc.ispyb.schema import init_db  # noqa: E402


def run(url: str, movies: int, workdir: Path) -> dict[str, float]:
    output_dir, session_dir = workdir / f"out{movies}", workdir / "session"
    write_spa_outputs(output_dir, session_dir, movies)
    config = make_config(session_dir, output_dir)
    engine = init_db(url, seed_visit=VISIT)
    target = DatabaseTarget(url, embedded=False)
    timings = {}
    for label in ("first", "rerun"):
        start = time.perf_counter()
        ingest_output_dir(output_dir, config, engine=engine, target=target)
        timings[label] = time.perf_counter() - start
    ctf_path = output_dir / "CtfFind" / f"{movie_name(0)}_ctf.json"
    ctf = json.loads(ctf_path.read_text())
    ctf["defocus_u_angstrom"] += 100.0
    ctf_path.write_text(json.dumps(ctf))
    start = time.perf_counter()
    summary = ingest_output_dir(output_dir, config, engine=engine, target=target)
    timings["one_changed"] = time.perf_counter() - start
    assert summary.units_ingested == 1
    engine.dispose()
    return timings


def statements_per_movie(movies: int, workdir: Path) -> tuple[float, dict[str, float]]:
    """CPU seconds and SQL statements per movie for a first ingest into in-memory SQLite
    (no disk, so a growth with `movies` would be the code's, not the file system's)."""
    output_dir, session_dir = workdir / f"count{movies}", workdir / "session"
    write_spa_outputs(output_dir, session_dir, movies)
    engine = init_db("sqlite://", seed_visit=VISIT)
    statements: Counter[str] = Counter()

    @sa.event.listens_for(engine, "before_cursor_execute")
    def count(conn, cursor, statement, parameters, context, executemany):
        statements[statement.split()[0]] += 1

    start = time.process_time()
    ingest_output_dir(
        output_dir,
        make_config(session_dir, output_dir),
        engine=engine,
        target=DatabaseTarget("sqlite://", embedded=False),
    )
    cpu = (time.process_time() - start) / movies
    return cpu, {kind: n / movies for kind, n in sorted(statements.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mysql", default="mysql+pymysql://root@127.0.0.1:3306")
    parser.add_argument("--movies", type=int, nargs="+", default=[100, 400])
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        for movies in arguments.movies:
            cpu, statements = statements_per_movie(movies, workdir / "c")
            per_movie = ", ".join(f"{k} {v:.2f}" for k, v in statements.items())
            print(
                f"in-memory sqlite {movies:5d} movies: {1000 * cpu:.1f} ms CPU/movie, "
                f"statements/movie: {per_movie}"
            )
            timings = run(f"sqlite:///{workdir}/bench{movies}.sqlite", movies, workdir / "s")
            print(f"sqlite  {movies:5d} movies: " + _format(timings, movies))
            name = f"emproc_bench_{uuid.uuid4().hex[:8]}"
            server = sa.create_engine(arguments.mysql, isolation_level="AUTOCOMMIT")
            with server.connect() as connection:
                connection.exec_driver_sql(f"CREATE DATABASE `{name}`")
            try:
                timings = run(f"{arguments.mysql}/{name}", movies, workdir / "m")
                print(f"mariadb {movies:5d} movies: " + _format(timings, movies))
            finally:
                with server.connect() as connection:
                    connection.exec_driver_sql(f"DROP DATABASE `{name}`")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak_mib:.0f} MiB")


def _format(timings: dict[str, float], movies: int) -> str:
    return (
        f"first {timings['first']:.2f} s ({1000 * timings['first'] / movies:.1f} ms/movie), "
        f"unchanged rerun {timings['rerun']:.2f} s, one changed {timings['one_changed']:.2f} s"
    )


if __name__ == "__main__":
    main()
