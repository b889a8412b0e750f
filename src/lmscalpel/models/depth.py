"""The model's depth (its decoder blocks) while planning, and the one message for a config key naming a block the
model does not have: refused before any job where planning knows the depth, else by the job that loads the model.

Torch-free: the Snakefile checks every layer key when it parses the config.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Iterable, Mapping

from lmscalpel.models.gguf import gguf_num_layers, gguf_parts


@functools.lru_cache(maxsize=None)
def _gguf_depth(gguf_json: str) -> tuple[int, str]:
    gguf_cfg = json.loads(gguf_json)
    parts = gguf_parts(gguf_cfg)
    return gguf_num_layers([part.path for part in parts]), f"{gguf_cfg.get('name') or parts[0].path.name} (its header)"


def planned_depth(config: dict[str, Any]) -> tuple[int, str] | None:
    """(L, the model it counts) when planning knows the depth cheaply: ``toy_model.num_hidden_layers`` for the toy
    model, a GGUF file's header; None for a hub model (asking the hub while planning fails on offline nodes)."""
    model = config["model"]
    if model["source"] == "toy":
        return config["toy_model"]["num_hidden_layers"], "the toy model (toy_model.num_hidden_layers)"
    if model["source"] == "gguf":
        return _gguf_depth(json.dumps(model["gguf"], sort_keys=True))
    return None


def layer_problems(layer_keys: Mapping[str, Iterable[int]], depth: int, model: str) -> list[str]:
    """One line per block of ``{config key: the blocks it names}`` beyond a model of ``depth`` blocks."""
    return [f"config key {key}: block {layer} is beyond the {depth} blocks (0-{depth - 1}) of {model}"
            for key, layers in layer_keys.items() for layer in layers if layer >= depth]


def planned_layer_problems(config: dict[str, Any], layer_keys: Mapping[str, Iterable[int]]) -> list[str]:
    """:func:`layer_problems` against the :func:`planned_depth`; none when planning does not know it."""
    depth = planned_depth(config)
    return layer_problems(layer_keys, *depth) if depth else []
