"""One source per default: the schema (with the SAE architectures' settings made from their config classes). A
config dataclass that mirrors a schema section has that section's keys as its fields, or names them as read by
other code, with the schema's defaults; config.yaml holds what differs from the defaults, and a few keys shown at
theirs."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import yaml

from conftest import REPO_ROOT, SCHEMA_PATH
from lmscalpel.config import ConfigError, effective_schema, section_dataclass
from lmscalpel.features.absorption import AbsorptionConfig
from lmscalpel.features.composition import MetaSAEConfig
from lmscalpel.features.plan import ABSORPTION_PROMPT_KEYS
from lmscalpel.features.scr_tpp import ProbeConfig
from lmscalpel.safety.tune import SafetyTuneConfig
from lmscalpel.sae.stage import per_sae_train_keys
from lmscalpel.sae.training import TrainingConfig
from lmscalpel.toyworld.generate import ToyWorldConfig
from lmscalpel.toyworld.train import ToyModelConfig

SCHEMA = effective_schema(SCHEMA_PATH)
# keys config.yaml shows although they hold the schema default (what a reader looks for first)
SHOWN_AT_DEFAULT = {"run_name", "seed", "stages", "model.source", "cache.layers"}
# dataclass -> the keys of its section that other code reads (what its callers pass as read_elsewhere)
MIRRORS = {ToyWorldConfig: (), ToyModelConfig: (), SafetyTuneConfig: (), AbsorptionConfig: ABSORPTION_PROMPT_KEYS,
           MetaSAEConfig: (), ProbeConfig: (), TrainingConfig: tuple(per_sae_train_keys())}


def section_schema(section: str) -> dict[str, Any]:
    node = SCHEMA
    for key in section.split("."):
        node = node["properties"][key]
    return node["properties"]


def plain(value: Any) -> Any:
    """A dataclass default as YAML gives it (tuples are lists)."""
    return [plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def default(field: dataclasses.Field) -> Any:
    return field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default


@pytest.mark.parametrize("cls", MIRRORS, ids=lambda cls: cls.__name__)
def test_a_config_dataclass_has_its_schema_sections_keys_and_defaults(cls):
    keys, fields = section_schema(cls.section), {f.name: f for f in dataclasses.fields(cls)}
    extra = sorted(set(fields) - set(keys))
    assert not extra, f"{cls.__name__} fields that are no key of {cls.section}: {extra}"
    unread = sorted(set(keys) - set(fields) - set(MIRRORS[cls]))
    assert not unread, f"keys of {cls.section} that neither {cls.__name__} nor other code reads: {unread}"
    assert set(MIRRORS[cls]) <= set(keys), f"keys read elsewhere that are no key of {cls.section}"
    differ = {name: (plain(default(field)), keys[name].get("default")) for name, field in fields.items()
              if plain(default(field)) != keys[name].get("default")}
    assert not differ, f"{cls.__name__} default != schema default of {cls.section}: {differ}"


def test_a_key_the_dataclass_lacks_is_an_error_unless_read_elsewhere():
    cfg = section_dataclass(AbsorptionConfig, {"words": "vocab", "max_k": 3}, read_elsewhere=ABSORPTION_PROMPT_KEYS)
    assert cfg.max_k == 3
    with pytest.raises(ConfigError, match=r"config key features\.absorption\.max_kk: unknown key"):
        section_dataclass(AbsorptionConfig, {"max_kk": 3}, read_elsewhere=ABSORPTION_PROMPT_KEYS)


def keys_at_default(node: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> set[str]:
    """The dotted keys of ``node`` whose value is the schema default (a section that differs is searched)."""
    found = set()
    for key, value in node.items():
        entry = schema["properties"][key]
        if "default" in entry and value == entry["default"]:
            found.add(prefix + key)
        elif isinstance(value, dict) and "properties" in entry:
            found |= keys_at_default(value, entry, f"{prefix}{key}.")
    return found


def test_config_yaml_holds_what_differs_from_the_defaults_and_the_keys_it_shows():
    at_default = keys_at_default(yaml.safe_load((REPO_ROOT / "config.yaml").read_text()), SCHEMA)
    assert not (repeated := sorted(at_default - SHOWN_AT_DEFAULT)), f"config.yaml repeats schema defaults: {repeated}"
    assert not (changed := sorted(SHOWN_AT_DEFAULT - at_default)), f"keys shown at their default are not: {changed}"
