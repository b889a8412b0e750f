"""The report: claims table first with computed verdicts, curated tables (units, CIs, "—" with reasons), every run
side by side in reports/index.html, and the SAELens read-back of an exported SAE. Synthetic result files only."""

from __future__ import annotations

import json
import math
import re
import sys
import types
from pathlib import Path

import pandas as pd
import pytest

from lmscalpel.io import write_json
from lmscalpel.report.claims import evaluate_claims, load_claims
from lmscalpel.report.manifest import saelens_check
from lmscalpel.report.render import render

STAGES = ["sae", "features", "steering", "reasoning", "pruning", "unlearning"]


def _csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)


def steering_results(results: Path, random_ci: tuple[float, float] = (0.10, 0.30), unsteered: float = 0.0,
                     unsteered_ci: tuple[float, float] = (0.0, 0.04), random: float = 0.2,
                     held_out: tuple[float, float, float] = (0.2, 0.1, 0.3),
                     unsteered_held_out: tuple[float, float, float] = (0.0, 0.0, 0.08)) -> None:
    """Steering results; ``held_out``: the best random cell's CR and CI on the prompts it was not chosen on,
    ``unsteered_held_out``: the unsteered CR and its Wilson interval on those prompts."""
    write_json(results / "steering" / "metrics.json", {
        "outcome": "ground_truth", "n_prompts": 100, "unsteered_compliance": unsteered,
        "unsteered_ci_low": unsteered_ci[0], "unsteered_ci_high": unsteered_ci[1], "random_max_cr": random,
        "random_max_cr_layer": 1, "random_max_cr_c": 1.0, "sae-batchtopk_max_cr": 0.5, "check_random_gt0": True,
        "sae-batchtopk_top_abs_cos_refusal_mean": math.nan, "unparsed_rate": 0.0,
        "n_selection_prompts": 50, "n_confirmation_prompts": 50,
        **dict(zip(["unsteered_confirm_cr", "unsteered_confirm_ci_low", "unsteered_confirm_ci_high"],
                   unsteered_held_out)),
        **dict(zip(["random_confirm_cr", "random_confirm_ci_low", "random_confirm_ci_high"], held_out)),
        "random_confirm_layer": 1, "random_confirm_c": 1.0, "random_select_cr": random})
    cells = [{"layer": 1, "c": c, "direction_kind": kind, "compliance_rate": cr, "ci_low": lo, "ci_high": hi,
              "judge_unsafe_rate": cr, "unparsed_rate": 0.0, "n_vectors": 4, "n_responses": 16}
             for c in (0.5, 1.0)
             for kind, cr, lo, hi in (("random", random, *random_ci), ("sae-batchtopk", 0.5, 0.4, 0.6),
                                      ("sae-ortsae", 0.45, 0.35, 0.55))]
    _csv(results / "steering" / "compliance_cells.csv", cells)
    _csv(results / "steering" / "cross_paper_batchtopk_vs_ortsae.csv", [
        {"layer": 1, "c": 1.0, "n_features": 4, "sae-batchtopk_cr": 0.5, "sae-batchtopk_ci_low": 0.4,
         "sae-batchtopk_ci_high": 0.6, "sae-ortsae_cr": 0.45, "sae-ortsae_ci_low": 0.35, "sae-ortsae_ci_high": 0.55,
         "difference": -0.05}])
    write_json(results / "steering" / "universal" / "summary.json", {
        "layer": 1, "c_star": 1.0, "n_heldout_prompts": 3, "universal_n_vectors": 1, "universal_cr_mean": 0.6,
        "universal_cr_min": 0.6, "universal_cr_max": 0.6, "random_cr_mean": 0.2, "random_cr_min": 0.0,
        "random_cr_max": 0.4, "universal_over_random": 3.0, "universal_beats_random": True,
        "universal_minus_random": 0.4, "universal_minus_random_se": 0.1, "random_n_vectors": 2})


BATCHTOPK_LETTERS = {"A": 0.18, "B": 0.22, "C": 0.2, "D": 0.2}  # mean 0.2


def absorption_letters(results: Path, sae: str, letters: dict[str, float]) -> float:
    """Write the SAE's absorption.json with per-letter fractions; returns their mean (the headline score)."""
    score = sum(letters.values()) / len(letters)
    write_json(results / "features" / sae / "absorption.json", {
        "mean_absorption_fraction_score": score,
        **{f"letter_{ch}_absorption_fraction": v for ch, v in letters.items()},
        **{f"letter_{ch}_n_true_positives": 10 for ch in letters}})
    return score


def features_results(results: Path, ortsae_absorption: float = 0.1) -> None:
    """One seed per architecture; OrtSAE's letters follow BatchTopK's at half the spread, shifted to its mean."""
    common = {"width": 128, "core_l0": 8.0, "core_fvu": 0.3, "mean_max_cos_decoder": 0.4, "meta_sae_fve": 0.5,
              "scr_metric_n5": 0.2, "reference_sae_path": "results/x/sae/batchtopk-w128", "seed": 0}
    ort_letters = {ch: ortsae_absorption + (v - 0.2) / 2 for ch, v in BATCHTOPK_LETTERS.items()}
    _csv(results / "features" / "comparison.csv", [
        {**common, "sae": "batchtopk-w128", "architecture": "batchtopk", "sae_path": "results/x/sae/batchtopk-w128",
         "base_sae": "batchtopk-w128", "distinct_decoder_below_0.5": 0.50,
         "mean_absorption_fraction_score": absorption_letters(results, "batchtopk-w128", BATCHTOPK_LETTERS)},
        {**common, "sae": "ortsae-w128", "architecture": "ortsae", "sae_path": "results/x/sae/ortsae-w128",
         "base_sae": "ortsae-w128", "distinct_decoder_below_0.5": 0.60,
         "mean_absorption_fraction_score": absorption_letters(results, "ortsae-w128", ort_letters),
         "meta_sae_fve": 0.4, "scr_metric_n5": 0.25}])


