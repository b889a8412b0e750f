"""Post-training N:M activation pruning (arXiv:2509.22166) with error mitigations and weight-pruning baselines.

``activation_pruning(model, pattern="8:16", criterion="magnitude", mitigation="none", targets=..., calibration=None)``
prunes the inputs of the chosen linear layers while its block runs. Criteria (``CRITERIA``) and mitigations
(``MITIGATIONS``) are registries by name; ``weight_pruning`` gives the magnitude / Wanda baselines.
"""

from lmscalpel.lazy import lazy_exports

# Public names -> submodule, imported on first use (PEP 562): the table job needs no transformers.
_EXPORTS = {
    "compute_spts": "calibration", "load_params": "calibration", "save_params": "calibration",
    "train_learnable": "calibration", "CRITERIA": "criteria", "get_criterion": "criteria",
    "register_criterion": "criteria", "perplexity": "evaluate", "window_nlls": "evaluate", "Pattern": "masks",
    "keep_mask": "masks", "parse_pattern": "masks", "MITIGATIONS": "mitigations", "Mitigation": "mitigations",
    "get_mitigation": "mitigations", "register_mitigation": "mitigations", "DEFAULT_TARGETS": "pruner",
    "ActivationPruning": "pruner", "activation_pruning": "activation", "find_target_modules": "pruner",
    "WEIGHT_METHODS": "weight", "weight_pruning": "weight",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
