"""`emproc watch`: keep processing a session while the microscope writes it.

Each cycle scans the session incrementally (only directories whose mtime changed are
listed again), promotes movies whose size and mtime have been stable for a while to an
append-only manifest, and runs the workflow on the manifest (`session.movie_list`), so a
file still being written is never read. Snakemake skips what is complete, so killing the
watcher at any moment and starting it again loses nothing and redoes nothing.
"""

from __future__ import annotations

import fnmatch
import os
import sys
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from emproc.io.atomic import write_text_atomic
from emproc.run_lock import acquire_output_lock, release_output_lock

WATCH_DIR = ".emproc-watch"


@dataclass
class _Directory:
    mtime_ns: int
    subdirectories: list[str]
    files: list[str]


@dataclass
class IncrementalScanner:
    """Lists a session's files, re-reading only directories that changed since last time.

    Parallel file systems dislike heavy polling: a scan costs one stat per known directory
    plus one listing per changed directory.
    """

    root: Path
    pattern: str
    _directories: dict[str, _Directory] = field(default_factory=dict)

    def _matches(self, relative: str) -> bool:
        if "**" in self.pattern:
            return fnmatch.fnmatchcase(relative, self.pattern.replace("**/", "*"))
        parts, pattern_parts = relative.split("/"), self.pattern.split("/")
        return len(parts) == len(pattern_parts) and all(
            fnmatch.fnmatchcase(part, glob) for part, glob in zip(parts, pattern_parts, strict=True)
        )

    def _could_contain(self, relative_dir: str) -> bool:
        """Prune directories that cannot lead to a match (patterns without `**`)."""
        if "**" in self.pattern:
            return True
        parts = [] if relative_dir == "" else relative_dir.split("/")
        pattern_parts = self.pattern.split("/")
        return len(parts) < len(pattern_parts) and all(
            fnmatch.fnmatchcase(part, glob)
            for part, glob in zip(parts, pattern_parts[: len(parts)], strict=True)
        )

    def scan(self) -> list[str]:
        """Relative paths of the files that match the pattern, sorted."""
        matches: list[str] = []
        pending = [""]
        seen: set[str] = set()
        while pending:
            relative_dir = pending.pop()
            seen.add(relative_dir)
            path = self.root / relative_dir
            try:
                mtime_ns = path.stat().st_mtime_ns
            except FileNotFoundError:
                continue
            known = self._directories.get(relative_dir)
            if known is None or known.mtime_ns != mtime_ns:
                subdirectories, files = [], []
                with os.scandir(path) as entries:
                    for entry in entries:
                        if entry.name.startswith("."):
                            continue  # hidden: transfers in progress, our own state
                        if entry.is_dir(follow_symlinks=False):
                            subdirectories.append(entry.name)
                        elif entry.is_file():
                            files.append(entry.name)
                known = _Directory(mtime_ns, subdirectories, files)
                self._directories[relative_dir] = known
            prefix = f"{relative_dir}/" if relative_dir else ""
            matches += [prefix + name for name in known.files if self._matches(prefix + name)]
            pending += [
                prefix + name for name in known.subdirectories if self._could_contain(prefix + name)
            ]
        for gone in set(self._directories) - seen:
            del self._directories[gone]
        return sorted(matches)


@dataclass
class StabilityTracker:
    """A file is complete once its size and mtime stayed the same for `stable_seconds`."""

    root: Path
    stable_seconds: float
    clock: Callable[[], float] = time.monotonic
    _observed: dict[str, tuple[int, int, float]] = field(default_factory=dict)

    def ready(self, candidates: Sequence[str], renamed: Collection[str] = ()) -> list[str]:
        """The candidates complete now. Those in `renamed` were renamed into place (a
        transfer tool's last step, reported by inotify) and are complete at once."""
        now = self.clock()
        ready = []
        for relative in candidates:
            try:
                stat = (self.root / relative).stat()
            except FileNotFoundError:
                self._observed.pop(relative, None)
                continue
            if relative in renamed and stat.st_size > 0:
                ready.append(relative)
                self._observed.pop(relative, None)
                continue
            signature = (stat.st_size, stat.st_mtime_ns)
            previous = self._observed.get(relative)
            if previous is None or previous[:2] != signature:
                self._observed[relative] = (*signature, now)
                if self.stable_seconds > 0:
                    continue
                previous = self._observed[relative]
            if stat.st_size > 0 and now - previous[2] >= self.stable_seconds:
                ready.append(relative)
                del self._observed[relative]
        return ready


