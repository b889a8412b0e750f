"""Batched greedy generation, the shared prefix of a batch run once, and windowed perplexity: shared by the model
card, steering and safety tune."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from tqdm import tqdm
from transformers import DynamicCache

from lmscalpel.models.chat import chat_prompt


@torch.no_grad()
def generate_greedy(model, tokenizer, prompts: Sequence[str], max_new_tokens: int, batch_size: int = 32,
                    chat: bool = True, desc: str = "generate") -> list[str]:
    """Greedy replies, left-padded batches; ``chat`` wraps each prompt in the tokenizer's chat template."""
    texts = [chat_prompt(tokenizer, p) if chat else p for p in prompts]
    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    replies: list[str] = []
    for start in tqdm(range(0, len(texts), batch_size), desc=desc, leave=False, mininterval=2):
        batch = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True,
                          add_special_tokens=False).to(device)
        out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        replies += tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    return replies


@torch.no_grad()
def windowed_perplexity(model, tokenizer, texts: Sequence[str], window: int, batch_size: int = 8,
                        add_bos: bool = True, max_windows: int | None = None) -> dict[str, float]:
    """Token-level perplexity over non-overlapping windows of the concatenated texts.

    Texts are joined with the EOS token (BOS first when ``add_bos``); the stream is cut into windows of
    ``window`` tokens (the first ``max_windows`` when given) and every token after the first of a window is scored.
    """
    ids: list[int] = [tokenizer.bos_token_id] if add_bos and tokenizer.bos_token_id is not None else []
    for text in texts:
        ids += tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    n = len(ids) // window if max_windows is None else min(len(ids) // window, max_windows)
    if n == 0:
        raise ValueError(f"{len(ids)} tokens are fewer than one perplexity window of {window}")
    blocks = torch.tensor(ids[: n * window]).view(n, window)
    device = next(model.parameters()).device
    nll, count = 0.0, 0
    for start in range(0, n, batch_size):
        batch = blocks[start:start + batch_size].to(device)
        logits = model(input_ids=batch).logits[:, :-1].float()
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1),
                                                 reduction="sum")
        nll += loss.item()
        count += batch[:, 1:].numel()
    return {"perplexity": math.exp(nll / count), "nll_per_token": nll / count, "tokens_scored": count,
            "windows": n, "window": window}


def shared_prefix(model, enc, keep: torch.Tensor):
    """Run the tokens every row of a left-padded batch starts with, and steering leaves alone (``keep`` False), once.

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

