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
from lmscalpel.features import plan as features_plan
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
    assert set(steering_plan.setup_config(cfg)) == {"prompts", "mu", "skip_tokens"}
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
                             "capability": {"task": "mmlu"}}}
    cfg = planned()
    assert steering_plan.toyworld_keys(cfg) == ["steering.prompts.source", "steering.capability.task"]
    assert "features.absorption.words" in features_plan.toyworld_keys(cfg)
    assert steering_plan.toyworld_keys(planned(hub_text)) == []