def read_manifest(path: Path) -> list[str]:
    if not path.is_file():
        return []
    return [line for line in path.read_text().splitlines() if line.strip()]


def append_to_manifest(path: Path, movies: Sequence[str]) -> None:
    # rewrite atomically: a killed watcher never leaves half a line
    write_text_atomic(path, "".join(f"{movie}\n" for movie in [*read_manifest(path), *movies]))


@dataclass(frozen=True)
class WatchSettings:
    interval_s: float = 30.0
    max_interval_s: float = 300.0
    backoff: float = 1.5
    idle_timeout_s: float = 3600.0
    stable_seconds: float = 30.0
    # Hand-over (see movies_to_hand_over): with batch_wait_s 0, every stable movie goes to
    # the workflow as soon as it is free. Sites that want fewer, fuller chunks at the cost
    # of latency set batch_wait_s: then whole chunks of `batch_size` go at once and a
    # remainder only once its oldest movie has waited that long.
    batch_size: int = 1
    batch_wait_s: float = 0.0


def movies_to_hand_over(
    pending: int, oldest_wait_s: float, settings: WatchSettings, stopping: bool = False
) -> int:
    """How many of the `pending` stable movies to hand to the workflow now.

    The workflow runs synchronously, so the hand-over adapts by itself: while it is idle a
    movie goes the moment it is stable (a one-movie chunk: latency is one workflow run),
    and the movies that became stable while it ran go together when it is done (chunks of
    up to processing.movies_per_job: the per-run cost is shared, so throughput holds under
    overload and a movie waits at most for the run in progress and its own). No fixed wait
    unless `settings.batch_wait_s` asks for one.
    """
    if pending <= 0:
        return 0
    if stopping or oldest_wait_s >= settings.batch_wait_s:
        return pending
    return pending - pending % max(settings.batch_size, 1)


def _next_pause(
    settings: WatchSettings, waiting: bool, pending: bool, interval: float, idle: float
) -> tuple[float, float]:
    """Seconds to sleep before the next scan, and the next idle interval: short while a movie
    is settling, the hand-over wait while movies are pending, else an interval that backs off
    while the session stays quiet."""
    if waiting:
        return min(settings.interval_s, max(settings.stable_seconds / 2, 0.05)), interval
    if pending:
        return min(settings.interval_s, settings.batch_wait_s), interval
    return (
        min(interval, settings.idle_timeout_s - idle),
        min(interval * settings.backoff, settings.max_interval_s),
    )


def _mtime_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return 0


def _acquire_lock(lock_path: Path) -> None:
    """One watcher per output dir; a lock left by a killed watcher is taken over."""
    if lock_path.exists():
        try:
            pid = int(lock_path.read_text().strip() or 0)
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError, PermissionError):
            pass  # stale
        else:
            if pid != os.getpid():
                raise RuntimeError(f"another emproc watch (pid {pid}) works on {lock_path.parent}")
    write_text_atomic(lock_path, f"{os.getpid()}\n")


