"""Residual-stream activations of the model, computed once per (layer, dataset) and reused by every SAE.

Texts are stored ragged (``acts`` [total tokens, d] + ``offsets`` [N + 1]) with BOS/pad/EOS and other special tokens
dropped, which is SAEBench's masking for mean-pooled probes (spec §8).
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from lmscalpel.io import atomic_path
from lmscalpel.models import residual_module


class _StopForward(Exception):
    """Raised by the hook: nothing after the read layer is needed."""


def tokenize(tokenizer, texts: Sequence[str], max_length: int, prepend_bos: bool,
             keep_end: bool = False) -> list[dict]:
    """Per text: ``ids`` and character ``offsets``; BOS prepended when the tokenizer does not add it itself.

    Texts longer than ``max_length`` lose their end, or with ``keep_end`` their beginning after BOS (spelling
    prompts: the read position is at the end, the in-context examples before it are expendable).
    """
    out = []
    bos = tokenizer.bos_token_id
    for text in texts:
        enc = tokenizer(text, add_special_tokens=True, return_offsets_mapping=True)
        ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
        if prepend_bos and bos is not None and (not ids or ids[0] != bos):
            ids, offsets = [bos] + ids, [(0, 0)] + offsets
        if len(ids) > max_length and keep_end:
            head = 1 if ids[0] == bos else 0
            ids = ids[:head] + ids[len(ids) - (max_length - head):]
            offsets = offsets[:head] + offsets[len(offsets) - (max_length - head):]
        out.append({"ids": ids[:max_length], "offsets": offsets[:max_length]})
    return out


@torch.no_grad()
def residual_batches(model, tokenizer, encoded: list[dict], layer: int,
                     batch_size: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """Yield ``(start, hidden [B, T, d] float32 on CPU, attention mask [B, T])``: the output of block ``layer``."""
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    captured: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        captured.append(output[0] if isinstance(output, tuple) else output)
        raise _StopForward

    handle = residual_module(model, layer).register_forward_hook(hook)
    try:
        for start in tqdm(range(0, len(encoded), batch_size), desc=f"block {layer} activations", mininterval=5,
                          leave=False):
            chunk = encoded[start:start + batch_size]
            width = max(len(e["ids"]) for e in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for i, e in enumerate(chunk):
                ids[i, :len(e["ids"])] = torch.tensor(e["ids"])
                mask[i, :len(e["ids"])] = 1
            captured.clear()
            try:
                model(input_ids=ids.to(device), attention_mask=mask.to(device))
            except _StopForward:
                pass
            yield start, captured[0].float().cpu(), mask
    finally:
        handle.remove()


def text_activations(model, tokenizer, texts: Sequence[str], layer: int, batch_size: int, max_length: int,
                     prepend_bos: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Ragged per-token residuals of ``texts`` without special tokens: ``(acts [T, d], offsets [N + 1])``."""
    encoded = tokenize(tokenizer, texts, max_length, prepend_bos)
    special = set(tokenizer.all_special_ids)
    pieces, lengths = [], []
    for start, hidden, _ in residual_batches(model, tokenizer, encoded, layer, batch_size):
        for i, e in enumerate(encoded[start:start + hidden.shape[0]]):
            keep = torch.tensor([t not in special for t in e["ids"]], dtype=torch.bool)
            if not keep.any():
                raise ValueError(f"text {start + i} has only special tokens after truncation")
            pieces.append(hidden[i, :len(e["ids"])][keep])
            lengths.append(int(keep.sum()))
    offsets = torch.zeros(len(lengths) + 1, dtype=torch.long)
    offsets[1:] = torch.cumsum(torch.tensor(lengths, dtype=torch.long), 0)
    return torch.cat(pieces), offsets


def position_activations(model, tokenizer, texts: Sequence[str], char_ends: Sequence[int], layer: int,
                         batch_size: int, max_length: int, prepend_bos: bool = True) -> torch.Tensor:
    """Residual at the token that ends at character ``char_ends[i]`` of each text (the spelled word's last token).

    Found from the offsets instead of a fixed −6 so it holds for any tokenizer (spec §5: recheck per tokenizer).
    A causal model's residual at that token does not depend on the tokens after it, so each text is run only up to
    it, in batches of similar length (SAEBench's spelling prompts: ~7 % fewer tokens and little padding).
    """
    encoded = tokenize(tokenizer, texts, max_length, prepend_bos, keep_end=True)
    positions = [_token_ending_at(e["offsets"], end, text) for e, end, text in zip(encoded, char_ends, texts)]
    order = sorted(range(len(encoded)), key=lambda i: positions[i])
    cut = [{"ids": encoded[i]["ids"][:positions[i] + 1]} for i in order]
    picked = {}
    for start, hidden, _ in residual_batches(model, tokenizer, cut, layer, batch_size):
        chunk = order[start:start + hidden.shape[0]]
        idx = torch.tensor([positions[i] for i in chunk])
        picked.update(zip(chunk, hidden[torch.arange(len(chunk)), idx]))
    return torch.stack([picked[i] for i in range(len(encoded))])


def _token_ending_at(offsets: list[tuple[int, int]], end: int, text: str) -> int:
    for pos, (lo, hi) in enumerate(offsets):
        if lo < end <= hi:
            return pos
    raise ValueError(f"no token ends at character {end} of {text!r}")


def pool(acts: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Mean over each text's tokens: [N, d]."""
    lengths = offsets[1:] - offsets[:-1]
    segment = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
    sums = torch.zeros(len(lengths), acts.shape[1], dtype=torch.float32).index_add_(0, segment, acts.float())
    return sums / lengths[:, None].float()


@torch.no_grad()
def pooled_latents(sae, acts: torch.Tensor, offsets: torch.Tensor,
                   batch_tokens: int = 8192) -> tuple[torch.Tensor, float]:
    """Mean over each text's tokens of ``sae.encode(x_t)`` [N, m], and the SAE's L0 on these tokens."""
    lengths = offsets[1:] - offsets[:-1]
    segment = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
    total, active = None, 0.0
    for start in range(0, acts.shape[0], batch_tokens):
        f = sae.encode(acts[start:start + batch_tokens]).float().cpu()
        if total is None:
            total = torch.zeros(len(lengths), f.shape[1])
        total.index_add_(0, segment[start:start + batch_tokens], f)
        active += float((f != 0).sum())
    return total / lengths[:, None].float(), active / acts.shape[0]


def save_tensors(path, tensors: dict[str, torch.Tensor], dtype: torch.dtype = torch.float32) -> None:
    """Atomic safetensors write; float tensors cast to ``dtype`` (``features.activation_dtype``)."""
    cast = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(cast, str(tmp))


def load_tensors(path) -> dict[str, torch.Tensor]:
    """Float tensors come back as float32 whatever the stored dtype."""
    return {k: (v.float() if v.is_floating_point() else v) for k, v in load_file(str(path)).items()}
