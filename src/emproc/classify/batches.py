"""Batches of particles for 2D classification, stable as movies accumulate.

Particles are laid out in acquisition order (movie timestamp, then name; within a movie in
STAR order) and cut into batches of `batch_size`. A batch that was once complete is frozen:
the manifest history keeps its exact membership, and later manifests only lay out the
particles not yet in a frozen batch. So a full batch never changes, even when a movie's
files arrive late; the last batch is partial (complete = false) until enough particles come.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np
import pandas as pd

from emproc.extract.star import parse_image_name, read_particle_star
from emproc.io.atomic import write_json_atomic


class BatchManifestError(ValueError):
    """A manifest, history or extraction summary is missing or malformed."""


def _member_key(member: Mapping[str, Any]) -> tuple[str, int]:
    return str(member["movie_name"]), int(member["first"])


def build_batch_manifest(
    extractions: Sequence[Mapping[str, Any]],
    batch_size: int,
    frozen_batches: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """Manifest {batch_size, total_particles, batches: [...]} from extraction summaries.

    Each batch: batch_number (1-based), complete, number_of_particles, members: [{movie_name,
    star_path, first (0-based row), count}]. `frozen_batches` (complete batches of an earlier
    manifest) are kept verbatim and their particles are not laid out again.
    """
    if batch_size < 1:
        raise BatchManifestError(f"batch_size must be >= 1, got {batch_size}")
    taken: dict[str, list[tuple[int, int]]] = {}
    batches = []
    for batch in frozen_batches:
        if not batch.get("complete"):
            continue
        batches.append(dict(batch, batch_number=len(batches) + 1))
        for member in batch["members"]:
            taken.setdefault(str(member["movie_name"]), []).append(
                (int(member["first"]), int(member["first"]) + int(member["count"]))
            )
    ordered = sorted(
        extractions, key=lambda item: (str(item.get("timestamp") or ""), str(item["movie_name"]))
    )
    pending: list[dict[str, Any]] = []  # free runs of particles, in acquisition order
    for item in ordered:
        name = str(item["movie_name"])
        count = int(item["number_of_particles"])
        intervals = sorted(taken.get(name, []))
        cursor = 0
        for start, stop in intervals + [(count, count)]:
            if start > cursor:
                pending.append(
                    {
                        "movie_name": name,
                        "star_path": str(item["star_path"]),
                        "first": cursor,
                        "count": start - cursor,
                    }
                )
            cursor = max(cursor, stop)
    current: list[dict[str, Any]] = []
    filled = 0
    for run in pending:
        first, remaining = run["first"], run["count"]
        while remaining > 0:
            take = min(remaining, batch_size - filled)
            current.append(dict(run, first=first, count=take))
            first += take
            remaining -= take
            filled += take
            if filled == batch_size:
                batches.append(_batch(len(batches) + 1, current, True))
                current, filled = [], 0
    if current:
        batches.append(_batch(len(batches) + 1, current, False))
    return {
        "batch_size": batch_size,
        "total_particles": int(sum(batch["number_of_particles"] for batch in batches)),
        "batches": batches,
    }


def _batch(number: int, members: list[dict[str, Any]], complete: bool) -> dict[str, Any]:
    return {
        "batch_number": number,
        "complete": complete,
        "number_of_particles": int(sum(member["count"] for member in members)),
        "members": members,
    }


def read_json(path: str | os.PathLike[str]) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as error:
        raise BatchManifestError(f"{path}: not found") from error
    except json.JSONDecodeError as error:
        raise BatchManifestError(f"{path}: not valid JSON ({error})") from error


def update_batch_manifest(
    extraction_summaries: Sequence[str | os.PathLike[str]],
    manifest_path: str | os.PathLike[str],
    history_path: str | os.PathLike[str],
    batch_size: int,
) -> dict[str, Any]:
    """Write the manifest from extraction summary JSONs, keeping the history's full batches.

    The history file is not a Snakemake output (Snakemake deletes outputs before a job
    reruns): it is how frozen batches survive a rerun of the manifest checkpoint.
    """
    extractions = [read_json(path) for path in extraction_summaries]
    frozen: list[dict[str, Any]] = []
    if Path(history_path).is_file():
        history = read_json(history_path)
        if int(history.get("batch_size", batch_size)) == batch_size:
            frozen = [batch for batch in history.get("batches", []) if batch.get("complete")]
    manifest = build_batch_manifest(extractions, batch_size, frozen)
    write_json_atomic(history_path, manifest)
    write_json_atomic(manifest_path, manifest)
    return manifest


def batches_to_classify(manifest: Mapping[str, Any], classify_partial_batch: bool) -> list[int]:
    """Batch numbers to classify: complete ones, plus the partial one if asked (session end)."""
    return [
        int(batch["batch_number"])
        for batch in manifest["batches"]
        if batch["complete"] or (classify_partial_batch and batch["number_of_particles"] > 0)
    ]


def find_batch(manifest: Mapping[str, Any], batch_number: int) -> dict[str, Any]:
    for batch in manifest["batches"]:
        if int(batch["batch_number"]) == int(batch_number):
            return dict(batch)
    raise BatchManifestError(f"batch {batch_number} not in the manifest")


def load_batch(
    members: Sequence[Mapping[str, Any]], project_dir: str | os.PathLike[str]
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """(optics, particles, stack) of a batch, read from the per-movie STARs and stacks.

    Image paths in the STARs (rlnImageName) are relative to `project_dir`.
    """
    optics_tables, particle_tables, images = [], [], []
    for member in members:
        optics, particles = read_particle_star(member["star_path"])
        first, count = int(member["first"]), int(member["count"])
        if first + count > len(particles):
            raise BatchManifestError(
                f"{member['star_path']}: has {len(particles)} particles, batch needs rows "
                f"{first}..{first + count - 1}"
            )
        rows = particles.iloc[first : first + count]
        optics_tables.append(optics)
        particle_tables.append(rows)
        images.append(_read_images(rows["rlnImageName"], Path(project_dir)))
    optics = (
        pd.concat(optics_tables, ignore_index=True)
        .drop_duplicates(subset="rlnOpticsGroup")
        .reset_index(drop=True)
    )
    particles = pd.concat(particle_tables, ignore_index=True)
    return optics, particles, np.concatenate(images) if images else np.zeros((0, 1, 1))


def _read_images(image_names: pd.Series, project_dir: Path) -> np.ndarray:
    parsed = [parse_image_name(name) for name in image_names]
    by_stack: dict[str, list[tuple[int, int]]] = {}
    for row, (index, stack) in enumerate(parsed):
        by_stack.setdefault(stack, []).append((row, index - 1))
    out: np.ndarray | None = None
    for stack, pairs in by_stack.items():
        path = Path(stack) if Path(stack).is_absolute() else project_dir / stack
        rows = [row for row, _ in pairs]
        indices = [index for _, index in pairs]
        try:
            with mrcfile.mmap(path, mode="r") as mrc:
                data = mrc.data if mrc.data.ndim == 3 else mrc.data[None]
                if max(indices) >= len(data):
                    raise BatchManifestError(
                        f"{path}: has {len(data)} images, STAR refers to image {max(indices) + 1}"
                    )
                if out is None:
                    out = np.zeros((len(parsed),) + data.shape[1:], dtype=np.float32)
                out[rows] = data[indices]
        except BatchManifestError:
            raise
        except (ValueError, OSError) as error:
            raise BatchManifestError(f"{path}: unreadable particle stack ({error})") from error
    return out if out is not None else np.zeros((0, 1, 1), dtype=np.float32)


def write_summary_index(
    summary_paths: Sequence[str | os.PathLike[str]], index_path: str | os.PathLike[str]
) -> list[dict[str, Any]]:
    """One JSON list of every classified batch's summary, in batch order."""
    summaries = sorted((read_json(path) for path in summary_paths), key=lambda s: s["batch_number"])
    write_json_atomic(index_path, summaries)
    return summaries
