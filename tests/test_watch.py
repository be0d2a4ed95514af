"""Watch mode: incremental scans, stability, exactly-once promotion, crash-safe restarts."""

import os
from pathlib import Path

import pytest

from emproc.chunks import read_ledger
from emproc.cli import with_config_overrides
from emproc.watch import (
    IncrementalScanner,
    StabilityTracker,
    WatchSettings,
    movies_to_hand_over,
    read_manifest,
    watch_session,
)

GLOB = "Images-Disc*/GridSquare_*/Data/*_fractions.tiff"


def _movie(root: Path, square: int, hole: int, content: bytes = b"frames") -> Path:
    path = root / "Images-Disc1" / f"GridSquare_{square}" / "Data"
    path.mkdir(parents=True, exist_ok=True)
    movie = path / f"FoilHole_{hole}_Data_1_1_20261129_1200{hole:02d}_fractions.tiff"
    movie.write_bytes(content)
    return movie


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_scanner_finds_new_squares_and_lists_only_changed_directories(tmp_path, monkeypatch):
    _movie(tmp_path, 1, 1)
    (tmp_path / "Images-Disc1" / "GridSquare_1" / "Data" / "notes.txt").write_text("x")
    (tmp_path / "Metadata").mkdir()  # cannot lead to a match: never listed
    scanner = IncrementalScanner(tmp_path, GLOB)
    assert [Path(p).name for p in scanner.scan()] == [
        "FoilHole_1_Data_1_1_20261129_120001_fractions.tiff"
    ]
    listed: list[str] = []
    real_scandir = os.scandir
    monkeypatch.setattr(
        "emproc.watch.os.scandir", lambda path: listed.append(str(path)) or real_scandir(path)
    )
    assert len(scanner.scan()) == 1
    assert listed == []  # nothing changed: stats only
    _movie(tmp_path, 2, 2)
    assert len(scanner.scan()) == 2
    assert sorted(Path(p).name for p in listed) == ["Data", "GridSquare_2", "Images-Disc1"]


def test_a_growing_file_is_not_ready_until_stable(tmp_path):
    clock = FakeClock()
    movie = _movie(tmp_path, 1, 1, b"part")
    tracker = StabilityTracker(tmp_path, stable_seconds=10, clock=clock)
    relative = str(movie.relative_to(tmp_path))
    assert tracker.ready([relative]) == []
    clock.now = 8
    with movie.open("ab") as handle:
        handle.write(b" more")
    assert tracker.ready([relative]) == []
    clock.now = 17  # 9 s after the last change
    assert tracker.ready([relative]) == []
    clock.now = 18.5
    assert tracker.ready([relative]) == [relative]


def test_watch_promotes_each_movie_once_never_partial_and_stops_when_idle(tmp_path):
    session, output = tmp_path / "session", tmp_path / "processed"
    session.mkdir()
    clock = FakeClock()
    runs: list[list[str]] = []
    written: dict[str, bytes] = {}

    def run_workflow(manifest: Path) -> int:
        listed = read_manifest(manifest)
        for relative in listed:  # never a partial file: content equals the final content
            assert (session / relative).read_bytes() == written[relative]
        runs.append(listed)
        return 0

    # collection script: at time t, this happens
    slow = "Images-Disc1/GridSquare_2/Data/FoilHole_3_Data_1_1_20261129_120003_fractions.tiff"
    events = {
        10: lambda: _movie(session, 1, 1, b"one"),
        20: lambda: _movie(session, 1, 2, b"two"),
        30: lambda: _movie(session, 2, 3, b"thr"),  # written slowly in chunks
        40: lambda: (session / slow).open("ab").write(b"ee"),
        50: lambda: (session / slow).open("ab").write(b"e!"),
    }
    final = {
        "Images-Disc1/GridSquare_1/Data/FoilHole_1_Data_1_1_20261129_120001_fractions.tiff": b"one",
        "Images-Disc1/GridSquare_1/Data/FoilHole_2_Data_1_1_20261129_120002_fractions.tiff": b"two",
        slow: b"threee!",
    }
    written.update(final)

    def sleep(seconds: float) -> None:
        target = clock.now + max(seconds, 0.5)
        for when in sorted(events):
            if clock.now < when <= target:
                clock.now = when
                events.pop(when)()
        clock.now = target

    settings = WatchSettings(interval_s=5, max_interval_s=20, idle_timeout_s=120, stable_seconds=15)
    assert watch_session(session, GLOB, output, run_workflow, settings, clock, sleep) == 0
    manifest = read_manifest(output / ".emproc-watch" / "ready_movies.txt")
    assert sorted(manifest) == sorted(final) and len(manifest) == len(set(manifest))
    assert runs[-1] == manifest
    assert clock.now >= 50 + 15 + 120  # stopped only after idling
    assert not (output / ".emproc-watch" / "lock").exists()


