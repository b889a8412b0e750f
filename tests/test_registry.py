"""The shared name registry: duplicates refused, misses list what exists; the catalog of every registry."""

import pytest

from lmscalpel.registry import Registry


def test_duplicate_refused_and_miss_lists_registered():
    reg = Registry("widget")
    assert reg.add("a", 1) == 1 and reg.lookup("a") == 1
    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        reg.add("a", 2)
    with pytest.raises(ValueError, match=r"unknown widget 'b'; registered: \['a'\]"):
        reg.lookup("b")


def test_catalog_is_cached_per_source_and_rebuilt_when_unreadable(tmp_path, monkeypatch):
    from lmscalpel import registry
    from lmscalpel.pruning.criteria import CRITERIA

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    registry.catalog.cache_clear()
    built = registry.catalog()
    [cached] = (tmp_path / "lmscalpel").glob("registries-*.json")
    assert list(built["pruning_criteria"]) == list(CRITERIA)
    registry.catalog.cache_clear()
    assert registry.catalog() == built
    cached.write_text("{truncated")
    registry.catalog.cache_clear()
    assert registry.catalog() == built
    registry.catalog.cache_clear()
