"""Config schema: the default config and presets validate; bad input is named by key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from lmscalpel.config import ConfigError, check_config, effective_schema, fill_defaults
from lmscalpel.pruning.criteria import CRITERIA

from conftest import REPO_ROOT, SCHEMA_PATH

SCHEMA = effective_schema(SCHEMA_PATH)


def default_config() -> dict:
    return yaml.safe_load((REPO_ROOT / "config.yaml").read_text())


def merged(overrides: dict) -> dict:
    """Presets merge over config.yaml, as `--configfile` does."""
    def merge(base, extra):
        for key, value in extra.items():
            base[key] = merge(base.get(key, {}), value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
        return base
    return merge(default_config(), copy.deepcopy(overrides))


def test_default_config_is_valid():
    check_config(default_config(), SCHEMA)


@pytest.mark.parametrize("preset", sorted((REPO_ROOT / "presets").glob("*.yaml")), ids=lambda p: p.stem)
def test_presets_are_valid(preset: Path):
    check_config(merged(yaml.safe_load(preset.read_text())), SCHEMA)


@pytest.mark.parametrize("overrides, message", [
    ({"toy_model": {"hidden_sise": 3}}, r"config key toy_model\.hidden_sise: unknown key; allowed keys here: .*hidden_size"),
    ({"typo_section": 1}, r"config key typo_section: unknown key"),
    ({"cache": {"hook": "resid_pre"}}, r"config key cache\.hook: 'resid_pre' is not allowed; allowed: 'resid_post', 'mlp_in'"),
    ({"toy_model": {"steps": "many"}}, r"config key toy_model\.steps: expected integer"),
    ({"cache": {"n_tokens": 5}}, r"config key cache\.n_tokens: 5 is less than the minimum of 1000"),
    ({"model": {"source": "hub"}}, r"config key model"),
    ({"run_name": "a b"}, r"config key run_name"),
    ({"run_name": "."}, r"config key run_name"),
    ({"run_name": ".."}, r"config key run_name"),
    ({"run_name": ".hidden"}, r"config key run_name"),
    ({"pruning": {"criteria": ["magnitud"]}}, r"config key pruning\.criteria\.0: 'magnitud' is not allowed; "
                                              r"allowed: .*'magnitude'"),
])
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        check_config(merged(overrides), SCHEMA)


def test_registry_nodes_allow_exactly_the_registered_names():
    criteria = SCHEMA["properties"]["pruning"]["properties"]["criteria"]["items"]
    assert criteria["enum"] == list(CRITERIA)


@pytest.mark.parametrize("preset", [REPO_ROOT / "config.yaml", *sorted((REPO_ROOT / "presets").glob("*.yaml"))],
                         ids=lambda p: p.stem)
def test_defaults_fill_in_as_snakemakes_validate_does(preset: Path, tmp_path):
    from snakemake.utils import validate

    ours, theirs = merged(yaml.safe_load(preset.read_text())), merged(yaml.safe_load(preset.read_text()))
    fill_defaults(ours, SCHEMA)
    (tmp_path / "schema.yaml").write_text(yaml.safe_dump(SCHEMA))
    validate(theirs, str(tmp_path / "schema.yaml"))
    assert ours == theirs
