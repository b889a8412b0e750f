"""CLEAR multimodal unlearning (arXiv:2410.18057) with TOFU metrics (arXiv:2401.06121).

mini-CLEAR data from the toy world (or ``therem/CLEAR``), a tiny LLaVA (or LLaVA-1.5-7B), LoRA fine-tuning of
the original and gold models, ten unlearning methods as registered losses, LoRA + L1, and the cross-paper check
of forgetting under steering and activation pruning.
"""

from lmscalpel.unlearning.data import build_mini_clear, load_clear_subset
from lmscalpel.unlearning.lora import attach_lora, l1_penalty
from lmscalpel.unlearning.losses import IDK_ANSWERS, METHODS, get_method, register
from lmscalpel.unlearning.metrics import forget_quality, harmonic_mean, truth_ratio_score, truth_ratios
from lmscalpel.unlearning.vlm import build_tiny_llava, load_vlm

__all__ = ["IDK_ANSWERS", "METHODS", "attach_lora", "build_mini_clear", "build_tiny_llava", "forget_quality",
           "get_method", "harmonic_mean", "l1_penalty", "load_clear_subset", "load_vlm", "register",
           "truth_ratio_score", "truth_ratios"]
