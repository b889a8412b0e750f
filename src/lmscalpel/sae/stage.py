"""Stage entry points called by the thin scripts in ``workflow/scripts/sae-*.py``.

A grid entry ("spec") comes from ``lmscalpel.sae.plan``: ``{"sae_id", "architecture", "width"}`` and the fields
the grid sweeps (``k``, ``l1_coefficient``, ``gamma``, ...; those of other architectures None). The validated ``sae``
config section supplies everything else.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from lmscalpel.config import section_dataclass
from lmscalpel.io import atomic_path, read_json, save_figure, write_json
from lmscalpel.sae.architectures import SAE_REGISTRY
from lmscalpel.sae.base import SETTING, SparseAutoencoder
from lmscalpel.sae.metrics import geometry_metrics, model_metrics, site_activations
from lmscalpel.sae.saelens_format import hook_name, load_sae, parse_hook_name, saelens_roundtrip, save_sae
from lmscalpel.checkpoint import open_checkpoint
from lmscalpel.sae.training import GridTrainer, TrainingConfig, auto_lr, cache_batches, grid_key

log = logging.getLogger(__name__)
SAELENS_CHECK_TOKENS = 256  # activations reconstructed by SAELens and by the project, per SAE


def learning_rate(cls: type[SparseAutoencoder], train: dict[str, Any], width: int) -> float:
    """``sae.train.<its learning_rate_key>``, or when null Gao et al.'s 2e-4 / sqrt(width / 2^14)."""
    lr = train[cls.learning_rate_key]
    return float(lr) if lr else auto_lr(width)


def per_sae_train_keys() -> set[str]:
    """The ``sae.train`` keys each SAE reads itself (its learning rate, its architecture's settings there) rather
    than the grid's shared :class:`TrainingConfig`."""
    return {key for cls in SAE_REGISTRY.values() if cls.trainable() for key in (
        cls.learning_rate_key, *(f.name for f in dataclasses.fields(cls.config_class)
                                 if f.metadata.get(SETTING, {}).get("section") == "train"))}


def training_config(train: dict[str, Any]) -> TrainingConfig:
    return section_dataclass(TrainingConfig, train, read_elsewhere=per_sae_train_keys())


def build_grid(specs: Sequence[dict[str, Any]], sae_cfg: dict[str, Any], d_in: int,
               seed: int) -> dict[str, tuple[SparseAutoencoder, float]]:
    """One freshly initialised SAE per spec, each from its own seeded generator (same seed → same init)."""
    grid = {}
    for spec in specs:
        cls = SAE_REGISTRY.lookup(spec["architecture"])
        sae = cls(cls.config_class.for_grid_entry(spec, sae_cfg, d_in), generator=torch.Generator().manual_seed(seed))
        grid[spec["sae_id"]] = (sae, learning_rate(cls, sae_cfg["train"], sae.d_sae))
    return grid


def train_layer(cache_manifest: str | Path, out_dirs: dict[str, str | Path], specs: Sequence[dict[str, Any]],
                sae_cfg: dict[str, Any], seed: int, checkpoint_dir: str | Path | None,
                provenance: dict[str, Any] | None = None, device: str = "auto") -> dict[str, dict[str, float]]:
    """Train every SAE of one layer from the cached activations and save each in SAELens format."""
    from lmscalpel.cache import ActivationReader
    from lmscalpel.runtime import resolve_device

    reader = ActivationReader(Path(cache_manifest).parent)
    layer, hook = int(reader.manifest["layer"]), reader.manifest["hook"]
    cfg = training_config(sae_cfg["train"])
    grid = {k: (sae.to(resolve_device(device)), lr) for k, (sae, lr) in
            build_grid(specs, sae_cfg, reader.d_model, seed).items()}
    key = {"grid": grid_key(grid, cfg), "specs": list(specs), "sae": sae_cfg, "seed": seed,
           "cache": [s["sha256"] for s in reader.manifest["shards"]]}
    with open_checkpoint(checkpoint_dir, key, what="sae.train") as checkpoint:
        trainer = GridTrainer(grid, cfg, checkpoint)
        source = cache_batches(reader, cfg.batch_size, seed)
        for sae, _ in grid.values():
            if hasattr(sae, "check_threshold_schedule"):
                sae.check_threshold_schedule(cfg.epochs * source.steps_per_epoch)
        start = time.time()
        final = trainer.fit(source)
        seconds = time.time() - start
        n_train_tokens = cfg.epochs * source.steps_per_epoch * cfg.batch_size
        log.info("trained %d SAEs on layer %d in %.1f s (%d tokens)", len(grid), layer, seconds, n_train_tokens)
        for spec in specs:
            sae, lr = grid[spec["sae_id"]]
            meta = {**(provenance or {}), "hook_name": hook_name(layer, hook), "layer": layer, "hook": hook,
                    "context_size": reader.manifest.get("context_length"),
                    "dataset_path": reader.manifest.get("dataset"), "sae_id": spec["sae_id"], "seed": seed,
                    "learning_rate": lr, "training_tokens": n_train_tokens, "training_steps": trainer.step,
                    "training_seconds": seconds, "training_final": final[spec["sae_id"]],
                    "cache_dir": str(Path(cache_manifest).parent)}
            save_sae(sae, out_dirs[spec["sae_id"]], meta)
        trainer.remove_checkpoint()
    return final


