"""Cross-paper row: refusal of harmful held-out prompts and compliance with benign ones under pruning.

Reuses the model card's measurement (``lmscalpel.models.card.measure_chat``, greedy decoding, the model's own chat
template) and its keyword verdicts (``lmscalpel.models.refusal``), so the numbers are comparable with
``model_card.json``. Pruning hooks stay active for every decoded token.
"""

from __future__ import annotations

import os

from lmscalpel.io import read_jsonl
from lmscalpel.models.refusal import refusal_rates

CHAT_ROW_KEYS = ("refusal_rate", "benign_compliance", "benign_refusal_rate", "n_harmful", "n_benign",
                 "refusal_markers")


def chat_prompts(chat_eval_path: str | os.PathLike, max_prompts: int | None = None) -> dict[str, list[str]]:
    """Held-out harmful prompts and benign prompts (held-out ones if the split has any, else all)."""
    rows = read_jsonl(chat_eval_path)
    harmful = [r["prompt"] for r in rows if r["kind"] == "harmful" and r["split"] == "heldout"]
    benign_rows = [r for r in rows if r["kind"] == "benign"]
    benign = [r["prompt"] for r in benign_rows if r["split"] == "heldout"] or [r["prompt"] for r in benign_rows]
    if not harmful or not benign:
        raise ValueError(f"{chat_eval_path}: needs held-out harmful and benign prompts")
    return {"harmful": harmful[:max_prompts], "benign": benign[:max_prompts]}


def chat_row(model, tokenizer, chat_eval_path: str | os.PathLike, max_new_tokens: int,
             max_prompts: int | None = None, markers: str = "toyworld") -> dict[str, float]:
    """The model card's refusal and benign rates (not its harmful compliance) on the prompts of
    :func:`chat_prompts`."""
    from lmscalpel.models.card import measure_chat

    prompts = chat_prompts(chat_eval_path, max_prompts)
    harmful = measure_chat(model, tokenizer, prompts["harmful"], max_new_tokens)
    benign = measure_chat(model, tokenizer, prompts["benign"], max_new_tokens)
    rates = refusal_rates(harmful, benign, markers)
    return {**{key: rates[key] for key in CHAT_ROW_KEYS}, "max_new_tokens": max_new_tokens}
