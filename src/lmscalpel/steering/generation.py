"""Batched greedy generation where every batch row carries its own steering vector and scale."""

from __future__ import annotations

from typing import Sequence

import torch
from tqdm import tqdm

from lmscalpel.models.generation import shared_prefix
from lmscalpel.models.intervention import skip_token_ids, steering
from lmscalpel.steering.encoding import encode_prompts


@torch.no_grad()
def generate_steered(model, tokenizer, prompts: Sequence[str], vectors: torch.Tensor, alphas: Sequence[float],
                     *, layer: int, max_new_tokens: int, batch_size: int = 64, chat: bool = True,
                     skip_tokens: str = "special") -> list[str]:
    """Greedy response of row i = (``prompts[i]``, ``vectors[i]``, ``alphas[i]``); α = 0 means unsteered.

    Prompts are raw user texts, chat-templated here unless ``chat`` is false (plain completions such as the toy
    arithmetic task); batches are left-padded, as the hook expects. ``skip_tokens``: see :func:`skip_token_ids`.
    The batch's common unsteered prefix (a chat template's system prompt) is run once
    (:func:`lmscalpel.models.generation.shared_prefix`).
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
