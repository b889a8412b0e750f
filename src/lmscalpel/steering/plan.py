"""What the steering stage builds, from the validated config: the steered layers, the universal attack's layer,
the SAEs steered at each layer, and the steering keys each rule's job reads.

A null layer setting needs the model's block count (the toy config, the GGUF header, or the hub config); it is read
only while Snakemake plans steering jobs, so presets without the steering stage never ask the hub.
"""

from __future__ import annotations

import functools
from typing import Any

from lmscalpel.config import config_keys
from lmscalpel.data import plan as data_plan
from lmscalpel.models.depth import planned_depth
from lmscalpel.sae import plan as sae_plan

# every job that generates steered replies reads these
GENERATION_KEYS = ("coefficients", "max_new_tokens", "batch_size", "skip_tokens")
# the prompt sets: evaluation (grid, universal attack, mu), refusal direction (harmful, harmless), coherence
EVALUATION_PROMPTS, REFUSAL_PROMPTS, BENIGN_PROMPTS = "steering.prompts", "steering.refusal.prompts", \
    "steering.prompts.benign"
PROMPT_SETS = (EVALUATION_PROMPTS, REFUSAL_PROMPTS, BENIGN_PROMPTS)


@functools.lru_cache(maxsize=None)
def _hub_num_layers(model_id: str, revision: str | None, trust_remote_code: bool) -> int:
    from transformers import AutoConfig

    hub_config = AutoConfig.from_pretrained(model_id, revision=revision, trust_remote_code=trust_remote_code)
    return hub_config.get_text_config().num_hidden_layers


def num_layers(config: dict[str, Any], key: str) -> int:
    """L, the model's decoder blocks (a hub model's from its hub config); ``key`` is the config key whose null value
    needs it, named in the error when the hub cannot be reached."""
    if depth := planned_depth(config):
        return depth[0]
    model = config["model"]
    try:
        return _hub_num_layers(model["id"], model["revision"], model["trust_remote_code"])
    except OSError as err:
        raise ValueError(f"config key {key}: null needs the layer count of {model['id']} from the hub, which failed "
                         f"(offline?); set {key} explicitly ({err})") from err


def default_layers(n_layers: int) -> list[int]:
    """⌊L/3⌋, ⌊L/2⌋, ⌊2L/3⌋ (deduplicated, in order): the paper's early, middle and late blocks."""
    return sorted({n_layers // 3, n_layers // 2, (2 * n_layers) // 3})


def layers(config: dict[str, Any]) -> list[int]:
    """Steered blocks: steering.layers, else the default layers of the model."""
    if config["steering"]["layers"]:
        return sorted(set(config["steering"]["layers"]))
    return default_layers(num_layers(config, "steering.layers"))


def universal_layer(config: dict[str, Any]) -> int:
    """steering.universal.layer, else ⌊L/2⌋ (the universal and capability jobs build their own setup at that
    layer, so it need not be among steering.layers)."""
    layer = config["steering"]["universal"]["layer"]
    return layer if layer is not None else num_layers(config, "steering.universal.layer") // 2


def layer_keys(config: dict[str, Any]) -> dict[str, list[int]]:
    """{config key: the blocks it names} of the steering stage (a null layer setting names none: its default is
    derived from the depth)."""
    steering = config["steering"]
    universal = steering["universal"]["layer"]
    keys = {"steering.layers": steering["layers"] or [],
            "steering.universal.layer": [] if universal is None else [universal]}
    return keys | {f"steering.sae.external.{i}.layer": [ext["layer"]]
                   for i, ext in enumerate(steering["sae"]["external"])}


def project_saes(config: dict[str, Any], layer: int) -> dict[str, str]:
    """{direction kind: SAE id} of the SAE stage at ``layer``: the first id of each of steering.sae.architectures there.
    Empty unless the sae stage is in ``stages`` (steering alone never pulls SAE training in)."""
    if "sae" not in config["stages"]:
        return {}
    found = {}
    for arch in config["steering"]["sae"]["architectures"]:
        ids = [i for i in sae_plan.arch_ids(config, arch) if sae_plan.sae_layer(config, i) == layer]
        if ids:
            found[f"sae-{arch}"] = ids[0]
    return found


def external_saes(config: dict[str, Any], layer: int) -> dict[str, dict[str, Any]]:
    """steering.sae.external entries at ``layer`` by name; one with an ``sae_id`` (an SAE of results/<run>/sae/,
    built by the DAG) must read that layer."""
    found = {}
    for ext in config["steering"]["sae"]["external"]:
        if ext["layer"] != layer:
            continue
        if ext.get("sae_id") is not None and sae_plan.sae_layer(config, ext["sae_id"]) != layer:
            raise ValueError(f"config key steering.sae.external ({ext['name']}): layer {layer}, but SAE "
                             f"{ext['sae_id']} reads block {sae_plan.sae_layer(config, ext['sae_id'])}")
        found[ext["name"]] = ext
    return found


def compared_sae_kinds(config: dict[str, Any]) -> list[str]:
    """The two project SAE kinds the cross-paper table compares (empty unless both are steered at some layer)."""
    kinds = [f"sae-{arch}" for arch in config["steering"]["sae"]["architectures"]]
    have = {kind for layer in layers(config) for kind in project_saes(config, layer)}
    return kinds[:2] if len(kinds) >= 2 and set(kinds[:2]) <= have else []


def prompt_descriptions(config: dict[str, Any]) -> dict[str, str]:
    """What each prompt set reads (metrics.json says which prompts were evaluated, which built the direction)."""
    return data_plan.prompt_descriptions(config, PROMPT_SETS)


def toyworld_keys(config: dict[str, Any]) -> list[str]:
    keys = data_plan.toyworld_prompt_keys(config, PROMPT_SETS)
    return keys + (["steering.capability.task"] if config["steering"]["capability"]["task"] == "toy" else [])


# --- the steering keys each rule's job reads ---

def setup_config(config: dict[str, Any]) -> dict[str, Any]:
    """μ(l) and the refusal direction: the prompts and the token selection."""
    return config_keys(config["steering"], "prompts", "mu", "skip_tokens", refusal=("prompts",))


def coherence_config(config: dict[str, Any]) -> dict[str, Any]:
    return config_keys(config["steering"], "prompts", "coherence", "max_new_tokens", "batch_size", "skip_tokens")


def grid_config(config: dict[str, Any]) -> dict[str, Any]:
    """The grid's directions (random, SAE sample, refusal), prompts, judge and generation; the coherence judge's
    batch size (its threshold is an input)."""
    return config_keys(config["steering"], "prompts", "random", "judge", "chunk_rows", *GENERATION_KEYS,
                       sae=("n_features", "seed", "alive_only"), coherence=("batch_size",), refusal=("enabled",))


def universal_config(config: dict[str, Any]) -> dict[str, Any]:
    return config_keys(config["steering"], "prompts", "universal", "judge", *GENERATION_KEYS,
                       coherence=("batch_size",), metrics=("outcome", "headline"))


def capability_config(config: dict[str, Any]) -> dict[str, Any]:
    """Capability vs c with random directions of steering.random's seed."""
    return config_keys(config["steering"], "capability", *GENERATION_KEYS, random=("seed",))


def judge_check_config(config: dict[str, Any]) -> dict[str, Any]:
    """What re-judges the labelled replies: the judge, the coherence scorer's batch size, the headline choice."""
    return config_keys(config["steering"], "judge", "judge_check", coherence=("batch_size",), metrics=("headline",))


def metrics_config(config: dict[str, Any]) -> dict[str, Any]:
    return config_keys(config["steering"], "metrics", prompts=("source",))
