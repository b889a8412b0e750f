"""Zero-shot multiple-choice tasks through lm-eval on the preloaded (pruned) model.

The toy tasks are local YAML files over toy-world data, written with absolute data paths; contexts start with the
model's BOS token (the toy model's training documents do; lm-eval adds none):
- ``toy_arithmetic``: reasoning eval split; context "Question: ...\\nThinking: <trace>\\nAnswer:", choices the
  answer and ``n_choices - 1`` nearby integers (the trace is given: this scores reading the answer off the
  reasoning, a language-modelling skill that pruning can break, not arithmetic from scratch).
- ``toy_first_letter``: spelling test split; context "<word> has the first letter:", choices the letter and
  ``n_choices - 1`` other letters.
Real benchmarks offline: ``mmlu_packaged``, ``hellaswag_packaged``, ``truthfulqa_mc1_packaged``
(:mod:`lmscalpel.data.lm_eval_tasks`, from installed data packages, built by the cell job itself). The paper presets
use lm-eval's built-in tasks (arc_challenge, arc_easy, boolq, piqa, winogrande, hellaswag) from a warm HF cache.
The hooks installed on the model stay active for every scored token. Every accuracy comes with lm-eval's standard
error (``task/acc_stderr``: the closed form, sample standard deviation / sqrt(n), for these mean metrics).
"""

from __future__ import annotations

import os
import random
import string
from pathlib import Path
from typing import Iterable

import torch

from lmscalpel.data.lm_eval_tasks import BENCHMARK_TASKS, STDERR_BOOTSTRAP_ITERS, offline_hub, task_yaml
from lmscalpel.io import read_jsonl, write_jsonl, write_text

TOY_TASKS = ("toy_arithmetic", "toy_first_letter")

def _mc_doc(context: str, correct: str, distractors: list[str], rng: random.Random) -> dict:
    choices = [correct, *distractors]
    rng.shuffle(choices)
    return {"context": context, "choices": choices, "gold": choices.index(correct)}


def arithmetic_docs(reasoning_rows: list[dict], n_choices: int, seed: int, bos: str) -> list[dict]:
    rng = random.Random(seed)
    docs = []
    for row in reasoning_rows:
        if row["split"] != "eval":
            continue
        answer = int(row["answer"])
        offsets = rng.sample([-10, -2, -1, 1, 2, 10], n_choices - 1)
        context = f"{bos}Question: {row['question']}\nThinking: {row['trace']}\nAnswer:"
        docs.append(_mc_doc(context, str(answer), [str(answer + o) for o in offsets], rng))
    return docs


def first_letter_docs(spelling_rows: list[dict], n_choices: int, seed: int, bos: str) -> list[dict]:
    rng = random.Random(seed)
    docs = []
    for row in spelling_rows:
        if row["split"] != "test":
            continue
        letter = row["letter"].upper()
        others = rng.sample([c for c in string.ascii_uppercase if c != letter], n_choices - 1)
        docs.append(_mc_doc(f"{bos}{row['word']} has the first letter:", letter, others, rng))
    return docs


def build_toy_tasks(toyworld_dir: str | os.PathLike, out_dir: str | os.PathLike, n_choices: int = 4,
                    seed: int = 0, final_dir: str | os.PathLike | None = None, bos: str = "") -> list[str]:
    """Write the toy tasks' data (JSONL) and YAML into ``out_dir``; return task names. ``bos`` starts every
    context (the model tokenizer's BOS token).

    The YAML files name their data by absolute path under ``final_dir`` (default ``out_dir``), so a directory
    written atomically (in a temporary place, then moved) still points at its final location.
    """
    if not 2 <= n_choices <= 7:
        raise ValueError(f"config key pruning.zero_shot.n_choices must lie in [2, 7], got {n_choices}")
    toyworld, out = Path(toyworld_dir), Path(out_dir)
    final = Path(final_dir or out_dir).resolve()
    docs = {
        "toy_arithmetic": arithmetic_docs(read_jsonl(toyworld / "reasoning.jsonl"), n_choices, seed, bos),
        "toy_first_letter": first_letter_docs(read_jsonl(toyworld / "spelling.jsonl"), n_choices, seed, bos),
    }
    for task, rows in docs.items():
        if not rows:
            raise ValueError(f"{task}: no evaluation rows in {toyworld}")
        write_jsonl(out / f"{task}.jsonl", rows)
        write_text(out / f"{task}.yaml", task_yaml(task, final / f"{task}.jsonl"))
    return list(docs)


