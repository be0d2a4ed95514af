"""Write outputs to a temporary sibling and rename, so a killed job never leaves a
file that a later step (or Snakemake's timestamp check) would trust.

Temporaries are hidden and named `.emproc-tmp.<stem>.<random><suffixes>`; a job killed
mid-write (SIGKILL, node lost) leaves one behind, which `remove_stale_temporaries` deletes
when the next `emproc run` starts."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TEMPORARY_PREFIX = ".emproc-tmp."


@contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to `target`; rename it onto `target` on success.

    The temporary name keeps the target's suffixes so writers that dispatch on the
    extension (matplotlib, mrcfile, starfile) behave as for the real name.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=target.parent,
        prefix=f"{TEMPORARY_PREFIX}{target.stem}.",
        suffix="".join(target.suffixes) or ".tmp",
    )
    os.close(handle)
    temporary_path = Path(temporary)
    try:
        yield temporary_path
        # mkstemp creates 0600; outputs are for the whole facility to read (umask decides)
        os.chmod(temporary_path, 0o666 & ~_current_umask())
        os.replace(temporary_path, target)
    except BaseException:
        temporary_path.unlink(missing_ok=True)
        raise


def remove_stale_temporaries(root: str | os.PathLike[str], min_age_s: float = 300.0) -> int:
    """Delete temporaries of killed writes under `root`; return how many.

    Only files unchanged for `min_age_s` go, so a write in progress (a Snakemake started by
    hand next to emproc) is never cut short.
    """
    import time

    removed = 0
    cutoff = time.time() - min_age_s
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = [name for name in subdirectories if name != ".snakemake"]
        for name in files:
            if not name.startswith(TEMPORARY_PREFIX):
                continue
            path = os.path.join(directory, name)
            try:
                if os.stat(path).st_mtime < cutoff:
                    os.unlink(path)
                    removed += 1
            except FileNotFoundError:  # renamed or removed meanwhile
                continue
    return removed


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(target: str | os.PathLike[str], text: str) -> None:
    with atomic_path(target) as temporary:
        temporary.write_text(text)


def write_json_atomic(target: str | os.PathLike[str], data: Any) -> None:
    write_text_atomic(
        target, json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n"
    )


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays appear in results; JSON wants plain Python
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")
