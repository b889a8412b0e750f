"""Registries by name (SAE architectures, pruning criteria and mitigations, unlearning methods, benchmarks and
their lm-eval tasks): one place that refuses a duplicate name and, on a miss, lists what is registered; and their
catalog, what the config schema and the plans take from them without importing them.

The catalog lists every registry of :data:`REGISTRIES` with what is registered (for the SAE architectures also their
settings and grid axes, ``lmscalpel.sae.architectures.catalog``). The config schema takes its enums from it and the
SAE plan its grid; a new entry reaches both through its registration alone. Building it imports the registering
modules, and with them torch (~1.5 s, more than half a dry run), so it is cached as JSON under the user's cache
directory, keyed by the source of those modules and of everything they import: an edit of any of them rebuilds it.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
from pathlib import Path
from typing import Any, TypeVar

from lmscalpel.fingerprint import source_fingerprint
from lmscalpel.io import write_text

T = TypeVar("T")

# Catalog name (the schema's ``x-registry``) -> "module:attribute": a registry or a collection of names, or a
# function returning {name: JSON description}. A base module may not import these, so they are imported by name.
REGISTRIES = {
    "sae_architectures": "lmscalpel.sae.architectures:catalog",
    "pruning_criteria": "lmscalpel.pruning.criteria:CRITERIA",
    "pruning_mitigations": "lmscalpel.pruning.mitigations:MITIGATIONS",
    "pruning_weight_methods": "lmscalpel.pruning.weight:WEIGHT_METHODS",
    "unlearning_methods": "lmscalpel.unlearning.losses:METHODS",
    "benchmarks": "lmscalpel.data.benchmarks:BENCHMARKS",
    "lm_eval_tasks": "lmscalpel.data.lm_eval_tasks:BENCHMARK_TASKS",
}


class Registry(dict[str, T]):
    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def add(self, name: str, obj: T) -> T:
        if name in self:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self[name] = obj
        return obj

    def lookup(self, name: str) -> T:
        try:
            return self[name]
        except KeyError:
            raise ValueError(f"unknown {self.kind} {name!r}; registered: {sorted(self)}") from None


@functools.cache
def catalog() -> dict[str, dict[str, Any]]:
    """{catalog name: {registered name: description or None}}, in registration order (see the module docstring)."""
    modules = sorted({target.split(":")[0] for target in REGISTRIES.values()} | {__name__})
    path = cache_dir() / f"registries-{source_fingerprint(*modules)}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    text = json.dumps({name: _entries(target) for name, target in REGISTRIES.items()})
    try:
        write_text(path, text)
    except OSError:  # a read-only home: build it every time
        pass
    return json.loads(text)  # the same values as a cached catalog (lists, not tuples)


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lmscalpel"


def _entries(target: str) -> dict[str, Any]:
    module, attribute = target.split(":")
    found = getattr(importlib.import_module(module), attribute)
    return found() if callable(found) else dict.fromkeys(found)
