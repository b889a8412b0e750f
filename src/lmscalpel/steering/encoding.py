"""Prompts as the steering hook sees them: chat-templated, left-padded, with the mask of the positions it steers."""

from __future__ import annotations

from typing import Sequence

import torch

from lmscalpel.models.chat import chat_prompt
from lmscalpel.models.intervention import skip_token_ids


def encode_prompts(tokenizer, prompts: Sequence[str], *, skip_tokens: str, chat: bool = True, device=None):
    """Left-padded batch of (chat-templated unless not ``chat``) prompts and ``keep``, the [B, T] bool mask of the
    positions steering acts on and μ averages over: not padding, not a ``skip_tokens`` id, and with
    ``skip_tokens='template'`` only the user's own text (every token the chat template adds is left out)."""
    tokenizer.padding_side = "left"
    texts = [chat_prompt(tokenizer, p) for p in prompts] if chat else list(prompts)
    positional = chat and skip_tokens == "template"
    if positional and not tokenizer.is_fast:
        raise ValueError("steering.skip_tokens: 'template' needs a fast tokenizer (character offsets)")
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not chat,
                    return_offsets_mapping=positional)
    skip = torch.tensor(skip_token_ids(tokenizer, skip_tokens), dtype=torch.long)
    keep = enc["attention_mask"].bool() & ~torch.isin(enc["input_ids"], skip)
    if positional:
        keep &= _user_text_positions(texts, prompts, enc.pop("offset_mapping"))
    return enc.to(device) if device is not None else enc, keep.to(device) if device is not None else keep


def _user_text_positions(texts: Sequence[str], prompts: Sequence[str], offsets: torch.Tensor) -> torch.Tensor:
    """[B, T] bool: the token overlaps the user's text inside its rendered chat prompt (padding has no span)."""
    rows = []
    for text, prompt, spans in zip(texts, prompts, offsets):
        start = text.find(prompt)
        if start < 0:
            raise ValueError(f"steering.skip_tokens 'template': the chat template changed the user's text "
                             f"{prompt[:60]!r}, so its tokens cannot be told from the template's")
        rows.append((spans[:, 0] < start + len(prompt)) & (spans[:, 1] > start))
    return torch.stack(rows)
