"""A chunk job is a fresh interpreter: its imports are paid once per job (issue 19).

Checked in a subprocess through sys.modules, not by timing: building a stage's step (what
scripts/movie_stage.py does before its first movie) imports no heavy library the stage does
not use at that point.
"""

import json
import subprocess
import sys

import pytest

HEAVY = ("pandas", "matplotlib", "sqlalchemy", "starfile", "scipy.optimize", "ispyb")

# what building each stage's step may import: the CTF fit needs scipy.optimize, the picker
# and extraction work on pandas tables of coordinates
ALLOWED = {
    "import": set(),
    "motion": set(),
    "ctf": {"scipy.optimize"},
    "pick": {"pandas", "starfile"},
    "extract": {"pandas", "starfile"},
}

PROBE = """
import json, sys
from pathlib import Path
from emproc.chunks import run_chunk_stage, stage_members
from emproc.movie_stages import StageContext, stage_step
stage_step(sys.argv[1], StageContext(output_dir=Path("."), config={"motion": {"dose_weighting": True}}))
print(json.dumps([name for name in sys.argv[2:] if name in sys.modules]))
"""


@pytest.mark.parametrize("stage", sorted(ALLOWED))
def test_building_a_stage_step_imports_only_what_the_stage_uses(stage):
    result = subprocess.run(
        [sys.executable, "-c", PROBE, stage, *HEAVY],
        capture_output=True,
        text=True,
        check=True,
    )
    imported = set(json.loads(result.stdout))
    assert imported <= ALLOWED[stage], f"{stage} step imports {sorted(imported - ALLOWED[stage])}"


def test_package_names_still_resolve_lazily():
    from emproc import classify, ctf, extract, motion, picking

    for package in (classify, ctf, extract, motion, picking):
        for name in package.__all__:
            assert getattr(package, name) is not None, f"{package.__name__}.{name}"
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = motion.no_such_name
