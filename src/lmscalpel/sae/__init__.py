"""SAE training (ReLU, TopK, BatchTopK, OrtSAE), core metrics and the SAELens on-disk format.

Contract used by other stages: :func:`load_sae` returns a :class:`SparseAutoencoder` that works on raw
activations (``encode``, ``decode``, ``forward`` → (x̂, f); ``W_enc [d, m]``, ``W_dec [m, d]``, ``b_enc``,
``b_dec``, ``d_in``, ``d_sae``, ``cfg``, ``architecture``, ``metadata``). BatchTopK/OrtSAE encode in
inference mode (JumpReLU with the global threshold).
"""

from lmscalpel.sae.base import SAE_REGISTRY, SAEConfig, SparseAutoencoder, build_sae, register_sae
from lmscalpel.sae.relu import ReLUConfig, ReLUSAE
from lmscalpel.sae.jumprelu import JumpReLUConfig, JumpReLUSAE
from lmscalpel.sae.topk import TopKConfig, TopKSAE
from lmscalpel.sae.batchtopk import BatchTopKConfig, BatchTopKSAE
from lmscalpel.sae.ortsae import OrtSAE, OrtSAEConfig
from lmscalpel.sae.saelens_format import hook_name, load_sae, parse_hook_name, save_sae

__all__ = ["SAE_REGISTRY", "SAEConfig", "SparseAutoencoder", "build_sae", "register_sae", "ReLUConfig", "ReLUSAE",
           "JumpReLUConfig", "JumpReLUSAE", "TopKConfig", "TopKSAE", "BatchTopKConfig", "BatchTopKSAE", "OrtSAE",
           "OrtSAEConfig", "load_sae", "save_sae", "hook_name", "parse_hook_name"]
