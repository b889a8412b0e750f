"""Token-level perplexity over fixed windows (the WikiText protocol of Wanda, SparseGPT and the paper).

Window loss = mean next-token cross-entropy over its seqlen - 1 predictions; PPL = exp(mean of window losses).
lm-eval's ``wikitext`` task reports word/byte perplexity over documents instead, a different number.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


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