def watch_session(
    session_dir: Path,
    movie_glob: str,
    output_dir: Path,
    run_workflow: Callable[[Path], int],
    settings: WatchSettings = WatchSettings(),  # noqa: B008 - frozen
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] = lambda message: print(message, file=sys.stderr),
    on_start: Callable[[], None] = lambda: None,
    renamed: Callable[[], Iterable[Path]] = lambda: (),
    live: LiveHandle | None = None,
    interrupt_workflow: Callable[[], None] = lambda: None,
    workflow_priority: Callable[[bool], None] = lambda low: None,
) -> int:
    """Scan, promote stable movies to the manifest, run the workflow; until idle.

    `run_workflow(manifest_path)` runs Snakemake on the manifest and returns its exit code.
    `renamed()` gives the files renamed into place since its last call (FileEventWaker):
    they need not wait `stable_seconds`. With `live` (emproc.live_worker.LiveWorker), each
    movie goes to the resident worker first (`_watch_live`). Returns the exit code of the
    last workflow run.
    """
    state_dir = output_dir / WATCH_DIR
    state_dir.mkdir(parents=True, exist_ok=True)
    lock_path = state_dir / "lock"
    _acquire_lock(lock_path)
    # one emproc process (run or watch) per output directory
    output_lock = acquire_output_lock(output_dir, "watch")
    if live is not None:
        try:
            return _watch_live(
                session_dir, movie_glob, output_dir, run_workflow, settings, clock, sleep,
                log, on_start, renamed, live, output_lock.add_process, interrupt_workflow,
                workflow_priority,
            )  # fmt: skip
        finally:
            live.close()
            release_output_lock(output_lock)
            lock_path.unlink(missing_ok=True)
    on_start()
    manifest = state_dir / "ready_movies.txt"
    known = set(read_manifest(manifest))
    scanner = IncrementalScanner(session_dir, movie_glob)
    tracker = StabilityTracker(session_dir, settings.stable_seconds, clock)
    interval = settings.interval_s
    last_new = clock()
    returncode = 0
    run_needed = True  # complete whatever an earlier (killed) watcher left
    pending: list[str] = []  # stable, not yet handed over (waiting for a full batch)
    pending_since = 0.0
    try:
        while True:
            candidates = [
                path for path in scanner.scan() if path not in known and path not in pending
            ]
            moved_in = set()
            for path in renamed():
                try:
                    moved_in.add(Path(path).relative_to(session_dir).as_posix())
                except ValueError:
                    continue  # not under the session
            new = tracker.ready(candidates, moved_in)
            if new:
                if not pending:
                    pending_since = clock()
                pending.extend(new)
                last_new = clock()
                interval = settings.interval_s
            waiting = len(candidates) - len(new)  # seen, still being written
            idle = clock() - last_new
            stopping = idle >= settings.idle_timeout_s and not waiting
            count = movies_to_hand_over(
                len(pending), clock() - pending_since, settings, stopping=stopping
            )
            if count:
                handed, pending = pending[:count], pending[count:]
                append_to_manifest(manifest, handed)
                known.update(handed)
                pending_since = clock()
                run_needed = True
                log(f"emproc watch: {len(handed)} new movie(s), {len(known)} in total")
            if run_needed and known:
                returncode = run_workflow(manifest)
                run_needed = False
            if stopping and not pending:
                log(f"emproc watch: no new movie for {idle:.0f} s; stopping")
                return returncode
            pause, interval = _next_pause(settings, waiting > 0, bool(pending), interval, idle)
            sleep(max(pause, 0.0))
    finally:
        release_output_lock(output_lock)
        lock_path.unlink(missing_ok=True)


class LiveHandle(Protocol):
    """The watcher's view of the live worker (emproc.live_worker.LiveWorker)."""

    crashes: int

    @property
    def idle(self) -> bool: ...

    def start(self) -> int: ...

    def submit(self, job: Any) -> None: ...

    def results(self) -> list[dict[str, Any]]: ...

    def close(self, timeout_s: float = 600.0) -> None: ...


# a worker that dies on this many movies in a row is given up: the workflow does the rest
MAX_LIVE_CRASHES = 3
# how often the watcher looks at the worker and the workflow run while either is busy
BUSY_POLL_S = 0.25


