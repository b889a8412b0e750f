"""A readable name of the configured model, without importing torch (report labels, SAE provenance)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def model_name(model_cfg: dict[str, Any]) -> str:
    """``model.id`` for hub models, the GGUF file name for ``model.source: gguf``, ``toy-llama`` for the toy."""
    if model_cfg.get("source") == "gguf":
        gguf = model_cfg.get("gguf") or {}
        return Path(gguf.get("path") or gguf.get("file") or "model.gguf").name
    return model_cfg.get("id") or "toy-llama"
