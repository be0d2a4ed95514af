"""envs/*.yaml hold exactly the third-party packages their rule family's scripts import.

A script's imports are followed into emproc (statically, with ast) so that a dependency a stage
module pulls in counts for the scripts that call it. Imports guarded by `except ImportError`
are optional (e.g. the crYOLO backend) and need not be in the env.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
import yaml

from emproc.config import WORKFLOW_ROOT

SCRIPTS = WORKFLOW_ROOT / "scripts"
ENVS = WORKFLOW_ROOT / "envs"
SRC = WORKFLOW_ROOT / "src"
FAMILIES = ("spa", "particles", "tomo", "ispyb", "report")

# Script name prefix -> env (rule family). Longest prefix wins.
ENV_OF_PREFIX = {
    # the five per-movie stages of a chunk (import to extraction) share one script and env
    "movie_stage": "spa",
    "aggregate_motion": "spa",
    "aggregate_ctf": "spa",
    "aggregate_particles": "particles",
    "class2d_": "particles",
    "select_particles_3d": "particles",
    "refine3d_": "particles",
    "spa3d_": "particles",
    "tomo_": "tomo",
    "ispyb_": "ispyb",
    "report": "report",
    "session_report": "report",
}
# Import name -> conda/pip package name, where they differ.
PACKAGE_OF_MODULE = {"yaml": "pyyaml", "matplotlib": "matplotlib-base", "PIL": "pillow"}
# Needed at run time without an import statement: SQLAlchemy loads the driver named in the URL.
RUNTIME_ONLY = {"ispyb": {"pymysql"}}
# Not packages of the scientific stack: the interpreter, the installer, emproc itself.
INFRASTRUCTURE = {"python", "pip", "emproc"}


def env_of_script(script: Path) -> str:
    matches = [prefix for prefix in ENV_OF_PREFIX if script.stem.startswith(prefix)]
    if not matches:
        raise LookupError(f"{script.name}: no rule family (add its prefix to ENV_OF_PREFIX)")
    return ENV_OF_PREFIX[max(matches, key=len)]


def _module_file(module: str) -> Path | None:
    base = SRC.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _optional_nodes(tree: ast.AST) -> set[int]:
    """ids of import nodes inside `try: ... except ImportError/ModuleNotFoundError`."""
    optional: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Try):
            continue
        caught = {
            name.id
            for handler in node.handlers
            if handler.type is not None
            for name in ast.walk(handler.type)
            if isinstance(name, ast.Name)
        }
        if caught & {"ImportError", "ModuleNotFoundError"}:
            optional.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
    return optional


def imported_modules(path: Path, module: str) -> set[str]:
    """Absolute dotted names imported by a file (from-imports also as `package.name`)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    optional = _optional_nodes(tree)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in optional:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        elif _is_lazy_exports(node):
            # emproc.lazy: a package's names load from these submodules on first use; a
            # script may use any of them, so its env needs what each of them imports.
            names.update(f"{module}.{value.value}" for value in node.value.values)
    return names


def _is_lazy_exports(node: ast.AST) -> bool:
    """`_EXPORTS = {"name": "submodule", ...}` in a package __init__ (emproc.lazy)."""
    return (
        isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in node.targets)
        and isinstance(node.value, ast.Dict)
        and all(isinstance(v, ast.Constant) and isinstance(v.value, str) for v in node.value.values)
    )


def third_party_imports(script: Path) -> set[str]:
    """Top-level third-party modules a script needs, following its emproc imports."""
    seen: set[str] = set()
    found: set[str] = set()
    pending = [(script, "__main__")]
    while pending:
        path, module = pending.pop()
        for name in imported_modules(path, module):
            top = name.split(".")[0]
            if top == "emproc":
                parts = name.split(".")
                for depth in range(1, len(parts) + 1):
                    candidate = ".".join(parts[:depth])
                    file = _module_file(candidate)
                    if file is not None and candidate not in seen:
                        seen.add(candidate)
                        pending.append((file, candidate))
            elif top and top != "__future__" and top not in sys.stdlib_module_names:
                found.add(PACKAGE_OF_MODULE.get(top, top).lower())
    return found


def env_packages(env_file: Path) -> set[str]:
    """Package names (no versions) in a conda env file, pip section included."""
    spec = yaml.safe_load(env_file.read_text())
    names: set[str] = set()
    for entry in spec["dependencies"]:
        entries = entry["pip"] if isinstance(entry, dict) else [entry]
        for item in entries:
            names.add(re.split(r"[=<>!~ @\[]", item.strip(), maxsplit=1)[0].lower())
    return names


def scripts_by_env() -> dict[str, list[Path]]:
    grouped: dict[str, list[Path]] = {family: [] for family in FAMILIES}
    for script in sorted(SCRIPTS.glob("*.py")):
        grouped[env_of_script(script)].append(script)
    return grouped


def test_every_script_belongs_to_a_family_with_an_env_file():
    for family, scripts in scripts_by_env().items():
        assert (ENVS / f"{family}.yaml").is_file(), f"envs/{family}.yaml missing"
        for script in scripts:
            assert env_of_script(script) == family


@pytest.mark.parametrize("family", FAMILIES)
def test_env_is_pinned_and_installs_emproc(family):
    env_file = ENVS / f"{family}.yaml"
    spec = yaml.safe_load(env_file.read_text())
    assert "nodefaults" in spec["channels"] and "conda-forge" in spec["channels"]
    for entry in spec["dependencies"]:
        for item in entry["pip"] if isinstance(entry, dict) else [entry]:
            if item == "pip" or item.startswith("emproc"):
                continue
            assert re.search(r"==?\d", item), f"envs/{family}.yaml: {item!r} is not pinned"
    assert "emproc" in env_packages(env_file), f"envs/{family}.yaml must install emproc"


@pytest.mark.parametrize("family", FAMILIES)
def test_env_holds_exactly_what_its_scripts_import(family):
    scripts = scripts_by_env()[family]
    if not scripts:
        pytest.skip(f"no scripts of the {family} family yet")
    needed = set().union(*(third_party_imports(script) for script in scripts))
    needed |= RUNTIME_ONLY.get(family, set())
    declared = env_packages(ENVS / f"{family}.yaml") - INFRASTRUCTURE
    assert needed - declared == set(), f"envs/{family}.yaml lacks {sorted(needed - declared)}"
    assert declared - needed == set(), f"envs/{family}.yaml has unused {sorted(declared - needed)}"


def test_import_scan_follows_emproc_and_skips_optional_imports(tmp_path):
    # A script importing emproc.motion must inherit numpy from the package; an optional
    # (try/except ImportError) import and stdlib modules must not count.
    script = tmp_path / "motion_probe.py"
    script.write_text(
        "import json\n"
        "from emproc.motion import motion_correct_movie\n"
        "try:\n    import cryolo\nexcept ImportError:\n    cryolo = None\n"
    )
    found = third_party_imports(script)
    assert "numpy" in found and "json" not in found and "cryolo" not in found
