"""Capability under steering (spec §6): task accuracy versus c, averaged over random vectors, and the "sweet
spot" = the largest c whose accuracy drop from c = 0 stays below ``max_drop`` (absolute) on every task.

Toy world: benign chat compliance (held-out benign prompts, ground truth ``is_compliant``) and arithmetic accuracy
(held-out reasoning problems, the number after "Answer:"). Presets: lm-eval MMLU, 0-shot loglikelihood, with the
steering hook active for the whole evaluation.
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

import torch

from lmscalpel.models.intervention import skip_token_ids, steering
from lmscalpel.steering.directions import random_directions
from lmscalpel.steering.generation import generate_steered
from lmscalpel.toyworld.judge import is_compliant

ANSWER = re.compile(r"Answer:\s*(-?\d+)")


def parse_answer(text: str) -> int | None:
    match = ANSWER.search(text)
    return int(match.group(1)) if match else None


def steered_task_accuracy(model, tokenizer, *, prompts: Sequence[str], correct: Callable[[int, str], bool],
                          vectors: torch.Tensor, coefficients: Sequence[float], mu: float, layer: int, chat: bool,
                          max_new_tokens: int, batch_size: int, skip_tokens: str) -> dict[float, float]:
    """{c: mean over vectors × prompts of ``correct(prompt_index, response)``}; c = 0 is run with one vector only
    (every vector is the same at α = 0). All (c, vector, prompt) rows go through one batched generation: a CPU
    pays per decoding step, not per row."""
    n = len(prompts)
    cells = [(c, v) for c in coefficients for v in (vectors[:1] if c == 0 else vectors)]
    rows_v = torch.stack([v for _, v in cells]).repeat_interleave(n, dim=0)
    alphas = [c * mu for c, _ in cells for _ in range(n)]
    responses = generate_steered(model, tokenizer, list(prompts) * len(cells), rows_v, alphas, layer=layer,
                                 max_new_tokens=max_new_tokens, batch_size=batch_size, chat=chat,
                                 skip_tokens=skip_tokens)
    hits: dict[float, list[bool]] = {}
    for row, response in enumerate(responses):
        hits.setdefault(cells[row // n][0], []).append(correct(row % n, response))
    return {c: sum(values) / len(values) for c, values in hits.items()}


def toy_capability(model, tokenizer, *, benign: Sequence[str], problems: Sequence[dict], coefficients: Sequence[float],
                   mu: float, layer: int, n_vectors: int, seed: int, chat_tokens: int, arithmetic_tokens: int,
                   batch_size: int, skip_tokens: str = "special",
                   complies: Callable[[str], bool] = is_compliant) -> dict[str, dict[float, float]]:
    """{task: {c: accuracy}} for the toy tasks; c = 0 (unsteered) is always included. ``complies`` judges a benign
    reply (the toy world's ground truth by default; ``lmscalpel.models.refusal.chat_verdicts`` for real models)."""
    d_model = int(model.get_input_embeddings().weight.shape[1])
    vectors = random_directions(d_model, range(n_vectors), seed)
    questions = [f"Question: {p['question']}\nThinking:" for p in problems]
    grid = {"vectors": vectors, "coefficients": [0.0, *coefficients], "mu": mu, "layer": layer,
            "batch_size": batch_size, "skip_tokens": skip_tokens}
    results = {"benign_compliance": steered_task_accuracy(
        model, tokenizer, prompts=benign, correct=lambda i, r: complies(r), chat=True, max_new_tokens=chat_tokens,
        **grid)}
    if problems:
        results["arithmetic_accuracy"] = steered_task_accuracy(
            model, tokenizer, prompts=questions, correct=lambda i, r: parse_answer(r) == problems[i]["answer"],
            chat=False, max_new_tokens=arithmetic_tokens, **grid)
    return results


def mmlu_capability(model, tokenizer, *, coefficients: Sequence[float], mu: float, layer: int, n_vectors: int,
                    seed: int, limit: int | None, batch_size: int, tasks: Sequence[str] = ("mmlu",),
                    skip_tokens: str = "special") -> dict:
    """{"mmlu": {c: accuracy}} with lm-eval; each c averages ``n_vectors`` random vectors (c = 0 once)."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    d_model = int(model.get_input_embeddings().weight.shape[1])
    vectors = random_directions(d_model, range(n_vectors), seed)
    skip = skip_token_ids(tokenizer, skip_tokens)
    scores: dict[float, float] = {}
    for c in [0.0, *coefficients]:
        accs = []
        for v in vectors[:1] if c == 0 else vectors:
            with steering(model, layer, v, c * mu, skip_token_ids=skip):
                out = simple_evaluate(model=lm, tasks=list(tasks), num_fewshot=0, limit=limit, bootstrap_iters=0,
                                      log_samples=False)
            accs.append(float(out["results"][tasks[0]]["acc,none"]))
        scores[c] = sum(accs) / len(accs)
    return {tasks[0]: scores}


def sweet_spot(results: dict[str, dict[float, float]], max_drop: float) -> float:
    """Largest c (of a prefix with no larger drop before it) whose drop from c = 0 is < ``max_drop`` on every task."""
    best = 0.0
    for c in sorted(next(iter(results.values()))):
        if c == 0:
            continue
        if all(values[0.0] - values[c] < max_drop for values in results.values()):
            best = c
        else:
            break
    return best
