"""The stored mapping of emproc ids to ISPyB ids (`ISPyB/ispyb_ids.json` under the outputs).

It makes ingest incremental and idempotent: a unit (one movie's results, one picking result,
one 2D batch, one tomogram) whose input files hash the same as at its last ingest is skipped,
and a changed one updates the rows it created. The mapping belongs to one database and visit;
pointed at another, it starts empty (rows are then matched by natural key instead).
It is not a Snakemake output, so a failed ingest keeps the record of the units it finished.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emproc.io.atomic import write_json_atomic, write_text_atomic

STATE_DIR = "ISPyB"
ID_MAP_FILE = "ispyb_ids.json"
SUMMARY_FILE = "ingest_state.json"
FORMAT_VERSION = 2
# version 1: one `emproc-spa`/`emproc-tomo` job per collection (before PATo's recipes); its
# ids are of the old structure, so such a map starts empty and rows are matched by natural key
_SUPERSEDED_FORMATS = (1,)


class IngestStateError(ValueError):
    """The id mapping file exists but is not readable JSON of the expected shape."""


@dataclass
class IdMap:
    """Mutable record of what has been ingested into one database for one visit."""

    database: str
    visit: str
    session_id: int | None = None
    # collection key ("spa", "tomo:<tilt series>") -> {"dataCollectionGroupId", ...}
    collections: dict[str, dict[str, Any]] = field(default_factory=dict)
    # unit key ("movie:<movie>", "picking:<movie>", ...) -> {"hash": str, "ids": {...}}
    units: dict[str, dict[str, Any]] = field(default_factory=dict)

    def unit_ids(self, key: str) -> dict[str, Any]:
        return dict(self.units.get(key, {}).get("ids", {}))

    def is_current(self, key: str, content_hash: str) -> bool:
        return self.units.get(key, {}).get("hash") == content_hash

    def record(self, key: str, content_hash: str, ids: dict[str, Any]) -> None:
        self.units[key] = {"hash": content_hash, "ids": ids}

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "database": self.database,
            "visit": self.visit,
            "session_id": self.session_id,
            "collections": self.collections,
            "units": self.units,
        }


def id_map_path(output_dir: str | os.PathLike[str]) -> Path:
    return Path(output_dir) / STATE_DIR / ID_MAP_FILE


def load_id_map(output_dir: str | os.PathLike[str], database: str, visit: str) -> IdMap:
    """The mapping for (`database` (masked URL), `visit`), or an empty one."""
    path = id_map_path(output_dir)
    if not path.exists():
        return IdMap(database=database, visit=visit)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise IngestStateError(
            f"ISPyB id mapping {path} is unreadable ({error}); delete it to re-match rows by "
            "natural key"
        ) from None
    if isinstance(data, dict) and data.get("format_version") in _SUPERSEDED_FORMATS:
        return IdMap(database=database, visit=visit)
    if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
        raise IngestStateError(f"ISPyB id mapping {path} has an unknown format")
    if data.get("database") != database or data.get("visit") != visit:
        return IdMap(database=database, visit=visit)
    return IdMap(
        database=database,
        visit=visit,
        session_id=data.get("session_id"),
        collections=dict(data.get("collections", {})),
        units=dict(data.get("units", {})),
    )


@contextmanager
def ingest_lock(output_dir: str | os.PathLike[str]) -> Iterator[None]:
    """Held while one process ingests an output directory.

    Two ingests at once (`emproc watch`'s live worker and the workflow's ingest job) would
    each save an id map without the other's units, and each could insert a movie the other
    inserted since its collection query. The lock (flock) dies with its holder, so a killed
    ingest never blocks the next one.
    """
    path = Path(output_dir) / STATE_DIR / ".ingest.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def save_id_map(output_dir: str | os.PathLike[str], id_map: IdMap) -> Path:
    path = id_map_path(output_dir)
    write_json_atomic(path, id_map.to_json())
    return path


def record_database_identity(marker_path: str | os.PathLike[str]) -> None:
    """Write the marker naming the database ingest wrote to (`database_<identity>.id`, see
    emproc.ispyb.connect.database_identity) and remove the markers of other databases, so
    pointing the outputs at another database (and back) makes Snakemake ingest again."""
    marker = Path(marker_path)
    for other in marker.parent.glob("database_*.id"):
        if other.name != marker.name:
            other.unlink(missing_ok=True)
    write_text_atomic(marker, marker.stem.removeprefix("database_") + "\n")


def content_hash(paths: Iterable[str | os.PathLike[str] | None], extra: Any = None) -> str:
    """SHA-256 over the bytes of `paths` (None = absent input) and a JSON-able `extra`."""
    digest = hashlib.sha256()
    for path in paths:
        if path is None:
            digest.update(b"\0absent\0")
            continue
        digest.update(Path(path).read_bytes())
        digest.update(b"\0")
    digest.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return digest.hexdigest()
