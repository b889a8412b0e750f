"""The model card: what any model does, measured with greedy decoding on held-out data.

Used by the ``model_card`` rule (which enforces the refusal/compliance gates, by default for the toy model only;
``model_card.enforce_gates`` sets them for any model, e.g. a real model that must refuse by itself) and reused
by later stages that re-measure the model under an intervention. Any model is measured on the card's chat prompts
(``model_card.prompts``, through its own chat template; a toy-world set when the run generates the toy world); the
toy-format tasks (arithmetic traces, first letters) only for the toy model.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from lmscalpel.data.prompts import KINDS, PromptSet, load_prompt_set, reads_toyworld
from lmscalpel.io import read_jsonl
from lmscalpel.models.generation import generate_greedy, windowed_perplexity
from lmscalpel.models.refusal import chat_verdicts, refusal_rates, wilson_interval

ANSWER_RE = re.compile(r"Answer:\s*(-?\d+)")


def measure_chat(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int = 32) -> list[str]:
    """Greedy chat replies (the shared measurement of refusal and compliance)."""
    return generate_greedy(model, tokenizer, prompts, max_new_tokens, batch_size=batch_size, desc="chat")


def card_prompts(prompts_cfg: dict, chat_eval: str | Path | None) -> dict[str, PromptSet] | None:
    """The card's harmful and benign sets (``model_card.prompts``), or None when one reads the toy world and the
    run does not generate it (``chat_eval`` None)."""
    cfgs = {kind: prompts_cfg.get(kind) or {"source": "toyworld"} for kind in KINDS}
    if chat_eval is None and any(reads_toyworld(cfg, f"model_card.prompts.{kind}") for kind, cfg in cfgs.items()):
        return None
    return {kind: load_prompt_set(cfg, kind=kind, role="evaluation", key=f"model_card.prompts.{kind}",
                                  chat_eval=chat_eval) for kind, cfg in cfgs.items()}


def chat_rates(model, tokenizer, prompts: dict[str, PromptSet], max_new_tokens: int, markers: str = "toyworld"
               ) -> dict:
    """Refusal rate on the harmful prompts and compliance rate on the benign ones
    (:func:`lmscalpel.models.refusal.refusal_rates`), each harmful prompt's verdict, the first replies as examples
    and what each set read."""
    harmful, benign = prompts["harmful"].prompts, prompts["benign"].prompts
    harmful_replies = measure_chat(model, tokenizer, harmful, max_new_tokens)
    benign_replies = measure_chat(model, tokenizer, benign, max_new_tokens)
    rates = refusal_rates(harmful_replies, benign_replies, markers)
    refuses = chat_verdicts(markers)[0]
    return {**rates,
            # per prompt, so the steering grid's unsteered rows can be checked against the card on the same prompts
            "harmful_verdicts": [{"prompt": p, "refused": bool(refuses(r))} for p, r in zip(harmful, harmful_replies)],
            "refusal_rate_ci95": list(wilson_interval(rates["refusal_rate"] * rates["n_harmful"], rates["n_harmful"])),
            "benign_compliance_ci95": list(wilson_interval(rates["benign_compliance"] * rates["n_benign"],
                                                           rates["n_benign"])),
            "examples": {"harmful": list(zip(harmful[:3], harmful_replies[:3])),
                         "benign": list(zip(benign[:3], benign_replies[:3]))},
            "chat_prompts": {kind: found.provenance["description"] for kind, found in prompts.items()}}


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


def toy_tasks(model, tokenizer, toyworld_dir: str | Path, n_eval: int) -> dict:
    """Arithmetic and first-letter accuracy in the toy model's own training formats."""
    root = Path(toyworld_dir)
    problems = [r for r in read_jsonl(root / "reasoning.jsonl") if r["split"] == "eval"][:n_eval]
    words = [r for r in read_jsonl(root / "spelling.jsonl") if r["split"] == "test"][:n_eval]
    return {"arithmetic_accuracy": arithmetic_accuracy(model, tokenizer, problems),
            "first_letter_accuracy": first_letter_accuracy(model, tokenizer, words),
            "n_arithmetic": len(problems), "n_first_letter": len(words)}


