"""Checked, shuffled reads of a cache directory written by :mod:`lmscalpel.cache.writer`.

Every shard is checked against the sha256 its manifest records, on the very bytes that are then parsed, so a shard
changed, truncated or lost after caching stops its reader with the file's name instead of training on it. A reader
hashes a shard once: a later read (the next epoch of a streamed cache) parses it unhashed while the file's size,
modification time and inode are those it was hashed with (a write changes them). With rule cache_verify's check of
every shard, the toy cache's 122 MB cost 0.45-0.6 s next to 33 s of SAE training, under 2 %
(``benchmarks/bench_cache_verify.py``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterator

import torch
from safetensors.torch import load as load_safetensors

from lmscalpel.io import read_json, sha256_file, write_json

MANIFEST = "manifest.json"
REBUILD = ("rebuild it with `snakemake --forcerun cache_activations` (and the same --configfile options; the shards "
           "that still match are kept)")


class ActivationReader:
    """Reads ``manifest.json`` and its shards, each checked as it is read; ``verify=True`` checks them all first."""

    def __init__(self, directory: str | Path, verify: bool = False):
        self.directory = Path(directory)
        if self.directory.name == MANIFEST:
            self.directory = self.directory.parent
        self.manifest_path = self.directory / MANIFEST
        if not self.manifest_path.exists():
            raise FileNotFoundError(f"{self.manifest_path}: no activation cache here (run the cache_activations rule)")
        self._hashed: dict[int, tuple[int, int, int]] = {}  # shard -> (size, mtime_ns, inode) when it matched
        try:
            self.manifest = read_json(self.manifest_path)
        except ValueError as err:
            raise ValueError(f"{self.manifest_path}: unreadable manifest ({err}); {REBUILD}") from None
        if verify:
            self.verify()

    @property
    def d_model(self) -> int:
        return int(self.manifest["d_model"])

    @property
    def n_tokens(self) -> int:
        return int(self.manifest["n_tokens"])

    @property
    def shard_files(self) -> list[Path]:
        return [self.directory / entry["file"] for entry in self.manifest["shards"]]

    def verify(self) -> None:
        """Check every shard without keeping it (what rule cache_verify runs before SAE training replaces its
        outputs)."""
        for index, path in enumerate(self.shard_files):
            try:
                self._check(index, sha256_file(path))
            except FileNotFoundError:
                raise self._missing(index) from None

    def _missing(self, index: int) -> FileNotFoundError:
        return FileNotFoundError(f"{self.shard_files[index]}: shard {index} of {self.manifest_path} is missing; "
                                 f"{REBUILD}")

    def _check(self, index: int, digest: str) -> None:
        path = self.shard_files[index]
        if digest != self.manifest["shards"][index]["sha256"]:
            raise ValueError(f"{path}: checksum mismatch with {self.manifest_path} ({path.stat().st_size} bytes: the "
                             f"shard changed or was damaged after caching); {REBUILD}")

    def read_shard_bytes(self, index: int) -> bytes:
        """One shard's file, checked against its manifest's sha256 (unless this reader hashed the same file)."""
        try:
            with open(self.shard_files[index], "rb") as fh:
                stat = os.fstat(fh.fileno())
                data = fh.read()
        except FileNotFoundError:
            raise self._missing(index) from None
        identity = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
        if self._hashed.get(index) != identity:
            self._check(index, hashlib.sha256(data).hexdigest())
            self._hashed[index] = identity
        return data

    def shard(self, index: int, key: str = "activations") -> torch.Tensor:
        """One shard's tensor (``activations`` [n, d] or ``tokens`` [n]), parsed from the checked bytes."""
        return load_safetensors(self.read_shard_bytes(index))[key]

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


def verify_cache(manifest: str | Path, output: str | Path) -> None:
    """Rule cache_verify: check every shard of one cached layer, then record what was checked."""
    reader = ActivationReader(manifest, verify=True)
    write_json(output, {"manifest": str(reader.manifest_path), "shards": reader.manifest["shards"]})
