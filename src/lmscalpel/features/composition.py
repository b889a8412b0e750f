"""Composition via a meta-SAE (spec §6; SAEBench ``meta_structure``, Matryoshka SAE paper App. D.1).

A BatchTopK SAE (the SAE stage's own ``batchtopk`` architecture, trained here on an in-memory tensor) learns the m
decoder rows of the SAE under test. Its decoder fraction of variance explained, with the meta-SAE encoding in
training-mode BatchTopK as in SAEBench (:func:`meta_codes`), is the composition score: higher means the latents
share more (compositional) structure; lower means more atomic latents. Reading OrtSAE's
"composition rate" as this FVE is the spec's inference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch


@dataclass(frozen=True)
class MetaSAEConfig:
    """Spec §6 defaults; every field is a key of ``features.composition``."""

    section: ClassVar[str] = "features.composition"

    width_fraction: float = 0.25
    k: int = 4
    batch_size: int = 1024
    steps: int = 1500
    lr: float = 5e-4
    dead_window: int = 2000
    threshold_rate: float = 0.01  # SAELens' topk_threshold_lr, which SAEBench's meta-SAE trains with
    eval_mode: str = "batch_topk"
    eval_batch_size: int = 4096

    def __post_init__(self):
        if self.eval_mode not in EVAL_MODES:
            raise ValueError(f"features.composition.eval_mode: {self.eval_mode!r} not in {EVAL_MODES}")


EVAL_MODES = ("batch_topk", "threshold")


def decoder_fve(rows: torch.Tensor, reconstruction: torch.Tensor) -> float:
    """1 − Σ‖d_i − d̂_i‖² / Σ‖d_i − d̄‖²."""
    total = float(((rows - rows.mean(0, keepdim=True)) ** 2).sum())
    return 1.0 - float(((rows - reconstruction) ** 2).sum()) / total if total > 0 else 0.0


def train_meta_sae(rows: torch.Tensor, cfg: MetaSAEConfig, seed: int, device: str | torch.device = "cpu"):
    """Train the SAE stage's BatchTopK SAE on ``rows`` [m, d] with its own ``GridTrainer`` (constant Adam lr,
    unit-norm decoder, AuxK on meta-latents dead for ``dead_window`` steps).

    Deviation from SAEBench: batches are reshuffled epochs of the rows (``TensorBatches``), not sampled with
    replacement, and the trainer clips gradients at norm 1; the spec's 1,500 steps of 1,024 rows are kept
    (batch capped at m). Decoder rows are unit norm, so the trainer's activation scale is 1.
    """
    from lmscalpel.sae import build_sae
    from lmscalpel.sae.training import GridTrainer, TensorBatches, TrainingConfig

    width = max(math.ceil(cfg.width_fraction * rows.shape[0]), cfg.k)
    batch = min(cfg.batch_size, rows.shape[0])
    source = TensorBatches(rows.to(device), batch, seed)
    epochs = math.ceil(cfg.steps / source.steps_per_epoch)
    meta = build_sae("batchtopk", {"d_in": rows.shape[1], "d_sae": width, "k": cfg.k,
                                   "threshold_rate": cfg.threshold_rate},
                     generator=torch.Generator().manual_seed(seed)).to(device)
    train_cfg = TrainingConfig(batch_size=batch, epochs=epochs, warmup_steps=0, decay_fraction=0.0,
                               adam_betas=(0.9, 0.999), dead_window_tokens=cfg.dead_window * batch,
                               scale_batches=source.steps_per_epoch, geometric_median_samples=rows.shape[0])
    GridTrainer({"meta": (meta, cfg.lr)}, train_cfg).fit(source, stop_after_steps=cfg.steps)
    meta.fold_activation_scale()
    meta.eval()
    return meta


@torch.no_grad()
def meta_codes(meta, rows: torch.Tensor, cfg: MetaSAEConfig) -> torch.Tensor:
    """Meta-SAE codes of ``rows``, ``cfg.eval_batch_size`` rows at a time.

    ``batch_topk`` (default, SAEBench): the meta-SAE's training-mode encoding, the k·B largest activations of each
    eval batch of B rows, so the mean L0 is exactly k (SAEBench runs SAELens' BatchTopK training SAE forward in
    batches of 4,096). ``threshold``: the JumpReLU inference form that every other metric uses (spec §2.1); its L0
    follows the learned θ instead of k.
    """
    chunks = []
    for start in range(0, rows.shape[0], cfg.eval_batch_size):
        batch = rows[start:start + cfg.eval_batch_size]
        chunks.append(meta.encode_batch_topk(batch) if cfg.eval_mode == "batch_topk" else meta.encode(batch))
    return torch.cat(chunks)


def composition_metrics(w_dec: torch.Tensor, cfg: MetaSAEConfig, seed: int,
                        device: str | torch.device = "cpu") -> dict[str, float]:
    """Meta-SAE decoder FVE on the SAE's decoder rows (encoding per ``cfg.eval_mode``)."""
    rows = w_dec.detach().float().cpu()
    with torch.enable_grad():
        meta = train_meta_sae(rows, cfg, seed, device)
    with torch.no_grad():
        codes = meta_codes(meta, rows.to(device), cfg)
        recon = meta.decode(codes).cpu()
    return {
        "meta_sae_fve": decoder_fve(rows, recon),
        "meta_sae_l0": float((codes != 0).float().sum(1).mean()),
        "meta_sae_width": meta.W_dec.shape[0],
        "n_latents": rows.shape[0],
    }