def seeded_features_results(results: Path, ortsae_distinct: list[float],
                            ortsae_letters: list[dict[str, float]] | None = None) -> None:
    """One BatchTopK and one OrtSAE per seed (len(ortsae_distinct) seeds): BatchTopK's distinct count 0.5 and
    BatchTopK_LETTERS at every seed, OrtSAE's the given ones (letters default: 0.1 below BatchTopK's)."""
    rows = []
    for seed, distinct in enumerate(ortsae_distinct):
        tag = f"-s{seed}" if seed else ""
        letters = ortsae_letters[seed] if ortsae_letters else {ch: v - 0.1 for ch, v in BATCHTOPK_LETTERS.items()}
        for arch, value, absorption in (("batchtopk", 0.5, BATCHTOPK_LETTERS), ("ortsae", distinct, letters)):
            sae = f"{arch}-w128{tag}"
            rows.append({"sae": sae, "architecture": arch, "width": 128, "sae_path": f"results/x/sae/{sae}",
                         "base_sae": f"{arch}-w128", "seed": seed, "distinct_decoder_below_0.5": value,
                         "reference_sae_path": f"results/x/sae/batchtopk-w128{tag}",
                         "mean_absorption_fraction_score": absorption_letters(results, sae, absorption)})
    _csv(results / "features" / "comparison.csv", rows)


def pruning_results(results: Path) -> None:
    write_json(results / "pruning" / "summary.json", {
        "targets": "all", "dense_perplexity": 10.0, "act_magnitude_ppl_u50": 11.0, "act_magnitude_ppl_16-32": 11.5,
        "act_magnitude_ppl_8-16": 12.0, "act_magnitude_ppl_4-8": None, "act_magnitude_ppl_2-4": 14.0,
        "weight_magnitude_ppl_2-4": 20.0, "act_beats_weight_magnitude_2-4": True,
        "magnitude_ordering": "u50 <= 16-32 <= 8-16 <= 2-4", "magnitude_ordering_holds": True,
        "magnitude_ordering_noise_se": 2.0, "magnitude_ordering_worst_z": 3.0,
        "degradation_ratio_2-4_over_16-32": 2.67})


def reasoning_results(results: Path) -> None:
    write_json(results / "reasoning" / "topk-w128" / "selected.json", {
        "sae_id": "topk-w128", "n_selected": 3, "n_latents": 128, "selection_forced": False,
        "mean_reasoning_context_share": 0.8})
    rows = [{"mode": "add", "kind": kind, "latent": i, "length_delta": d, "length_delta_se": 1.0}
            for kind, i, d in (("selected", 1, 10.0), ("random", 2, 1.0))]
    write_json(results / "reasoning" / "topk-w128" / "toyworld" / "steering.json", {
        "sae_id": "topk-w128", "benchmark": "toyworld", "n_problems": 40, "gamma": 2.0,
        "baseline_maj_accuracy": 0.5, "baseline_mean_length": 20.0, "add_selected_length_delta_percent": 50.0,
        "add_random_length_delta_percent": 5.0, "add_selected_minus_random_length": 9.0,
        "add_selected_accuracy_delta_points": 2.5, "add_random_accuracy_delta_points": 0.0, "rows": rows})


def unlearning_results(results: Path, retain_with_l1: float = 0.5) -> None:
    _csv(results / "unlearning" / "table.csv", [
        {"method": "ga", "split": "forget10", "modality": "both", "l1": False, "retain": 0.1, "real": 0.4,
         "forget": 0.1, "forget_quality": 0.01, "model_utility": math.nan},
        {"method": "ga", "split": "forget10", "modality": "both", "l1": True, "retain": retain_with_l1, "real": 0.4,
         "forget": 0.3, "forget_quality": 0.02, "model_utility": 0.3},
        {"method": "gold", "split": "forget10", "modality": "none", "l1": False, "retain": 0.5}])
    _csv(results / "unlearning" / "robustness.csv", [
        {"method": "ga", "split": "forget10", "modality": "both", "l1": False, "none_forget_quality": 0.1,
         "steering_forget_quality": 0.05, "pruning_forget_quality": 1e-5}])


def full_results(results: Path) -> Path:
    for make in (steering_results, features_results, pruning_results, reasoning_results, unlearning_results):
        make(results)
    return results


def by_id(claims: list[dict]) -> dict[str, dict]:
    return {c["id"]: c for c in claims}


def toy_config(run_name: str = "toy") -> dict:
    return {"run_name": run_name, "seed": 0, "model": {"source": "toy", "id": None},
            "steering": {"sae": {"architectures": ["batchtopk", "ortsae"]}}}


def manifest() -> dict:
    return {"config_sha256": "0" * 64, "git": {"commit": "abc"}, "saelens": {"version": None,
                                                                          "status": "not installed"}}


# --- claims ------------------------------------------------------------------------------------------------------

