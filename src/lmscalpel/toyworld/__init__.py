"""The toy world: a generated corpus with known structure, its tokenizer, the tiny Llama trained on it, and the
ground truth of its chat behaviour (``judge``); the model card that measures any model is ``lmscalpel.models.card``."""

from lmscalpel.toyworld.generate import ToyWorldConfig, generate
from lmscalpel.toyworld.judge import REFUSAL_MARKERS, is_compliant, is_refusal

__all__ = ["ToyWorldConfig", "generate", "REFUSAL_MARKERS", "is_compliant", "is_refusal"]
