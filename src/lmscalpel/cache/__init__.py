"""Activation cache: sharded safetensors + manifest with provenance, resumable, checksummed, memory-mapped reads."""

from lmscalpel.cache.reader import ActivationReader
from lmscalpel.cache.writer import HOOKS, CacheSpec, cache_activations

__all__ = ["ActivationReader", "CacheSpec", "HOOKS", "cache_activations"]
