"""Every SAE architecture, registered by name: build or look one up through this module (``base`` alone holds only
the architectures some other import happened to load). A new architecture is its module plus its import below."""

from __future__ import annotations

from typing import Any

from lmscalpel.sae import batchtopk, jumprelu, ortsae, relu, topk  # noqa: F401  (@register_sae fills the registry)
from lmscalpel.sae.base import SAE_REGISTRY, build_sae

__all__ = ["SAE_REGISTRY", "build_sae", "catalog"]


def catalog() -> dict[str, dict[str, Any]]:
    """The architectures the grid can train, each with its settings and grid axes (``SAEConfig.catalog_entry``):
    the ``sae_architectures`` entry of ``lmscalpel.registry.catalog``."""
    return {name: cls.config_class.catalog_entry() for name, cls in SAE_REGISTRY.items() if cls.trainable()}
