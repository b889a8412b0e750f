"""What the unlearning stage builds, from the validated config: the runs of unlearning.grid, the robustness runs,
whether the tiny LLaVA is built, and the unlearning sections each rule's job reads."""

from __future__ import annotations

from typing import Any

METHODS = ["ga", "gd", "kl", "npo", "dpo", "idk", "rmu", "scrub", "llmu", "sku", "retain_ft"]


def l1_tags(config: dict[str, Any], flag: bool, lambdas: list[float] | None = None) -> list[str]:
    """The l1 wildcard values of a grid entry: 'off', or one λ of unlearning.unlearn.l1.lambdas per run."""
    if not flag:
        return ["off"]
    return [repr(float(lam)) for lam in (lambdas or config["unlearning"]["unlearn"]["l1"]["lambdas"])]


def runs(config: dict[str, Any]) -> list[dict[str, str]]:
    """Every (method, split, modality, l1) of unlearning.grid; l1 is 'off' or the λ of LoRA + L1."""
    found = {}
    for block in config["unlearning"]["grid"]:
        for method in block["methods"]:
            for split in block["splits"]:
                for modality in block["modalities"]:
                    for flag in block["l1"]:
                        for l1 in l1_tags(config, flag):
                            found[(method, split, modality, l1)] = dict(method=method, split=split,
                                                                        modality=modality, l1=l1)
    return list(found.values())


def splits(config: dict[str, Any]) -> list[str]:
    return sorted({run["split"] for run in runs(config)})


def robustness_runs(config: dict[str, Any]) -> list[dict[str, str]]:
    """unlearning.robustness.runs as runs of the grid (each must be one)."""
    known = {tuple(run.values()) for run in runs(config)}
    found = []
    for r in config["unlearning"]["robustness"]["runs"]:
        lam = r.get("l1_lambda")
        run = dict(method=r["method"], split=r["split"], modality=r["modality"],
                   l1=l1_tags(config, r["l1"], None if lam is None else [lam])[0])
        if tuple(run.values()) not in known:
            raise ValueError(f"config key unlearning.robustness.runs: {r} is not in unlearning.grid")
        found.append(run)
    return found


def sections(config: dict[str, Any], *names: str) -> dict[str, Any]:
    """The unlearning sections a rule depends on (so editing one section reruns only the rules that read it)."""
    return {name: config["unlearning"][name] for name in names}


def reads_toyworld(config: dict[str, Any]) -> bool:
    """mini-CLEAR built from the toy world (hub datasets such as therem/CLEAR are read by the jobs)."""
    return config["unlearning"]["data"]["source"] == "toyworld"


def builds_tiny_vlm(config: dict[str, Any]) -> bool:
    """The tiny LLaVA around the toy LM, unless unlearning.vlm.id names a hub VLM."""
    if config["unlearning"]["vlm"]["id"] is not None:
        return False
    if config["model"]["source"] != "toy":
        raise ValueError("config key unlearning.vlm.id: set a LLaVA-style hub model when model.source is hub")
    return True


def layer_keys(config: dict[str, Any]) -> dict[str, list[int]]:
    """{config key: the blocks it names} of the unlearning stage when it builds the tiny LLaVA around the toy LM
    (the toy model's depth); a hub VLM's (unlearning.vlm.id) jobs check them against the loaded model."""
    if not builds_tiny_vlm(config):
        return {}
    cfg = config["unlearning"]
    named = {"unlearning.unlearn.methods.rmu.layer": cfg["unlearn"]["methods"]["rmu"]["layer"],
             "unlearning.robustness.steering_layer": cfg["robustness"]["steering_layer"]}
    return {key: [layer] for key, layer in named.items() if layer is not None}


def toyworld_keys(config: dict[str, Any]) -> list[str]:
    return ["unlearning.data.source"] if reads_toyworld(config) else []
