"""What the pruning stage builds, from the validated config: the grid's cells (activation pruning, weight baselines,
the chat row) and the pruning keys each cell's job reads, so that editing another key or another cell's option does
not rerun it."""

from __future__ import annotations

from typing import Any

from lmscalpel.config import config_keys
from lmscalpel.data import plan as data_plan

LEARNED_MITIGATIONS = ("learnable", "learnable_bias", "learnable_scale_shift")
# the criterion options a cell of that criterion reads
CRITERION_KEYS = {"clact": ("clact_scope",), "amber": ("amber_quantile",)}
# the refusal row's prompt sets (harmful, benign)
CHAT_PROMPT_SETS = tuple(data_plan.prompt_sets_of("pruning.chat"))


def job_config(config: dict[str, Any], *keys: str, targets: str | None = None, pattern: str | None = None,
               criterion: str | None = None) -> dict[str, Any]:
    """The pruning keys a job reads: ``keys``, the one target set, the unstructured options of an unstructured
    pattern, the criterion's options."""
    pruning = config["pruning"]
    cfg = {key: pruning[key] for key in keys}
    if targets is not None:
        cfg["target_sets"] = {targets: pruning["target_sets"][targets]}
    if pattern is not None and pattern.startswith("u"):
        cfg["unstructured"] = pruning["unstructured"]
    cfg |= {key: pruning[key] for key in CRITERION_KEYS.get(criterion, ())}
    return cfg


def toy_tasks_config(config: dict[str, Any]) -> dict[str, Any]:
    """The toy world's lm-eval tasks: their answer choices."""
    return config_keys(config["pruning"], zero_shot=("n_choices",))


def dense_config(config: dict[str, Any]) -> dict[str, Any]:
    """The dense cell: evaluation settings and the per-kind diagnostic (every grid target set)."""
    pruning = config["pruning"]
    cfg = job_config(config, "perplexity", "zero_shot", "grid_targets", "per_kind_pattern", "per_kind_max_windows",
                     pattern=pruning["per_kind_pattern"] or "")
    cfg["target_sets"] = {name: pruning["target_sets"][name] for name in pruning["grid_targets"]}
    return cfg


def activation_config(config: dict[str, Any], targets: str, pattern: str, criterion: str,
                      mitigation: str = "none") -> dict[str, Any]:
    cfg = job_config(config, "perplexity", "zero_shot", targets=targets, pattern=pattern, criterion=criterion)
    return cfg | {"zero_shot": zero_shot_config(config, "act", pattern, criterion, mitigation)}


def weight_config(config: dict[str, Any], targets: str, method: str, pattern: str | None = None) -> dict[str, Any]:
    """Weight baselines: the unstructured options are activation-side; Wanda reads the calibration set."""
    keys = ("perplexity", "zero_shot", "calibration") if method == "wanda" else ("perplexity", "zero_shot")
    return job_config(config, *keys, targets=targets) | {"zero_shot": zero_shot_config(config, "weight", pattern)}


def zero_shot_cell(config: dict[str, Any], family: str, pattern: str | None = None, criterion: str | None = None,
                   mitigation: str = "none") -> bool:
    """Whether a grid cell (``pattern`` as a file-name slug) runs the zero-shot tasks: the dense one always, the
    others by ``pruning.zero_shot.cells`` (``magnitude``: activation pruning by magnitude without mitigation and
    the weight baselines, the paper's activation-vs-weight comparison) and ``.patterns`` (null: every pattern).
    A real task costs a CPU about as much as the cell's perplexity, so a CPU preset scores the cells it compares."""
    zero_shot = config["pruning"]["zero_shot"]
    if not (zero_shot["enabled"] and zero_shot["tasks"]):
        return False
    if family == "dense":
        return True
    if zero_shot["patterns"] is not None and pattern not in {slug(p) for p in zero_shot["patterns"]}:
        return False
    return zero_shot["cells"] == "all" or family == "weight" or (criterion, mitigation) == ("magnitude", "none")