def _watch_live(
    session_dir: Path,
    movie_glob: str,
    output_dir: Path,
    run_workflow: Callable[[Path], int],
    settings: WatchSettings,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    log: Callable[[str], None],
    on_start: Callable[[], None],
    renamed: Callable[[], Iterable[Path]],
    live: LiveHandle,
    add_process: Callable[[int], None],
    interrupt_workflow: Callable[[], None],
    workflow_priority: Callable[[bool], None],
) -> int:
    """The watch loop with a live worker.

    Hand-over: the worker takes the oldest stable movie whenever it is idle, so at a light
    rate every movie is processed, ingested and on the live page seconds after it is
    complete, without waiting for a workflow run. When movies arrive faster than the worker
    finishes them, the backlog beyond the worker's next movie goes to the workflow in chunks
    of up to `batch_size` (the workflow's jobs use the other cores), so throughput holds and
    a movie waits at most for the run in progress. Movies the worker finished (or failed, or
    crashed on) join the workflow's manifest, and the workflow runs in the background for
    the aggregates, 2D, 3D and the full report, finding the worker's chunk manifests
    complete.

    Ownership is by the manifest: the worker only works on movies not yet in it, the
    workflow only on movies in it. The watcher claims every chunk (`claim_chunk`) before
    either starts, so the two never pick the same chunk number.
    """
    import threading

    from emproc.chunks import claim_chunk, read_ledger
    from emproc.discovery import movie_id
    from emproc.live_worker import LiveJob

    state_dir = output_dir / WATCH_DIR
    on_start()
    add_process(live.start())
    manifest = state_dir / "ready_movies.txt"
    known = set(read_manifest(manifest))
    ledger = read_ledger(output_dir)
    scanner = IncrementalScanner(session_dir, movie_glob)
    tracker = StabilityTracker(session_dir, settings.stable_seconds, clock)
    interval = settings.interval_s
    last_new = clock()
    returncode = 0
    run_needed = True  # complete whatever an earlier (killed) watcher left
    pending: list[str] = []  # stable movies owned by nobody yet
    pending_since = 0.0
    in_worker: dict[str, str] = {}  # movie id -> relative path
    for_workflow: list[str] = []  # to append to the manifest at the next run
    run: dict[str, Any] = {}  # the background workflow run: thread, returncode
    use_worker = True
    # whether the next workflow run has per-movie work (a backlog, a crashed movie); a run
    # without any (aggregates, report) runs at low priority: the worker's movie goes first.
    # The first run may complete per-movie work an earlier (killed) watcher left.
    movie_work = True

    assigned = {movie: chunk for chunk, members in ledger.items() for movie in members}

    def claim(movies: Sequence[str]) -> str:
        """The chunk of the movies (ids of session-relative paths): their claim if an
        earlier watcher made one, else a new claim for those without."""
        ids = [movie_id(session_dir / movie, session_dir) for movie in movies]
        unassigned = [movie for movie in ids if movie not in assigned]
        if unassigned:
            chunk = claim_chunk(output_dir, unassigned, ledger)
            assigned.update(dict.fromkeys(unassigned, chunk))
        return assigned[ids[0]]

    def run_in_background() -> None:
        run["returncode"] = run_workflow(manifest)

    try:
        while True:
            candidates = [
                path
                for path in scanner.scan()
                if path not in known
                and path not in pending
                and path not in in_worker.values()
                and path not in for_workflow
            ]
            moved_in = set()
            for path in renamed():
                try:
                    moved_in.add(Path(path).relative_to(session_dir).as_posix())
                except ValueError:
                    continue
            new = tracker.ready(candidates, moved_in)
            # oldest first (a scan lists by path): the worker takes them in acquisition order
            new.sort(key=lambda path: _mtime_ns(session_dir / path))
            if new:
                if not pending:
                    pending_since = clock()
                pending.extend(new)
                last_new = clock()
                interval = settings.interval_s
            for result in live.results():
                relative = in_worker.pop(str(result.get("movie")), None)
                if relative is None:
                    continue
                for_workflow.append(relative)
                if result.get("crashed"):
                    movie_work = True
                    log(f"emproc watch: live worker: {result['movie']}: {result['crashed']}; "
                        "the workflow processes it")  # fmt: skip
                elif result.get("failed"):
                    stage, error = next(iter(result["failed"].items()))
                    log(f"emproc watch: live: {result['movie']} failed at {stage}: {error}")
                else:
                    seconds = dict(result.get("seconds", {}))
                    total = seconds.pop("total", 0.0)
                    steps = ", ".join(f"{step} {value:.1f}" for step, value in seconds.items())
                    log(f"emproc watch: live: {result['movie']} done in {total:.1f} s ({steps})")
            if use_worker and live.crashes >= MAX_LIVE_CRASHES:
                use_worker = False
                log(f"emproc watch: the live worker died on {live.crashes} movies in a row; "
                    "the workflow processes every movie from now on")  # fmt: skip
            if use_worker and live.idle and pending:
                relative = pending.pop(0)
                chunk = claim([relative])
                movie = movie_id(session_dir / relative, session_dir)
                in_worker[movie] = relative
                live.submit(LiveJob(movie, str(session_dir / relative), chunk))
                pending_since = clock()
            running = "thread" in run and run["thread"].is_alive()
            if "thread" in run and not running:
                returncode = run.pop("returncode", returncode)
                del run["thread"]
            waiting = len(candidates) - len(new)
            idle = clock() - last_new
            stopping = idle >= settings.idle_timeout_s and not waiting
            if not running:
                # the backlog beyond the worker's next movie: to the workflow, in chunks
                keep = 1 if use_worker else 0
                count = movies_to_hand_over(
                    max(len(pending) - keep, 0), clock() - pending_since, settings, stopping
                )
                if count:
                    handed, pending = (
                        pending[keep : keep + count],
                        pending[:keep] + pending[keep + count :],
                    )
                    size = max(settings.batch_size, 1)
                    for start in range(0, len(handed), size):
                        claim(handed[start : start + size])
                    for_workflow.extend(handed)
                    movie_work = True
                if for_workflow:
                    append_to_manifest(manifest, for_workflow)
                    known.update(for_workflow)
                    log(f"emproc watch: {len(for_workflow)} new movie(s), {len(known)} in total")
                    for_workflow = []
                    run_needed = True
                if run_needed and known:
                    run_needed = False
                    workflow_priority(not movie_work)
                    movie_work = False
                    run["thread"] = threading.Thread(target=run_in_background, daemon=True)
                    run["thread"].start()
                    running = True
            busy = running or bool(in_worker)
            if stopping and not pending and not busy and not for_workflow:
                log(f"emproc watch: no new movie for {idle:.0f} s; stopping")
                return returncode
            if busy or (pending and use_worker):
                pause = BUSY_POLL_S
            else:
                pause, interval = _next_pause(settings, waiting > 0, bool(pending), interval, idle)
            sleep(max(pause, 0.0))
    except BaseException:
        # interrupted (Ctrl-C): stop the workflow run too, before the lock is released
        if "thread" in run and run["thread"].is_alive():
            interrupt_workflow()
            run["thread"].join()
        live.close(timeout_s=5.0)  # the movie at hand is redone from its unfinished stage
        raise


