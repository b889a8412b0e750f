"""Rogue Scalpel (arXiv:2509.22067): activation steering with random / SAE / refusal directions and harm judges.

``steering`` (the additive residual-stream hook) is generic and also used by the reasoning and unlearning stages.
Re-exports are lazy (``lmscalpel.lazy``): planning (``lmscalpel.steering.plan``) imports no torch.
"""

from lmscalpel.lazy import lazy_exports

# Public names -> submodule, imported on first use (PEP 562).
_EXPORTS = {"steering": "hook", "steering_deltas": "hook", "special_token_ids": "hook", "skip_token_ids": "hook"}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