def zero_shot_config(config: dict[str, Any], *cell) -> dict[str, Any]:
    """The zero-shot keys a cell's job reads: all of them where it runs the tasks (:func:`zero_shot_cell`)."""
    return config["pruning"]["zero_shot"] if zero_shot_cell(config, *cell) else {"enabled": False}


def learnable_config(config: dict[str, Any], targets: str, pattern: str, criterion: str) -> dict[str, Any]:
    """Learnable mitigations read their own windows and batch size (not calibration.n_windows / batch_size)."""
    cfg = job_config(config, "learnable", targets=targets, pattern=pattern, criterion=criterion)
    cfg["calibration"] = {k: v for k, v in config["pruning"]["calibration"].items()
                          if k not in ("n_windows", "batch_size")}
    return cfg


def chat_config(config: dict[str, Any], targets: str, pattern: str) -> dict[str, Any]:
    if pattern == "dense":
        return job_config(config, "chat")
    return job_config(config, "chat", targets=targets, pattern=pattern, criterion="magnitude")


def slug(pattern: str) -> str:
    """File-name form of a pattern: '8:16' -> '8-16', 'u50' stays."""
    return pattern.replace(":", "-")


def activation_cells(config: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(targets, pattern, criterion, mitigation): magnitude at every pattern and every criterion at
    criteria_patterns (null: every pattern), both without mitigation, plus the mitigations at mitigation_patterns
    x mitigation_criteria."""
    pruning = config["pruning"]
    criteria_patterns = pruning["patterns"] if pruning["criteria_patterns"] is None else pruning["criteria_patterns"]
    cells = []
    for targets in pruning["grid_targets"]:
        cells += [(targets, p, "magnitude", "none") for p in pruning["patterns"]]
        cells += [(targets, p, c, "none") for p in criteria_patterns for c in pruning["criteria"]]
        cells += [(targets, p, c, m) for p in pruning["mitigation_patterns"] for c in pruning["mitigation_criteria"]
                  for m in pruning["mitigations"]]
    return list(dict.fromkeys(cells))


def weight_cells(config: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(targets, pattern, method) of the weight-pruning baselines."""
    pruning = config["pruning"]
    return [(t, p, w) for t in pruning["grid_targets"] for p in pruning["weight_patterns"]
            for w in pruning["weight_methods"]]


def chat_cells(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(targets, pattern) of the refusal row besides the dense model; none when pruning.chat is off."""
    pruning = config["pruning"]
    if not pruning["chat"]["enabled"]:
        return []
    return [(t, p) for t in pruning["grid_targets"] for p in pruning["chat_patterns"]]


def reads_toyworld_perplexity(config: dict[str, Any]) -> bool:
    return config["pruning"]["perplexity"]["dataset"]["path"] == "toyworld"


def reads_toyworld_calibration(config: dict[str, Any]) -> bool:
    return config["pruning"]["calibration"]["dataset"]["path"] == "toyworld"


def runs_toy_tasks(config: dict[str, Any]) -> bool:
    """Zero-shot runs a local lm-eval task built from the toy world (toy_*)."""
    zero_shot = config["pruning"]["zero_shot"]
    return zero_shot["enabled"] and any(task.startswith("toy_") for task in zero_shot["tasks"])


def toyworld_keys(config: dict[str, Any]) -> list[str]:
    reads = {"pruning.perplexity.dataset.path": reads_toyworld_perplexity(config),
             "pruning.calibration.dataset.path": reads_toyworld_calibration(config),
             "pruning.zero_shot.tasks": runs_toy_tasks(config)}
    chat = data_plan.toyworld_prompt_keys(config, CHAT_PROMPT_SETS) if config["pruning"]["chat"]["enabled"] else []
    return [key for key, read in reads.items() if read] + chat
