"""CLEAR's evaluation tasks (spec §7) plus TOFU's text QA, scored with the TOFU metrics.

Tasks for a forget split ``forgetNN``:

| task | subset | input | target | paraphrase / perturbed |
|---|---|---|---|---|
| forget / retain | forgetNN_perturbed / retain_perturbed | image + caption prompt | caption | paraphrased_caption / perturbed_captions |
| forget_facerec / retain_facerec | same | image + face prompt | name | name / perturbed_names |
| real_faces | real_faces | image + face prompt | answer | answer / other options |
| real_world | real_world | image + question (raw ``prompt`` when image is None) | answer | answer / other options |
| tofu_forget / tofu_retain | tofu_forgetNN_perturbed / tofu_retain_perturbed | question | answer | paraphrased_answer / perturbed_answer |

Generation is greedy and sees the image (CLEAR's code drops it; spec §7 deviation b). Aggregates follow CLEAR's
``mm/calculate_metrics.py``: probabilities are normalised over the true and perturbed answers on every task but the
caption and TOFU sets (CLEAR's ``eval_log*`` files, plain exp(−L)); forget quality is the KS test on the Forget task's
truth ratios; model utility covers Real Faces, Real World, Retain and Retain FaceRec (not TOFU's text sets; CLEAR's
chrF++ is not computed).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lmscalpel.unlearning import metrics as M
from lmscalpel.unlearning.data import has_subset, load_clear_subset, rows_of
from lmscalpel.unlearning.items import Encoder, Item
from lmscalpel.unlearning.losses import forward, mean_nll

log = logging.getLogger(__name__)

FORGET_TASKS = ("forget", "forget_facerec")  # CLEAR's Forget aggregate
FORGET_QUALITY_TASK = "forget"  # CLEAR's KS test compares the Forget (caption) truth ratios only
UTILITY_TASKS = ("real_faces", "real_world", "retain", "retain_facerec")  # CLEAR's model utility tasks


@dataclass(frozen=True)
class Task:
    name: str
    subset: str
    kind: str  # forget | retain | real
    normalised_prob: bool = False  # probability of the true answer among the true and perturbed ones


@dataclass(frozen=True)
class Sample:
    item: Item
    paraphrase: str
    perturbed: tuple[str, ...]


def tasks_for(split: str, source: str) -> list[Task]:
    """The tasks ``source`` provides for the forget split (mini-CLEAR has all; the hub needs locuslab/TOFU)."""
    tasks = [Task("forget", f"{split}_perturbed", "forget"), Task("retain", "retain_perturbed", "retain"),
             Task("forget_facerec", f"{split}_perturbed", "forget", normalised_prob=True),
             Task("retain_facerec", "retain_perturbed", "retain", normalised_prob=True),
             Task("real_faces", "real_faces", "real", normalised_prob=True),
             Task("real_world", "real_world", "real", normalised_prob=True),
             Task("tofu_forget", f"tofu_{split}_perturbed", "forget"),
             Task("tofu_retain", "tofu_retain_perturbed", "retain")]
    return [t for t in tasks if has_subset(source, t.subset)]


def task_samples(task: Task, rows: list[dict], *, caption_prompts: list[str], face_prompt: str) -> list[Sample]:
    samples = []
    for i, row in enumerate(rows):
        if task.name in ("forget", "retain"):
            item = Item(caption_prompts[i % len(caption_prompts)], row["caption"], row["image"], kind="caption")
            samples.append(Sample(item, row["paraphrased_caption"], tuple(row["perturbed_captions"])))
        elif task.name.endswith("_facerec"):
            samples.append(Sample(Item(face_prompt, row["name"], row["image"], kind="face"), row["name"],
                                  tuple(row["perturbed_names"])))
        elif task.name in ("real_faces", "real_world"):
            others = tuple(o for o in row["options"] if o != row["answer"])
            if task.name == "real_faces":
                item = Item(face_prompt, row["answer"], row["image"], kind="face")
            elif row.get("image") is None and row.get("prompt"):
                item = Item(row["prompt"], row["answer"], None, chat=False)
            else:
                item = Item(row["question"], row["answer"], row.get("image"))
            samples.append(Sample(item, row["answer"], others))
        else:
            perturbed = row["perturbed_answer"]
            perturbed = (perturbed,) if isinstance(perturbed, str) else tuple(perturbed)
            samples.append(Sample(Item(row["question"], row["answer"], None), row["paraphrased_answer"], perturbed))
    return samples


@torch.no_grad()
def score_items(model: torch.nn.Module, encoder: Encoder, items: list[Item], batch_size: int) -> list[float]:
    """ℓ (mean answer NLL) of every item."""
    device = next(model.parameters()).device
    out: list[float] = []
    for start in range(0, len(items), batch_size):
        batch = {k: v.to(device) for k, v in encoder.encode(items[start:start + batch_size]).items()}
        out += mean_nll(forward(model, batch).logits, batch["labels"]).tolist()
    return out


@torch.no_grad()
def generate(model: torch.nn.Module, encoder: Encoder, items: list[Item], *, batch_size: int,
             max_new_tokens: int) -> list[str]:
    """Greedy answers, decoded without special tokens."""
    device = next(model.parameters()).device
    tokenizer = encoder.tokenizer
    texts: list[str] = []
    for start in range(0, len(items), batch_size):
        batch = {k: v.to(device) for k, v in encoder.encode_prompts(items[start:start + batch_size]).items()}
        generated = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                   pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        new = generated[:, batch["input_ids"].shape[1]:]
        texts += [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
    return texts


def evaluate_task(model: torch.nn.Module, encoder: Encoder, task: Task, samples: list[Sample], *,
                  batch_size: int, max_new_tokens: int, max_generate_rows: int | None = None,
                  generate_answers: bool = True) -> dict[str, Any]:
    """Per-task metrics and per-sample truth ratios; ROUGE-L on the first ``max_generate_rows`` samples."""
    flat: list[Item] = []
    for s in samples:
        flat += [s.item, s.item.with_answer(s.paraphrase)] + [s.item.with_answer(p) for p in s.perturbed]
    nll = score_items(model, encoder, flat, batch_size)
    true, para, pert, pos = [], [], [], 0
    for s in samples:
        true.append(nll[pos])
        para.append(nll[pos + 1])
        pert.append(nll[pos + 2: pos + 2 + len(s.perturbed)])
        pos += 2 + len(s.perturbed)
    ratios = M.truth_ratios(para, pert)
    result = {
        "prob": M.normalised_probability(true, pert) if task.normalised_prob else M.answer_probability(true),
        "truth_ratio": M.truth_ratio_score(ratios, forget=task.kind == "forget"),
        "option_accuracy": M.option_accuracy(true, pert),
        "n": len(samples),
        "truth_ratios": ratios.tolist(),
    }
    if generate_answers:
        generated = samples[:max_generate_rows]
        answers = generate(model, encoder, [s.item for s in generated], batch_size=batch_size,
                           max_new_tokens=max_new_tokens)
        result["rouge"] = float(np.mean(M.rouge_l_recall(answers, [s.item.answer for s in generated])))
        result["n_generated"] = len(generated)
        result["examples"] = [{"target": s.item.answer, "generated": a} for s, a in zip(generated[:3], answers)]
    return result


def evaluate_model(model: torch.nn.Module, encoder: Encoder, *, split: str, source: str,
                   revision: str | None, caption_prompts: list[str], face_prompt: str, max_rows: int,
                   batch_size: int, max_new_tokens: int, max_generate_rows: int | None = None,
                   task_names: list[str] | None = None,
                   generate_answers: bool = True) -> dict[str, dict[str, Any]]:
    """Run every task (or ``task_names``) of the split; returns ``{task: result}``."""
    model.eval()
    results = {}
    for task in tasks_for(split, source):
        if task_names is not None and task.name not in task_names:
            continue
        rows = rows_of(load_clear_subset(source, task.subset, revision=revision, max_rows=max_rows))
        samples = task_samples(task, rows, caption_prompts=caption_prompts, face_prompt=face_prompt)
        results[task.name] = evaluate_task(model, encoder, task, samples, batch_size=batch_size,
                                           max_new_tokens=max_new_tokens, max_generate_rows=max_generate_rows,
                                           generate_answers=generate_answers)
        log.info("%s: prob %.3f truth ratio %.3f", task.name, results[task.name]["prob"],
                 results[task.name]["truth_ratio"])
    return results


def summarise(results: dict[str, dict[str, Any]],
              gold: dict[str, list[float]] | None) -> dict[str, float | None]:
    """Flat metrics: per task prob / rouge / truth_ratio / option_accuracy, CLEAR's aggregates, model utility and
    forget quality against the gold model's truth ratios (``gold``: task → ratios), headline and per task."""
    flat: dict[str, float | None] = {}
    for name, r in results.items():
        for key in ("prob", "rouge", "truth_ratio", "option_accuracy", "n"):
            if key in r:
                flat[f"{name}_{key}"] = r[key]

    def hmean_of(tasks: tuple[str, ...], keys: tuple[str, ...]) -> float | None:
        values = [results[t][k] for t in tasks if t in results for k in keys if k in results[t]]
        return M.harmonic_mean(values) if values else None

    flat["real"] = hmean_of(("real_faces", "real_world"), ("prob", "truth_ratio"))
    flat["retain"] = hmean_of(("retain", "retain_facerec"), ("prob", "truth_ratio"))
    flat["forget"] = hmean_of(FORGET_TASKS, ("prob", "truth_ratio"))
    flat["model_utility"] = hmean_of(UTILITY_TASKS, ("prob", "rouge", "truth_ratio"))
    if gold is not None:
        task = FORGET_QUALITY_TASK
        fq = (M.forget_quality(results[task]["truth_ratios"], gold[task])
              if task in results and gold.get(task) else None)
        flat["forget_quality"] = fq
        flat["log_forget_quality_ln"] = math.log(fq) if fq else None
        flat["log_forget_quality_log10"] = math.log10(fq) if fq else None
        for name in ("forget", "forget_facerec", "tofu_forget"):
            if name in results and gold.get(name):
                flat[f"{name}_forget_quality"] = M.forget_quality(results[name]["truth_ratios"], gold[name])
    return flat


def gold_ratios(results: dict[str, dict[str, Any]]) -> dict[str, list[float]]:
    """The truth ratios later runs compare against (stored next to the gold model's metrics)."""
    return {name: results[name]["truth_ratios"] for name in ("forget", "forget_facerec", "tofu_forget")
            if name in results}
