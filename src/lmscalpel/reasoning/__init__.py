"""SAE-Reasoning (arXiv:2503.18878 v2): ReasonScore over SAE latents, feature selection, interpretation outputs,
steering reasoning (additive and clamp-through-SAE), accuracy / thinking-length evaluation and the vocabulary ban.

Library modules are importable on their own: ``vocabulary`` (R and token matching), ``score`` (ReasonScore),
``activations`` (corpus packing, residual capture, unit-decoder-norm SAE view), ``interpret``, ``intervene``,
``evaluate``, ``figures``; ``stage`` holds the rule bodies, ``plan`` what the DAG builds. Re-exports are lazy
(``lmscalpel.lazy``): planning imports no torch.
"""

from lmscalpel.lazy import lazy_exports

# Public names -> submodule, imported on first use (PEP 562).
_EXPORTS = {"ReasonScoreAccumulator": "score", "reason_scores": "score", "select_features": "score",
            "RELEASED_VOCABULARY": "vocabulary", "VocabEntry": "vocabulary", "parse_vocabulary": "vocabulary"}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
