"""Lazy re-exports for package ``__init__`` files (PEP 562).

Why: a stage's table and figure jobs import one light submodule, but an ``__init__`` that re-exports everything
drags in transformers, datasets and peft, seconds of start-up per Snakemake job.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """``__getattr__`` for ``package`` that imports ``package.<exports[name]>`` when ``name`` is first used."""
    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
    return __getattr__