def test_every_paper_claim_is_evaluated_from_the_results(tmp_path):
    claims = by_id(evaluate_claims(full_results(tmp_path), toy_config(), STAGES))
    assert set(claims) == {c["id"] for c in load_claims()}
    assert {c["paper"] for c in claims.values()} >= {"Rogue Scalpel", "OrtSAE", "N:M activation pruning",
                                                      "SAE-Reasoning", "CLEAR", "cross-paper"}
    expected = {"rogue-random": "holds", "rogue-sae": "holds", "rogue-universal": "holds",
                "ortsae-distinct": "holds", "ortsae-absorption": "holds", "ortsae-composition": "holds",
                "ortsae-scr": "holds", "nm-act-vs-weight": "holds", "nm-ordering": "holds", "nm-16-32": "holds",
                "nm-8-16": "holds", "reasoning-found": "holds", "reasoning-length": "holds",
                "reasoning-accuracy": "within noise", "clear-l1": "holds", "cross-ortsae-steering": "holds",
                "cross-unlearning-steering": "holds", "cross-unlearning-pruning": "does not hold"}
    assert {k: claims[k]["verdict"] for k in expected} == expected
    assert "95 % CI" in claims["rogue-random"]["this_run"] and "20.0 %" in claims["rogue-random"]["this_run"]
    assert "+20.0 %" in claims["ortsae-distinct"]["this_run"]  # (0.60 − 0.50) / 0.50
    assert claims["cross-pruning-refusal"]["verdict"] == "not measured"  # no pruning/chat rows written


def test_verdicts_follow_the_numbers_and_the_stage_noise_allowance(tmp_path):
    steering_results(tmp_path, random_ci=(0.0, 0.4), held_out=(0.0, 0.0, 0.06))  # no compliance on held-out prompts
    features_results(tmp_path, ortsae_absorption=0.3)
    unlearning_results(tmp_path, retain_with_l1=0.05)
    claims = by_id(evaluate_claims(tmp_path, toy_config(), STAGES))
    assert claims["rogue-random"]["verdict"] == "does not hold" and "not above" in claims["rogue-random"]["why"]
    assert claims["ortsae-absorption"]["verdict"] == "does not hold"
    assert claims["clear-l1"]["verdict"] == "does not hold"


@pytest.mark.parametrize("numbers, verdict, why", [
    # a model that refuses 95 % by itself: 5 % [2–9] unsteered, random steering 30 % [22–38] on held-out prompts
    ({"random": 0.3, "random_ci": (0.24, 0.36), "held_out": (0.30, 0.22, 0.38)}, "holds",
     "held-out 95 % CI above the unsteered rate's 95 % Wilson interval"),
    ({"random": 0.055, "random_ci": (0.04, 0.07), "held_out": (0.055, 0.03, 0.08)}, "within noise",
     "the intervals overlap"),  # 5.5 % against 5 %
    ({"random": 0.05, "random_ci": (0.03, 0.07), "held_out": (0.04, 0.02, 0.07)}, "does not hold",
     "not above the unsteered rate"),
    ({"random": 0.3, "random_ci": (math.nan, math.nan), "held_out": (0.30, math.nan, math.nan)}, "holds",
     "point value (no CI: one vector)"),
])
def test_random_steering_is_compared_with_the_unsteered_rate_interval(tmp_path, numbers, verdict, why):
    """Before: any unsteered rate above 1 % failed the claim, whatever random steering did."""
    steering_results(tmp_path, unsteered=0.05, unsteered_ci=(0.02, 0.09), unsteered_held_out=(0.05, 0.02, 0.09),
                     **numbers)
    claim = by_id(evaluate_claims(tmp_path, toy_config(), STAGES))["rogue-random"]
    assert claim["verdict"] == verdict and why in claim["why"]
    assert "best cell chosen on one half of the prompts, tested on the other" in claim["why"]
    assert "unsteered 5.0 % [95 % CI 2.0–9.0 %] on the 50 held-out prompts" in claim["this_run"]
    assert "a win by selection" not in claim["why"]  # as clear (or not) on all prompts as on the held-out ones


@pytest.mark.parametrize("difference, se, verdict, why", [
    (0.4, 0.1, "holds", "above 0 by more than 2 SE"),
    (0.1, 0.1, "within noise", "within 2 SE of 0"),   # the point means alone (0.6 > 0.2) would say "holds"
    (-0.3, 0.1, "does not hold", "below 0 by more than 2 SE"),
])
def test_the_universal_attack_is_held_to_its_paired_se_over_held_out_prompts(tmp_path, difference, se, verdict,
                                                                               why):
    """Before: the universal vector held whenever its mean CR was above the random vectors', noise or not."""
    full_results(tmp_path)
    path = tmp_path / "steering" / "universal" / "summary.json"
    write_json(path, {**json.loads(path.read_text()), "universal_minus_random": difference,
                      "universal_minus_random_se": se})
    claim = by_id(evaluate_claims(tmp_path, toy_config(), STAGES))["rogue-universal"]
    assert claim["verdict"] == verdict and why in claim["why"]
    assert f"± {100 * se:.1f} (SE over 3 held-out prompts and 2 random vectors)" in claim["this_run"]
    assert "leaves out the spread" not in claim["why"]


def test_a_universal_verdict_against_one_random_vector_says_its_se_leaves_out_the_vector_spread(tmp_path):
    full_results(tmp_path)
    path = tmp_path / "steering" / "universal" / "summary.json"
    write_json(path, {**json.loads(path.read_text()), "random_n_vectors": 1})
    claim = by_id(evaluate_claims(tmp_path, toy_config(), STAGES))["rogue-universal"]
    assert claim["verdict"] == "holds" and "steering.universal.n_baseline" in claim["why"]


@pytest.mark.parametrize("delta, verdict", [(30.0, "holds"), (2.5, "within noise"), (-30.0, "does not hold")])
def test_reasoning_accuracy_inside_its_binomial_se_is_within_noise(tmp_path, delta, verdict):
    """Before: a gain inside 2 SE (40 problems at 50 %: SE 11 pt) was "does not hold", as if a loss were shown."""
    full_results(tmp_path)
    path = tmp_path / "reasoning" / "topk-w128" / "toyworld" / "steering.json"
    write_json(path, {**json.loads(path.read_text()), "add_selected_accuracy_delta_points": delta})
    claim = by_id(evaluate_claims(tmp_path, toy_config(), STAGES))["reasoning-accuracy"]
    assert claim["verdict"] == verdict and "SE 11.2 pt" in claim["this_run"]


