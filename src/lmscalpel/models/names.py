"""A readable name of the configured model, without importing torch (report labels, SAE provenance)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmscalpel.models.gguf import part_specs


def model_name(model_cfg: dict[str, Any]) -> str:
    """``model.id`` for hub models, ``model.gguf.name`` or the GGUF file name (a split source's first distribution)
    for ``model.source: gguf``, ``toy-llama`` for the toy."""
    if model_cfg.get("source") == "gguf":
        gguf = model_cfg.get("gguf") or {}
        if gguf.get("name"):
            return gguf["name"]
        if gguf.get("parts"):
            return part_specs(gguf)[0]["distribution"]
        return Path(gguf.get("path") or gguf.get("file") or "model.gguf").name
    return model_cfg.get("id") or "toy-llama"