class FileEventWaker:
    """Sleeps until the polling interval ends or the file system reports a change.

    Uses inotify (via watchdog) where the file system delivers events; on parallel file
    systems that do not (changes made by other clients), the polling interval still bounds
    the wait, so nothing depends on events arriving.
    """

    def __init__(self, session_dir: Path) -> None:
        import threading

        self._changed = threading.Event()
        self._lock = threading.Lock()
        self._renamed: set[Path] = set()
        self._observer = None
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:  # polling only
            return
        changed, note_renamed = self._changed, self._note_renamed

        class _Handler(FileSystemEventHandler):
            def on_any_event(self, event) -> None:  # noqa: ANN001
                if event.event_type == "moved" and not event.is_directory:
                    note_renamed(Path(os.fsdecode(event.dest_path)))
                if event.event_type in ("created", "modified", "moved", "closed"):
                    changed.set()

        observer = Observer()
        try:
            observer.schedule(_Handler(), str(session_dir), recursive=True)
            observer.start()
        except OSError:  # e.g. inotify watch limit reached: polling only
            return
        self._observer = observer

    def _note_renamed(self, path: Path) -> None:
        with self._lock:
            self._renamed.add(path)

    def take_renamed(self) -> set[Path]:
        """Files renamed into place since the last call (complete: a transfer's last step)."""
        with self._lock:
            renamed, self._renamed = self._renamed, set()
        return renamed

    @property
    def uses_events(self) -> bool:
        return self._observer is not None

    def sleep(self, seconds: float) -> None:
        self._changed.wait(timeout=max(seconds, 0.0))
        self._changed.clear()

    def close(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
