"""The run manifest: what a rerun needs to reproduce (or explain) a result."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from lmscalpel.io import sha256_file

PACKAGES = ["lmscalpel", "torch", "transformers", "tokenizers", "safetensors", "snakemake", "numpy", "pandas",
            "scikit-learn", "scipy", "peft", "lm-eval", "datasets", "rouge-score", "matplotlib", "sae-lens"]


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def git_commit(repo: str | Path) -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30).stdout.strip()
    try:
        return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def hardware() -> dict[str, Any]:
    import torch

    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def run_manifest(config: dict[str, Any], repo: str | Path, data_sources: list[dict[str, Any]] = ()
                 ) -> dict[str, Any]:
    """``data_sources``: the files outside the results the run read (``lmscalpel.data.plan.data_sources``: config
    key, path, and for a package file its distribution, version and file), recorded with their sha256."""
    seeds = {"seed": config.get("seed")}
    seeds.update({f"{section}.seed": value["seed"] for section, value in config.items()
                  if isinstance(value, dict) and "seed" in value})
    return {"run_name": config.get("run_name"), "config_sha256": config_hash(config), "seeds": seeds,
            "git": git_commit(repo), "packages": package_versions(), "hardware": hardware(), "config": config,
            "data": [{**source, "sha256": sha256_file(source["path"])} for source in data_sources]}


def saelens_check(results: str | Path) -> dict[str, Any]:
    """Which SAELens version loads this run's exported SAEs: one ``results/<run>/sae/<id>/`` read back with
    ``sae_lens.SAE.load_from_disk`` (the format contract of ``lmscalpel.sae.saelens_format``)."""
    try:
        import sae_lens
    except ImportError:
        return {"version": None, "status": "not installed (pip install 'lmscalpel[saelens]')"}
    version = getattr(sae_lens, "__version__", None) or package_versions().get("sae-lens")
    exported = sorted(Path(results).glob("sae/*/cfg.json"))
    if not exported:
        return {"version": version, "status": "installed; no exported SAE in this run"}
    directory = min((p.parent for p in exported), key=_weights_size)  # the smallest: the report rule has 1 GB
    try:
        sae = sae_lens.SAE.load_from_disk(str(directory), device="cpu")
    except Exception as error:  # any failure of the third-party reader is the finding, not a crash
        return {"version": version, "sae": directory.name, "status": f"failed: {type(error).__name__}: {error}"}
    return {"version": version, "sae": directory.name,
            "status": f"loaded {directory.name} ({type(sae).__name__}, d_sae = {getattr(sae.cfg, 'd_sae', '?')})"}


def _weights_size(directory: Path) -> tuple[int, str]:
    weights = directory / "sae_weights.safetensors"
    return (weights.stat().st_size if weights.exists() else 0, directory.name)
