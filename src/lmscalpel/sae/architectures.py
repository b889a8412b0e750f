"""Every SAE architecture, registered by name: build or look one up through this module (``base`` alone holds only
the architectures some other import happened to load)."""

from lmscalpel.sae import batchtopk, jumprelu, ortsae, relu, topk  # noqa: F401  (@register_sae fills the registry)
from lmscalpel.sae.base import SAE_REGISTRY, build_sae

__all__ = ["SAE_REGISTRY", "build_sae"]
