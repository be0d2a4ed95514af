"""Compare two output directories of the same session processed under different profiles."""

from __future__ import annotations

import json
import math
import re
import sqlite3
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np
import starfile
from pandas.api.types import is_numeric_dtype

# Run bookkeeping, not results: logs, the config (names its own outputs dir), plots, the HTML
# report (stamped with the time it was written).
IGNORED_PARTS = {"logs", ".snakemake"}
IGNORED_SUFFIXES = {".log", ".png", ".jpg", ".yaml", ".html"}
# JSON keys holding digests of inputs that embed each run's own paths (ISPyB ingest state), and
# the chunk manifests' timings.
IGNORED_JSON_KEYS = {"hash", "seconds", "finished"}


def result_files(output_dir: Path) -> set[str]:
    return {
        str(path.relative_to(output_dir))
        for path in output_dir.rglob("*")
        if path.is_file()
        and not IGNORED_PARTS & set(path.relative_to(output_dir).parts)
        and path.suffix not in IGNORED_SUFFIXES
    }


def _same_value(a: Any, b: Any, rtol: float) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(
            _same_value(a[k], b[k], rtol) for k in a if k not in IGNORED_JSON_KEYS
        )
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_value(x, y, rtol) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        return math.isclose(a, b, rel_tol=rtol, abs_tol=1e-9) or (math.isnan(a) and math.isnan(b))
    return a == b


def _star_blocks(path: Path, own_dir: Path) -> dict[str, Any]:
    blocks = starfile.read(path, always_dict=True)
    return {
        name: (
            block.replace(re.escape(str(own_dir)), "OUT", regex=True)
            if hasattr(block, "replace")
            else block
        )
        for name, block in blocks.items()
    }


def _comparable_text(text: str, own_dir: Path) -> str:
    # CTFFIND-format headers carry the time of the run.
    text = re.sub(r"run on \d{4}-\d\d-\d\d[ T][\d:]+", "run on <time>", text)
    return text.replace(str(own_dir), "OUT")


def differences(reference: Path, candidate: Path, rtol: float = 1e-6) -> list[str]:
    """Human-readable differences between two outputs dirs (empty when equivalent).

    Paths inside files name each run's own outputs dir; they are compared with that prefix
    replaced. Numbers compare to `rtol`; images (MRC) by value.
    """
    problems: list[str] = []
    ref_files, cand_files = result_files(reference), result_files(candidate)
    if ref_files != cand_files:
        problems.append(
            f"file sets differ: only in reference {sorted(ref_files - cand_files)[:5]}, "
            f"only in candidate {sorted(cand_files - ref_files)[:5]}"
        )
    for name in sorted(ref_files & cand_files):
        a, b = reference / name, candidate / name
        if a.suffix == ".star":
            blocks_a, blocks_b = _star_blocks(a, reference), _star_blocks(b, candidate)
            if blocks_a.keys() != blocks_b.keys():
                problems.append(f"{name}: data blocks differ")
                continue
            for block in blocks_a:
                x, y = blocks_a[block], blocks_b[block]
                try:
                    if hasattr(x, "columns"):
                        assert list(x.columns) == list(y.columns)
                        for column in x.columns:
                            if is_numeric_dtype(x[column]):
                                np.testing.assert_allclose(x[column], y[column], rtol=rtol)
                            else:
                                assert list(x[column]) == list(y[column]), column
                    else:
                        assert _same_value(x, y, rtol)
                except AssertionError as error:
                    problems.append(f"{name} block {block}: {error}")
        elif a.suffix == ".json":
            text_a = a.read_text().replace(str(reference), "OUT")
            text_b = b.read_text().replace(str(candidate), "OUT")
            if not _same_value(json.loads(text_a), json.loads(text_b), rtol):
                problems.append(f"{name}: JSON content differs")
        elif a.suffix in (".mrc", ".mrcs", ".st", ".ctf"):
            with mrcfile.open(a, permissive=True) as ma, mrcfile.open(b, permissive=True) as mb:
                if ma.data.shape != mb.data.shape or not np.allclose(
                    ma.data,
                    mb.data,
                    rtol=rtol,
                    atol=1e-6 * float(np.abs(ma.data).max(initial=0.0) or 1),
                ):
                    problems.append(f"{name}: image data differs")
        elif a.suffix == ".sqlite":
            if table_row_counts(a) != table_row_counts(b):
                problems.append(f"{name}: ISPyB row counts differ")
        else:
            text_a = _comparable_text(a.read_text(errors="replace"), reference)
            text_b = _comparable_text(b.read_text(errors="replace"), candidate)
            if text_a != text_b:
                problems.append(f"{name}: content differs")
    return problems


def table_row_counts(database: Path) -> dict[str, int]:
    """Rows per table of an (embedded SQLite) ISPyB database."""
    with sqlite3.connect(database) as connection:
        tables = [
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        return {
            table: connection.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0]
            for table in tables
        }
