"""`emproc watch`'s resident worker: one child process, its heavy imports done once.

The watcher sends a movie (one JSON line on the child's stdin: movie id, path, chunk); the
child runs `emproc.live.process_movie` and answers with one JSON line. One process, not a
thread of the watcher: a movie that crashes the interpreter (a native library, memory)
takes only the worker down, and the watcher hands that movie to the workflow and starts a
new worker. The child dies with the watcher (PR_SET_PDEATHSIG), so a killed watcher leaves
no worker writing behind a restarted one.

    python -m emproc.live_worker CONFIG OUTPUT_DIR WATCHER_PID    (started by LiveWorker)
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

READY = "ready"


@dataclass(frozen=True)
class LiveJob:
    movie: str  # the {movie} id
    path: str  # the movie file
    chunk: str  # its claimed chunk (emproc.chunks.claim_chunk)


def _die_with_parent(parent_pid: int) -> None:
    """Linux: SIGKILL this process when the watcher that started it dies (set here, after
    exec: a preexec_fn is unsafe in the watcher, which has threads)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the watcher died before the line above
        sys.exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the watcher closes our stdin


def serve(config_path: str, output_dir: str, requests: IO[str], answers: IO[str]) -> None:
    """Answer each request line with the result of processing its movie, until EOF."""
    import logging

    from emproc.config import load_config
    from emproc.live import process_movie

    logging.basicConfig(level=logging.INFO, format="%(asctime)s live %(levelname)s: %(message)s")
    config = load_config(config_path)
    # the imports the first movie would otherwise pay for (seconds: numpy FFTs, scipy,
    # SQLAlchemy, the ISPyB models)
    import emproc.ctf.estimate  # noqa: F401
    import emproc.extract.run  # noqa: F401
    import emproc.ispyb.ingest  # noqa: F401
    import emproc.metadata  # noqa: F401
    import emproc.motion.outputs  # noqa: F401
    import emproc.picking.run  # noqa: F401

    answers.write(json.dumps({"status": READY}) + "\n")
    answers.flush()
    for line in requests:
        if not line.strip():
            continue
        job = LiveJob(**json.loads(line))
        try:
            result = process_movie(output_dir, config, job.movie, job.path, job.chunk)
        except Exception as error:  # not the movie's fault (e.g. output disk full)
            logging.exception("live processing of %s stopped", job.movie)
            result = {"movie": job.movie, "chunk": job.chunk, "crashed": f"{error}"}
        answers.write(json.dumps(result) + "\n")
        answers.flush()


class LiveWorker:
    """The watcher's handle on the child: submit a movie, collect answers, restart it."""

    def __init__(self, config_path: Path, output_dir: Path, log_path: Path) -> None:
        self.config_path, self.output_dir, self.log_path = config_path, output_dir, log_path
        self.process: subprocess.Popen[str] | None = None
        self.current: LiveJob | None = None
        self._answers: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.crashes = 0

    def start(self) -> int:
        """Start the child (heavy imports begin at once); returns its pid."""
        log = self.log_path.open("a")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "emproc.live_worker",
                str(self.config_path),
                str(self.output_dir),
                str(os.getpid()),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            bufsize=1,
            env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")},
        )
        log.close()
        answers = self._answers
        stdout = self.process.stdout

        def read() -> None:
            for line in stdout:
                try:
                    answers.put(json.loads(line))
                except ValueError:
                    continue
            answers.put(None)  # the child exited

        threading.Thread(target=read, daemon=True).start()
        return self.process.pid

    @property
    def idle(self) -> bool:
        return self.current is None

    def submit(self, job: LiveJob) -> None:
        if self.process is None or self.process.poll() is not None:
            self.start()
        assert self.process is not None and self.process.stdin is not None
        self.current = job
        try:
            self.process.stdin.write(json.dumps(job.__dict__) + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the child died: its end-of-output reports the crash

    def results(self) -> list[dict[str, Any]]:
        """Answers since the last call; a child that died with a movie gives `crashed`."""
        results = []
        while True:
            try:
                answer = self._answers.get_nowait()
            except queue.Empty:
                return results
            if answer is None:  # the child is gone
                if self.current is not None:
                    code = self.process.wait() if self.process else None
                    results.append(
                        {
                            "movie": self.current.movie,
                            "chunk": self.current.chunk,
                            "crashed": f"the live worker exited with status {code}",
                        }
                    )
                    self.current = None
                    self.crashes += 1
                continue
            if answer.get("status") == READY:
                continue
            if self.current is not None and answer.get("movie") == self.current.movie:
                self.current = None
                if not answer.get("crashed"):
                    self.crashes = 0
                else:
                    self.crashes += 1
            results.append(answer)

    def close(self, timeout_s: float = 600.0) -> None:
        """Let the child finish the movie at hand (up to `timeout_s`), then stop it. Killing
        it is safe (every output is atomic; an unfinished stage is redone on restart)."""
        if self.process is None or self.process.poll() is not None:
            return
        if self.process.stdin is not None:
            try:
                self.process.stdin.close()
            except OSError:
                pass
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def main() -> None:
    config_path, output_dir, parent_pid = sys.argv[1:4]
    _die_with_parent(int(parent_pid))
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything printed goes to the log, never into the answers
    sys.stdout = sys.stderr
    serve(config_path, output_dir, sys.stdin, answers)


if __name__ == "__main__":
    main()
