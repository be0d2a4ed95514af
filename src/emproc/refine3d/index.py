"""`spa3d.json`: whether 3D ran for the session and where each step's summary JSON is."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from emproc.io.atomic import write_json_atomic


def write_spa3d_index(
    selection_summary: str | os.PathLike[str],
    step_summaries: Mapping[str, str | os.PathLike[str]],
    index_path: str | os.PathLike[str],
) -> dict[str, Any]:
    selection = json.loads(Path(selection_summary).read_text())
    index = {
        "number_of_selected_particles": selection["number_of_particles"],
        "min_particles_for_3d": selection["min_particles_for_3d"],
        "ready_for_3d": selection["ready_for_3d"],
        "selection_summary": str(Path(selection_summary).resolve()),
        "steps": {step: str(Path(path).resolve()) for step, path in step_summaries.items()},
    }
    write_json_atomic(index_path, index)
    return index
