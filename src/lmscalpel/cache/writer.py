"""Write activations of one or more layers in one pass over the data.

Shard ``i`` holds the non-special tokens of a fixed range of token blocks, so shards are independent: a rerun
keeps every shard whose checksum sidecar matches, recomputes the rest (a killed job resumes; a corrupted shard is
rebuilt), and only then writes the manifest — the single declared output.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors.torch import save_file
from tqdm import tqdm

from lmscalpel.cache.reader import MANIFEST
from lmscalpel.io import atomic_path, sha256_file, write_json, write_text
from lmscalpel.models.layers import residual_module

log = logging.getLogger(__name__)
HOOKS = ("resid_post", "mlp_in")


@dataclass
class CacheSpec:
    """What to cache (config section ``cache``) and where each layer's shards go."""

    layers: list[int]
    hook: str
    context_length: int
    n_tokens: int
    shard_tokens: int
    batch_size: int
    out_dirs: list[Path]
    provenance: dict[str, Any] = field(default_factory=dict)
    weights_identity: str | None = None  # changes when local weights are rewritten (kept out of the manifest)

    def __post_init__(self) -> None:
        if self.hook not in HOOKS:
            raise ValueError(f"config key cache.hook: {self.hook!r} is not one of {HOOKS}")
        if len(self.out_dirs) != len(self.layers):
            raise ValueError("one output directory per cached layer is required")
        self.out_dirs = [Path(d) for d in self.out_dirs]

    @property
    def fingerprint(self) -> str:
        """What a shard depends on: model identity, data, layout; a shard of another fingerprint is rebuilt."""
        payload = {"provenance": self.provenance, "weights": self.weights_identity, "layers": self.layers, "hook": self.hook,
                   "context_length": self.context_length, "blocks_per_shard": self.blocks_per_shard}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]

    @property
    def blocks_per_shard(self) -> int:
        return max(1, self.shard_tokens // self.context_length)

    @property
    def n_shards(self) -> int:
        return -(-self.n_tokens // (self.blocks_per_shard * self.context_length))


def shard_name(index: int) -> str:
    return f"shard_{index:05d}.safetensors"


def shard_is_valid(directory: Path, index: int, fingerprint: str) -> bool:
    """A finished shard of this very run: its checksum matches and it was written for the same fingerprint."""
    shard, sidecar = directory / shard_name(index), directory / f"{shard_name(index)}.sha256"
    if not (shard.exists() and sidecar.exists()):
        return False
    recorded = sidecar.read_text().split()
    if recorded[1:] != [fingerprint]:
        log.warning("%s: written for another model/data/layout, rebuilding", shard)
        return False
    if recorded[0] != sha256_file(shard):
        log.warning("%s: checksum mismatch, rebuilding", shard)
        return False
    return True


class StopForward(Exception):
    """Raised after the deepest cached layer: the remaining blocks and the LM head are never computed."""


class LayerCapture:
    """Forward hooks that copy the hooked activations of several layers during one forward pass."""

    def __init__(self, model: torch.nn.Module, layers: list[int], hook: str):
        self.outputs: dict[int, torch.Tensor] = {}
        self.handles = []
        self.last = max(layers)
        for layer in layers:
            block = residual_module(model, layer)
            if hook == "resid_post":
                self.handles.append(block.register_forward_hook(self._post(layer)))
            else:
                self.handles.append(block.mlp.register_forward_pre_hook(self._pre(layer)))

    def _store(self, layer: int, value: torch.Tensor) -> None:
        self.outputs[layer] = value.detach()
        if layer == self.last:
            raise StopForward

    def _post(self, layer: int):
        def hook(module, args, output):
            self._store(layer, output[0] if isinstance(output, tuple) else output)
        return hook

    def _pre(self, layer: int):
        def hook(module, args):
            self._store(layer, args[0])
        return hook

    def run(self, model: torch.nn.Module, input_ids: torch.Tensor) -> dict[int, torch.Tensor]:
        try:
            model(input_ids=input_ids, use_cache=False)
        except StopForward:
            pass
        return self.outputs

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


@torch.no_grad()
def compute_shard(model, blocks: list[list[int]], spec: CacheSpec, special_ids: set[int]) -> dict[int, dict]:
    """Activations of every cached layer for the non-special tokens of ``blocks``."""
    device = next(model.parameters()).device
    capture = LayerCapture(model, spec.layers, spec.hook)
    per_layer: dict[int, list[torch.Tensor]] = {layer: [] for layer in spec.layers}
    tokens = []
    try:
        for start in range(0, len(blocks), spec.batch_size):
            ids = torch.tensor(blocks[start:start + spec.batch_size], device=device)
            outputs = capture.run(model, ids)
            keep = ~torch.isin(ids, torch.tensor(sorted(special_ids), device=device))
            for layer in spec.layers:
                per_layer[layer].append(outputs[layer][keep].float().cpu())
            tokens.append(ids[keep].cpu())
    finally:
        capture.remove()
    token_ids = torch.cat(tokens).to(torch.int32)
    return {layer: {"activations": torch.cat(acts), "tokens": token_ids} for layer, acts in per_layer.items()}


def save_shard(directory: Path, index: int, tensors: dict[str, torch.Tensor], fingerprint: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / shard_name(index)) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp)
    write_text(directory / f"{shard_name(index)}.sha256", f"{sha256_file(directory / shard_name(index))} {fingerprint}\n")


def cache_activations(model, tokenizer, texts: Iterator[str], spec: CacheSpec) -> list[dict]:
    """Fill every layer's directory with shards, then write each manifest; returns the manifests."""
    from lmscalpel.data.text import iter_token_blocks

    special_ids = set(tokenizer.all_special_ids)
    block_iter = iter_token_blocks(texts, tokenizer, spec.context_length)
    shards_done = 0
    for index in tqdm(range(spec.n_shards), desc="cache shards"):
        blocks = list(itertools.islice(block_iter, spec.blocks_per_shard))
        if not blocks:
            log.warning("data ran out after %d shards (cache.n_tokens=%d asked for more)", index, spec.n_tokens)
            break
        shards_done = index + 1
        if all(shard_is_valid(d, index, spec.fingerprint) for d in spec.out_dirs):
            continue
        result = compute_shard(model, blocks, spec, special_ids)
        for layer, directory in zip(spec.layers, spec.out_dirs):
            save_shard(directory, index, result[layer], spec.fingerprint)
    return [write_manifest(d, layer, spec, shards_done) for layer, d in zip(spec.layers, spec.out_dirs)]


def write_manifest(directory: Path, layer: int, spec: CacheSpec, n_shards: int) -> dict:
    from safetensors import safe_open

    shards, d_model = [], None
    for index in range(n_shards):
        path = directory / shard_name(index)
        with safe_open(path, "pt") as fh:
            n, d_model = fh.get_slice("activations").get_shape()
        shards.append({"file": path.name, "n_tokens": n, "sha256": sha256_file(path)})
    manifest = {**spec.provenance, "layer": layer, "hook": spec.hook, "context_length": spec.context_length,
                "d_model": d_model, "dtype": "float32", "n_tokens": sum(s["n_tokens"] for s in shards),
                "special_tokens_excluded": True, "shards": shards}
    write_json(directory / MANIFEST, manifest)
    return manifest
