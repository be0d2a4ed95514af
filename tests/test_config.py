from pathlib import Path

import pytest

from emproc.config import WORKFLOW_ROOT, ConfigError, load_config, validate_config, write_config

DEFAULT_CONFIG = WORKFLOW_ROOT / "config" / "config.yaml"


def test_shipped_config_is_valid_and_defaults_are_filled():
    config = load_config(DEFAULT_CONFIG)
    del config["motion"]  # a missing optional section comes back with its defaults
    validated = validate_config(config)
    assert validated["motion"]["patches_x"] == 5
    assert validated["motion"]["dose_weighting"] is True
    assert validated["session"]["visit"] == "bi12345-1"


def test_every_shipped_key_is_in_the_schema():
    # additionalProperties: false everywhere, so a key missing from the schema fails here
    validate_config(load_config(DEFAULT_CONFIG))


@pytest.mark.parametrize(
    ("section", "key", "value", "named"),
    [
        ("microscope", "pixel_size_angstrom", "one", "microscope.pixel_size_angstrom"),
        ("microscope", "voltage_kv", 250, "microscope.voltage_kv"),
        ("motion", "patches_x", 0, "motion.patches_x"),
        ("session", "visit", "BI 12345", "session.visit"),
        ("ctf", "box_size_px", 2.5, "ctf.box_size_px"),
    ],
)
def test_wrong_value_names_the_key(section, key, value, named):
    config = load_config(DEFAULT_CONFIG)
    config[section][key] = value
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        validate_config(config)


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ("microscope", "pixel_size_angstrom"),
        ("microscope", "voltage_kv"),
        ("microscope", "dose_per_frame_e_per_angstrom2"),
        ("microscope", "gain_reference"),  # "" says "already gain-corrected", never a default
        ("session", "session_dir"),
        ("session", "visit"),
        ("outputs", "dir"),
    ],
)
def test_missing_physics_is_named_never_defaulted(section, key):
    config = load_config(DEFAULT_CONFIG)
    del config[section][key]
    with pytest.raises(ConfigError, match=f"'{key}' is a required property"):
        validate_config(config)


def test_misspelt_key_is_refused():
    config = load_config(DEFAULT_CONFIG)
    config["ctf"]["max_resolution"] = 4.0
    with pytest.raises(ConfigError, match="max_resolution"):
        validate_config(config)


def test_resolution_limits_must_be_ordered():
    config = load_config(DEFAULT_CONFIG)
    config["ctf"]["max_resolution_angstrom"] = 40.0
    with pytest.raises(ConfigError, match="max_resolution_angstrom"):
        validate_config(config)


def test_command_line_shorthands_override_nested_keys():
    config = load_config(DEFAULT_CONFIG)
    config["session_dir"] = "/data/bi12345-1"
    config["output_dir"] = "/processed/bi12345-1"
    validated = validate_config(config)
    assert validated["session"]["session_dir"] == "/data/bi12345-1"
    assert validated["outputs"]["dir"] == "/processed/bi12345-1"
    assert "session_dir" not in validated


def test_written_config_reproduces_itself(tmp_path: Path):
    validated = validate_config(load_config(DEFAULT_CONFIG))
    write_config(validated, tmp_path / "config_used.yaml")
    assert validate_config(load_config(tmp_path / "config_used.yaml")) == validated


def test_unreadable_config_is_one_clear_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("session: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")


def test_atomic_outputs_are_readable_by_others_and_leave_nothing_on_failure(tmp_path: Path):
    import os

    from emproc.io.atomic import atomic_path, write_json_atomic

    os.umask(0o022)
    write_json_atomic(tmp_path / "result.json", {"defocus_u_angstrom": 1.5e4})
    assert (tmp_path / "result.json").stat().st_mode & 0o777 == 0o644
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "half.mrc") as temporary:
            temporary.write_bytes(b"partial")
            raise RuntimeError("killed mid-write")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]