def eval_blocks(tokenizer, texts: Sequence[str] | Any, context_length: int, max_sequences: int,
                skip_sequences: int = 0) -> list[list[int]]:
    """Packed BOS-prefixed blocks of ``context_length`` tokens (the cache's packing), after ``skip_sequences``."""
    from lmscalpel.data.text import iter_token_blocks

    blocks = iter_token_blocks(iter(texts), tokenizer, context_length)
    return list(itertools.islice(blocks, skip_sequences, skip_sequences + max_sequences))


def sae_site(sae: SparseAutoencoder, default_hook: str, sae_dir: str | Path) -> tuple[int, str]:
    """(layer, hook) an SAE reads: its metadata (trained and imported SAEs record both; ``default_hook``, the cached
    hook, when only the layer is there), else what its ``hook_name`` means (:func:`parse_hook_name`)."""
    meta = sae.metadata
    if "layer" in meta:
        return int(meta["layer"]), meta.get("hook") or default_hook
    if meta.get("hook_name"):
        return parse_hook_name(meta["hook_name"])
    raise ValueError(f"{sae_dir}/cfg.json: no layer in metadata (metadata.layer or metadata.hook_name)")


def run_core_metrics(sae_dir: str | Path, output: str | Path, model_ref, eval_cfg: dict[str, Any], hook: str,
                     texts, text_source: str, seed: int, skip_sequences: int = 0) -> dict[str, Any]:
    """Core metrics of one saved SAE (spec §4 + §7 geometry) and its SAELens round trip (the exported files read
    by SAELens reconstruct the model's activations as the project does) as one flat JSON with provenance."""
    from lmscalpel.models import check_blocks, load_model
    from lmscalpel.models.loader import model_provenance

    sae = load_sae(sae_dir)
    layer, hook = sae_site(sae, hook, sae_dir)
    model, tokenizer = load_model(model_ref)
    # a trained SAE's layer is a cached one, checked by the cache job; an imported one's is its hook_layer
    check_blocks(model, {f"sae.imports.hook_layer (SAE {Path(sae_dir).name})": [int(layer)]})
    blocks = eval_blocks(tokenizer, texts, int(eval_cfg.get("context_length", 128)),
                         int(eval_cfg.get("max_sequences", 3200)), skip_sequences)
    if not blocks:
        raise ValueError(f"{text_source}: not enough text for one block of "
                         f"{eval_cfg.get('context_length', 128)} tokens (sae.eval.context_length)")
    metrics = model_metrics(model, sae, int(layer), hook, blocks, tokenizer.all_special_ids,
                            int(eval_cfg.get("batch_size", 16)))
    metrics.update(geometry_metrics(sae, eval_cfg.get("distinct_thresholds", (0.5, 0.7))))
    device = next(model.parameters()).device
    sample = site_activations(model, int(layer), hook, torch.tensor(blocks[:2], device=device),
                              tokenizer.all_special_ids)
    metrics.update(saelens_roundtrip(sae_dir, sae, sample[:SAELENS_CHECK_TOKENS]))
    cfg = sae.metadata.get("lmscalpel_config", {})
    result = {
        **metrics, **model_provenance(model_ref), "sae_id": Path(sae_dir).name, "sae_path": str(sae_dir),
        "architecture": sae.architecture, "width": sae.d_sae, "k": cfg.get("k"), "gamma": cfg.get("gamma"),
        "l1_coefficient": cfg.get("l1_coefficient"), "layer": int(layer), "hook": hook,
        "hook_name": sae.metadata.get("hook_name"), "eval_dataset": text_source, "eval_sequences": len(blocks),
        "context_length": int(eval_cfg.get("context_length", 128)), "seed": seed,
        "training_tokens": sae.metadata.get("training_tokens"),
        "batchtopk_threshold": float(sae.threshold[0]) if hasattr(sae, "threshold") else None,
    }
    write_json(output, result)
    return result


def plot_l0_fvu(metric_paths: Sequence[str | Path], figure: str | Path, table: str | Path) -> None:
    """L0 vs FVU for every SAE of the grid, one colour per architecture; also a CSV of all core metrics."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    rows = [read_json(p) for p in metric_paths]
    frame = pd.DataFrame(rows).sort_values(["layer", "architecture", "width", "sae_id"])
    with atomic_path(table) as tmp:
        frame.to_csv(tmp, index=False)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for arch, group in frame.groupby("architecture"):
        colour = SAE_REGISTRY[arch].colour if arch in SAE_REGISTRY else None
        ax.scatter(group["l0"], group["fvu"], label=arch, color=colour, s=40)
    ax.set_xscale("log")
    ax.set_xlabel("L0 (mean active latents per token)")
    ax.set_ylabel("FVU (centred)")
    ax.set_title("SAE sparsity vs reconstruction")
    ax.legend(title="architecture")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, figure, dpi=150)
