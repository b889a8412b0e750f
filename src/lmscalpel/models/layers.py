"""Find decoder blocks in HF causal LMs (Llama, Qwen, Gemma, Mistral, LLaVA's language model)."""

from __future__ import annotations

import torch


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


def residual_module(model: torch.nn.Module, layer: int) -> torch.nn.Module:
    """The block whose output is the residual stream after layer ``layer`` (0-based; negative counts from the end)."""
    layers = decoder_layers(model)
    if not -len(layers) <= layer < len(layers):
        raise ValueError(f"layer {layer} out of range for a model with {len(layers)} blocks")
    return layers[layer]