def test_restarted_watch_keeps_its_manifest_and_finishes_the_work(tmp_path):
    session, output = tmp_path / "session", tmp_path / "processed"
    movie = _movie(session, 1, 1)
    relative = str(movie.relative_to(session))
    state = output / ".emproc-watch"
    state.mkdir(parents=True)
    (state / "ready_movies.txt").write_text(relative + "\n")
    (state / "lock").write_text("999999999\n")  # left by a killed watcher
    clock = FakeClock()
    runs: list[list[str]] = []

    def sleep(seconds: float) -> None:
        clock.now += seconds

    settings = WatchSettings(interval_s=1, idle_timeout_s=3, stable_seconds=0)
    watch_session(
        session, GLOB, output, lambda m: runs.append(read_manifest(m)) or 0, settings, clock, sleep
    )
    assert runs == [[relative]]  # one run completes what the killed watcher left


def test_a_second_live_watcher_is_refused(tmp_path):
    state = tmp_path / "processed" / ".emproc-watch"
    state.mkdir(parents=True)
    (state / "lock").write_text(f"{os.getppid()}\n")
    with pytest.raises(RuntimeError, match="another emproc watch"):
        watch_session(tmp_path, GLOB, tmp_path / "processed", lambda m: 0)


def test_config_overrides_join_the_users_config_flag():
    command = ["snakemake", "--config", "a=1", "--dry-run"]
    assert with_config_overrides(command, ["movie_list=/m"]) == [
        "snakemake",
        "--config",
        "movie_list=/m",
        "a=1",
        "--dry-run",
    ]
    assert with_config_overrides(["snakemake"], ["b=2"]) == ["snakemake", "--config", "b=2"]


def test_file_events_wake_the_watcher_before_the_interval_ends(tmp_path):
    import threading
    import time

    from emproc.watch import FileEventWaker

    waker = FileEventWaker(tmp_path)
    try:
        assert waker.uses_events
        timer = threading.Timer(0.3, lambda: _movie(tmp_path, 1, 1))
        timer.start()
        start = time.monotonic()
        waker.sleep(30)
        assert time.monotonic() - start < 10  # woken by the new movie, not the 30 s poll
        timer.join()
    finally:
        waker.close()


def test_stable_movies_are_handed_over_a_chunk_at_a_time_or_after_the_batch_wait(tmp_path):
    session, output = tmp_path / "session", tmp_path / "processed"
    clock = FakeClock()
    runs: list[list[str]] = []
    arrivals = {10 * index: index for index in range(1, 6)}  # a movie every 10 s, 5 in all

    def sleep(seconds: float) -> None:
        target = clock.now + max(seconds, 0.5)
        for when in sorted(arrivals):
            if clock.now < when <= target:
                clock.now = when
                _movie(session, 1, arrivals.pop(when))
        clock.now = target

    times: list[float] = []

    def run_workflow(manifest: Path) -> int:
        runs.append(read_manifest(manifest))
        times.append(clock.now)
        return 0

    settings = WatchSettings(
        interval_s=2, idle_timeout_s=400, stable_seconds=0, batch_size=2, batch_wait_s=100
    )
    session.mkdir()
    watch_session(session, GLOB, output, run_workflow, settings, clock, sleep)
    # two full chunks of 2 as they fill, then the fifth movie alone once it waited 100 s
    assert [len(run) for run in runs] == [2, 4, 5]
    assert 20 <= times[0] < 25 and 40 <= times[1] < 45 and 150 <= times[2] < 155
    assert clock.now >= 50 + 400  # and the watcher still stopped only when idle


def test_hand_over_sizes_follow_the_backlog_with_no_fixed_wait_by_default():
    immediate = WatchSettings(batch_size=20)  # batch_wait_s 0: `emproc watch`'s default
    assert [movies_to_hand_over(n, 0.0, immediate) for n in (0, 1, 3, 20, 57)] == [0, 1, 3, 20, 57]
    batched = WatchSettings(batch_size=20, batch_wait_s=60)
    assert [movies_to_hand_over(n, 5.0, batched) for n in (1, 19, 20, 45)] == [0, 0, 20, 40]
    assert movies_to_hand_over(7, 60.0, batched) == 7  # the oldest waited long enough
    assert movies_to_hand_over(7, 5.0, batched, stopping=True) == 7


