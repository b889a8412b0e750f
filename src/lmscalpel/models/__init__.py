"""What every stage does with a model: load it (one loader for a local ``save_pretrained`` directory or a hub id,
``gguf`` conversion), find its blocks (``layers``), prompt it (``chat``), generate and score (``generation``), steer
its residual stream (``intervention``), read refusals (``refusal``) and measure it (``card``).

Re-exports are lazy (``lmscalpel.lazy``): planning a GGUF run reads the file's header through
``lmscalpel.models.gguf`` without importing torch and transformers.
"""

from lmscalpel.lazy import lazy_exports

_EXPORTS = {"ModelRef": "loader", "load_model": "loader", "load_tokenizer": "loader", "check_blocks": "layers",
            "decoder_layers": "layers", "num_layers": "layers", "residual_module": "layers"}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
