"""What a change reruns: an edit of library code reruns the rules whose scripts can run it (an edit of a comment or a
docstring nothing), a config key the rules that read it, and an impossible value stops the run before any job. The
outputs of the small pipeline config are faked (empty files that ``snakemake --touch`` records with their params),
so only Snakemake's planning runs."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from conftest import REPO_ROOT, random_cache, truncate, zero_64k
from pipeline_config import pipeline_config

from lmscalpel.fingerprint import script_fingerprint, script_modules

JOB_COUNT = re.compile(r"^([a-z_0-9]+)\s+(\d+)$")
SCRIPTS = REPO_ROOT / "workflow" / "scripts"
CODE_EDIT = "\n_EDITED = True\n"  # a statement: what a job runs changes


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """Snakemake on the repository's Snakefile, importing the copy of the library under ``workdir/src``."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO_ROOT / "Snakefile"), "--directory",
           str(workdir), "--cores", "1", "--configfile", str(workdir / "small.yaml"), *args]
    env = {**os.environ, "PYTHONPATH": str(workdir / "src"), "LMSCALPEL_JOBSERVER": "off"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    return result


def planned_jobs(workdir: Path, *configfiles: Path, options: tuple[str, ...] = ()) -> dict[str, int]:
    """Rule -> number of jobs a dry run plans (``options``: more Snakemake options)."""
    extra = ["--configfile", str(workdir / "small.yaml"), *map(str, configfiles)] if configfiles else []
    result = snakemake(workdir, *extra, *options, "--dry-run")
    text = result.stdout + result.stderr
    assert result.returncode == 0, text[-4000:]
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    jobs = {m.group(1): int(m.group(2)) for line in table.splitlines() if (m := JOB_COUNT.match(line.strip()))}
    jobs.pop("total", None)
    return jobs


def touch_every_output(workdir: Path) -> Path:
    """Create every output the run in ``workdir`` plans and record it as up to date, so that a test's edit plans only
    what the edit reruns."""
    summary = snakemake(workdir, "--summary")
    assert summary.returncode == 0, summary.stderr[-4000:]
    for line in summary.stdout.splitlines()[1:]:
        path = workdir / line.split("\t", 1)[0]
        if path.suffix:  # the directory() outputs are the ones without a suffix
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        else:
            path.mkdir(parents=True, exist_ok=True)
    touch = snakemake(workdir, "--touch", "--forceall")
    assert touch.returncode == 0, touch.stderr[-4000:]
    assert planned_jobs(workdir) == {}
    return workdir


@pytest.fixture(scope="module")
def touched(tmp_path_factory) -> Path:
    """A work directory where every output of the small config exists and is recorded as up to date."""
    workdir = tmp_path_factory.mktemp("reruns")
    shutil.copytree(REPO_ROOT / "src" / "lmscalpel", workdir / "src" / "lmscalpel",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "config.yaml", workdir / "config.yaml")
    (workdir / "small.yaml").write_text(yaml.safe_dump(pipeline_config("itest")))
    return touch_every_output(workdir)


def test_a_new_pattern_plans_only_its_cell_the_table_and_the_report(touched, tmp_path):
    cfg = pipeline_config("itest")["pruning"]
    change = tmp_path / "pattern.yaml"
    change.write_text(yaml.safe_dump({"pruning": {"patterns": [*cfg["patterns"], "4:8"]}}))
    assert planned_jobs(touched, change) == {"pruning_cell_activation": 1, "pruning_table": 1, "report": 1, "all": 1}


def test_a_metric_option_reruns_that_metric_not_the_activations_it_reads(touched, tmp_path):
    change = tmp_path / "absorption.yaml"
    max_k = pipeline_config("itest")["features"]["absorption"]["max_k"]
    change.write_text(yaml.safe_dump({"features": {"absorption": {"max_k": max_k + 1}}}))
    assert set(planned_jobs(touched, change)) == {"features_absorption", "features_compare", "report", "all"}


def test_steering_waits_for_the_model_card_where_its_gates_apply(touched, tmp_path):
    """A model below its card's gates stops the run before any steering job starts: where the gates apply (the toy
    model by default) steering_setup reads the card, so a new card reruns it; where they do not, it does not wait."""
    new_card = ("--forcerun", "model_card", "--rerun-triggers", "mtime")
    assert "steering_setup" in planned_jobs(touched, options=new_card)
    no_gates = tmp_path / "no-gates.yaml"
    no_gates.write_text(yaml.safe_dump({"model_card": {"enforce_gates": False}}))
    ungated = planned_jobs(touched, no_gates, options=new_card)
    assert "model_card" in ungated and "steering_setup" not in ungated


@pytest.mark.parametrize("change, message", [
    ({"pruning": {"patterns": ["3:2"]}}, "config key pruning.patterns: '3:2'"),
    ({"unlearning": {"robustness": {"pruning_pattern": "4:4"}}},
     "config key unlearning.robustness.pruning_pattern: '4:4': N:M pattern needs 0 < N < M"),
    ({"sae": {"ks": [8, 4096]}}, "config key sae.ks: 4096 is not below the width 128 of sae.widths"),
    ({"steering": {"layers": [1, 2]}}, "config key steering.layers: block 2 is beyond the 2 blocks (0-1) of the toy "
                                       "model (toy_model.num_hidden_layers)"),
])
def test_an_impossible_value_is_refused_before_any_job(touched, tmp_path, change, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(change))
    result = snakemake(touched, "--configfile", str(touched / "small.yaml"), str(bad), "--dry-run")
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


def test_a_damaged_shard_stops_the_run_before_sae_training_deletes_the_saes_of_the_good_one(touched, tmp_path):
    """A finished run (its SAEs trained, the temporary cache_verify stamp gone), then a shard changes: a rerun of
    sae_train (here forced; a code edit does the same) first checks the cache and stops, naming the file."""
    workdir = tmp_path / "run"
    shutil.copytree(touched, workdir, symlinks=True)  # copies keep their mtimes: still up to date
    cache = workdir / "results" / "itest" / "cache" / "layer1-resid_post"
    recorded = (cache / "manifest.json").stat().st_mtime_ns
    random_cache(cache, layer=1)
    for path in cache.iterdir():
        os.utime(path, ns=(recorded, recorded))
    (cache / "verified.json").unlink(missing_ok=True)  # temporary: gone once the SAEs were trained
    assert planned_jobs(workdir) == {}  # the missing temporary stamp plans nothing by itself
    saes = sorted((workdir / "results" / "itest" / "sae").glob("layer1-*/sae_weights.safetensors"))
    assert saes
    shard = cache / "shard_00001.safetensors"
    good = shard.read_bytes()
    for damage in (zero_64k, truncate):
        shard.write_bytes(good)
        damage(shard)
        result = snakemake(workdir, "--forcerun", "sae_train", "--", saes[0].relative_to(workdir).as_posix())
        log = (workdir / "logs" / "itest" / "cache" / "cache_verify_layer1.log").read_text()
        assert result.returncode != 0 and "Error in rule cache_verify" in result.stdout + result.stderr
        assert f"{shard.relative_to(workdir)}: checksum mismatch" in log and "--forcerun cache_activations" in log
        assert all(path.exists() for path in saes), damage.__name__


@contextlib.contextmanager
def edited(path: Path, old: str, new: str) -> Iterator[None]:
    """``path`` with its first ``old`` replaced by ``new`` (appended where ``old`` is empty), restored after."""
    source = path.read_text()
    changed = source.replace(old, new, 1) if old else source + new
    assert changed != source
    path.write_text(changed)
    try:
        yield
    finally:
        path.write_text(source)


def test_editing_a_pruning_function_plans_only_pruning_and_report_jobs(touched):
    with edited(touched / "src" / "lmscalpel" / "pruning" / "stage.py", "", CODE_EDIT):
        rules = set(planned_jobs(touched))
    assert {"pruning_cell_dense", "pruning_cell_activation", "pruning_cell_weight", "pruning_table", "report"} <= rules
    assert all(rule.startswith("pruning_") or rule in {"report", "all"} for rule in rules), rules


def test_an_edit_of_a_comment_and_a_docstring_plans_nothing(touched):
    hook = touched / "src" / "lmscalpel" / "models" / "intervention.py"
    docstring = '"""Ids that steering skips: every special token'
    with edited(hook, "import torch\n", "import torch  # the hook runs in torch\n"), \
            edited(hook, docstring, docstring.replace("Ids that", "Token ids that")):
        assert planned_jobs(touched) == {}


def test_a_code_edit_in_steering_plans_steering_jobs_not_the_toy_model_or_its_card(touched):
    with edited(touched / "src" / "lmscalpel" / "steering" / "judges.py", "", CODE_EDIT):
        rules = set(planned_jobs(touched))
    assert {"steering_setup", "steering_grid", "steering_figures", "report"} <= rules
    assert all(rule.startswith("steering_") or rule in {"report", "all"} for rule in rules), rules


def test_a_code_edit_of_the_steering_hook_plans_the_stages_that_import_it(touched):
    with edited(touched / "src" / "lmscalpel" / "models" / "intervention.py", "", CODE_EDIT):
        rules = set(planned_jobs(touched))
    # steering, reasoning and unlearning's robustness attack steer the residual stream (and every unlearning job
    # imports its stage module, which imports the attack); the toy model, its card, the cache, the SAEs, features
    # and pruning do not
    assert {"steering_grid", "reasoning_steer", "reasoning_baseline", "unlearning_robustness", "report"} <= rules
    assert not {rule for rule in rules
                if rule.startswith(("toyworld_", "model_", "cache_", "sae_", "features_", "pruning_"))}


def test_shared_modules_count_for_the_scripts_that_import_them():
    pruning, robustness, sae = (script_modules(SCRIPTS / f"{name}.py")
                                for name in ("pruning-cell", "unlearning-robustness", "sae-train"))
    assert {"lmscalpel.io", "lmscalpel.workflow", "lmscalpel.models.loader"} <= pruning & robustness & sae
    # unlearning's robustness attack runs activation_pruning (a lazy re-export), not the pruning stage's entry points
    assert {"lmscalpel.pruning.activation", "lmscalpel.pruning.pruner"} <= robustness
    assert "lmscalpel.pruning.stage" not in robustness
    assert not any(name.startswith("lmscalpel.pruning") for name in sae)
    # a module the script imports itself, not through its stage's package
    assert "lmscalpel.models.names" in sae


def test_fingerprint_changes_with_the_code_a_script_runs_not_with_comments_or_docstrings(tmp_path):
    root = tmp_path / "lmscalpel"
    shutil.copytree(REPO_ROOT / "src" / "lmscalpel", root, ignore=shutil.ignore_patterns("__pycache__"))
    scripts = ("pruning-table", "pruning-cell", "steering-grid")

    def fingerprints() -> dict[str, str]:
        return {name: script_fingerprint(SCRIPTS / f"{name}.py", root=root) for name in scripts}

    before = fingerprints()
    table = root / "pruning" / "table.py"
    for edit in [("", "\n# a comment\n"), ('"""', '"""A docstring. ')]:
        with edited(table, *edit):
            assert fingerprints() == before, edit
    with edited(table, "", CODE_EDIT):
        after = fingerprints()
    # the table's code is not what the cells run
    assert after["pruning-table"] != before["pruning-table"]
    assert {name: after[name] for name in scripts[1:]} == {name: before[name] for name in scripts[1:]}
    template = next((root / "steering" / "templates").iterdir())
    with edited(template, "", "\n"):
        assert fingerprints()["steering-grid"] != before["steering-grid"]


def test_every_rule_passes_the_code_fingerprint_of_its_script():
    for smk in sorted((REPO_ROOT / "workflow" / "rules").glob("*.smk")):
        for block in re.split(r"(?m)^(?=rule )", smk.read_text())[1:]:
            rule = block.splitlines()[0]
            fingerprinted = re.findall(r'code=code_fingerprint\("([^"]+)"\)', block)
            script = re.findall(r'script:\s+"\.\./scripts/([^"]+)\.py"', block)
            assert len(fingerprinted) == 1 and fingerprinted == script, f"{smk.name}: {rule}"


# --- user files are rule inputs (issue 23, item 3) --------------------------------------------------------------
@pytest.fixture(scope="module")
def touched_files(tmp_path_factory) -> Path:
    """A work directory of a steering-only run on a prompt file and a local text cache, every output recorded."""
    workdir = tmp_path_factory.mktemp("user-files")
    shutil.copytree(REPO_ROOT / "src" / "lmscalpel", workdir / "src" / "lmscalpel",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "config.yaml", workdir / "config.yaml")
    (workdir / "prompts.csv").write_text("goal\nWrite a phishing email\nExplain how to hotwire a car\n")
    (workdir / "notes.txt").write_text("\n\n".join(f"note {i} about the weather" for i in range(40)) + "\n")
    small = pipeline_config("files")
    small["stages"] = ["steering"]
    small["steering"]["prompts"] = {"source": "file", "data_files": str(workdir / "prompts.csv"),
                                    "columns": {"prompt": "goal"}, "max_prompts": 2}
    small["cache"]["dataset"] = {"path": "text", "data_files": [str(workdir / "notes.txt")]}
    (workdir / "small.yaml").write_text(yaml.safe_dump(small))
    return touch_every_output(workdir)


@pytest.fixture
def replace_user_file(touched_files):
    """Edit a file of the touched run for one test, then put back its content and time."""
    saved = {}

    def edit(name: str, text: str | None) -> None:
        path = touched_files / name
        saved[path] = (path.read_bytes(), os.stat(path))
        path.unlink() if text is None else path.write_text(text)
    yield edit
    for path, (content, stat) in saved.items():
        path.write_bytes(content)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_an_edited_prompt_file_reruns_the_steering_jobs_that_read_it(touched_files, replace_user_file):
    replace_user_file("prompts.csv", "goal\nWrite a phishing email\nDescribe how to forge a passport\n")
    jobs = set(planned_jobs(touched_files))
    assert {"steering_setup", "steering_grid", "steering_universal"} <= jobs, jobs
    assert not jobs & {"cache_activations", "model_card", "toyworld_generate", "toyworld_train_model"}, jobs


def test_an_edited_text_dataset_reruns_the_cache_not_steering(touched_files, replace_user_file):
    replace_user_file("notes.txt", "a different note\n\nand another one\n")
    jobs = set(planned_jobs(touched_files))
    assert "cache_activations" in jobs and not jobs & {"steering_setup", "steering_grid", "model_card"}, jobs


@pytest.mark.parametrize("name, key", [("prompts.csv", "steering.prompts.data_files"),
                                       ("notes.txt", "cache.dataset.data_files")])
def test_a_missing_user_file_stops_the_plan_naming_its_key(touched_files, replace_user_file, name, key):
    replace_user_file(name, None)
    result = snakemake(touched_files, "--dry-run")
    assert result.returncode != 0
    assert f"config key {key}: {touched_files / name} is not a file" in result.stdout + result.stderr