def right_padding_mask(inputs: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    """Real tokens [batch, seq] of lm-eval's loglikelihood batches, right-padded with id 0 and passed without a
    mask: everything up to each row's last non-pad token (at least one). A real input that ends in token 0 is read
    as shorter; scores then pool over fewer tokens, never over another row's padding."""
    positions = torch.arange(1, inputs.shape[-1] + 1, device=inputs.device)
    lengths = ((inputs != pad_id) * positions).amax(dim=-1, keepdim=True).clamp_min(1)
    return positions.unsqueeze(0) <= lengths


def make_hflm(model, tokenizer, *, batch_size: int, add_bos_token: bool | None):
    """lm-eval's HFLM on the preloaded model, whose forward calls mark lm-eval's right padding for the pruner
    (``pruner.token_mask``), so a request scores the same in any batch. ``add_bos_token`` is passed explicitly:
    lm-eval 0.4.9 (the paper's) added no BOS, lm-eval >= 0.4.10 defers to the tokenizer when it is None."""
    from lm_eval.models.huggingface import HFLM

    from lmscalpel.pruning.pruner import token_mask

    class PaddingAwareHFLM(HFLM):
        def _model_call(self, inps, attn_mask=None, labels=None):
            with token_mask(right_padding_mask(inps) if attn_mask is None else None):
                return super()._model_call(inps, attn_mask=attn_mask, labels=labels)

    return PaddingAwareHFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, add_bos_token=add_bos_token)


def local_tasks(tasks: Iterable[str]) -> list[str]:
    """The tasks of ``tasks`` defined by local YAML files (toy world, packaged benchmarks): they run offline."""
    return [task for task in tasks if task in TOY_TASKS or task in BENCHMARK_TASKS]


def run_zero_shot(model, tokenizer, tasks: Iterable[str], *, include_path=None, batch_size: int = 8,
                  limit: int | None = None, num_fewshot: int = 0, seed: int = 0,
                  add_bos_token: bool | None = False) -> dict[str, float]:
    """Evaluate ``tasks`` with lm-eval on the model as it is (hooks included); flat ``task/metric`` keys, with
    ``task/metric_stderr``.

    ``include_path``: the directories (one or a list) of the local tasks, which run offline; lm-eval's own tasks
    (ARC, BoolQ, ... on presets) may download their data. ``add_bos_token`` (config
    ``pruning.zero_shot.add_bos_token``): False, as lm-eval 0.4.9 that the paper ran.
    """
    tasks = list(tasks)
    hub_tasks = [task for task in tasks if task not in local_tasks(tasks)]
    if not hub_tasks:
        offline_hub()
    import lm_eval
    from lm_eval.tasks import TaskManager

    paths = [str(p) for p in ([include_path] if isinstance(include_path, (str, os.PathLike)) else include_path or [])]
    manager = TaskManager(include_path=paths or None, include_defaults=bool(hub_tasks))
    lm = make_hflm(model, tokenizer, batch_size=batch_size, add_bos_token=add_bos_token)
    results = lm_eval.simple_evaluate(model=lm, tasks=tasks, task_manager=manager, num_fewshot=num_fewshot,
                                      limit=limit, bootstrap_iters=STDERR_BOOTSTRAP_ITERS, log_samples=False,
                                      random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed,
                                      fewshot_random_seed=seed)
    return flatten_results(results["results"])


def flatten_results(results: dict) -> dict[str, float]:
    """``{task: {"acc,none": x, "acc_stderr,none": s, ...}}`` -> ``{"task/acc": x, "task/acc_stderr": s}``
    (numeric values only: lm-eval writes "N/A" for a stderr it cannot compute).

    lm-eval's ``sample_len`` (documents scored) becomes ``task/n_docs``.
    """
    flat = {}
    for task, metrics in results.items():
        for key, value in metrics.items():
            metric = key.split(",", 1)[0].replace("sample_len", "n_docs")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                flat[f"{task}/{metric}"] = float(value)
    return flat
