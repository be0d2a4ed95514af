"""What one ingest run hands every recipe: the database, the output directory, the config,
the id map, and `IngestRun.unit`, which skips a unit whose input files are unchanged.

A unit is a key (`movie:<movie>`, `picking:<movie>`, `class2d:<n>`, `tomogram:<ts>`, ...),
its input files and whatever else its rows depend on (the collection's ids); its SHA-256 and
the ids it wrote are kept in `ISPyB/ispyb_ids.json` (`emproc.ispyb.state`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from emproc.ispyb.retry import DEFAULT_RETRY, RetryPolicy
from emproc.ispyb.rows import IngestInputError
from emproc.ispyb.state import IdMap, content_hash


@dataclass
class IngestRun:
    engine: Engine
    output_dir: Path
    config: Mapping[str, Any]
    session_id: int
    id_map: IdMap
    policy: RetryPolicy = DEFAULT_RETRY
    counts: dict[str, int] = field(default_factory=lambda: {"ingested": 0, "skipped": 0})

    def unit(
        self,
        key: str,
        inputs: Sequence[str | os.PathLike[str] | None],
        depends_on: Any,
        write: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> dict[str, Any]:
        """The unit's ids: stored ones if its inputs and `depends_on` are unchanged, else
        `write(known ids)`'s, recorded in the id map."""
        digest = content_hash(inputs, depends_on)
        if self.id_map.is_current(key, digest):
            self.counts["skipped"] += 1
            return self.id_map.unit_ids(key)
        ids = write(self.id_map.unit_ids(key))
        self.id_map.record(key, digest, ids)
        self.counts["ingested"] += 1
        return ids


def read_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A JSON object from an emproc output file, or `IngestInputError` naming the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise IngestInputError(f"{path}: file is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise IngestInputError(f"{path}: not readable JSON ({error})") from None
    if not isinstance(data, dict):
        raise IngestInputError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data
