"""The denoised tomogram: a `ProcessedTomogram` row under the em-tomo-align Tomogram.

At Diamond the denoising step runs inside the em-tomo-align recipe (cryoemservices' denoise
service) and inserts `ProcessedTomogram(tomogramId, filePath, processingType="Denoised")`;
the table has no program column, so this module adds no ProcessingJob of its own. PATo
(pato-backend `crud/tomograms.py::_get_movie`) shows it when the tomogram page asks for
`movieType=denoised`: it selects the filePath of the row with processingType "Denoised" and
replaces `.mrc` with `_thumbnail.jpeg` (central slice) or `_movie.png` (slice movie).

| column | from `Tomograms/{ts}/{ts}_tomo.json` | PATo page |
|---|---|---|
| tomogramId | the em-tomo-align Tomogram's id | - |
| filePath | `denoised_tomogram_path` (absolute; `{ts}_rec.denoised.mrc`) | denoised central slice (`..._thumbnail.jpeg`), movie (`..._movie.png`) |
| processingType | "Denoised" | the `movieType=denoised` switch |
| feature | NULL (features are segmentations) | - |

Natural key (tomogramId, processingType), as cryoemservices' insert_processed_tomogram. A
summary without a denoised tomogram (denoising turned off) removes an earlier row, so PATo
does not offer a denoised view of a tomogram that was reprocessed without one.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ispyb.sqlalchemy as models
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from emproc.ispyb.db import upsert_by_key
from emproc.ispyb.retry import DEFAULT_RETRY, RetryPolicy, run_in_transaction
from emproc.ispyb.rows import IngestInputError
from emproc.ispyb.run import IngestRun

PROCESSING_TYPE = "Denoised"
# PATo's image names: the filePath with `.mrc` replaced by these
PATO_IMAGE_SUFFIXES = {"thumbnail": "_thumbnail.jpeg", "movie": "_movie.png"}


def processed_tomogram_row(summary: Mapping[str, Any], source: str) -> dict[str, Any] | None:
    """ProcessedTomogram columns for the summary's denoised tomogram, None without one."""
    path = summary.get("denoised_tomogram_path")
    if not path:
        return None
    path = str(path)
    # PATo replaces every ".mrc" in the path: one more would point it at the wrong file
    if not path.endswith(".mrc") or path.count(".mrc") != 1:
        raise IngestInputError(
            f"{source}: denoised tomogram {path} must end in .mrc and hold no other '.mrc'"
        )
    return {"filePath": path, "processingType": PROCESSING_TYPE, "feature": None}


def pato_image_paths(file_path: str) -> dict[str, Path]:
    """The images PATo serves for a ProcessedTomogram filePath (its `.replace`)."""
    return {
        kind: Path(file_path.replace(".mrc", suffix))
        for kind, suffix in PATO_IMAGE_SUFFIXES.items()
    }


def ingest_denoised(
    engine: Engine,
    tomogram_id: int,
    row: Mapping[str, Any] | None,
    source: str,
    policy: RetryPolicy = DEFAULT_RETRY,
) -> dict[str, Any]:
    """Upsert (or, with `row` None, delete) the tomogram's Denoised ProcessedTomogram."""
    key = {"tomogramId": tomogram_id, "processingType": PROCESSING_TYPE}

    def unit(connection: sa.Connection, attempt: int) -> dict[str, Any]:
        if row is None:
            table = models.ProcessedTomogram
            connection.execute(
                sa.delete(table).where(
                    table.tomogramId == tomogram_id, table.processingType == PROCESSING_TYPE
                )
            )
            return {}
        values = {k: v for k, v in row.items() if k not in key}
        return {
            "processedTomogramId": upsert_by_key(connection, models.ProcessedTomogram, key, values)
        }

    return run_in_transaction(engine, unit, source, policy)


def ingest(
    run: IngestRun, summary_path: Path, summary: Mapping[str, Any], tomogram_id: int
) -> None:
    """The tilt series' denoised tomogram under its Tomogram (`tomogram_id` from
    em_tomo_align)."""
    source = f"denoised tomogram of tilt series {summary['tilt_series_name']}"
    row = processed_tomogram_row(summary, source)
    key = f"denoised:{summary['tilt_series_name']}"
    if row is None and key not in run.id_map.units:
        return  # never denoised: nothing to write or to remove
    run.unit(
        key,
        [summary_path],
        [tomogram_id, row],
        lambda known: ingest_denoised(run.engine, tomogram_id, row, source, run.policy),
    )
