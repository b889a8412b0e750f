"""Integration: the real Snakemake DAG (toy world → tiny Llama → model card → activation cache) on a small config
in a temporary directory; a second run has nothing to do; the scripts also run outside Snakemake."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lmscalpel.cache import ActivationReader
from lmscalpel.io import read_json

from conftest import REPO_ROOT, SMALL_TOYWORLD, TINY_LLAMA

pytestmark = pytest.mark.integration
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
SMALL = {
    "run_name": "itest", "stages": [],
    "toyworld": SMALL_TOYWORLD,
    "toy_model": {**TINY_LLAMA, "vocab_size": 400, "context_length": 64, "batch_size": 8, "steps": 30,
                  "warmup_steps": 5, "checkpoint_every": 10},
    "model_card": {"max_new_tokens": 8, "n_eval_per_family": 8, "min_refusal_rate": 0.0, "min_benign_compliance": 0.0},
    "cache": {"layers": [0, 1], "context_length": 64, "n_tokens": 3000, "shard_tokens": 1000, "batch_size": 8},
}


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [*SNAKEMAKE, "--snakefile", str(REPO_ROOT / "Snakefile"), "--directory", str(workdir), "--cores", "2",
           "--configfile", str(workdir / "small.yaml"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("pipeline")
    shutil.copy(REPO_ROOT / "config.yaml", workdir / "config.yaml")
    (workdir / "small.yaml").write_text(yaml.safe_dump(SMALL))
    result = snakemake(workdir)
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir


def test_outputs_and_logs(run_dir):
    results = run_dir / "results" / "itest"
    card = read_json(results / "model" / "model_card.json")
    for key in ("refusal_rate", "benign_compliance", "arithmetic_accuracy", "first_letter_accuracy",
                "heldout_perplexity", "n_layers"):
        assert key in card
    assert card["n_layers"] == 2 and 1 < card["heldout_perplexity"] < 400
    assert (results / "model" / "toy-llama" / "model.safetensors").exists()
    for layer in (0, 1):
        reader = ActivationReader(results / "cache" / f"layer{layer}-resid_post", verify=True)
        assert reader.d_model == 64 and reader.n_tokens > 2000
        assert reader.manifest["model"].endswith("toy-llama") and reader.manifest["layer"] == layer
    logs = {p.name for p in (run_dir / "logs" / "itest").rglob("*.log")}
    assert {"generate_toyworld.log", "train_toy_model.log", "model_card.log", "cache_activations.log"} <= logs
    assert (run_dir / "checkpoints" / "itest" / "model" / "toy-llama" / "last" / "model.safetensors").exists()


def test_second_run_has_nothing_to_do(run_dir):
    result = snakemake(run_dir, "--dry-run")
    assert result.returncode == 0 and "Nothing to be done" in result.stdout + result.stderr


def test_bad_config_stops_before_any_job(run_dir, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"toy_model": {"hidden_sise": 3}}))
    result = snakemake(run_dir, "--configfile", str(bad), "--dry-run")
    assert result.returncode != 0
    assert "config key toy_model.hidden_sise: unknown key" in result.stdout + result.stderr


def test_script_runs_outside_snakemake(run_dir):
    for name in ("Snakefile", "workflow"):
        (run_dir / name).symlink_to(REPO_ROOT / name)
    out = run_dir / "results" / "itest" / "toyworld"
    shutil.rmtree(out)
    result = subprocess.run([sys.executable, str(REPO_ROOT / "workflow" / "scripts" / "generate-toyworld.py"),
                             "generate_toyworld", "--configfile", "small.yaml"], cwd=run_dir, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "train.jsonl").exists() and (out / "portraits").is_dir()
