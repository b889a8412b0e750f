"""Config validation with one readable message per problem.

jsonschema's own error dumps the whole sub-schema; a researcher needs the dotted key, what is wrong and what is
allowed. The Snakefile calls :func:`check_config` before Snakemake's ``validate`` fills in the defaults.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import jsonschema
import yaml


class ConfigError(ValueError):
    """Raised before any job starts; the message names the config key."""


def load_schema(path: str | Path) -> dict:
    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def describe(error: jsonschema.ValidationError) -> str:
    """One line: ``config key a.b: <problem>; allowed: <what>``."""
    key, schema = _key(error.absolute_path), error.schema
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(schema.get("properties", {})))
        allowed = ", ".join(sorted(schema.get("properties", {})))
        prefix = f"{key}." if error.absolute_path else ""
        return f"config key {prefix}{extra[0]}: unknown key; allowed keys here: {allowed}"
    if error.validator == "enum":
        return f"config key {key}: {error.instance!r} is not allowed; allowed: {', '.join(map(repr, schema['enum']))}"
    if error.validator == "type":
        return f"config key {key}: expected {schema['type']}, got {type(error.instance).__name__} {error.instance!r}"
    if error.validator == "required":
        return f"config key {key}: {error.message}"
    description = schema.get("description", "")
    return f"config key {key}: {error.message}" + (f" ({description})" if description else "")


def section_dataclass(cls: type, cfg: dict[str, Any], section: str):
    """Build a config dataclass from one config section; an unknown key is named (library use outside Snakemake)."""
    known = {f.name for f in dataclasses.fields(cls)}
    if unknown := sorted(set(cfg) - known):
        raise ConfigError(f"config key {section}.{unknown[0]}: unknown key; allowed keys here: {', '.join(sorted(known))}")
    return cls(**cfg)


def config_keys(section: dict[str, Any], *keys: str, **subkeys: Sequence[str]) -> dict[str, Any]:
    """``keys`` of a config section, and of each sub-section named in ``subkeys`` only the listed keys: what one
    rule's job reads. Rules pass it as params, so that editing any other key does not rerun the job."""
    picked = {key: section[key] for key in keys}
    return picked | {name: {key: section[name][key] for key in names} for name, names in subkeys.items()}


def check_config(config: dict[str, Any], schema_path: str | Path) -> None:
    """Raise :class:`ConfigError` listing every violation, each naming its key."""
    validator = jsonschema.Draft202012Validator(load_schema(schema_path))
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(describe(e) for e in errors))
