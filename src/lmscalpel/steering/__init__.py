"""Rogue Scalpel (arXiv:2509.22067): activation steering with random / SAE / refusal directions and harm judges.

The additive residual-stream hook itself is generic (``lmscalpel.models.intervention``, also used by the reasoning
and unlearning stages); this package holds the protocol: directions, grid, universal attack, capability, judges.
"""