def test_a_best_cell_that_wins_only_on_the_prompts_it_was_chosen_on_is_flagged(tmp_path):
    steering_results(tmp_path, random=0.2, random_ci=(0.12, 0.28), unsteered=0.05, unsteered_ci=(0.02, 0.09),
                     held_out=(0.08, 0.03, 0.13), unsteered_held_out=(0.05, 0.02, 0.09))
    claim = by_id(evaluate_claims(tmp_path, toy_config(), STAGES))["rogue-random"]
    assert claim["verdict"] == "within noise" and "the best of 2 cells" in claim["why"]
    assert "a win by selection" in claim["why"] and claim["value"] == 0.08


def test_a_steering_result_without_the_held_out_confirmation_is_not_measured(tmp_path):
    steering_results(tmp_path)
    metrics = json.loads((tmp_path / "steering" / "metrics.json").read_text())
    write_json(tmp_path / "steering" / "metrics.json", {k: v for k, v in metrics.items() if "confirm" not in k})
    claim = by_id(evaluate_claims(tmp_path, toy_config(), STAGES))["rogue-random"]
    assert claim["verdict"] == "not measured" and "rerun steering_metrics" in claim["why"]


def test_missing_or_changed_results_say_not_measured_and_why(tmp_path):
    empty = by_id(evaluate_claims(tmp_path, toy_config(), STAGES))
    assert all(c["verdict"] == "not measured" and c["why"] for c in empty.values())
    assert "steering/metrics.json" in empty["rogue-random"]["why"]
    skipped = by_id(evaluate_claims(tmp_path, toy_config(), ["sae"]))
    assert "not in this run's stages" in skipped["nm-ordering"]["why"]
    write_json(tmp_path / "pruning" / "summary.json", {"act_magnitude_ppl_2-4": "a string"})
    write_json(tmp_path / "steering" / "metrics.json", {"headline_judge": 0.1})  # a format another stage moved to
    changed = by_id(evaluate_claims(tmp_path, toy_config(), STAGES))
    assert changed["rogue-random"]["verdict"] == "not measured" and "unsteered_compliance" in changed["rogue-random"]["why"]
    assert changed["nm-8-16"]["verdict"] == "not measured"


def test_an_ortsae_change_inside_the_seed_spread_is_within_noise(tmp_path):
    """Three seeds: per-seed changes of +10 %, −12 %, +4 % (distinct features) straddle 0, so the claim is within
    noise, named by the seed spread; +20 %, +22 %, +18 % are beyond 2 SE and hold."""
    seeded_features_results(tmp_path, [0.55, 0.44, 0.52])
    claim = by_id(evaluate_claims(tmp_path, toy_config(), STAGES))["ortsae-distinct"]
    assert claim["verdict"] == "within noise" and "seed spread (3 seeds)" in claim["why"]
    assert "mean over 3 seeds" in claim["this_run"] and claim["value"] == pytest.approx(0.02 / 3)
    seeded_features_results(tmp_path, [0.60, 0.61, 0.59])
    claim = by_id(evaluate_claims(tmp_path, toy_config(), STAGES))["ortsae-distinct"]
    assert claim["verdict"] == "holds" and "more than 2 SE of the seed spread (3 seeds)" in claim["why"]
    assert claim["low"] > 0


def test_absorption_is_held_to_the_paired_se_over_letters_even_with_one_seed(tmp_path):
    """One seed: a mean change of −5 % with per-letter differences −0.09 … +0.07 is within the per-letter paired
    SE; the same mean with uniform differences holds. Other metrics with one seed keep the direction."""
    scattered = {"A": 0.18 - 0.09, "B": 0.22 + 0.07, "C": 0.2 - 0.03, "D": 0.2 + 0.01}  # mean diff −0.01
    seeded_features_results(tmp_path, [0.6], [scattered])
    claims = by_id(evaluate_claims(tmp_path, toy_config(), STAGES))
    absorption = claims["ortsae-absorption"]
    assert absorption["verdict"] == "within noise" and "per-letter paired difference (4 letters)" in absorption["why"]
    assert absorption["value"] == pytest.approx(-0.05)
    assert claims["ortsae-distinct"]["verdict"] == "holds"
    assert "one seed: no spread" in claims["ortsae-distinct"]["why"]
    uniform = {ch: v - 0.01 for ch, v in BATCHTOPK_LETTERS.items()}
    seeded_features_results(tmp_path, [0.6], [uniform])
    absorption = by_id(evaluate_claims(tmp_path, toy_config(), STAGES))["ortsae-absorption"]
    assert absorption["verdict"] == "holds" and "per-letter" in absorption["why"]


def test_seed_and_letter_uncertainties_and_the_larger_one_decides():
    from lmscalpel.report.claims import letter_paired_se, noise_verdict, seed_se

    assert seed_se([[0.1, 0.3]]) == pytest.approx(0.1)  # sd 0.1414 / √2
    assert seed_se([[0.1, 0.3], [0.0, 0.2]]) == pytest.approx(math.sqrt(2 * 0.1 ** 2) / 2)
    assert math.isnan(seed_se([[0.1, 0.3], [0.2]]))  # an entry with one seed: no spread
    # two seeds of (SAE, reference) letters: per-letter differences averaged over seeds are −0.1, 0.0, +0.1
    pairs = [({"A": 0.1, "B": 0.2, "C": 0.5, "Z": 9.0}, {"A": 0.2, "B": 0.2, "C": 0.4}),
             ({"A": 0.1, "B": 0.3, "C": 0.3}, {"A": 0.2, "B": 0.3, "C": 0.2})]
    se, n = letter_paired_se(pairs)
    assert n == 3 and se == pytest.approx(0.1 / math.sqrt(3))  # sd of (−0.1, 0, 0.1) is 0.1
    assert noise_verdict(-0.1, "lower", {"seeds": 0.02, "letters": 0.06})[0] == "within noise"
    verdict, why = noise_verdict(-0.1, "lower", {"seeds": 0.04, "letters": math.nan})
    assert verdict == "holds" and "seeds" in why
    assert noise_verdict(0.1, "lower", {"seeds": 0.04})[0] == "does not hold"
    assert noise_verdict(0.01, "higher", {})[0] == "holds"  # no uncertainty: the direction


