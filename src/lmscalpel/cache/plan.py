"""What the activation cache reads, from the validated config (every run caches; the SAE stage trains on it)."""

from __future__ import annotations

from typing import Any


def reads_toyworld(config: dict[str, Any]) -> bool:
    """The cache reads the toy world's corpus (and SAE core metrics its held-out narrative)."""
    return config["cache"]["dataset"]["path"] == "toyworld"


def toyworld_keys(config: dict[str, Any]) -> list[str]:
    return ["cache.dataset.path"] if reads_toyworld(config) else []


def layer_keys(config: dict[str, Any]) -> dict[str, list[int]]:
    """{config key: the blocks it names} of the cache, checked against the model's depth."""
    return {"cache.layers": config["cache"]["layers"]}


def cached_sequences(config: dict[str, Any]) -> int:
    """An upper bound of the sequences the cache packs from its dataset: evaluation past them is held out."""
    cache = config["cache"]
    return cache["n_tokens"] // cache["context_length"] + 1
