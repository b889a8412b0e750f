"""Capability under steering (spec §6): task accuracy versus c, averaged over random vectors, and the "sweet
spot" = the largest c whose accuracy drop from c = 0 stays below ``max_drop`` (absolute) on every task.

Toy world: benign chat compliance (held-out benign prompts, ground truth ``is_compliant``) and arithmetic accuracy
(held-out reasoning problems, the number after "Answer:"). Presets: lm-eval MMLU (``mmlu``, from the HF hub) or the
packaged benchmarks' tasks (``benchmarks``: MMLU, HellaSwag, TruthfulQA-MC1 offline,
:mod:`lmscalpel.data.lm_eval_tasks`), 0-shot loglikelihood, with the steering hook active for the whole evaluation.
lm-eval's standard error of each run (over items) comes with the accuracy; with several random vectors at one c,
its mean over the vectors and their range.
"""

from __future__ import annotations

import math
import re
import tempfile
from typing import Callable, Mapping, Sequence

import torch

from lmscalpel.data.lm_eval_tasks import (BENCHMARK_TASKS, STDERR_BOOTSTRAP_ITERS, build_benchmark_tasks,
                                          flat_provenance, offline_hub)
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


def steered_lm_eval(model, tokenizer, *, tasks: Mapping[str, str], coefficients: Sequence[float], mu: float,
                    layer: int, n_vectors: int, seed: int, limit: int | None, batch_size: int, task_manager=None,
                    skip_tokens: str = "special") -> dict[str, dict[float, list[tuple[float, float]]]]:
    """{task: {c: [(metric, lm-eval's SE of it) per random vector]}} for ``tasks`` (task -> the metric read), 0-shot
    with the steering hook on; c = 0 is run once (every vector is the same at α = 0)."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    d_model = int(model.get_input_embeddings().weight.shape[1])
    vectors = random_directions(d_model, range(n_vectors), seed)
    skip = skip_token_ids(tokenizer, skip_tokens)
    runs: dict[str, dict[float, list[tuple[float, float]]]] = {task: {} for task in tasks}
    for c in [0.0, *coefficients]:
        for v in vectors[:1] if c == 0 else vectors:
            with steering(model, layer, v, c * mu, skip_token_ids=skip):
                out = simple_evaluate(model=lm, tasks=list(tasks), task_manager=task_manager, num_fewshot=0,
                                      limit=limit, bootstrap_iters=STDERR_BOOTSTRAP_ITERS, log_samples=False)
            for task, metric in tasks.items():
                scores = out["results"][task]
                se = scores.get(f"{metric}_stderr,none")
                runs[task].setdefault(c, []).append(
                    (float(scores[f"{metric},none"]), float(se) if isinstance(se, (int, float)) else math.nan))
    return runs


def mean_accuracy(runs: Mapping[str, Mapping[float, list[tuple[float, float]]]]) -> dict[str, dict[float, float]]:
    return {task: {c: sum(a for a, _ in values) / len(values) for c, values in by_c.items()}
            for task, by_c in runs.items()}


def run_uncertainty(runs: Mapping[str, Mapping[float, list[tuple[float, float]]]]) -> dict[str, float]:
    """Flat ``<task>_c<c>_stderr`` (lm-eval's SE over items, averaged over the vectors) and ``_min`` / ``_max``
    (the range over vectors)."""
    flat = {}
    for task, by_c in runs.items():
        for c, values in by_c.items():
            flat |= {f"{task}_c{c:g}_stderr": sum(se for _, se in values) / len(values),
                     f"{task}_c{c:g}_min": min(a for a, _ in values), f"{task}_c{c:g}_max": max(a for a, _ in values)}
    return flat


def mmlu_capability(model, tokenizer, *, limit: int | None, batch_size: int, tasks: Sequence[str] = ("mmlu",),
                    **grid) -> dict:
    """{"mmlu": {c: [(acc, SE) per vector]}} with lm-eval's own MMLU (HF hub)."""
    return {tasks[0]: steered_lm_eval(model, tokenizer, tasks={tasks[0]: "acc"}, limit=limit, batch_size=batch_size,
                                      **grid)[tasks[0]]}


def benchmark_capability(model, tokenizer, *, tasks: Sequence[str], limit: int | None, item_seed: int,
                         batch_size: int, **grid) -> tuple[dict, dict]:
    """The packaged benchmarks' tasks (a seeded subset of ``limit`` items each, by ``item_seed``), each scored on
    its headline metric (HellaSwag: acc_norm): ({task: {c: [(metric, SE) per vector]}}, flat provenance)."""
    offline_hub()
    from lm_eval.tasks import TaskManager

    with tempfile.TemporaryDirectory(prefix="lmscalpel-tasks-") as directory:
        provenance = build_benchmark_tasks(tasks, directory, seed=item_seed, max_items=limit,
                                           key="steering.capability.benchmark_tasks")
        runs = steered_lm_eval(model, tokenizer, tasks={t: BENCHMARK_TASKS[t].headline for t in tasks},
                               task_manager=TaskManager(include_path=directory, include_defaults=False),
                               limit=limit, batch_size=batch_size, **grid)
    return runs, flat_provenance(provenance) | {f"{t}_metric": BENCHMARK_TASKS[t].headline for t in tasks}


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
