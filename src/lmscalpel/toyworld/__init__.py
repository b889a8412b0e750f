"""The toy world: a generated corpus with known structure, its tokenizer, the tiny Llama trained on it,
and the model card that measures what the model learned."""

from lmscalpel.toyworld.generate import ToyWorldConfig, generate
from lmscalpel.toyworld.judge import REFUSAL_MARKERS, is_compliant, is_refusal

__all__ = ["ToyWorldConfig", "generate", "REFUSAL_MARKERS", "is_compliant", "is_refusal"]