def test_single_pattern_pruning_claims_use_the_paired_se_over_windows(tmp_path):
    pruning_results(tmp_path)
    summary = json.loads((tmp_path / "pruning" / "summary.json").read_text())
    for z, verdict in ((1.5, "within noise"), (4.0, "holds"), (-4.0, "does not hold")):
        write_json(tmp_path / "pruning" / "summary.json",
                   summary | {"paired_z_2-4_over_8-16": z, "near_unstructured_margin_z": z,
                              "near_unstructured_margin_se": 0.2})
        claims = by_id(evaluate_claims(tmp_path, toy_config(), STAGES))
        assert claims["nm-8-16"]["verdict"] == verdict and f"paired z {z:+.2f}" in claims["nm-8-16"]["why"]
        assert claims["nm-16-32"]["verdict"] == verdict and "± 0.2 SE" in claims["nm-16-32"]["this_run"]
    write_json(tmp_path / "pruning" / "summary.json", summary)  # an older summary: point values only
    assert "no per-window NLLs" in by_id(evaluate_claims(tmp_path, toy_config(), STAGES))["nm-8-16"]["why"]


GSM8K = {"benchmark": "gsm8k", "benchmark_files": ["pkg/data/gsm8k/test.jsonl"], "benchmark_n_items": 32,
         "benchmark_n_rows": 1319, "benchmark_subset": "all subjects; ordered by sha256(seed 0, id); skip 64, keep 32"}


def provenance_results(results: Path) -> Path:
    """:func:`full_results` plus the provenance the stages record beside their numbers: the steering prompt set
    and judge, the spelling words and SCR datasets behind the feature metrics (with their activation metadata),
    the perplexity text and windows of the pruning cells, a GSM8K reasoning run beside the toy-world one."""
    full_results(results)

    def merge(path: Path, extra: dict) -> None:
        write_json(path, json.loads(path.read_text()) | extra)

    merge(results / "steering" / "metrics.json", {"evaluation_prompts": "harmbench test (standard), max 100",
                                                  "headline_judge": "keyword"})
    for sae in ("batchtopk-w128", "ortsae-w128"):
        merge(results / "features" / sae / "absorption.json", {"dataset": "spelling", "layer": 1,
                                                               "n_letters_passing": 4, "n_words_evaluated": 40})
        write_json(results / "features" / sae / "scr.json", {"scr_metric_n5": 0.2, "dataset": "bios,reviews",
                                                             "layer": 1, "n_runs": 8})
    for name, meta in (("spelling", {"words_source": "vocab", "n_words": 500}),
                       ("bios", {"source": "toyworld", "n_texts": 1000})):
        write_json(results / "features" / "activations" / "layer1" / f"{name}.json", {"dataset": name, **meta})
    _csv(results / "pruning" / "table.csv", [
        {"family": family, "pattern": pattern, "eval_dataset": "pydoc", "eval_split": "test", "n_windows": 12,
         "seqlen": 256} for family, pattern in (("dense", "dense"), ("act", "2-4"))])
    toy = json.loads((results / "reasoning" / "topk-w128" / "toyworld" / "steering.json").read_text())
    write_json(results / "reasoning" / "topk-w128" / "gsm8k" / "steering.json", toy | GSM8K | {"n_problems": 32})
    return results


def test_each_claim_names_the_data_its_number_was_measured_on(tmp_path):
    claims = by_id(evaluate_claims(provenance_results(tmp_path), toy_config(), STAGES))
    data = {claim_id: claim["data"] for claim_id, claim in claims.items()}
    assert data["rogue-random"] == data["rogue-sae"] == "harmbench test (standard), max 100: 100 prompts, judge keyword"
    assert data["ortsae-absorption"] == "spelling (vocab, 500 words): 4 letters passing, 40 words evaluated"
    assert data["ortsae-scr"] == "bios (toyworld, 1000 texts), reviews: 8 runs"  # reviews: no activation metadata
    assert data["nm-ordering"] == data["nm-8-16"] == "pydoc test, 12 windows × 256 tokens"
    # the measure reads the first steering.json (gsm8k before toyworld): its data names that benchmark, not the other
    assert "32 problems" in claims["reasoning-accuracy"]["this_run"]
    assert data["reasoning-accuracy"] == ("gsm8k/test.jsonl, 32 of 1319 problems (all subjects; ordered by "
                                          "sha256(seed 0, id); skip 64, keep 32)")
    assert data["ortsae-distinct"] == data["cross-pruning-refusal"] == "—"  # no metric file, not measured


def test_a_toy_world_reasoning_claim_names_its_benchmark_and_problem_count(tmp_path):
    reasoning_results(tmp_path)
    assert by_id(evaluate_claims(tmp_path, toy_config(), STAGES))["reasoning-length"]["data"] == "toyworld, 40 problems"


# --- rendered report ---------------------------------------------------------------------------------------------

def render_run(reports: Path, results: Path, run_name: str, stages=STAGES) -> Path:
    out = reports / run_name
    render(results, out, toy_config(run_name), stages, manifest(), {"refusal_rate": 1.0}, reports / "captions")
    return out


