"""Calibrated mitigations: static shifts (S-PTS) and layer-wise learned shifts (L-PTS and variants).

Both are computed once on calibration windows and stored as safetensors files (keys ``<module>::<param>``, with
provenance in the metadata) so every evaluation cell reuses them.

S-PTS: one scalar eta per linear layer = mean over calibration tokens of the per-token median of the layer's
*dense* input. The paper's code instead averages over the first 100 forward calls of the pruned model; computing it
on dense inputs makes it independent of pattern and criterion, so one file serves the whole grid (project default).

Learnable: by-layer training as the paper's ``finetuning.type = by_layers``: for each decoder block, MSE between
the pruned block's output and the dense block's output on the same (densely propagated) inputs; AdamW over the
learnable parameters only, betas (0.9, 0.95), linear schedule with warm-up, gradient clipping, batch 1 by default.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import asdict
from typing import Iterable, Mapping

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from lmscalpel.checkpoint import model_identity, open_checkpoint, tensor_identity
from lmscalpel.io import atomic_path
from lmscalpel.models import decoder_layers
from lmscalpel.pruning.blocks import BlockInput, capture_block_inputs, run_block
from lmscalpel.pruning.mitigations import get_mitigation
from lmscalpel.pruning.patterns import parse_pattern
from lmscalpel.pruning.pruner import DEFAULT_TARGETS, ActivationPruning, ModuleParams, find_target_modules, module_weight

log = logging.getLogger(__name__)


def compute_spts(model: torch.nn.Module, windows: torch.Tensor, *, targets: Iterable[str] = DEFAULT_TARGETS,
                 layers: Iterable[int] | None = None, batch_size: int = 8) -> ModuleParams:
    """Static per-layer shift: mean over calibration tokens of median_j x_tj, from one dense pass."""
    modules = find_target_modules(model, targets, layers)
    sums = {name: torch.zeros((), dtype=torch.float64) for name in modules}
    counts = dict.fromkeys(modules, 0)

    def record(name):
        def hook(module, args):
            x = args[0].detach().reshape(-1, args[0].shape[-1])
            sums[name] += x.float().median(dim=-1).values.double().sum().cpu()
            counts[name] += x.shape[0]
        return hook

    handles = [module.register_forward_pre_hook(record(name)) for name, module in modules.items()]
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            for start in range(0, windows.shape[0], batch_size):
                model(input_ids=windows[start:start + batch_size].to(device), use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    return {name: {"eta": (sums[name] / max(counts[name], 1)).float()} for name in modules}


def init_learnable(modules: Mapping[str, torch.nn.Module], mitigation: str) -> ModuleParams:
    """Zero-initialised trainable parameters for every target module."""
    shapes = get_mitigation(mitigation).param_shapes
    if not shapes:
        raise ValueError(f"mitigation {mitigation!r} has no learnable parameters")
    params: ModuleParams = {}
    for name, module in modules.items():
        weight = module_weight(module)
        sizes = {"in": weight.shape[1], "out": weight.shape[0]}
        params[name] = {key: torch.zeros(sizes[side], device=weight.device, requires_grad=True)
                        for key, side in shapes}
    return params


def _linear_warmup_decay(total: int, warmup_fraction: float):
    warmup = max(1, math.ceil(total * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def train_learnable(model: torch.nn.Module, windows: torch.Tensor, *, pattern, criterion: str = "magnitude",
                    mitigation: str = "learnable", targets: Iterable[str] = DEFAULT_TARGETS,
                    layers: Iterable[int] | None = None, criterion_options: Mapping | None = None,
                    lr: float = 1e-4, steps: int | None = None, batch_size: int = 1, weight_decay: float = 0.0,
                    warmup_fraction: float = 0.03, grad_clip: float = 1.0, history: list | None = None,
                    checkpoint_dir: str | os.PathLike | None = None) -> ModuleParams:
    """Train the mitigation's parameters block by block; ``steps`` per block (default: one epoch of windows).

    ``history`` (if given) receives one dict per block with the first and last training loss. With
    ``checkpoint_dir`` every finished block is saved there and skipped by a rerun of the same arguments, model
    files and windows (``lmscalpel.checkpoint``; dense propagation makes the later blocks independent of how the
    earlier ones were trained).
    """
    resume_key = {"model": model_identity(model), "windows": tensor_identity(windows),
                  "pattern": asdict(parse_pattern(pattern)), "criterion": criterion, "mitigation": mitigation,
                  "targets": list(targets), "layers": None if layers is None else list(layers),
                  "criterion_options": criterion_options, "lr": lr, "steps": steps, "batch_size": batch_size,
                  "weight_decay": weight_decay, "warmup_fraction": warmup_fraction, "grad_clip": grad_clip}
    modules = find_target_modules(model, targets, layers)
    params = init_learnable(modules, mitigation)
    pruning = ActivationPruning(model, pattern, criterion, mitigation, targets, layers, params, criterion_options)
    weights = [p for p in model.parameters()]
    grad_flags = [p.requires_grad for p in weights]
    for p in weights:
        p.requires_grad_(False)
    names = {id(m): n for n, m in model.named_modules()}
    inputs = capture_block_inputs(model, windows, batch_size)
    with open_checkpoint(checkpoint_dir, resume_key, what="pruning.learnable") as ckpt:
        pruning.install()
        try:
            for index, block in enumerate(decoder_layers(model)):
                prefix = names[id(block)] + "."
                block_params = [p for name in modules if name.startswith(prefix) for p in params[name].values()]
                pruning.enabled = False
                with torch.no_grad():
                    dense = [run_block(block, item) for item in inputs]
                done = f"block{index}.pt"
                if block_params and ckpt and ckpt.exists(done):
                    _restore_block(params, ckpt.load_state(done))
                    log.info("learnable %s block %d: restored from %s", mitigation, index, ckpt.path(done))
                elif block_params:
                    losses = _fit_block(block, inputs, dense, block_params, pruning, lr=lr,
                                        steps=steps or len(inputs), weight_decay=weight_decay,
                                        warmup_fraction=warmup_fraction, grad_clip=grad_clip)
                    log.info("learnable %s block %d: loss %.4g -> %.4g", mitigation, index, losses[0], losses[-1])
                    if history is not None:
                        history.append({"block": index, "first_loss": losses[0], "last_loss": losses[-1]})
                    if ckpt:
                        ckpt.save_state({n: params[n] for n in modules if n.startswith(prefix)}, done)
                inputs = [BlockInput(out, item.kwargs) for out, item in zip(dense, inputs)]
        finally:
            pruning.remove()
            for p, flag in zip(weights, grad_flags):
                p.requires_grad_(flag)
    return {name: {key: value.detach().clone() for key, value in entry.items()} for name, entry in params.items()}


def _restore_block(params: ModuleParams, saved: ModuleParams) -> None:
    with torch.no_grad():
        for name, entry in saved.items():
            for key, value in entry.items():
                params[name][key].copy_(value)


def _fit_block(block, inputs, dense, block_params, pruning, *, lr, steps, weight_decay, warmup_fraction,
               grad_clip) -> list[float]:
    optimizer = torch.optim.AdamW(block_params, lr=lr, betas=(0.9, 0.95), weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _linear_warmup_decay(steps, warmup_fraction))
    pruning.enabled = True
    losses = []
    with torch.enable_grad():
        for step in range(steps):
            item = inputs[step % len(inputs)]
            loss = torch.nn.functional.mse_loss(run_block(block, item).float(), dense[step % len(inputs)].float())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(block_params, grad_clip)
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
    return losses


def save_params(path: str | os.PathLike, params: ModuleParams, metadata: Mapping[str, object]) -> None:
    """Write ``{module: {param: tensor}}`` as safetensors with string metadata (atomic)."""
    flat = {f"{name}::{key}": value.detach().contiguous().cpu() for name, entry in params.items()
            for key, value in entry.items()}
    with atomic_path(path) as tmp:
        save_file(flat, str(tmp), metadata={k: str(v) for k, v in metadata.items()})


def load_params(path: str | os.PathLike, expect: Mapping[str, object] | None = None) -> ModuleParams:
    """Read a file from ``save_params``; ``expect`` lists metadata values that must match."""
    params: ModuleParams = {}
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
        for key, value in (expect or {}).items():
            if metadata.get(key) != str(value):
                raise ValueError(f"{path}: calibrated for {key}={metadata.get(key)!r}, not {value!r}")
        for flat in handle.keys():
            name, key = flat.rsplit("::", 1)
            params.setdefault(name, {})[key] = handle.get_tensor(flat)
    return params
