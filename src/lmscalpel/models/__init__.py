"""One model loader for every stage: a local ``save_pretrained`` directory or a hub id.

Re-exports are lazy (``lmscalpel.lazy``): planning a GGUF run reads the file's header through
``lmscalpel.models.gguf`` without importing torch and transformers.
"""

from lmscalpel.lazy import lazy_exports

__all__ = ["ModelRef", "load_model", "load_tokenizer", "decoder_layers", "num_layers", "residual_module"]
__getattr__ = lazy_exports(__name__, {"ModelRef": "loader", "load_model": "loader", "load_tokenizer": "loader",
                                      "decoder_layers": "layers", "num_layers": "layers",
                                      "residual_module": "layers"})