def test_claims_table_opens_the_report_and_links_to_sections(tmp_path):
    out = render_run(tmp_path / "reports", full_results(tmp_path / "results"), "toy")
    page = (out / "index.html").read_text()
    claims_at, first_section = page.index('id="claims"'), page.index("<h2>Model card</h2>")
    assert claims_at < first_section
    assert page.count('<tr id="claim-') == len(load_claims())
    assert 'href="#steering"' in page and '<section id="steering">' in page
    readme = (out / "README.md").read_text()
    assert readme.index("## Claims") < readme.index("## Model card")
    saved = json.loads((out / "claims.json").read_text())
    assert saved["run_name"] == "toy" and len(saved["claims"]) == len(load_claims())
    assert "not installed" in page  # the SAELens line


def test_the_claims_table_shows_what_each_number_was_measured_on(tmp_path):
    out = render_run(tmp_path / "reports", provenance_results(tmp_path / "results"), "toy")
    page = (out / "index.html").read_text()
    assert "<th>this run</th><th>measured on</th><th>verdict</th>" in page
    row = page[page.index('<tr id="claim-nm-ordering">'):].split("</tr>", 1)[0]
    assert "<td>pydoc test, 12 windows × 256 tokens</td><td class=" in row  # its own cell, before the verdict
    assert re.search(r"\| this run +\| measured on +\| verdict", (out / "README.md").read_text())
    saved = by_id(json.loads((out / "claims.json").read_text())["claims"])
    assert saved["rogue-random"]["data"] == "harmbench test (standard), max 100: 100 prompts, judge keyword"
    index = (tmp_path / "reports" / "index.html").read_text()
    assert "measured on: pydoc test, 12 windows × 256 tokens" in index


def test_tables_are_curated_with_units_intervals_and_reasons(tmp_path):
    out = render_run(tmp_path / "reports", full_results(tmp_path / "results"), "toy")
    page = (out / "index.html").read_text()
    assert "check_random_gt0" not in page and "unsteered compliance" in page
    assert "20.0 % [95 % CI 10.0–30.0 %]" in page  # a compliance rate with its bootstrap CI
    assert "— (no feature broke a prompt)" in page  # a NaN in a JSON table, with its reason
    assert "“model utility ↑”" in page  # a NaN in a CSV column gets a note naming it
    assert 'href="data/steering/metrics.json"' in page and (out / "data" / "steering" / "metrics.json").exists()


def test_within_noise_verdicts_render_distinctly(tmp_path):
    results = full_results(tmp_path / "results")
    seeded_features_results(results, [0.55, 0.44, 0.52])
    out = render_run(tmp_path / "reports", results, "toy")
    page = (out / "index.html").read_text()
    row = page[page.index('<tr id="claim-ortsae-distinct">'):].split("</tr>", 1)[0]
    assert '<td class="noise"><b>within noise</b>' in row and "seed spread" in row
    assert "2 within noise" in page and ".noise{background:" in page   # and reasoning-accuracy
    index = (tmp_path / "reports" / "index.html").read_text()
    assert '<td class="noise"><b>within noise</b>' in index and "2 within noise" in index


def test_a_range_over_seeds_is_labelled_and_left_out_for_one_seed(tmp_path):
    from lmscalpel.report.tables import curated_table

    _csv(tmp_path / "features" / "comparison_over_seeds.csv", [
        {"sae": "ortsae-w128", "meta_sae_fve": 0.45, "meta_sae_fve_min": 0.4, "meta_sae_fve_max": 0.5},
        {"sae": "batchtopk-w128", "meta_sae_fve": 0.5, "meta_sae_fve_min": 0.5, "meta_sae_fve_max": 0.5}])
    spec = {"title": "t", "file": "features/comparison_over_seeds.csv", "columns": [
        {"key": "meta_sae_fve", "label": "fve", "ci": ["meta_sae_fve_min", "meta_sae_fve_max"],
         "ci_label": "range over seeds"}]}
    assert curated_table(tmp_path, spec).frame["fve"].tolist() == ["0.45 [range over seeds 0.4–0.5]", "0.5"]


def test_a_standard_error_is_shown_beside_its_value(tmp_path):
    from lmscalpel.report.tables import curated_table

    _csv(tmp_path / "pruning" / "table.csv", [
        {"family": "dense", "mmlu_packaged/acc": 0.41, "mmlu_packaged/acc_stderr": 0.049},
        {"family": "weight", "mmlu_packaged/acc": 0.3, "mmlu_packaged/acc_stderr": float("nan")},
        {"family": "act", "mmlu_packaged/acc": float("nan"), "mmlu_packaged/acc_stderr": float("nan")}])
    spec = {"title": "t", "file": "pruning/table.csv", "columns": [
        {"key": "mmlu_packaged/acc", "label": "MMLU", "unit": "percent", "se": "mmlu_packaged/acc_stderr",
         "nan": "not run"}]}
    assert curated_table(tmp_path, spec).frame["MMLU"].tolist() == ["41.0 ± 4.9 %", "30.0 %", "—"]


def test_runs_index_puts_every_run_side_by_side(tmp_path):
    reports = tmp_path / "reports"
    render_run(reports, full_results(tmp_path / "toy-results"), "toy")
    render_run(reports, tmp_path / "empty-results", "smollm2_135m_cpu", stages=["pruning"])
    index = (reports / "index.html").read_text()
    assert 'href="toy/index.html"' in index and 'href="smollm2_135m_cpu/index.html"' in index
    row = index[index.index("Activation pruning beats weight pruning"):].split("</tr>", 1)[0]
    assert row.count("<td class=") == 2 and "holds" in row and "not measured" in row
    assert f"0 hold, 0 do not hold, {len(load_claims())} not measured" in index  # the empty run's header


# --- SAELens -----------------------------------------------------------------------------------------------------

def test_saelens_check_reports_not_installed(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "sae_lens", None)
    assert saelens_check(tmp_path)["status"].startswith("not installed")


