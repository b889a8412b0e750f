"""Entry point of the cache_activations rule: resolve the model, the text source and the shard layout."""

from __future__ import annotations

import logging
from pathlib import Path

from lmscalpel.cache.writer import CacheSpec, cache_activations
from lmscalpel.data.text import iter_texts
from lmscalpel.models import check_blocks, load_model
from lmscalpel.models.loader import ModelRef

log = logging.getLogger(__name__)


def weights_identity(ref: ModelRef) -> str | None:
    """A cheap identity of local weights (size and modification time of each safetensors file), so a retrained
    model invalidates finished shards; hub models are identified by id and revision."""
    if not ref.is_local:
        return None
    files = sorted(Path(ref.name_or_path).glob("*.safetensors"))
    return ";".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)


def run_cache(ref: ModelRef, cfg: dict, manifests: list[str], toyworld_text: str | None = None) -> list[dict]:
    model, tokenizer = load_model(ref)
    check_blocks(model, {"cache.layers": cfg["layers"]})
    dataset = cfg["dataset"]
    spec = CacheSpec(layers=list(cfg["layers"]), hook=cfg["hook"], context_length=cfg["context_length"],
                     n_tokens=cfg["n_tokens"], shard_tokens=cfg["shard_tokens"], batch_size=cfg["batch_size"],
                     out_dirs=[Path(m).parent for m in manifests],
                     provenance={"model": ref.name_or_path, "model_revision": ref.revision, "model_dtype": ref.dtype,
                                 "dataset": dataset},
                     weights_identity=weights_identity(ref))
    toyworld_dir = Path(toyworld_text).parent if toyworld_text else None
    result = cache_activations(model, tokenizer, iter_texts(dataset, toyworld_dir, default_split="train"), spec)
    log.info("cached %d tokens per layer", result[0]["n_tokens"])
    return result
