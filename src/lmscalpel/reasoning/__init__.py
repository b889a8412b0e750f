"""SAE-Reasoning (arXiv:2503.18878 v2): ReasonScore over SAE latents, feature selection, interpretation outputs,
steering reasoning (additive and clamp-through-SAE), accuracy / thinking-length evaluation and the vocabulary ban.

Library modules are importable on their own: ``vocabulary`` (R and token matching), ``score`` (ReasonScore),
``activations`` (corpus packing, residual capture, unit-decoder-norm SAE view), ``interpret``, ``intervene``,
``evaluate``, ``figures``; ``stage`` holds the rule bodies.
"""

from lmscalpel.reasoning.score import ReasonScoreAccumulator, reason_scores, select_features
from lmscalpel.reasoning.vocabulary import RELEASED_VOCABULARY, VocabEntry, parse_vocabulary

__all__ = ["ReasonScoreAccumulator", "reason_scores", "select_features", "RELEASED_VOCABULARY", "VocabEntry",
           "parse_vocabulary"]