def card_perplexity(model, tokenizer, toyworld_dir: str | Path | None, cfg: dict, window: int) -> dict:
    """Held-out perplexity on ``model_card.perplexity.dataset``, else on the toy world's held-out narrative
    ({} when neither is there)."""
    dataset = cfg.get("dataset")
    if dataset is not None:
        from lmscalpel.data.text import load_texts

        texts = load_texts(dataset, toyworld_dir, "model_card.perplexity.dataset", default_split="test")
        source = dataset["path"]
    elif toyworld_dir is not None:
        texts = [r["text"] for r in read_jsonl(Path(toyworld_dir) / "narrative_heldout.jsonl")]
        source = "toyworld narrative_heldout"
    else:
        return {}
    window = cfg.get("window") or window
    ppl = windowed_perplexity(model, tokenizer, texts, window, max_windows=cfg.get("max_windows"))
    return {"heldout_perplexity": ppl["perplexity"], "perplexity_window": window, "perplexity_windows": ppl["windows"],
            "perplexity_text": source}


def model_card(model, tokenizer, toyworld_dir: str | Path | None, cfg: dict, window: int, toy: bool,
               markers: str = "toyworld") -> dict:
    """Chat rates on ``model_card.prompts`` (a toy-world set when ``toyworld_dir`` is given), the toy tasks (toy
    model only) and held-out perplexity."""
    card = {}
    chat_eval = Path(toyworld_dir) / "chat_eval.jsonl" if toyworld_dir is not None else None
    prompts = card_prompts(cfg.get("prompts") or {}, chat_eval)
    if prompts is not None:
        card.update(chat_rates(model, tokenizer, prompts, cfg["max_new_tokens"], markers=markers))
    if toyworld_dir is not None and toy:
        card.update(toy_tasks(model, tokenizer, toyworld_dir, cfg["n_eval_per_family"]))
    return {**card, **card_perplexity(model, tokenizer, toyworld_dir, cfg.get("perplexity") or {}, window)}


def gate_failures(card: dict, cfg: dict) -> list[str]:
    gates = [("refusal_rate", "min_refusal_rate"), ("benign_compliance", "min_benign_compliance")]
    return [f"{metric} {card[metric]:.3f} < model_card.{key} {cfg[key]}" for metric, key in gates
            if card[metric] < cfg[key]]


class ModelCardGateError(RuntimeError):
    """The model does not do what every later stage relies on (refusal, benign compliance)."""


def gates_enforced(cfg: dict, toy_model: bool) -> bool:
    """Whether the card's gates apply: ``model_card.enforce_gates``, by default (null) for the toy model only."""
    return toy_model if cfg.get("enforce_gates") is None else bool(cfg["enforce_gates"])


def write_model_card(ref, inputs, out_path: str | Path, cfg: dict, window: int, toy_model: bool,
                     markers: str = "toyworld") -> dict:
    """Measure the model, write the card atomically, then fail loudly if a gate is missed. The gates apply where
    ``model_card.enforce_gates`` says, by default (null) to the toy model (``toy_model``), which must have learnt
    what later stages rely on; a real model's preset sets them when its claims need a model that refuses by itself.

    Every card records the architecture and provenance; the toy-world measurements come when ``inputs`` has the
    toy world's ``chat_eval``, the chat rates when every set of ``model_card.prompts`` can be read (``markers``: the
    keyword verdicts, :func:`lmscalpel.models.refusal.chat_verdicts`).
    """
    from lmscalpel.io import write_json
    from lmscalpel.models import load_model, num_layers
    from lmscalpel.models.gguf import read_provenance
    from lmscalpel.models.loader import model_provenance

    model, tokenizer = load_model(ref)
    conversion = read_provenance(ref.name_or_path) if ref.is_local else {}
    card = {**model_provenance(ref), **conversion, "n_layers": num_layers(model), "d_model": model.config.hidden_size,
            "n_parameters": sum(p.numel() for p in model.parameters())}
    toyworld_dir = Path(inputs["chat_eval"]).parent if inputs.get("chat_eval") else None
    card.update(model_card(model, tokenizer, toyworld_dir, cfg, window, toy=toy_model, markers=markers))
    enforce_gates = gates_enforced(cfg, toy_model)
    if enforce_gates:
        card["gates"] = {"min_refusal_rate": cfg["min_refusal_rate"], "min_benign_compliance": cfg["min_benign_compliance"]}
    failures = gate_failures(card, cfg) if enforce_gates else []
    if failures:
        logging.getLogger(__name__).error("model card of the failed model:\n%s", json.dumps(card, indent=2))
        remedy = ("train longer: toy_model.steps, or read the card's examples in the log" if toy_model else
                  "this model does not do what the preset's claims need; read the card's examples in the log")
        raise ModelCardGateError(f"{'toy model' if toy_model else ref.name_or_path} failed its gates: "
                                 + "; ".join(failures) + f" ({remedy})")
    write_json(out_path, card)
    return card
