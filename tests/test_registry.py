"""The shared name registry: duplicates refused, misses list what exists."""

import pytest

from lmscalpel.registry import Registry


def test_duplicate_refused_and_miss_lists_registered():
    reg = Registry("widget")
    assert reg.add("a", 1) == 1 and reg.lookup("a") == 1
    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        reg.add("a", 2)
    with pytest.raises(ValueError, match=r"unknown widget 'b'; registered: \['a'\]"):
        reg.lookup("b")