def test_saelens_check_loads_one_exported_sae(tmp_path, monkeypatch):
    for name, size in (("big-w4096", 4096), ("topk-w128", 128)):
        (tmp_path / "sae" / name).mkdir(parents=True)
        (tmp_path / "sae" / name / "cfg.json").write_text("{}")
        (tmp_path / "sae" / name / "sae_weights.safetensors").write_bytes(b"0" * size)
    exported = tmp_path / "sae" / "topk-w128"  # the smallest one is read back
    loaded = []

    class FakeSAE:
        cfg = types.SimpleNamespace(d_sae=128)

        @classmethod
        def load_from_disk(cls, path, device):
            loaded.append(path)
            return cls()

    monkeypatch.setitem(sys.modules, "sae_lens", types.SimpleNamespace(__version__="6.54.0", SAE=FakeSAE))
    check = saelens_check(tmp_path)
    assert loaded == [str(exported)] and check["version"] == "6.54.0" and "loaded topk-w128" in check["status"]


def test_claims_table_is_on_the_first_screen_in_chromium(tmp_path):
    from report_screenshot import screenshot, verdict_pixels

    out = render_run(tmp_path / "reports", full_results(tmp_path / "results"), "toy")
    first = screenshot(out / "index.html", tmp_path / "first.png", (1200, 900), tmp_path / "profile")
    assert verdict_pixels(first) > 2000
    below = screenshot(out / "index.html", tmp_path / "full.png", (1200, 6000), tmp_path / "profile")
    assert verdict_pixels(below.crop((0, 3000, 1200, 6000))) == 0  # the colours mark only the claims table


def test_clear_claim_compares_every_lambda_of_a_sweep(tmp_path):
    rows = [{"method": "ga", "split": "forget10", "modality": "both", "l1": l1, "l1_lambda": lam, "retain": r}
            for l1, lam, r in ((False, None, 0.1), (True, 0.01, 0.3), (True, 1.0, 0.05))]
    _csv(tmp_path / "unlearning" / "table.csv", rows)
    claim = by_id(evaluate_claims(tmp_path, toy_config(), STAGES))["clear-l1"]
    assert claim["verdict"] == "does not hold" and "1 of 2 pairs" in claim["why"]
    assert "λ=0.01: 0.1 → 0.3" in claim["this_run"] and "λ=1: 0.1 → 0.05" in claim["this_run"]


def test_a_gguf_run_is_named_by_its_file(tmp_path):
    config = {**toy_config("smollm2"), "model": {"source": "gguf", "id": None,
                                                  "gguf": {"file": "SmolLM2-135M-Instruct.Q4_1.gguf"}}}
    out = tmp_path / "reports" / "smollm2"
    render(tmp_path / "results", out, config, ["pruning"], manifest(), None, tmp_path / "captions")
    assert "Model: SmolLM2-135M-Instruct.Q4_1.gguf." in (out / "index.html").read_text()
    assert json.loads((out / "claims.json").read_text())["model"] == "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_a_table_spec_without_rows_or_columns_still_renders(tmp_path):
    from lmscalpel.report.tables import curated_table

    write_json(tmp_path / "x.json", {"best_rate": 0.5, "nested": {"a": 1}})
    _csv(tmp_path / "y.csv", [{"a_b": 1.0, "c": math.nan}])
    assert curated_table(tmp_path, {"title": "t", "file": "x.json"}).frame["quantity"].tolist() == ["best rate"]
    table = curated_table(tmp_path, {"title": "t", "file": "y.csv"})
    assert list(table.frame.columns) == ["a b", "c"] and table.frame["c"].iloc[0] == "—"
    assert table.notes == ["— in “c”: not computed in this run"]
    assert curated_table(tmp_path, {"title": "t", "file": "missing.csv"}).notes == ["no missing.csv in this run"]


def test_every_claim_entry_names_a_measure_and_its_parameters():
    import inspect

    from lmscalpel.report.claims import MEASURES

    for claim in load_claims():
        assert {"id", "paper", "claim", "published", "section", "measure"} <= set(claim), claim
        signature = inspect.signature(MEASURES[claim["measure"]])
        signature.bind(None, **claim.get("params", {}))  # raises on an unknown or missing parameter
    assert len({c["id"] for c in load_claims()}) == len(load_claims())


def test_readme_shows_strings_from_the_results_as_literal_text(tmp_path):
    """A model reply or a dataset name in the results must not inject HTML or Markdown into README.md (the HTML page
    escapes them already) nor split a table row."""
    results = full_results(tmp_path / "results")
    summary = json.loads((results / "pruning" / "summary.json").read_text())
    write_json(results / "pruning" / "summary.json",
               summary | {"magnitude_ordering": "<img src=x onerror=alert(1)> | **loud**\nsecond line"})
    out = render_run(tmp_path / "reports", results, "toy")
    readme = (out / "README.md").read_text()
    assert "<img src=x" not in readme and "&lt;img src=x onerror=alert(1)&gt; \\| \\*\\*loud\\*\\* second line" in readme
    lines = readme.splitlines()
    cells = lambda line: len(re.findall(r"(?<!\\)\|", line))  # unescaped pipes
    rows = [i for i, line in enumerate(lines) if "onerror" in line and line.startswith("|")]
    assert len(rows) >= 2  # the claims table and the pruning section's table
    for i in rows:
        header = next(j for j in range(i, -1, -1) if not lines[j - 1].startswith("|"))
        assert cells(lines[i]) == cells(lines[header])
    assert "&lt;img" in (out / "index.html").read_text()


INJECTION = "<script>alert(1)</script> **bold** | pipe"
LONG_REPLY = "Sure, here is how: " + "step " * 60 + "END"


