"""Weight-pruning baselines at the same patterns: magnitude and Wanda (no weight update).

- ``magnitude``: N:M keeps the N largest |W_ij| in each group of M consecutive input columns of every output row;
  unstructured uses one threshold per layer (the k-th largest |W| of the whole matrix), as the paper's code.
- ``wanda`` (Sun et al., arXiv:2306.11695, ``locuslab/wanda`` ``prune_wanda``): S_ij = |W_ij| * ||X_j||_2 over all
  calibration tokens, compared within each output row (N:M per group of M columns, unstructured per row).
  Layer-wise sequential: after pruning block l, the calibration inputs of block l+1 are recomputed.
"""

from __future__ import annotations

import contextlib
from typing import Iterable, Iterator

import torch

from lmscalpel.models import decoder_layers
from lmscalpel.pruning.blocks import BlockInput, capture_block_inputs, run_block
from lmscalpel.pruning.masks import Pattern, keep_mask, parse_pattern
from lmscalpel.pruning.pruner import DEFAULT_TARGETS, find_target_modules, module_weight

WEIGHT_METHODS = ("magnitude", "wanda")


def magnitude_weight_mask(weight: torch.Tensor, pattern: str | Pattern) -> torch.Tensor:
    pattern = parse_pattern(pattern)
    scores = weight.detach().abs()
    if pattern.is_unstructured:
        return keep_mask(scores.reshape(1, -1), pattern).reshape(weight.shape)
    return keep_mask(scores, pattern)


def wanda_weight_mask(weight: torch.Tensor, input_norm: torch.Tensor, pattern: str | Pattern) -> torch.Tensor:
    """Keep-mask from S_ij = |W_ij| * ||X_j||, compared within each output row."""
    scores = weight.detach().abs().float() * input_norm.float().to(weight.device)[None, :]
    return keep_mask(scores, pattern)


def _prune_magnitude(modules: dict[str, torch.nn.Module], pattern) -> dict[str, torch.Tensor]:
    masks = {}
    for name, module in modules.items():
        weight = module_weight(module)
        masks[name] = magnitude_weight_mask(weight, pattern)
        weight.data.mul_(masks[name])
    return masks


def _prune_wanda(model, modules, pattern, windows: torch.Tensor, batch_size: int) -> dict[str, torch.Tensor]:
    names = {id(m): n for n, m in model.named_modules()}
    inputs = capture_block_inputs(model, windows, batch_size)
    masks = {}
    for block in decoder_layers(model):
        prefix = names[id(block)] + "."
        block_modules = {n: m for n, m in modules.items() if n.startswith(prefix)}
        sumsq = {n: torch.zeros(module_weight(m).shape[1], dtype=torch.float64) for n, m in block_modules.items()}

        def record(name):
            def hook(module, args):
                x = args[0].detach().reshape(-1, args[0].shape[-1]).double()
                sumsq[name] += x.pow(2).sum(dim=0).cpu()
            return hook

        handles = [m.register_forward_pre_hook(record(n)) for n, m in block_modules.items()]
        try:
            with torch.no_grad():
                for item in inputs:
                    run_block(block, item)
        finally:
            for handle in handles:
                handle.remove()
        for name, module in block_modules.items():
            weight = module_weight(module)
            masks[name] = wanda_weight_mask(weight, sumsq[name].sqrt(), pattern)
            weight.data.mul_(masks[name])
        with torch.no_grad():
            inputs = [BlockInput(run_block(block, item), item.kwargs) for item in inputs]
    return masks


@contextlib.contextmanager
def weight_pruning(model: torch.nn.Module, pattern: str | Pattern = "2:4", method: str = "magnitude",
                   targets: Iterable[str] = DEFAULT_TARGETS, calibration: torch.Tensor | None = None, *,
                   layers: Iterable[int] | None = None, batch_size: int = 8) -> Iterator[dict[str, torch.Tensor]]:
    """Zero the pruned weights while the block runs (yields the keep-masks); the original weights come back after.

    ``calibration`` (LongTensor [n, seqlen]) is required for ``wanda``.
    """
    pattern = parse_pattern(pattern)
    modules = find_target_modules(model, targets, layers)
    originals = {name: module_weight(m).detach().clone() for name, m in modules.items()}
    try:
        with torch.no_grad():
            if method == "magnitude":
                masks = _prune_magnitude(modules, pattern)
            elif method == "wanda":
                if calibration is None:
                    raise ValueError("Wanda weight pruning needs calibration windows (config key "
                                     "pruning.calibration)")
                masks = _prune_wanda(model, modules, pattern, calibration, batch_size)
            else:
                raise ValueError(f"unknown weight-pruning method {method!r}; expected one of {WEIGHT_METHODS}")
        yield masks
    finally:
        with torch.no_grad():
            for name, module in modules.items():
                module_weight(module).data.copy_(originals[name])
