"""The model card: what the trained model does, measured with greedy decoding on held-out toy-world data.

Used by the ``model_card`` rule (which enforces the refusal/compliance gates for the toy model) and reused by
later stages that re-measure the model under an intervention.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from lmscalpel.io import read_jsonl
from lmscalpel.models.generation import generate_greedy, windowed_perplexity
from lmscalpel.toyworld.judge import is_compliant, is_refusal

ANSWER_RE = re.compile(r"Answer:\s*(-?\d+)")


def measure_chat(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int = 32) -> list[str]:
    """Greedy chat replies (the shared measurement of refusal and compliance)."""
    return generate_greedy(model, tokenizer, prompts, max_new_tokens, batch_size=batch_size, desc="chat")


def chat_rates(model, tokenizer, chat_eval: list[dict], max_new_tokens: int, limit: int | None = None) -> dict:
    """Refusal rate on held-out harmful prompts and compliance rate on held-out benign prompts."""
    harmful = [r["prompt"] for r in chat_eval if r["kind"] == "harmful" and r["split"] == "heldout"][:limit]
    benign = [r["prompt"] for r in chat_eval if r["kind"] == "benign" and r["split"] == "heldout"][:limit]
    harmful_replies = measure_chat(model, tokenizer, harmful, max_new_tokens)
    benign_replies = measure_chat(model, tokenizer, benign, max_new_tokens)
    return {"refusal_rate": sum(map(is_refusal, harmful_replies)) / len(harmful),
            "harmful_compliance_rate": sum(map(is_compliant, harmful_replies)) / len(harmful),
            "benign_compliance": sum(map(is_compliant, benign_replies)) / len(benign),
            "benign_refusal_rate": sum(map(is_refusal, benign_replies)) / len(benign),
            "n_harmful": len(harmful), "n_benign": len(benign),
            "examples": {"harmful": list(zip(harmful[:3], harmful_replies[:3])),
                         "benign": list(zip(benign[:3], benign_replies[:3]))}}


def parse_answer(text: str) -> int | None:
    match = ANSWER_RE.search(text)
    return int(match.group(1)) if match else None


def arithmetic_accuracy(model, tokenizer, problems: list[dict], max_new_tokens: int = 96) -> float:
    prompts = [f"Question: {p['question']}\nThinking:" for p in problems]
    replies = generate_greedy(model, tokenizer, [tokenizer.bos_token + p for p in prompts], max_new_tokens,
                              chat=False, desc="arithmetic")
    return sum(parse_answer(r) == p["answer"] for r, p in zip(replies, problems)) / len(problems)


def first_letter_accuracy(model, tokenizer, words: list[dict]) -> float:
    prompts = [f"{tokenizer.bos_token}{w['word']} has the first letter:" for w in words]
    replies = generate_greedy(model, tokenizer, prompts, 3, chat=False, desc="first letter")
    return sum(r.strip()[:1] == w["letter"] for r, w in zip(replies, words)) / len(words)


def model_card(model, tokenizer, toyworld_dir: str | Path, max_new_tokens: int, n_eval: int,
               window: int) -> dict:
    root = Path(toyworld_dir)
    card = chat_rates(model, tokenizer, read_jsonl(root / "chat_eval.jsonl"), max_new_tokens)
    problems = [r for r in read_jsonl(root / "reasoning.jsonl") if r["split"] == "eval"][:n_eval]
    words = [r for r in read_jsonl(root / "spelling.jsonl") if r["split"] == "test"][:n_eval]
    narrative = [r["text"] for r in read_jsonl(root / "narrative_heldout.jsonl")]
    card["arithmetic_accuracy"] = arithmetic_accuracy(model, tokenizer, problems)
    card["first_letter_accuracy"] = first_letter_accuracy(model, tokenizer, words)
    ppl = windowed_perplexity(model, tokenizer, narrative, window)
    card.update({"heldout_perplexity": ppl["perplexity"], "perplexity_window": window,
                 "n_arithmetic": len(problems), "n_first_letter": len(words)})
    return card


def gate_failures(card: dict, cfg: dict) -> list[str]:
    gates = [("refusal_rate", "min_refusal_rate"), ("benign_compliance", "min_benign_compliance")]
    return [f"{metric} {card[metric]:.3f} < model_card.{key} {cfg[key]}" for metric, key in gates
            if card[metric] < cfg[key]]


class ModelCardGateError(RuntimeError):
    """The toy model did not learn what every later stage relies on (refusal, benign compliance)."""


def write_model_card(ref, inputs, out_path: str | Path, cfg: dict, window: int, enforce_gates: bool) -> dict:
    """Measure the model, write the card atomically, then fail loudly if a gate is missed.

    Toy-world measurements apply to the toy model; for hub models the card records the architecture and
    provenance (their paper-specific evaluations live in the stages).
    """
    from lmscalpel.io import write_json
    from lmscalpel.models import load_model, num_layers
    from lmscalpel.models.gguf import read_provenance
    from lmscalpel.models.loader import model_provenance

    model, tokenizer = load_model(ref)
    conversion = read_provenance(ref.name_or_path) if ref.is_local else {}
    card = {**model_provenance(ref), **conversion, "n_layers": num_layers(model), "d_model": model.config.hidden_size,
            "n_parameters": sum(p.numel() for p in model.parameters())}
    if enforce_gates:
        card.update(model_card(model, tokenizer, Path(inputs["chat_eval"]).parent, cfg["max_new_tokens"],
                               cfg["n_eval_per_family"], window))
        card["gates"] = {"min_refusal_rate": cfg["min_refusal_rate"], "min_benign_compliance": cfg["min_benign_compliance"]}
    failures = gate_failures(card, cfg) if enforce_gates else []
    if failures:
        logging.getLogger(__name__).error("model card of the failed model:\n%s", json.dumps(card, indent=2))
        raise ModelCardGateError("toy model failed its gates: " + "; ".join(failures)
                                 + " (train longer: toy_model.steps, or read the card's examples in the log)")
    write_json(out_path, card)
    return card
