"""One model loader for every stage: a local ``save_pretrained`` directory or a hub id."""

from lmscalpel.models.loader import ModelRef, load_model, load_tokenizer
from lmscalpel.models.layers import decoder_layers, num_layers, residual_module

__all__ = ["ModelRef", "load_model", "load_tokenizer", "decoder_layers", "num_layers", "residual_module"]