@pytest.mark.parametrize("arrival_every_s", [60.0, 4.0])
def test_latency_is_one_run_when_idle_and_bounded_by_the_backlog_under_overload(
    tmp_path, arrival_every_s
):
    """A workflow that takes 10 s plus 8 s per movie: one movie a minute is light, one every
    4 s is twice what it can do. Light: each movie goes alone the moment it is stable.
    Overload: hand-overs grow with the backlog and no movie waits for more than the run in
    progress plus its own."""
    session, output = tmp_path / "session", tmp_path / "processed"
    session.mkdir()
    clock = FakeClock()
    fixed_s, per_movie_s, stable_s, count = 10.0, 8.0, 2.0, 12
    arrivals = {arrival_every_s * (index + 1): index + 1 for index in range(count)}
    arrived_at: dict[str, float] = {}
    done_at: dict[str, float] = {}
    hand_overs: list[int] = []

    def arrive_until(target: float) -> None:
        for when in sorted(arrivals):
            if clock.now <= when <= target:
                clock.now = when
                path = _movie(session, 1, arrivals.pop(when))
                arrived_at[str(path.relative_to(session))] = when

    def sleep(seconds: float) -> None:  # woken by a new file, as FileEventWaker
        target = clock.now + max(seconds, 0.5)
        upcoming = [when for when in arrivals if clock.now <= when <= target]
        arrive_until(min(upcoming, default=target))
        clock.now = min(upcoming, default=target)

    def run_workflow(manifest: Path) -> int:
        new = [movie for movie in read_manifest(manifest) if movie not in done_at]
        hand_overs.append(len(new))
        target = clock.now + fixed_s + per_movie_s * len(new)
        arrive_until(target)  # the collection goes on while the workflow runs
        clock.now = target
        done_at.update(dict.fromkeys(new, clock.now))
        return 0

    settings = WatchSettings(
        interval_s=5, idle_timeout_s=150, stable_seconds=stable_s, batch_size=20
    )
    watch_session(session, GLOB, output, run_workflow, settings, clock, sleep)
    assert len(arrived_at) == count and sorted(done_at) == sorted(arrived_at)
    latency = {movie: done_at[movie] - arrived_at[movie] for movie in arrived_at}
    one_run = fixed_s + per_movie_s
    if arrival_every_s > one_run:
        assert hand_overs == [1] * count
        # seen within a scan or two of arrival, stable after stable_s, then one run
        assert max(latency.values()) <= stable_s + 1.0 + one_run + 1e-9
    else:
        assert max(hand_overs) > 2 and sum(hand_overs) == count
        assert len(hand_overs) < count
        # at most the run in progress and the movie's own, each sized by the backlog
        longest_run = fixed_s + per_movie_s * max(hand_overs)
        assert max(latency.values()) <= stable_s + 1.0 + 2 * longest_run + 1e-9


def test_a_file_renamed_into_place_is_complete_at_once_others_wait_until_stable(tmp_path):
    session, output = tmp_path / "session", tmp_path / "processed"
    clock = FakeClock()
    runs: list[tuple[float, list[str]]] = []
    renamed_in: set[Path] = set()

    def deliver_by_rename() -> None:
        final = _movie(session, 1, 1, b"whole")  # as rsync: hidden temporary, then rename
        hidden = final.with_name(f".{final.name}.part")
        final.rename(hidden)
        hidden.rename(final)
        renamed_in.add(final)

    arrivals = {10: deliver_by_rename, 20: lambda: _movie(session, 1, 2, b"in place")}

    def sleep(seconds: float) -> None:  # woken by a new file, as FileEventWaker
        target = clock.now + max(seconds, 0.5)
        upcoming = [when for when in arrivals if clock.now < when <= target]
        if upcoming:
            clock.now = min(upcoming)
            arrivals.pop(clock.now)()
        else:
            clock.now = target

    def take_renamed() -> set[Path]:
        taken = set(renamed_in)
        renamed_in.clear()
        return taken

    def run_workflow(manifest: Path) -> int:
        runs.append((clock.now, read_manifest(manifest)))
        return 0

    session.mkdir()
    settings = WatchSettings(interval_s=2, idle_timeout_s=100, stable_seconds=30)
    watch_session(session, GLOB, output, run_workflow, settings, clock, sleep, renamed=take_renamed)
    assert [len(movies) for _, movies in runs] == [1, 2]
    assert runs[0][0] < 10 + 2.5  # the renamed movie: no stability wait
    assert runs[1][0] >= 20 + 30  # the movie written in place waited stable_seconds


