"""SAE training (ReLU, TopK, BatchTopK, OrtSAE), core metrics and the SAELens on-disk format.

Contract used by other stages: :func:`load_sae` returns a :class:`SparseAutoencoder` that works on raw
activations (``encode``, ``decode``, ``forward`` → (x̂, f); ``W_enc [d, m]``, ``W_dec [m, d]``, ``b_enc``,
``b_dec``, ``d_in``, ``d_sae``, ``cfg``, ``architecture``, ``metadata``). BatchTopK/OrtSAE encode in
inference mode (JumpReLU with the global threshold).

Re-exports are lazy (``lmscalpel.lazy``): planning the SAE grid (``lmscalpel.sae.plan``) imports no torch.
"""

from lmscalpel.lazy import lazy_exports

# Public names -> submodule, imported on first use (PEP 562).
_EXPORTS = {
    "SAE_REGISTRY": "architectures", "build_sae": "architectures", "SAEConfig": "base",
    "SparseAutoencoder": "base", "register_sae": "base", "ReLUConfig": "relu", "ReLUSAE": "relu",
    "JumpReLUConfig": "jumprelu", "JumpReLUSAE": "jumprelu", "TopKConfig": "topk", "TopKSAE": "topk",
    "BatchTopKConfig": "batchtopk", "BatchTopKSAE": "batchtopk", "OrtSAE": "ortsae", "OrtSAEConfig": "ortsae",
    "load_sae": "saelens_format", "save_sae": "saelens_format", "hook_name": "saelens_format",
    "parse_hook_name": "saelens_format",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
