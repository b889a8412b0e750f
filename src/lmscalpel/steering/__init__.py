"""Rogue Scalpel (arXiv:2509.22067): activation steering with random / SAE / refusal directions and harm judges.

``steering`` (the additive residual-stream hook) is generic and also used by the reasoning and unlearning stages.
"""

from lmscalpel.steering.hook import skip_token_ids, special_token_ids, steering, steering_deltas

__all__ = ["steering", "steering_deltas", "special_token_ids", "skip_token_ids"]
