"""Batched greedy generation where every batch row carries its own steering vector and scale."""

from __future__ import annotations

from typing import Sequence

import torch
from tqdm import tqdm
from transformers import DynamicCache

from lmscalpel.steering.encoding import encode_prompts
from lmscalpel.steering.hook import skip_token_ids, steering


@torch.no_grad()
def generate_steered(model, tokenizer, prompts: Sequence[str], vectors: torch.Tensor, alphas: Sequence[float],
                     *, layer: int, max_new_tokens: int, batch_size: int = 64, chat: bool = True,
                     skip_tokens: str = "special") -> list[str]:
    """Greedy response of row i = (``prompts[i]``, ``vectors[i]``, ``alphas[i]``); α = 0 means unsteered.

    Prompts are raw user texts, chat-templated here unless ``chat`` is false (plain completions such as the toy
    arithmetic task); batches are left-padded, as the hook expects. ``skip_tokens``: see :func:`skip_token_ids`.
    The batch's common unsteered prefix (a chat template's system prompt) is run once: :func:`shared_prefix`.
    """
    if not (len(prompts) == len(vectors) == len(alphas)):
        raise ValueError(f"{len(prompts)} prompts, {len(vectors)} vectors, {len(alphas)} alphas: one each per row")
    device = next(model.parameters()).device
    skip = skip_token_ids(tokenizer, skip_tokens)
    responses: list[str] = []
    batches = range(0, len(prompts), batch_size)
    for start in tqdm(batches, desc="steered generation", mininterval=10, leave=False, disable=len(batches) < 2):
        stop = start + batch_size
        enc, keep = encode_prompts(tokenizer, prompts[start:stop], skip_tokens=skip_tokens, chat=chat, device=device)
        enc, keep, cache = shared_prefix(model, enc, keep)
        width = enc["input_ids"].shape[1]
        with steering(model, layer, vectors[start:stop], torch.as_tensor(alphas[start:stop]), skip_token_ids=skip,
                      prompt_keep=keep):
            out = model.generate(**enc, past_key_values=cache, max_new_tokens=max_new_tokens, do_sample=False,
                                 temperature=None, top_p=None, top_k=None, pad_token_id=tokenizer.pad_token_id)
        responses += tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
    return responses


def shared_prefix(model, enc, keep: torch.Tensor):
    """Run the tokens every row of a left-padded batch starts with, and steering leaves alone, once.

    Returns ``(enc, keep, cache)`` for ``generate``: ids laid out as [prefix | padding | rest of the row], the
    attention mask to match (position ids follow from it, so every token keeps its unpadded position), ``keep``
    for the uncached part only, and the prefix's key/value cache repeated over the batch; ``cache`` is None (and
    the batch unchanged) when there is no such prefix. A chat template's system prompt is most of a short request's
    tokens, and a CPU's prefill costs as much as the whole greedy reply.
    """
    ids, mask = enc["input_ids"], enc["attention_mask"].bool()
    lengths = mask.sum(1)
    rows = [ids[b, mask[b]] for b in range(len(ids))]
    kept = [keep[b, mask[b]] for b in range(len(ids))]
    n = int(lengths.min()) - 1  # the last prompt token must stay uncached: its logits start the reply
    for b in range(1, len(rows)):
        n = min(n, int((rows[b][:n] != rows[0][:n]).cumsum(0).eq(0).sum()))
    for row_keep in kept:
        n = min(n, int((~row_keep[:n]).cumsum(0).eq(torch.arange(1, n + 1, device=ids.device)).sum()))
    if n < 1:
        return enc, keep, None
    cache = DynamicCache(config=model.config)
    model(input_ids=rows[0][None, :n], past_key_values=cache, use_cache=True)
    cache.batch_repeat_interleave(len(rows))
    rest = [(r[n:], k[n:]) for r, k in zip(rows, kept)]
    width = max(len(r) for r, _ in rest)
    pad = int(ids[~mask][0]) if (~mask).any() else 0  # any id: padding is masked and never steered
    new_ids = torch.full((len(rows), n + width), pad, dtype=ids.dtype, device=ids.device)
    new_mask = torch.zeros_like(new_ids)
    new_keep = torch.zeros((len(rows), width), dtype=torch.bool, device=ids.device)
    new_ids[:, :n], new_mask[:, :n] = rows[0][:n], 1
    for b, (r, k) in enumerate(rest):
        new_ids[b, n + width - len(r):], new_mask[b, n + width - len(r):] = r, 1
        new_keep[b, width - len(r):] = k
    return {"input_ids": new_ids, "attention_mask": new_mask}, new_keep, cache

