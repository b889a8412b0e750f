"""Memory-mapped, shuffled reads of a cache directory written by :mod:`lmscalpel.cache.writer`."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import torch
from safetensors import safe_open

from lmscalpel.io import read_json, sha256_file


class ActivationReader:
    """Reads ``manifest.json`` and its shards; ``verify=True`` checks every shard's sha256 first."""

    def __init__(self, directory: str | Path, verify: bool = False):
        self.directory = Path(directory)
        if self.directory.name == "manifest.json":
            self.directory = self.directory.parent
        manifest_path = self.directory / "manifest.json"
        if not manifest_path.exists():
            raise FileNotFoundError(f"{manifest_path}: no activation cache here (run the cache_activations rule)")
        self.manifest = read_json(manifest_path)
        if verify:
            self.verify()

    @property
    def d_model(self) -> int:
        return int(self.manifest["d_model"])

    @property
    def n_tokens(self) -> int:
        return int(self.manifest["n_tokens"])

    def verify(self) -> None:
        for shard in self.manifest["shards"]:
            if sha256_file(self.directory / shard["file"]) != shard["sha256"]:
                raise ValueError(f"{self.directory / shard['file']}: checksum mismatch (corrupted shard); "
                                 "rerun cache_activations to rebuild it")

    def shard(self, index: int, key: str = "activations") -> torch.Tensor:
        """One shard's tensor (``activations`` [n, d] or ``tokens`` [n]), memory-mapped by safetensors."""
        with safe_open(self.directory / self.manifest["shards"][index]["file"], "pt") as fh:
            return fh.get_tensor(key)

    def read_all(self, max_tokens: int | None = None, key: str = "activations") -> torch.Tensor:
        parts, total = [], 0
        for index in range(len(self.manifest["shards"])):
            if max_tokens is not None and total >= max_tokens:
                break
            parts.append(self.shard(index, key))
            total += len(parts[-1])
        out = torch.cat(parts)
        return out if max_tokens is None else out[:max_tokens]

    def iter_batches(self, batch_size: int, seed: int, shuffle: bool = True, drop_last: bool = True,
                     buffer_shards: int = 2) -> Iterator[torch.Tensor]:
        """One epoch of batches; shuffling permutes shard order and tokens within a buffer of shards."""
        gen = torch.Generator().manual_seed(seed)
        n_shards = len(self.manifest["shards"])
        order = torch.randperm(n_shards, generator=gen).tolist() if shuffle else list(range(n_shards))
        leftover = torch.empty(0, self.d_model)
        for start in range(0, n_shards, buffer_shards):
            buffer = torch.cat([leftover] + [self.shard(i) for i in order[start:start + buffer_shards]])
            if shuffle:
                buffer = buffer[torch.randperm(len(buffer), generator=gen)]
            full = len(buffer) // batch_size * batch_size
            for offset in range(0, full, batch_size):
                yield buffer[offset:offset + batch_size]
            leftover = buffer[full:]
        if len(leftover) and not drop_last:
            yield leftover
