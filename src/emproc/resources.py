"""Scheduler requests per rule, from the config's `resources` section."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Sane defaults per rule, overridden by config `resources.<rule>` then `resources.default`
# only where the rule has no entry of its own. The per-movie stages run per chunk of movies
# (emproc.chunks): their runtime is minutes per movie, multiplied by the chunk size. One
# thread each: only motion correction's FFTs use more, so a single-threaded job per core moves
# 1.6x more movies per hour than two-threaded ones (docs/benchmarks.md, throughput).
RULE_DEFAULTS: dict[str, dict[str, int]] = {
    "import_movies": {"threads": 1, "mem_mb": 1000, "runtime": 1},
    "motion_correct": {"threads": 1, "mem_mb": 8000, "runtime": 5},
    "ctf_estimate": {"threads": 1, "mem_mb": 4000, "runtime": 2},
    "pick_particles": {"threads": 1, "mem_mb": 4000, "runtime": 2},
    "extract_particles": {"threads": 1, "mem_mb": 4000, "runtime": 2},
    "class2d_batch": {"threads": 2, "mem_mb": 8000, "runtime": 120},
    "process_tilt_series": {"threads": 2, "mem_mb": 6000, "runtime": 60},
    # RELION 3D steps (docs/spa3d.md, docs/benchmarks.md): threads are split over MPI ranks
    "initial_model_3d": {"threads": 2, "mem_mb": 8000, "runtime": 240},
    "class3d": {"threads": 2, "mem_mb": 8000, "runtime": 480},
    "refine3d": {"threads": 2, "mem_mb": 8000, "runtime": 480},
    "postprocess3d": {"threads": 1, "mem_mb": 4000, "runtime": 30},
    "bfactor3d": {"threads": 2, "mem_mb": 8000, "runtime": 480},
}
FALLBACK = {"threads": 1, "mem_mb": 2000, "runtime": 30}


def rule_resources(configured: Mapping[str, Mapping[str, Any]], rule_name: str) -> dict[str, int]:
    """threads, mem_mb, runtime (minutes) and, where set, gpu for `rule_name`."""
    merged = dict(FALLBACK)
    merged.update(configured.get("default", {}))
    merged.update(RULE_DEFAULTS.get(rule_name, {}))
    merged.update(configured.get(rule_name, {}))
    return merged