def test_the_waker_reports_files_renamed_into_place_not_files_written_in_place(tmp_path):
    import time

    from emproc.watch import FileEventWaker

    (tmp_path / "Images-Disc1" / "GridSquare_1" / "Data").mkdir(parents=True)
    waker = FileEventWaker(tmp_path)
    try:
        assert waker.uses_events
        in_place = _movie(tmp_path, 1, 1)
        renamed = _movie(tmp_path, 1, 2)
        hidden = renamed.with_name(f".{renamed.name}.part")
        renamed.rename(hidden)
        hidden.rename(renamed)
        deadline = time.monotonic() + 10
        reported: set[Path] = set()
        while renamed not in reported and time.monotonic() < deadline:
            waker.sleep(0.2)
            reported |= waker.take_renamed()
        assert renamed in reported and in_place not in reported
    finally:
        waker.close()


class FakeLiveWorker:
    """Finishes a movie when the watcher next looks; crashes on the movies named."""

    def __init__(self, crash_on: set[str] = frozenset()) -> None:
        self.crash_on, self.crashes = crash_on, 0
        self.jobs: list = []
        self._answer: dict | None = None

    @property
    def idle(self) -> bool:
        return self._answer is None

    def start(self) -> int:
        return os.getpid()

    def submit(self, job) -> None:  # noqa: ANN001
        self.jobs.append(job)
        crashed = any(name in job.movie for name in self.crash_on)
        self._answer = {"movie": job.movie, "chunk": job.chunk, "failed": {}}
        if crashed:
            self._answer["crashed"] = "the live worker exited with status -9"

    def results(self) -> list[dict]:
        answer, self._answer = self._answer, None
        return [answer] if answer else []

    def close(self, timeout_s: float = 600.0) -> None:
        pass


def test_live_worker_takes_each_movie_first_and_a_backlog_goes_to_the_workflow(tmp_path):
    session, output = tmp_path / "session", tmp_path / "processed"
    session.mkdir()
    for hole in range(1, 5):  # a backlog at the first scan
        _movie(session, 1, hole)
    clock = FakeClock()
    runs: list[tuple[list[str], list[str]]] = []  # (manifest, movies the worker had by then)
    live = FakeLiveWorker(crash_on={"FoilHole_2_"})

    def run_workflow(manifest: Path) -> int:
        runs.append((read_manifest(manifest), [job.movie for job in live.jobs]))
        return 0

    def sleep(seconds: float) -> None:
        clock.now += max(seconds, 0.05)
        if clock.now >= 20 and not (session / "Images-Disc1" / "GridSquare_2").exists():
            _movie(session, 2, 9)  # arrives when all is quiet: straight to the worker

    settings = WatchSettings(interval_s=1, idle_timeout_s=30, stable_seconds=0, batch_size=2)
    low_priority: list[bool] = []
    returncode = watch_session(
        session, GLOB, output, run_workflow, settings, clock, sleep, live=live,
        workflow_priority=low_priority.append,
    )  # fmt: skip
    assert returncode == 0
    # a run with per-movie work (the backlog) at normal priority; one with only the
    # worker's finished movies (aggregates, report) at low priority
    assert low_priority[0] is False and low_priority[-1] is True
    manifest = read_manifest(output / ".emproc-watch" / "ready_movies.txt")
    assert len(manifest) == len(set(manifest)) == 5  # every movie handed over exactly once
    worker_movies = [job.movie for job in live.jobs]
    # the oldest movie went to the worker before any workflow run, and so did the late one
    assert worker_movies[0].endswith("FoilHole_1_Data_1_1_20261129_120001_fractions")
    assert worker_movies[-1].endswith("FoilHole_9_Data_1_1_20261129_120009_fractions")
    late = next(m for m in manifest if "FoilHole_9_" in m)
    # the late movie reached the workflow only after the worker had finished it
    _, worker_had = next((listed, had) for listed, had in runs if late in listed)
    assert late.removesuffix(".tiff") in worker_had
    # the worker's crash on movie 2 handed it to the workflow; no movie was done twice
    assert len(worker_movies) == len(set(worker_movies))
    assert any("FoilHole_2_" in m for m in manifest)
    # every movie has exactly one chunk, claimed before worker or workflow touched it
    ledger = read_ledger(output)
    members = [movie for chunk in ledger.values() for movie in chunk]
    assert sorted(members) == sorted(m.removesuffix(".tiff") for m in manifest)
    assert all(job.chunk in ledger and job.movie in ledger[job.chunk] for job in live.jobs)
    # the backlog beyond the worker's next movie (3 and 4) went to the workflow as one chunk
    assert sorted(len(chunk) for chunk in ledger.values()) == [1, 1, 1, 2]
    assert not (output / ".emproc-watch" / "lock").exists()
