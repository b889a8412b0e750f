"""What the reasoning stage builds, from the validated config: the SAEs it scores, the benchmarks it steers on, and
the reasoning keys each rule's job reads."""

from __future__ import annotations

from typing import Any

from lmscalpel.config import config_keys
from lmscalpel.sae import plan as sae_plan

# the ReasonScore job's keys: corpus, vocabulary, windows and selection
SCORE_KEYS = ("corpus", "batch_size", "vocabulary", "window", "alpha", "quantile", "top_k_contexts", "logit_lens_k")


def benchmarks(config: dict[str, Any]) -> list[str]:
    return list(config["reasoning"]["eval"]["benchmarks"])


def benchmark_pattern(config: dict[str, Any]) -> str:
    return "|".join(benchmarks(config))


def sae_ids(config: dict[str, Any]) -> list[str]:
    """reasoning.sae_ids, else the first SAE of the first architecture in reasoning.sae_architectures that has one."""
    reasoning = config["reasoning"]
    if reasoning["sae_ids"]:
        return list(reasoning["sae_ids"])
    for arch in reasoning["sae_architectures"]:
        ids = sae_plan.arch_ids(config, arch)
        if ids:
            return [ids[0]]
    raise ValueError("config key reasoning.sae_ids is empty and the sae stage configures no SAE of "
                     f"reasoning.sae_architectures={reasoning['sae_architectures']}")


def reads_toyworld(config: dict[str, Any]) -> bool:
    """The ReasonScore corpus or a benchmark is the toy world's reasoning file."""
    return config["reasoning"]["corpus"]["path"] == "toyworld" or "toyworld" in benchmarks(config)


def toyworld_keys(config: dict[str, Any]) -> list[str]:
    reads = {"reasoning.corpus.path": config["reasoning"]["corpus"]["path"] == "toyworld",
             "reasoning.eval.benchmarks": "toyworld" in benchmarks(config)}
    return [key for key, read in reads.items() if read]


# --- the reasoning keys each rule's job reads ---

def score_config(config: dict[str, Any]) -> dict[str, Any]:
    return config_keys(config["reasoning"], *SCORE_KEYS)


def eval_config(config: dict[str, Any], benchmark: str) -> dict[str, Any]:
    """reasoning.eval for one benchmark: its generation settings and its own data file (not the benchmark list)."""
    cfg = {key: value for key, value in config["reasoning"]["eval"].items() if key not in ("benchmarks", "data_files")}
    data_files = {b: f for b, f in config["reasoning"]["eval"]["data_files"].items() if b == benchmark}
    return {"eval": {**cfg, "data_files": data_files}}


def steer_config(config: dict[str, Any], benchmark: str) -> dict[str, Any]:
    return {**eval_config(config, benchmark), **config_keys(config["reasoning"], "steering")}


def ban_config(config: dict[str, Any], benchmark: str) -> dict[str, Any]:
    """The vocabulary ban: its own keys, the vocabulary, and the corpus its random words are ranked on."""
    return {**eval_config(config, benchmark), **config_keys(config["reasoning"], "ban", "vocabulary", "corpus")}
