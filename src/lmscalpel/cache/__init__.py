"""Activation cache: sharded safetensors + manifest with provenance, resumable, checksummed, memory-mapped reads.

Re-exports are lazy (``lmscalpel.lazy``): planning (``lmscalpel.cache.plan``) imports no torch.
"""

from lmscalpel.lazy import lazy_exports

# Public names -> submodule, imported on first use (PEP 562).
_EXPORTS = {"ActivationReader": "reader", "CacheSpec": "writer", "HOOKS": "writer", "cache_activations": "writer"}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
