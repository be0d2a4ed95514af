"""The per-movie SPA stages as steps for `emproc.chunks.run_chunk_stage`.

Each step reads what earlier stages wrote for the movie (by the layout in
`emproc.chunks.MOVIE_OUTPUTS`) and writes its own files atomically.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emproc.chunks import MovieStep, movie_paths


@dataclass(frozen=True)
class StageContext:
    """What every movie of a chunk shares for one stage."""

    output_dir: Path
    config: Mapping[str, Any]  # the validated workflow config
    movie_files: Mapping[str, str] = field(default_factory=dict)  # movie id -> path (import)
    epu_files: Mapping[str, str] = field(default_factory=dict)  # movie id -> EPU XML
    # staged detector references (remote storage), overriding the metadata's paths
    detector_files: Mapping[str, str] = field(default_factory=dict)
    threads: int = 1


def import_step(context: StageContext) -> MovieStep:
    from emproc.io.atomic import write_json_atomic
    from emproc.metadata import build_movie_metadata

    def step(movie: str, outputs: dict[str, Path]) -> None:
        metadata = build_movie_metadata(
            context.movie_files[movie],
            session_dir=context.config["session"]["session_dir"],
            microscope=context.config["microscope"],
            movie_name=movie,
            epu_xml=context.epu_files.get(movie),
        )
        write_json_atomic(outputs["metadata"], metadata)

    return step


def motion_step(context: StageContext) -> MovieStep:
    from emproc.ctf.errors import load_json
    from emproc.motion import motion_correct_movie

    def step(movie: str, outputs: dict[str, Path]) -> None:
        metadata = load_json(movie_paths(context.output_dir, "import", movie)["metadata"])
        for key, role in (("gain_reference", "gain"), ("defect_map", "defects")):
            if role in context.detector_files:
                metadata[key] = context.detector_files[role]
        motion_correct_movie(
            metadata["movie_path"],
            metadata,
            dict(context.config["motion"]),
            {role: str(path) for role, path in outputs.items()},
            threads=context.threads,
        )

    return step


def ctf_step(context: StageContext) -> MovieStep:
    from emproc.ctf import estimate_ctf_for_micrograph, load_json

    def step(movie: str, outputs: dict[str, Path]) -> None:
        estimate_ctf_for_micrograph(
            movie_paths(context.output_dir, "motion", movie)["micrograph"],
            load_json(movie_paths(context.output_dir, "import", movie)["metadata"]),
            dict(context.config["ctf"]),
            {role: str(path) for role, path in outputs.items()},
            threads=context.threads,
        )

    return step


def pick_step(context: StageContext) -> MovieStep:
    from emproc.picking.run import pick_micrograph_file

    def step(movie: str, outputs: dict[str, Path]) -> None:
        pick_micrograph_file(
            movie_paths(context.output_dir, "motion", movie)["micrograph_dw"],
            movie_name=movie,
            star_path=outputs["star"],
            summary_path=outputs["summary"],
            snapshot_path=outputs["snapshot"],
            picking=context.config["picking"],
            workers=context.threads,
            ctf_json_path=movie_paths(context.output_dir, "ctf", movie)["summary"],
            import_json_path=movie_paths(context.output_dir, "import", movie)["metadata"],
        )

    return step


def extract_step(context: StageContext) -> MovieStep:
    from emproc.extract.run import extract_micrograph_file

    # the micrograph the STAR tables name (emproc.io.relion.corrected_micrograph_row): the
    # dose-weighted sum, or the plain sum without dose weighting, as RELION
    weighted = bool(context.config["motion"].get("dose_weighting", True))
    micrograph = "micrograph_dw" if weighted else "micrograph"

    def step(movie: str, outputs: dict[str, Path]) -> None:
        extract_micrograph_file(
            movie_paths(context.output_dir, "motion", movie)[micrograph],
            movie_paths(context.output_dir, "pick", movie)["star"],
            movie_paths(context.output_dir, "ctf", movie)["summary"],
            movie_paths(context.output_dir, "import", movie)["metadata"],
            stack_path=outputs["stack"],
            star_path=outputs["star"],
            summary_path=outputs["summary"],
            movie_name=movie,
            project_dir=context.output_dir,
            extraction=context.config["extraction"],
            workers=context.threads,
        )

    return step


STEPS = {
    "import": import_step,
    "motion": motion_step,
    "ctf": ctf_step,
    "pick": pick_step,
    "extract": extract_step,
}


def stage_step(stage: str, context: StageContext) -> MovieStep:
    return STEPS[stage](context)
