"""Integration: every stage of the real DAG (toy world → tiny Llama → model card → cache → SAEs → metrics, steering,
reasoning, pruning, unlearning → report) on a tiny config in a temporary directory; logs and checkpoints; bad
config; scripts outside Snakemake; no-op reruns; a parameter change reruns only its stage; a second run from
scratch reproduces every metric JSON."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lmscalpel.cache import ActivationReader

from conftest import REPO_ROOT
from report_screenshot import ImageStat, screenshot, verdict_pixels
from pipeline_config import pipeline_config

pytestmark = pytest.mark.integration
ARTIFACTS = REPO_ROOT / "test-artifacts"
STAGE_OF_RULE = re.compile(r"^([a-z_0-9]+)\s+(\d+)$")


def snakemake(workdir: Path, *args: str, timeout: int = 1800, warm_worker: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO_ROOT / "Snakefile"), "--directory", str(workdir),
           "--cores", "2", "--configfile", str(workdir / "small.yaml"), *args]
    env = {**os.environ, **({} if warm_worker else {"LMSCALPEL_JOBSERVER": "off"})}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def fresh_run(workdir: Path, run_name: str, warm_worker: bool = True) -> Path:
    shutil.copy(REPO_ROOT / "config.yaml", workdir / "config.yaml")
    (workdir / "small.yaml").write_text(yaml.safe_dump(pipeline_config(run_name)))
    result = snakemake(workdir, warm_worker=warm_worker)
    assert result.returncode == 0, (result.stdout + result.stderr)[-8000:]
    return workdir


def planned_rules(result: subprocess.CompletedProcess) -> set[str]:
    """Rule names from the 'Job stats' table of a dry run."""
    text = result.stdout + result.stderr
    if "Nothing to be done" in text:
        return set()
    table = text.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    return {m.group(1) for line in table.splitlines() if (m := STAGE_OF_RULE.match(line.strip()))} - {"total"}


def metric_jsons(workdir: Path) -> dict[str, object]:
    """Every JSON under results/, without wall-clock timings (which are measurements of the machine, not metrics)."""
    results = workdir / "results" / "itest"
    def strip(data):
        if isinstance(data, dict):
            return {k: strip(v) for k, v in data.items() if not k.endswith("_seconds")}
        return [strip(v) for v in data] if isinstance(data, list) else data
    return {str(p.relative_to(results)): strip(json.loads(p.read_text())) for p in sorted(results.rglob("*.json"))}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return fresh_run(tmp_path_factory.mktemp("full"), "itest")


def test_foundation_outputs_logs_and_checkpoints(run_dir):
    results = run_dir / "results" / "itest"
    card = json.loads((results / "model" / "model_card.json").read_text())
    for key in ("refusal_rate", "benign_compliance", "arithmetic_accuracy", "first_letter_accuracy",
                "heldout_perplexity", "n_layers"):
        assert key in card
    assert card["n_layers"] == 2 and 1 < card["heldout_perplexity"] < 400
    assert (results / "model" / "toy-llama" / "model.safetensors").exists()
    reader = ActivationReader(results / "cache" / "layer1-resid_post", verify=True)
    assert reader.d_model == 64 and reader.n_tokens > 2000
    assert reader.manifest["model"].endswith("toy-llama") and reader.manifest["layer"] == 1
    logs = {p.name for p in (run_dir / "logs" / "itest").rglob("*.log")}
    assert {"toyworld_generate.log", "toyworld_train_model.log", "model_card.log", "cache_activations.log"} <= logs
    assert (run_dir / "checkpoints" / "itest" / "model" / "toy-llama" / "state.pt").exists()


def test_bad_config_stops_before_any_job(run_dir, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"toy_model": {"hidden_sise": 3}}))
    result = snakemake(run_dir, "--configfile", str(bad), "--dry-run")
    assert result.returncode != 0
    assert "config key toy_model.hidden_sise: unknown key" in result.stdout + result.stderr


def test_script_runs_outside_snakemake(run_dir, tmp_path):
    workdir = tmp_path / "outside"
    workdir.mkdir()
    for name in ("Snakefile", "workflow"):
        (workdir / name).symlink_to(REPO_ROOT / name)
    for name in ("config.yaml", "small.yaml"):
        shutil.copy(run_dir / name, workdir / name)
    result = subprocess.run([sys.executable, str(REPO_ROOT / "workflow" / "scripts" / "toyworld-generate.py"),
                             "toyworld_generate", "--configfile", "small.yaml"], cwd=workdir, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = workdir / "results" / "itest" / "toyworld"
    assert (out / "train.jsonl").read_bytes() == (run_dir / "results" / "itest" / "toyworld" / "train.jsonl").read_bytes()
    assert (workdir / "logs" / "itest" / "toyworld" / "toyworld_generate.log").exists()


def test_report_has_every_section_with_figures_and_captions(run_dir):
    report = run_dir / "reports" / "itest"
    page = (report / "index.html").read_text()
    for title in ("SAE training", "Feature metrics", "Steering harm", "Reasoning features", "N:M activation pruning",
                  "CLEAR multimodal unlearning", "Model card"):
        assert title in page, title
    figures = re.findall(r'<img src="([^"]+)"', page)
    assert len(figures) >= 10 and all((report / f).exists() for f in figures)
    assert page.count("<figcaption>") == len(figures)
    assert "toy-world numbers" in page and "Published numbers vs this run" in page
    manifest = json.loads((report / "manifest.json").read_text())
    assert {"packages", "git", "config_sha256", "seeds", "hardware"} <= set(manifest)
    assert manifest["packages"]["torch"] and manifest["seeds"]["seed"] == 0
    saelens = manifest["saelens"]  # `make test` installs the saelens extra: SAELens reads an exported SAE back
    assert saelens["status"].startswith("loaded") and f"SAELens: {saelens['version']}" in page
    assert (report / "README.md").read_text().startswith("# lmscalpel report")


def test_report_renders_in_headless_chromium(run_dir):
    """The whole page renders (not blank), and its first screen (1200 × 900) shows the claims table."""
    page = run_dir / "reports" / "itest" / "index.html"
    full = screenshot(page, ARTIFACTS / "report.png", (1200, 3000), run_dir / "chromium-profile")
    assert ImageStat.Stat(full.convert("L")).stddev[0] > 10  # text, tables and figures, not a blank page
    first = screenshot(page, ARTIFACTS / "report-first-screen.png", (1200, 900), run_dir / "chromium-profile")
    assert verdict_pixels(first) > 2000, "no claims-table verdict cells on the first screen"


def test_runs_index_shows_the_run(run_dir):
    index = (run_dir / "reports" / "index.html").read_text()
    assert 'href="itest/index.html"' in index and "holds" in index


def test_second_run_has_nothing_to_do(run_dir):
    assert planned_rules(snakemake(run_dir, "--dry-run")) == set()


def test_changing_one_stage_parameter_reruns_only_that_stage(run_dir, tmp_path):
    change = tmp_path / "change.yaml"
    change.write_text(yaml.safe_dump({"pruning": {"perplexity": {"batch_size": 3}}}))
    rules = planned_rules(snakemake(run_dir, "--configfile", str(run_dir / "small.yaml"), str(change), "--dry-run"))
    assert rules and all(rule.startswith("pruning") or rule in {"report", "all"} for rule in rules), rules
    assert "pruning_table" in rules and "toyworld_train_model" not in rules


def test_jobs_ran_in_the_warm_worker(run_dir):
    served = re.search(r"served (\d+) jobs", (run_dir / "logs" / "itest" / "jobserver.log").read_text())
    assert served and int(served.group(1)) > 20


def test_run_from_scratch_reproduces_every_metric_json(run_dir, tmp_path):
    """The second run has no warm worker: every job in its own interpreter gives the same numbers."""
    again = fresh_run(tmp_path, "itest", warm_worker=False)
    assert not (again / "logs" / "itest" / "jobserver.log").exists()
    first, second = metric_jsons(run_dir), metric_jsons(again)
    assert first.keys() == second.keys() and len(first) > 20
    different = [name for name in first if first[name] != second[name]]
    assert not different, different
