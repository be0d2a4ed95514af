"""Load and validate a run's configuration against config/config.schema.yaml.

Validation fills in schema defaults, so the validated config written next to the outputs
reproduces the run on its own. Errors are one line naming the offending key.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

WORKFLOW_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = WORKFLOW_ROOT / "config" / "config.schema.yaml"

# Top-level shorthands so `--config session_dir=/path output_dir=/out` works on the
# command line, where nested keys cannot be set one at a time.
SHORTHANDS = {
    "session_dir": ("session", "session_dir"),
    "output_dir": ("outputs", "dir"),
    "movie_list": ("session", "movie_list"),
}

# (section, key) of every value naming a file or directory; relative ones are relative to
# the directory the workflow is started in
PATH_KEYS = (
    ("session", "session_dir"),
    ("session", "movie_list"),
    ("microscope", "gain_reference"),
    ("microscope", "defect_map"),
    ("picking", "cryolo_config"),
    ("picking", "cryolo_weights"),
    ("ispyb", "credentials"),
    ("outputs", "dir"),
)


class ConfigError(ValueError):
    """A configuration problem, phrased for the user in one line."""


def load_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        loaded = yaml.safe_load(path.read_text())
    except FileNotFoundError as error:
        raise ConfigError(f"config file not found: {path}") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from error
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections")
    return loaded


def load_schema(schema_path: str | Path = SCHEMA_PATH) -> dict[str, Any]:
    return yaml.safe_load(Path(schema_path).read_text())


def _with_defaults(validator_class: type) -> type:
    """A validator that fills `default` values in as it validates (objects first)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):  # noqa: ANN001
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def _apply_shorthands(config: dict[str, Any]) -> None:
    for shorthand, (section, key) in SHORTHANDS.items():
        if shorthand in config:
            value = config.pop(shorthand)
            config.setdefault(section, {})
            if not isinstance(config[section], dict):
                raise ConfigError(f"config key '{section}' must be a mapping")
            config[section][key] = str(value)


def _describe(error: jsonschema.ValidationError) -> str:
    location = ".".join(str(part) for part in error.absolute_path) or "(top level)"
    if error.validator == "required":
        return f"config key '{location}': {error.message}"
    if error.validator == "additionalProperties":
        return f"config section '{location}': {error.message} (unknown key; check its spelling)"
    return f"config key '{location}': {error.message}"


def validate_config(
    config: Mapping[str, Any], schema_path: str | Path = SCHEMA_PATH
) -> dict[str, Any]:
    """Return a validated deep copy of `config` with defaults filled in.

    Raises ConfigError naming the first offending key.
    """
    validated = copy.deepcopy(dict(config))
    _apply_shorthands(validated)
    validator = _with_defaults(jsonschema.Draft202012Validator)(load_schema(schema_path))
    errors = sorted(validator.iter_errors(validated), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError(_describe(errors[0]))
    if validated.get("ctf", {}).get("max_resolution_angstrom", 0) >= validated.get("ctf", {}).get(
        "min_resolution_angstrom", 1
    ):
        raise ConfigError(
            "config key 'ctf.max_resolution_angstrom' must be smaller (finer) than "
            "'ctf.min_resolution_angstrom'"
        )
    picking = validated.get("picking", {})
    if picking.get("min_diameter_angstrom", 0) > picking.get("max_diameter_angstrom", 1):
        raise ConfigError(
            "config key 'picking.min_diameter_angstrom' exceeds 'picking.max_diameter_angstrom'"
        )
    return validated


def write_config(config: Mapping[str, Any], path: str | Path) -> None:
    from emproc.io.atomic import write_text_atomic

    header = "# The validated configuration of this run, defaults filled in.\n"
    header += (
        "# Reproduce the run with: snakemake --configfile THIS_FILE --profile profiles/local\n"
    )
    write_text_atomic(path, header + yaml.safe_dump(dict(config), sort_keys=False))


def with_absolute_paths(config: Mapping[str, Any], base_dir: str | Path) -> dict[str, Any]:
    """A copy of a validated `config` whose PATH_KEYS are absolute (relative ones taken
    relative to `base_dir`); empty values stay empty."""
    resolved = copy.deepcopy(dict(config))
    for section, key in PATH_KEYS:
        value = resolved.get(section, {}).get(key)
        if value:
            resolved[section][key] = str((Path(base_dir) / value).resolve())
    return resolved
