"""What the features stage builds, from the validated config: which SAEs get feature metrics, the reference SAE of
the distinct-features count, the datasets the probe metrics use, and the features keys each rule's job reads."""

from __future__ import annotations

from typing import Any

from lmscalpel.config import config_keys
from lmscalpel.sae import plan as sae_plan

METRICS = ["absorption", "composition", "distinct", "scr", "tpp", "sparse_probing"]
FIGURES = ["absorption_vs_l0", "composition_vs_width", "max_cos_hist", "scr_vs_n", "tpp_vs_n"]
# what each job reads of features.absorption: the spelling prompts, the letter probe
SPELLING_KEYS = ("words", "test_fraction", "max_words", "n_icl_examples", "template", "prompts_per_word", "position")
LETTER_PROBE_KEYS = ("probe_epochs", "probe_lr", "probe_final_lr", "probe_weight_decay", "probe_batch_size",
                     "f1_gate")
# the features.absorption keys of the spelling prompts and the letter probe, not of the per-SAE metric
ABSORPTION_PROMPT_KEYS = SPELLING_KEYS + LETTER_PROBE_KEYS
ACTIVATION_KEYS = ("batch_size", "context_length", "prepend_bos", "activation_dtype")
PROBE_METRIC_KEYS = {"scr": ("n_values",), "tpp": ("n_values",), "sparse_probing": ("k_values", "max_iter")}


def reads_toyworld_words(config: dict[str, Any]) -> bool:
    return config["features"]["absorption"]["words"] == "toyworld"


def toyworld_datasets(config: dict[str, Any]) -> list[str]:
    """The ``features.datasets`` read from the toy world's files (hub datasets are read by the job)."""
    return [name for name, spec in config["features"]["datasets"].items() if spec["path"] == "toyworld"]


def toyworld_keys(config: dict[str, Any]) -> list[str]:
    reads = {"features.datasets": bool(toyworld_datasets(config)),
             "features.absorption.words": reads_toyworld_words(config)}
    return [key for key, read in reads.items() if read]


def probe_datasets(config: dict[str, Any]) -> list[str]:
    """The ``features.datasets`` that SCR, TPP or sparse probing use."""
    features = config["features"]
    used = set(features["scr"]["pairs"]) | set(features["tpp"]["classes"])
    used |= {task["dataset"] for task in features["sparse_probing"]["tasks"]}
    return sorted(used)


def sae_arch(config: dict[str, Any], sae_id: str) -> str:
    """The architecture of an SAE of the grid, or imported-<format>."""
    imported = sae_plan.imports(config)
    if sae_id in imported:
        return f"imported-{imported[sae_id]['format']}"
    for arch in config["sae"]["architectures"]:
        if sae_id in sae_plan.arch_ids(config, arch):
            return arch
    raise ValueError(f"SAE id {sae_id!r} is in no architecture of the sae grid")


def metric_sae_ids(config: dict[str, Any]) -> list[str]:
    """The SAEs that get feature metrics: trained SAEs of ``features.architectures`` (null: all), and every
    import."""
    architectures, imported = config["features"]["architectures"], sae_plan.imports(config)
    return [sae for sae in sae_plan.sae_ids(config)
            if architectures is None or sae in imported or sae_arch(config, sae) in architectures]


def reference_sae(config: dict[str, Any], sae_id: str) -> str | None:
    """The run's reference SAE (``features.distinct.reference_architecture``) at the same layer and seed offset
    sharing most id parts (width, k) with ``sae_id``, so that OrtSAE and BatchTopK compare seed by seed; None if
    the grid has none."""
    layer = sae_plan.sae_layer(config, sae_id)
    replicates = sae_plan.replicates(config)
    seed = replicates[sae_id][1]
    parts = set(sae_id.replace("_", "-").split("-"))
    candidates = [s for s in sae_plan.arch_ids(config, config["features"]["distinct"]["reference_architecture"])
                  if sae_plan.sae_layer(config, s) == layer and replicates[s][1] == seed]
    if not candidates:
        return None
    return max(candidates, key=lambda s: len(parts & set(s.replace("_", "-").split("-"))))


# --- the features keys each rule's job reads ---

def spelling_activations_config(config: dict[str, Any]) -> dict[str, Any]:
    return config_keys(config["features"], *ACTIVATION_KEYS, absorption=SPELLING_KEYS)


def dataset_activations_config(config: dict[str, Any], dataset: str) -> dict[str, Any]:
    features = config["features"]
    return {**config_keys(features, "test_fraction", *ACTIVATION_KEYS),
            "datasets": {dataset: features["datasets"][dataset]}}


def letter_probe_config(config: dict[str, Any]) -> dict[str, Any]:
    return config_keys(config["features"], absorption=LETTER_PROBE_KEYS)


def dataset_probes_config(config: dict[str, Any], dataset: str) -> dict[str, Any]:
    """The probe settings and the SCR / TPP / sparse-probing tasks of ``dataset`` (with their split sizes)."""
    features = config["features"]
    sizes = ("train_size", "test_size")
    picked = config_keys(features, "probe", scr=sizes, tpp=sizes, sparse_probing=sizes)
    picked["scr"]["pairs"] = {d: v for d, v in features["scr"]["pairs"].items() if d == dataset}
    picked["tpp"]["classes"] = {d: v for d, v in features["tpp"]["classes"].items() if d == dataset}
    picked["sparse_probing"]["tasks"] = [t for t in features["sparse_probing"]["tasks"] if t["dataset"] == dataset]
    return picked


def absorption_config(config: dict[str, Any]) -> dict[str, Any]:
    return config_keys(config["features"], "absorption")


def composition_config(config: dict[str, Any]) -> dict[str, Any]:
    return config_keys(config["features"], "composition")


def distinct_config(config: dict[str, Any]) -> dict[str, Any]:
    """The thresholds only: ``reference_architecture`` picks the reference SAE, an input of the job."""
    return config_keys(config["features"], distinct=("thresholds",))


def probe_metric_config(config: dict[str, Any], metric: str) -> dict[str, Any]:
    """SCR / TPP / sparse probing: the metric's own keys (its tasks and probes are inputs)."""
    return config_keys(config["features"], **{metric: PROBE_METRIC_KEYS[metric]})