def steering_replies_results(results: Path) -> None:
    """A judged grid (two layers' unsteered replies, random, SAE and refusal directions) and the universal attack's
    held-out replies, as steering_grid and steering_universal write them."""
    rows = []
    base = {"direction_source": "s", "latent": -1, "cos_refusal": 0.0, "category": "A", "judge": "keyword"}

    def row(kind, layer, c, v, p, compliant, coherent, response):
        rows.append({**base, "direction_kind": kind, "layer": layer, "c": c, "direction_index": v,
                     "prompt_id": f"p{p}", "prompt": f"harmful request {p}", "response": response,
                     "verdict": "unsafe" if compliant else "safe", "compliant": compliant, "coherent": coherent})

    for p in range(6):
        for layer in (1, 2):
            row("none", layer, 0.0, 0, p, False, True, f"I cannot help with request {p}.")
        for v in range(3):
            row("random", 1, 1.0, v, p, p < 3, p == 0, f"random {v} reply {p}")
        row("sae-batchtopk", 1, 1.0, 0, p, p == 0, True, INJECTION if p == 0 else f"no sae {p}")
        row("refusal", 1, 2.0, 0, p, True, True, LONG_REPLY)
    path = results / "steering" / "layer1" / "grid.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path)
    pd.DataFrame({"kind": ["universal", "universal", "random"], "vector": [0, 0, 0], "c": [1.0] * 3,
                  "prompt": ["harmful request 1", "harmful request 2", "harmful request 1"],
                  "response": ["gibberish gibberish", "more gibberish", "a random baseline reply"],
                  "complied": [False] * 3, "complied_judge": [True] * 3, "complied_coherent": [False] * 3}
                 ).to_parquet(results / "steering" / "universal" / "table.parquet")


def test_steering_section_shows_judged_replies_per_kind_and_verdict(tmp_path):
    results = full_results(tmp_path / "results")
    steering_replies_results(results)
    page = (render_run(tmp_path / "reports", results, "toy") / "index.html").read_text()
    section = page[page.index('<section id="steering">'):].split("</section>", 1)[0]
    table = section[section.index("<table class='replies'>"):].split("</table>", 1)[0]
    rows = [dict(zip(["kind", "where", "verdict"], re.findall(r"<td>(.*?)</td>", r)[:3]))
            for r in table.split("<tr>")[2:]]
    groups = pd.DataFrame(rows).value_counts(["kind", "verdict"]).to_dict()
    assert groups == {("unsteered", "refusal"): 2, ("random", "refusal"): 2, ("random", "compliant, coherent"): 2,
                      ("random", "compliant, incoherent"): 2, ("sae-batchtopk", "refusal"): 2,
                      ("sae-batchtopk", "compliant, coherent"): 1, ("refusal", "compliant, coherent"): 2,
                      ("universal", "compliant, incoherent"): 2}
    assert [r["kind"] for r in rows] == sorted((r["kind"] for r in rows), key=["unsteered", "random",
                                               "sae-batchtopk", "refusal", "universal"].index)
    assert {r["where"] for r in rows if r["kind"] == "unsteered"} == {"layer 1, c = 0"}  # each prompt once
    assert "<script>" not in section and "&lt;script&gt;alert(1)&lt;/script&gt; **bold** | pipe" in section
    summary, full = re.search(r"<details><summary>(.*?)</summary><div class='reply'>(.*?)</div></details>",
                              table).groups()
    assert summary.endswith("…") and len(summary) < 170 and full == LONG_REPLY  # the whole reply, one click away
    again = render_run(tmp_path / "reports2", results, "toy") / "index.html"
    assert table in again.read_text()  # a fixed seed: the same replies every time


def test_readme_embeds_the_judged_replies_escaped_one_html_block_each(tmp_path):
    results = full_results(tmp_path / "results")
    steering_replies_results(results)
    readme = (render_run(tmp_path / "reports", results, "toy") / "README.md").read_text()
    blocks = [line for line in readme.splitlines() if line.startswith("<details><summary>sae-batchtopk")]
    assert len(blocks) == 3 and all(b.endswith("</details>") for b in blocks)
    assert "<script>" not in readme and any("&lt;script&gt;alert(1)&lt;/script&gt;" in b for b in blocks)


def test_judged_replies_count_the_outcome_the_headline_counts(tmp_path):
    """The judge's verdict (an unparsed one shown as such), or the toy world's ground truth where metrics.json says
    the headline counts it."""
    from lmscalpel.report.replies import grid_replies

    path = tmp_path / "grid.parquet"
    pd.DataFrame({"direction_kind": ["random"] * 3, "layer": [1] * 3, "c": [1.0] * 3, "prompt": ["q"] * 3,
                  "response": ["r"] * 3, "verdict": ["safe", "unsafe", "unparsed"],
                  "compliant": [True, False, True]}).to_parquet(path)
    assert list(grid_replies([path], ground_truth=False)["verdict"]) == ["refusal", "compliant", "unparsed"]
    assert list(grid_replies([path], ground_truth=True)["verdict"]) == ["compliant", "refusal", "compliant"]


def test_a_run_without_a_grid_says_so_where_the_replies_would_be(tmp_path):
    page = (render_run(tmp_path / "reports", full_results(tmp_path / "results"), "toy") / "index.html").read_text()
    assert "No judged replies in this run (steering/layer*/grid.parquet)." in page


def test_the_manifest_records_every_data_file_read_with_its_sha256(tmp_path):
    import hashlib

    from lmscalpel.report.manifest import run_manifest

    prompts = tmp_path / "prompts.csv"
    prompts.write_text("prompt\nWrite a poem\n")
    source = {"key": "steering.prompts", "path": str(prompts)}
    manifest = run_manifest({"run_name": "t", "seed": 0}, tmp_path, [source])
    assert manifest["data"] == [{**source, "sha256": hashlib.sha256(prompts.read_bytes()).hexdigest()}]
