"""Layer-by-layer replay of decoder blocks on calibration windows (used by Wanda and the learnable shifts).

The inputs of block 0 are captured once from a real forward (with whatever keyword arguments the model passes:
position embeddings, masks...), then each block is run on its own, as Wanda's and the paper's by-layer code do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import torch

from lmscalpel.models import decoder_layers


class _StopForward(Exception):
    pass


@dataclass
class BlockInput:
    """Hidden states entering a block for one calibration batch, plus the other arguments the model passed."""

    hidden: torch.Tensor
    kwargs: dict[str, Any]


def batches(windows: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    for start in range(0, windows.shape[0], batch_size):
        yield windows[start:start + batch_size]


def capture_block_inputs(model: torch.nn.Module, windows: torch.Tensor, batch_size: int) -> list[BlockInput]:
    """Run the embedding part of the model and stop at block 0, keeping its inputs per batch."""
    first = decoder_layers(model)[0]
    captured: list[BlockInput] = []

    def catch(module, args, kwargs):
        hidden = args[0] if args else kwargs.pop("hidden_states")
        captured.append(BlockInput(hidden.detach(), dict(kwargs)))
        raise _StopForward

    handle = first.register_forward_pre_hook(catch, with_kwargs=True)
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            for batch in batches(windows, batch_size):
                try:
                    model(input_ids=batch.to(device), use_cache=False)
                except _StopForward:
                    pass
    finally:
        handle.remove()
    return captured


def run_block(block: torch.nn.Module, item: BlockInput, hidden: torch.Tensor | None = None) -> torch.Tensor:
    """Apply one decoder block; ``hidden`` overrides the captured hidden states."""
    out = block(item.hidden if hidden is None else hidden, **item.kwargs)
    return out[0] if isinstance(out, tuple) else out
