"""Config validation with one readable message per problem, and the schema it validates against.

jsonschema's own error dumps the whole sub-schema; a researcher needs the dotted key, what is wrong and what is
allowed. ``common.smk`` builds the :func:`effective_schema`, calls :func:`check_config` and then
:func:`fill_defaults`, so every stage reads a complete config (the schema is the one source of defaults).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import jsonschema
import yaml

from lmscalpel.registry import catalog

REGISTRY_MARK = "x-registry"  # on a node: its enum is the names of that registry
SAE_SETTINGS_MARK = "x-sae-settings"  # on the sae node: the SAE architectures' grid lists and settings go here
DEF_MARK = "x-def"  # on a node: the shape of $defs/<name> (a prompt set), with the node's defaults and extra keys


class ConfigError(ValueError):
    """Raised before any job starts; the message names the config key."""


def check_problems(problems: Sequence[str]) -> None:
    """Raise :class:`ConfigError` listing ``problems`` (one line each, naming its config key), if there are any."""
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def load_schema(path: str | Path) -> dict:
    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))


def effective_schema(path: str | Path) -> dict:
    """The schema at ``path`` completed from the registries' catalog (``lmscalpel.registry``): a node marked
    ``x-registry: <name>`` gets the registered names as its ``enum``, and the node marked ``x-sae-settings`` the SAE
    architectures' grid lists (``ks``, ...) and settings (``relu.*``, ``train.aux_k``, ...) from their config
    classes; a node marked ``x-def: <name>`` the properties of ``$defs/<name>`` (:func:`_inline_def`). Cached per
    file version; callers must not modify it."""
    path = Path(path).resolve()
    return _effective_schema(path, path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=None)
def _effective_schema(path: Path, mtime_ns: int) -> dict:
    schema, registries = load_schema(path), copy.deepcopy(catalog())  # no object shared with the cached catalog
    for node in _nodes(schema):
        if REGISTRY_MARK in node:  # a nullable node (type [string, "null"]) also takes null
            nullable = "null" in (node.get("type") if isinstance(node.get("type"), list) else [])
            node["enum"] = list(registries[node[REGISTRY_MARK]]) + ([None] if nullable else [])
        if SAE_SETTINGS_MARK in node:
            _add_sae_settings(node["properties"], registries[node[SAE_SETTINGS_MARK]])
    _inline_defs(schema, schema.get("$defs", {}))
    return schema


def _inline_defs(node: Any, defs: dict) -> None:
    if isinstance(node, dict):
        if DEF_MARK in node:
            _inline_def(node, defs)
        for value in node.values():
            _inline_defs(value, defs)
    elif isinstance(node, list):
        for value in node:
            _inline_defs(value, defs)


def _inline_def(node: dict, defs: dict) -> None:
    """One shape at many keys, each with its own defaults: the node gets a copy of ``$defs/<name>`` whose property
    defaults are the node's ``default`` (nested objects key by key) and whose properties the node's own
    ``properties`` add to or replace (a legacy key, a wider ``source`` enum)."""
    name = node.pop(DEF_MARK)
    if name not in defs:
        raise ValueError(f"schema: x-def {name!r} is not in $defs ({', '.join(defs)})")
    shape = copy.deepcopy(defs[name])
    properties = {**shape["properties"], **node.get("properties", {})}
    for key, value in node.get("default", {}).items():
        _set_default(properties[key], value)
    node.update({**{k: v for k, v in shape.items() if k != "properties"}, "properties": properties, "default": {}})


def _set_default(node: dict, value: Any) -> None:
    if isinstance(value, dict) and "properties" in node:
        for key, sub in value.items():
            _set_default(node["properties"][key], sub)
        node["default"] = {}
    else:
        node["default"] = value


def _nodes(node: Any) -> Iterator[dict]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _nodes(value)


def _add_sae_settings(properties: dict, architectures: dict[str, dict]) -> None:
    """Each architecture's grid lists as ``sae`` keys and its settings in their sections (a section the schema file
    lacks is added with the description its config class gives); architectures sharing a key must agree on it."""
    for arch, entry in architectures.items():
        for axis in entry["grid"]:
            _add_key(properties, axis["values"], axis["schema"], f"sae.{axis['values']}", arch)
        for section, settings in entry["settings"].items():
            if section not in properties and section not in entry["sections"]:
                raise ValueError(f"SAE architecture {arch!r}: config section sae.{section} is neither in the schema "
                                 "nor described in its config class's sections")
            if section not in properties:
                properties[section] = {"type": "object", "default": {}, "additionalProperties": False,
                                       "description": entry["sections"][section], "properties": {}}
            for key, schema in settings.items():
                _add_key(properties[section]["properties"], key, schema, f"sae.{section}.{key}", arch)


def _add_key(properties: dict, key: str, schema: dict, name: str, arch: str) -> None:
    if properties.setdefault(key, schema) != schema:
        raise ValueError(f"SAE architecture {arch!r} declares config key {name} unlike the schema or another "
                         f"architecture: {schema} != {properties[key]}")


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


def section_dataclass(cls: type, cfg: dict[str, Any], read_elsewhere: Iterable[str] = ()):
    """Build a config dataclass (its ``section`` names its config section) from that section: every key is a field
    or one of ``read_elsewhere`` (keys other code reads, left out); any other key is an error naming it, so a key
    the dataclass lacks is never dropped silently. ``tests/test_defaults.py`` ties the fields and their defaults to
    the schema."""
    known = {f.name for f in dataclasses.fields(cls)}
    allowed = known | set(read_elsewhere)
    if unknown := sorted(set(cfg) - allowed):
        raise ConfigError(f"config key {cls.section}.{unknown[0]}: unknown key; allowed keys here: "
                          f"{', '.join(sorted(allowed))}")
    return cls(**{key: value for key, value in cfg.items() if key in known})


def config_keys(section: dict[str, Any], *keys: str, **subkeys: Sequence[str]) -> dict[str, Any]:
    """``keys`` of a config section, and of each sub-section named in ``subkeys`` only the listed keys: what one
    rule's job reads. Rules pass it as params, so that editing any other key does not rerun the job."""
    picked = {key: section[key] for key in keys}
    return picked | {name: {key: section[name][key] for key in names} for name, names in subkeys.items()}


def check_config(config: dict[str, Any], schema: dict) -> None:
    """Raise :class:`ConfigError` listing every violation, each naming its key."""
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    check_problems([describe(e) for e in errors])


def fill_defaults(config: dict[str, Any], schema: dict) -> None:
    """Set every missing key that has a schema default, in place and nested (Snakemake's ``validate`` does the same,
    but takes only a schema file); defaults are copied, so no two keys share one object."""
    def set_defaults(validator, properties, instance, node):
        if isinstance(instance, dict):
            for key, subschema in properties.items():
                if "default" in subschema and key not in instance:
                    instance[key] = copy.deepcopy(subschema["default"])
        yield from base_properties(validator, properties, instance, node)

    base_properties = jsonschema.Draft202012Validator.VALIDATORS["properties"]
    filling = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"properties": set_defaults})
    filling(schema).validate(config)
