"""What the reasoning stage builds, from the validated config: the SAEs it scores, the benchmarks it steers on, whether
the model writes its own chain-of-thought corpus, and the reasoning keys each rule's job reads."""

from __future__ import annotations

from typing import Any

from lmscalpel.config import config_keys
from lmscalpel.data import plan as data_plan
from lmscalpel.sae import plan as sae_plan

# the ReasonScore job's keys: corpus, vocabulary, windows and selection
SCORE_KEYS = ("corpus", "batch_size", "vocabulary", "window", "alpha", "quantile", "top_k_contexts", "logit_lens_k")
# the chain-of-thought corpus job's keys: the corpus's generation keys, and the reasoning.eval keys it shares with
# the evaluation (the prompt and its marker)
COT_CORPUS_KEYS = ("benchmark", "max_new_tokens", "generation_batch_size")
COT_EVAL_KEYS = ("chat_template", "add_bos", "thinking_end", "stop_strings")


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


def writes_cot_corpus(config: dict[str, Any]) -> bool:
    """The ReasonScore corpus is the model's own chain-of-thought (rule reasoning_cot_corpus)."""
    return config["reasoning"]["corpus"]["path"] == "model_cot"


def benchmark_subsets(config: dict[str, Any], benchmark: str | None = None) -> dict[str, dict[str, Any]]:
    """The packaged benchmark subsets a job reads (config key -> ``load_benchmark`` config): the corpus's with
    ``benchmark`` None, else that evaluation benchmark's (none for the toy world and hub benchmarks)."""
    subsets = data_plan.reasoning_subsets(config)
    key = "reasoning.corpus.benchmark" if benchmark is None else f"reasoning.eval.subsets.{benchmark}"
    return {key: subsets[key]} if key in subsets else {}


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


def cot_config(config: dict[str, Any]) -> dict[str, Any]:
    """The chain-of-thought corpus job: what it generates, the prompt settings it shares with the evaluation, and
    the vocabulary whose words it counts (not the packing keys, which only ReasonScore reads)."""
    return config_keys(config["reasoning"], "vocabulary", corpus=COT_CORPUS_KEYS, eval=COT_EVAL_KEYS)


def eval_config(config: dict[str, Any], benchmark: str) -> dict[str, Any]:
    """reasoning.eval for one benchmark: its generation settings, its own data file and window (not the benchmark
    list), and the vocabulary whose words are counted in every reply."""
    evaluation = config["reasoning"]["eval"]
    cfg = {key: value for key, value in evaluation.items() if key not in ("benchmarks", "data_files", "subsets")}
    own = {key: {b: v for b, v in evaluation[key].items() if b == benchmark} for key in ("data_files", "subsets")}
    return {"eval": {**cfg, **own}, **config_keys(config["reasoning"], "vocabulary")}


def steer_config(config: dict[str, Any], benchmark: str) -> dict[str, Any]:
    return {**eval_config(config, benchmark), **config_keys(config["reasoning"], "steering")}


def ban_config(config: dict[str, Any], benchmark: str) -> dict[str, Any]:
    """The vocabulary ban: its own keys, the vocabulary, and the corpus its random words are ranked on."""
    return {**eval_config(config, benchmark), **config_keys(config["reasoning"], "ban", "corpus")}
