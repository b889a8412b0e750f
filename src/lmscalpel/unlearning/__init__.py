"""CLEAR multimodal unlearning (arXiv:2410.18057) with TOFU metrics (arXiv:2401.06121).

mini-CLEAR data from the toy world (or ``therem/CLEAR``), a tiny LLaVA (or LLaVA-1.5-7B), LoRA fine-tuning of
the original and gold models, ten unlearning methods as registered losses, LoRA + L1, and the cross-paper check
of forgetting under steering and activation pruning.
"""

from lmscalpel.lazy import lazy_exports

# Public names -> submodule; imported on first use (PEP 562) so that table and figure jobs, which only need
# ``unlearning.report``, do not pay for datasets, rouge-score and transformers at start-up.
_EXPORTS = {
    "build_mini_clear": "data", "load_clear_subset": "data",
    "attach_lora": "lora", "l1_penalty": "lora",
    "IDK_ANSWERS": "losses", "METHODS": "losses", "get_method": "losses", "register": "losses",
    "forget_quality": "metrics", "harmonic_mean": "metrics", "truth_ratio_score": "metrics", "truth_ratios": "metrics",
    "build_tiny_llava": "vlm", "load_vlm": "vlm",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
