"""Find decoder blocks in HF causal LMs (Llama, Qwen, Gemma, Mistral, LLaVA's language model)."""

from __future__ import annotations

from typing import Iterable, Mapping

import torch

from lmscalpel.models.depth import layer_problems


def find_submodule(model: torch.nn.Module, paths: tuple[str, ...], kind: type = torch.nn.Module):
    """The first of ``paths`` that exists in ``model`` and is a ``kind``; None when none does (architectures name
    the same part differently: Llama, LLaVA's language model, GPT-2, GPT-NeoX)."""
    for path in paths:
        try:
            module = model.get_submodule(path)
        except AttributeError:
            continue
        if isinstance(module, kind):
            return module
    return None


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The list of decoder blocks; block ``l``'s output is ``hidden_states[l + 1]``."""
    layers = find_submodule(model, ("model.layers", "model.language_model.layers", "language_model.model.layers",
                                    "model.language_model.model.layers", "transformer.h", "gpt_neox.layers"),
                            torch.nn.ModuleList)
    if layers is None:
        raise ValueError(f"cannot find decoder layers in {type(model).__name__}")
    return layers


def num_layers(model: torch.nn.Module) -> int:
    return len(decoder_layers(model))


def check_blocks(model: torch.nn.Module, layer_keys: Mapping[str, Iterable[int]]) -> None:
    """Raise naming the config key when a block of ``{config key: blocks}`` is beyond the loaded model: planning
    cannot know a hub model's depth (:func:`lmscalpel.models.depth.planned_depth`), so its jobs check it first."""
    name = getattr(model.config, "name_or_path", "") or type(model).__name__
    if problems := layer_problems(layer_keys, num_layers(model), name):
        raise ValueError("; ".join(problems))


def residual_module(model: torch.nn.Module, layer: int) -> torch.nn.Module:
    """The block whose output is the residual stream after layer ``layer`` (0-based; negative counts from the end)."""
    layers = decoder_layers(model)
    if not -len(layers) <= layer < len(layers):
        raise ValueError(f"layer {layer} out of range for a model with {len(layers)} blocks")
    return layers[layer]
