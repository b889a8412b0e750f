"""Scoring criteria for activation pruning, a registry by name.

A criterion scores every input entry ``x[..., t, j]`` of a linear layer with weight ``W`` (out x d_in); the pruner
keeps the highest scores per group. Weight-dependent factors are computed once per layer (``weight_factor``) when
the pruning is installed, not per forward call.

- ``magnitude`` (ACT): |x_tj|.
- ``amber`` (Amber-Pruner, arXiv:2508.02128, as re-implemented by the paper's code): |x_tj| * f_j with
  f_j = ||What_:,j|| / min_k ||What_:,k||, What = (W - mu) / sigma, where mu and sigma are the mean and population
  std of the entries between the 0.5% and 99.5% quantiles (outlier-clipped statistics; What itself is not clipped).
- ``clact``: |x_tj| * ||x_:,j|| / (||x_t,:|| + 1e-8); the column norm runs over the tokens of the same sequence
  (``scope="sequence"``, project default) or over every token of the forward call (``scope="batch"``, as the
  paper's code), padded positions excluded (``pruner.token_mask``). Either way a token's mask depends on later
  tokens (not causal); during cached decoding the column norm only sees the tokens of the current forward call.
- ``wanda``: |x_tj| * ||W_:,j||, the activation-side analogue of Wanda's score (project addition).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from lmscalpel.registry import Registry

Scorer = Callable[..., torch.Tensor]
WeightFactor = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class Criterion:
    name: str
    score: Scorer  # score(x, factor, **options) -> tensor shaped like x
    weight_factor: WeightFactor | None = None  # weight_factor(W, **options) -> [d_in]

    def prepare(self, weight: torch.Tensor, **options) -> torch.Tensor | None:
        if self.weight_factor is None:
            return None
        with torch.no_grad():
            return self.weight_factor(weight.detach().float(), **options)


CRITERIA: Registry[Criterion] = Registry("pruning criterion")


def register_criterion(name: str, weight_factor: WeightFactor | None = None):
    """Decorator registering ``score(x, factor, **options)`` under ``name``."""

    def decorate(score: Scorer) -> Scorer:
        CRITERIA.add(name, Criterion(name, score, weight_factor))
        return score

    return decorate


def get_criterion(name: str) -> Criterion:
    return CRITERIA.lookup(name)


def amber_channel_factor(weight: torch.Tensor, quantile: float = 0.005, max_entries: int = 100_000,
                         sample_size: int = 50_000, seed: int = 0, **_) -> torch.Tensor:
    """Amber-Pruner's per-input-channel factor from the outlier-clipped standardised weight.

    Quantiles are exact up to ``max_entries`` entries and estimated from ``sample_size`` seeded random entries above.
    """
    flat = weight.reshape(-1)
    if flat.numel() > max_entries:
        generator = torch.Generator().manual_seed(seed)
        picks = torch.randint(flat.numel(), (sample_size,), generator=generator).to(flat.device)
        sample = flat[picks]
    else:
        sample = flat
    lo, hi = torch.quantile(sample, torch.tensor([quantile, 1.0 - quantile], device=flat.device))
    inliers = flat[(flat >= lo) & (flat <= hi)]
    mu = inliers.mean()
    sigma = inliers.std(unbiased=False).clamp_min(1e-8)
    norms = ((weight - mu) / sigma).norm(dim=0)
    return norms / norms.min().clamp_min(1e-12)


def weight_column_norm(weight: torch.Tensor, **_) -> torch.Tensor:
    return weight.norm(dim=0)


def _scaled(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return x.abs() * factor.to(device=x.device, dtype=x.dtype)


@register_criterion("magnitude")
def magnitude_score(x: torch.Tensor, factor: torch.Tensor | None = None, **_) -> torch.Tensor:
    return x.abs()


@register_criterion("amber", weight_factor=amber_channel_factor)
def amber_score(x: torch.Tensor, factor: torch.Tensor, **_) -> torch.Tensor:
    return _scaled(x, factor)


@register_criterion("wanda", weight_factor=weight_column_norm)
def wanda_score(x: torch.Tensor, factor: torch.Tensor, **_) -> torch.Tensor:
    return _scaled(x, factor)


@register_criterion("clact")
def clact_score(x: torch.Tensor, factor: torch.Tensor | None = None, scope: str = "sequence",
                valid: torch.Tensor | None = None, **_) -> torch.Tensor:
    """``valid`` [batch, seq] marks the real tokens: padded positions are left out of the column norm."""
    pooled = x if valid is None else x * valid.unsqueeze(-1).to(x.dtype)
    if scope == "sequence" and x.dim() >= 3:
        column_norm = pooled.norm(dim=-2, keepdim=True)
    elif scope in ("sequence", "batch"):
        column_norm = pooled.reshape(-1, x.shape[-1]).norm(dim=0)
    else:
        raise ValueError(f"config key pruning.clact_scope: expected 'sequence' or 'batch', got {scope!r}")
    row_norm = x.norm(dim=-1, keepdim=True)
    return x.abs() * column_norm / (row_norm + 1e-8)
