"""Token-level perplexity over fixed windows (the WikiText protocol of Wanda, SparseGPT and the paper).

Window loss = mean next-token cross-entropy over its seqlen - 1 predictions; PPL = exp(mean of window losses).
lm-eval's ``wikitext`` task reports word/byte perplexity over documents instead, a different number.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lmscalpel.pruning.pruner import find_target_modules


def window_nlls(model: torch.nn.Module, windows: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
    """Mean next-token NLL of every window (float64, on CPU)."""
    device = next(model.parameters()).device
    losses = []
    with torch.no_grad():
        for start in range(0, windows.shape[0], batch_size):
            batch = windows[start:start + batch_size].to(device)
            logits = model(input_ids=batch, use_cache=False).logits[:, :-1].float()
            nll = F.cross_entropy(logits.transpose(1, 2), batch[:, 1:], reduction="none")
            losses.append(nll.mean(dim=1).double().cpu())
    return torch.cat(losses)


def perplexity(nlls: torch.Tensor) -> float:
    return math.exp(float(nlls.mean()))


def input_kurtosis(model: torch.nn.Module, windows: torch.Tensor, targets) -> dict[str, float]:
    """Kurtosis (E[x^4] / E[x^2]^2 over all entries) of the inputs of each target kind, averaged over layers.

    Why: magnitude activation pruning keeps most of a heavy-tailed input (LLM inputs have outlier channels,
    kurtosis well above 3, the Gaussian value) but loses much of a flat one (uniform: 1.8), so this tells whether
    a model is in the regime where activation pruning can beat weight pruning.
    """
    modules = find_target_modules(model, targets)
    moments: dict[str, list[float]] = {}

    def record(name):
        def hook(module, args):
            x = args[0].detach().double()
            kind = name.rsplit(".", 1)[-1]
            moments.setdefault(kind, []).append(float(x.pow(4).mean() / x.pow(2).mean().pow(2)))
        return hook

    handles = [module.register_forward_pre_hook(record(name)) for name, module in modules.items()]
    try:
        with torch.no_grad():
            model(input_ids=windows.to(next(model.parameters()).device), use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    return {kind: sum(values) / len(values) for kind, values in sorted(moments.items())}
