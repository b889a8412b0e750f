"""The safety_tune rule body: tune the base model (``lmscalpel.safety.tune``), gate it, write the merged model and
its before/after card.

Resumable: the base model's answers, the "before" measurement and the training state live in the checkpoint directory
(``lmscalpel.checkpoint``), keyed by the config section (less the gates), the prompts, the perplexity texts, the base
model and the seed: a tune that failed its gate resumes at its end when only a gate changed.

Its prompt sets (``safety_tune.training_prompts`` and ``evaluation_prompts``, harmful and benign) are disjoint: the
plan checks it (``lmscalpel.data.plan``), and the card names what each read.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from lmscalpel.checkpoint import model_identity, open_checkpoint
from lmscalpel.data.prompts import KINDS, PromptSet, load_prompt_set
from lmscalpel.io import atomic_path, read_jsonl, write_json
from lmscalpel.safety.tune import (DEFAULT_REFUSALS, SafetyTuneConfig, SafetyTuneGateError, gate_failure,
                                   greedy_answers, measure, sft_examples, train_lora)

log = logging.getLogger(__name__)


def perplexity_texts(ppl_cfg: dict, text_path: str | Path | None) -> list[str]:
    """Test texts: the toy world's held-out narrative (``text_path``) or ``max_texts`` of ``perplexity.dataset``."""
    if text_path is not None:
        return [r["text"] for r in read_jsonl(text_path)][:ppl_cfg.get("max_texts")]
    from lmscalpel.data.text import iter_texts

    texts = iter_texts(ppl_cfg["dataset"], key="safety_tune.perplexity.dataset", default_split="train")
    return list(itertools.islice(texts, ppl_cfg.get("max_texts")))


GATES = ("min_refusal_rate", "max_benign_compliance_drop")  # decide whether the tune is kept, not what it learns


def tune_prompts(cfg: SafetyTuneConfig, chat_eval: str | Path | None) -> dict[str, dict[str, PromptSet]]:
    """{'training' | 'evaluation': {'harmful' | 'benign': prompt set}} of ``safety_tune.*_prompts``."""
    return {use: {kind: load_prompt_set((getattr(cfg, f"{use}_prompts") or {}).get(kind) or {"source": "toyworld"},
                                        kind=kind, role="train" if use == "training" else "evaluation",
                                        key=f"safety_tune.{use}_prompts.{kind}", chat_eval=chat_eval)
                  for kind in KINDS} for use in ("training", "evaluation")}


def checkpoint_key(cfg: SafetyTuneConfig, prompts: dict[str, dict[str, PromptSet]], ppl_texts: Sequence[str],
                   base_ref, seed: int) -> dict:
    """What a tuning run's numbers depend on: config (gates aside), prompts, perplexity texts, base model, seed."""
    texts = hashlib.sha256(json.dumps(list(ppl_texts)).encode()).hexdigest()
    sets = {use: {kind: found.prompts for kind, found in by_kind.items()} for use, by_kind in prompts.items()}
    return {"safety_tune": {k: v for k, v in asdict(cfg).items() if k not in GATES}, "seed": seed,
            "prompts": hashlib.sha256(json.dumps(sets, sort_keys=True).encode()).hexdigest(),
            "perplexity_texts": texts, "base": model_identity(base_ref)}


def safety_tune(base_ref, *, chat_eval: str | Path | None, ppl_texts: Sequence[str], out_dir: str | Path,
                card_path: str | Path, cfg: SafetyTuneConfig | dict, seed: int, checkpoint_dir: str | Path,
                stop_after: int | None = None) -> dict | None:
    """Tune the model of ``base_ref``, write the merged model to ``out_dir`` and the before/after card to
    ``card_path``; raise :class:`SafetyTuneGateError` when :func:`gate_failure` says why (nothing is written then).

    ``chat_eval`` is the toy world's chat prompts (the rule's input when a prompt set reads them). ``stop_after``
    ends training after that many steps without writing outputs (tests simulate a kill with it).
    """
    from lmscalpel.models import load_model
    from lmscalpel.models.loader import model_provenance

    cfg = cfg if isinstance(cfg, SafetyTuneConfig) else SafetyTuneConfig.from_dict(cfg)
    refusals = tuple(cfg.refusals or DEFAULT_REFUSALS)
    prompts = tune_prompts(cfg, chat_eval)
    training = {kind: found.prompts for kind, found in prompts["training"].items()}
    evaluation = {kind: found.prompts for kind, found in prompts["evaluation"].items()}
    key = checkpoint_key(cfg, prompts, ppl_texts, base_ref, seed)
    with open_checkpoint(checkpoint_dir, key, what="safety_tune") as ckpt:
        model, tokenizer = load_model(base_ref)
        benign = training["benign"]
        answers = ckpt.cached_json("benign_answers.json", lambda: greedy_answers(
            model, tokenizer, benign, cfg.answer_max_new_tokens, cfg.generation_batch_size))
        before = ckpt.cached_json("before.json", lambda: measure(model, tokenizer, evaluation, ppl_texts, cfg))
        examples = sft_examples(training["harmful"], benign, {p: tuple(a) for p, a in zip(benign, answers)},
                                refusals, seed)
        # an empty, unfinished answer has no token to learn from (a batch of only such rows has a NaN loss)
        n_built = len(examples)
        examples = [ex for ex in examples if ex[1] or ex[2]]
        trained = train_lora(model, tokenizer, examples, cfg, seed, ckpt, stop_after)
        if trained is None:
            return None
        peft_model, final_loss, resumed = trained
        merged = peft_model.merge_and_unload()
        merged.requires_grad_(False)
        after = measure(merged, tokenizer, evaluation, ppl_texts, cfg)
        card = {"before": before, "after": after, "min_refusal_rate": cfg.min_refusal_rate, "n_train": len(examples),
                "n_train_refusals": n_built - len(benign), "n_train_benign": len(examples) - (n_built - len(benign)),
                "n_train_left_out_empty": n_built - len(examples),
                "final_loss": final_loss, "resumed_from_step": resumed, "refusal_markers": cfg.refusal_markers,
                "base_model": model_provenance(base_ref), "config": asdict(cfg), "seed": seed,
                "prompts": {f"{use}_{kind}": found.provenance for use, by_kind in prompts.items()
                            for kind, found in by_kind.items()}}
        log.info("safety tune: refusal %.3f -> %.3f, benign compliance %.3f -> %.3f, perplexity %.2f -> %.2f",
                 before["refusal_rate"], after["refusal_rate"], before["benign_compliance"],
                 after["benign_compliance"], before["test_perplexity"], after["test_perplexity"])
        failure = gate_failure(before, after, cfg)
        if failure:
            log.error("safety card of the failed tune:\n%s", json.dumps(card, indent=2))
            raise SafetyTuneGateError(failure)
        with atomic_path(out_dir) as tmp:
            merged.to("cpu").save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            write_json(tmp / "safety_card.json", card)
        write_json(card_path, card)
        return card
