"""Cross-paper row: refusal of harmful held-out prompts and compliance with benign ones under pruning.

Reuses the model card's measurement (``lmscalpel.models.card.measure_chat``, greedy decoding, the model's own chat
template) and its keyword verdicts (``lmscalpel.models.refusal``), so the numbers are comparable with
``model_card.json``. Pruning hooks stay active for every decoded token.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any, Mapping

from lmscalpel.data.prompts import KINDS, PromptSet, load_prompt_set
from lmscalpel.models.refusal import refusal_rates

CHAT_ROW_KEYS = ("refusal_rate", "benign_compliance", "benign_refusal_rate", "n_harmful", "n_benign",
                 "refusal_markers")


def chat_prompts(chat: Mapping, chat_eval: str | os.PathLike | None) -> dict[str, PromptSet]:
    """The row's harmful and benign prompt sets (``pruning.chat.prompts``; toy world: held-out ones), each capped at
    ``pruning.chat.max_prompts``."""
    sets = {kind: load_prompt_set(chat["prompts"][kind], kind=kind, role="evaluation",
                                  key=f"pruning.chat.prompts.{kind}", chat_eval=chat_eval) for kind in KINDS}
    return {kind: replace(found, records=found.records[:chat.get("max_prompts")]) for kind, found in sets.items()}


def chat_row(model, tokenizer, chat: Mapping, chat_eval: str | os.PathLike | None,
             markers: str = "toyworld") -> dict[str, Any]:
    """The model card's refusal and benign rates (not its harmful compliance) on the prompts of
    :func:`chat_prompts` (``chat``: the ``pruning.chat`` section)."""
    from lmscalpel.models.card import measure_chat

    prompts = chat_prompts(chat, chat_eval)
    harmful = measure_chat(model, tokenizer, prompts["harmful"].prompts, chat["max_new_tokens"])
    benign = measure_chat(model, tokenizer, prompts["benign"].prompts, chat["max_new_tokens"])
    rates = refusal_rates(harmful, benign, markers)
    return {**{key: rates[key] for key in CHAT_ROW_KEYS}, "max_new_tokens": chat["max_new_tokens"],
            **{f"{kind}_prompts": found.provenance["description"] for kind, found in prompts.items()}}
