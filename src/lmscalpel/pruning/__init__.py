"""Post-training N:M activation pruning (arXiv:2509.22166) with error mitigations and weight-pruning baselines.

``activation_pruning(model, pattern="8:16", criterion="magnitude", mitigation="none", targets=..., calibration=None)``
prunes the inputs of the chosen linear layers while its block runs. Criteria (``CRITERIA``) and mitigations
(``MITIGATIONS``) are registries by name; ``weight_pruning`` gives the magnitude / Wanda baselines.
"""

from lmscalpel.pruning.calibration import compute_spts, load_params, save_params, train_learnable
from lmscalpel.pruning.criteria import CRITERIA, get_criterion, register_criterion
from lmscalpel.pruning.evaluate import perplexity, window_nlls
from lmscalpel.pruning.masks import Pattern, keep_mask, parse_pattern
from lmscalpel.pruning.mitigations import MITIGATIONS, Mitigation, get_mitigation, register_mitigation
from lmscalpel.pruning.pruner import DEFAULT_TARGETS, ActivationPruning, activation_pruning, find_target_modules
from lmscalpel.pruning.weight import WEIGHT_METHODS, weight_pruning

__all__ = [
    "CRITERIA", "DEFAULT_TARGETS", "MITIGATIONS", "WEIGHT_METHODS", "ActivationPruning", "Mitigation", "Pattern",
    "activation_pruning", "compute_spts", "find_target_modules", "get_criterion", "get_mitigation", "keep_mask",
    "load_params", "parse_pattern", "perplexity", "register_criterion", "register_mitigation", "save_params",
    "train_learnable", "weight_pruning", "window_nlls",
]
