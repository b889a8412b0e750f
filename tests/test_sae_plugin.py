"""Integration: a new SAE architecture is its module plus its registration line. A copy of the library gains a
dummy architecture (TopK with one setting of its own) and nothing else; the real DAG plans it from sae.architectures,
the config schema takes its setting, and sae_train trains it, saves it with the setting in its cfg.json, and
sae_core_metrics reloads it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO_ROOT
from pipeline_config import FOUNDATION, STAGES

pytestmark = pytest.mark.integration

DUMMY_MODULE = '''"""A test architecture: TopK with one setting of its own."""

from dataclasses import dataclass
from typing import ClassVar

from lmscalpel.sae.base import register_sae, setting
from lmscalpel.sae.topk import TopKConfig, TopKSAE


@dataclass
class DummyConfig(TopKConfig):
    sections: ClassVar[dict[str, str]] = {"dummy": "The dummy architecture's own settings."}

    marker: float = setting(0.25, "A setting only the dummy architecture has.", section="dummy", minimum=0)


@register_sae("dummy")
class DummySAE(TopKSAE):
    config_class = DummyConfig
'''
REGISTRATION = "from lmscalpel.sae import dummy  # noqa: F401\n"
RUN = "plugin"
SAE_DIR = f"results/{RUN}/sae/layer1-dummy-w128-k8"


def snakemake(workdir: Path, *args: str, overrides: tuple[Path, ...] = ()) -> subprocess.CompletedProcess:
    """Snakemake on the repository's Snakefile, importing the library copy under ``workdir/src``."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO_ROOT / "Snakefile"), "--directory",
           str(workdir), "--cores", "2", *args, "--configfile", str(workdir / "small.yaml"), *map(str, overrides)]
    env = {**os.environ, "PYTHONPATH": str(workdir / "src")}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("plugin")
    package = workdir / "src" / "lmscalpel"
    shutil.copytree(REPO_ROOT / "src" / "lmscalpel", package, ignore=shutil.ignore_patterns("__pycache__"))
    (package / "sae" / "dummy.py").write_text(DUMMY_MODULE)
    registry = package / "sae" / "architectures.py"
    lines = registry.read_text().splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.startswith("from lmscalpel.sae import ")) + 1
    registry.write_text("".join(lines[:at] + [REGISTRATION] + lines[at:]))
    shutil.copy(REPO_ROOT / "config.yaml", workdir / "config.yaml")
    sae = {**STAGES["sae"], "architectures": ["dummy", "topk"], "dummy": {"marker": 0.5}}
    (workdir / "small.yaml").write_text(yaml.safe_dump({"run_name": RUN, "stages": ["sae"], **FOUNDATION,
                                                        "sae": sae}))
    return workdir


def test_the_schema_checks_the_new_architectures_setting(workdir, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"sae": {"dummy": {"marker": -1}}}))
    result = snakemake(workdir, "--dry-run", overrides=(bad,))
    assert result.returncode != 0 and "config key sae.dummy.marker" in result.stdout + result.stderr


def test_the_new_architecture_trains_saves_its_setting_and_reloads(workdir):
    result = snakemake(workdir, f"{SAE_DIR}/core_metrics.json")
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    meta = json.loads((workdir / SAE_DIR / "cfg.json").read_text())["metadata"]
    assert meta["lmscalpel_architecture"] == "dummy" and meta["training_steps"] > 0
    assert meta["lmscalpel_config"]["marker"] == 0.5 and meta["lmscalpel_config"]["k"] == 8
    assert json.loads((workdir / SAE_DIR / "core_metrics.json").read_text())["architecture"] == "dummy"
    reload = ("from lmscalpel.sae import load_sae; sae = load_sae('" + str(workdir / SAE_DIR) + "'); "
              "print(type(sae).__name__, sae.cfg.marker)")
    loaded = subprocess.run([sys.executable, "-c", reload], capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONPATH": str(workdir / "src")})
    assert loaded.stdout.split() == ["DummySAE", "0.5"]
