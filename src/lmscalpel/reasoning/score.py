"""ReasonScore (SAE-Reasoning v2 §3.2, Eqs. 4–6), accumulated in one streaming pass over SAE activations.

    ReasonScore_i = [μ(i, D_R) / Σ_j μ(j, D_R)] · H_i^α − μ(i, D_¬R) / Σ_j μ(j, D_¬R)
    H_i = −(1 / log |R|) Σ_j p_i(r_j) log p_i(r_j),   p_i(r_j) = μ(i, D_{r_j}) / Σ_k μ(i, D_{r_k})

μ(i, D) is the mean activation of latent i over the token set D; D_R / D_{r_j} are the windowed positions around
occurrences of the vocabulary (all / group j), D_¬R every other non-special position. ε = 1e-12 in every
denominator, as the released code. The same pass records f_max per latent (used for steering) and each latent's
top-k activating token positions (used for interpretation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

EPS = 1e-12


class ReasonScoreAccumulator:
    """Running sums over batches of token activations ``acts [N, m]`` (N tokens, m latents)."""

    def __init__(self, n_latents: int, n_groups: int, top_k: int = 10, device: str | torch.device = "cpu"):
        self.m, self.n_groups, self.top_k = n_latents, n_groups, top_k
        zeros = lambda *shape, dtype=torch.float64: torch.zeros(*shape, dtype=dtype, device=device)  # noqa: E731
        self.sum_r, self.sum_not_r = zeros(n_latents), zeros(n_latents)
        self.sum_groups = zeros(n_groups, n_latents)
        self.count_r = 0
        self.count_not_r = 0
        self.count_groups = zeros(n_groups, dtype=torch.long)
        self.f_max = zeros(n_latents, dtype=torch.float32)
        self.top_values = torch.full((0, n_latents), -1.0, device=device)
        self.top_index = zeros(0, n_latents, dtype=torch.long)
        self.n_tokens = 0

    def update(self, acts: torch.Tensor, group_windows: torch.Tensor, valid: torch.Tensor, offset: int) -> None:
        """``group_windows [G, N]``: token in the window of group g; ``valid [N]``: not special/padding;
        ``offset``: global index of the first token (for top-k positions)."""
        device = self.sum_r.device
        acts = acts.detach().float().to(device)
        valid = valid.to(device)
        group_windows = group_windows.to(device) & valid
        in_r = group_windows.any(0)
        not_r = valid & ~in_r
        self.sum_r += (in_r.float() @ acts).double()
        self.sum_not_r += (not_r.float() @ acts).double()
        self.sum_groups += (group_windows.float() @ acts).double()
        self.count_r += int(in_r.sum())
        self.count_not_r += int(not_r.sum())
        self.count_groups += group_windows.sum(1)
        self.n_tokens += int(valid.sum())
        masked = acts.masked_fill(~valid[:, None], -1.0)
        if masked.shape[0]:
            self.f_max = torch.maximum(self.f_max, masked.max(0).values.clamp_min(0))
            k = min(self.top_k, masked.shape[0])
            values, index = masked.topk(k, dim=0)
            values = torch.cat([self.top_values, values])
            index = torch.cat([self.top_index, index + offset])
            keep = values.topk(min(self.top_k, values.shape[0]), dim=0).indices
            self.top_values, self.top_index = values.gather(0, keep), index.gather(0, keep)

    def to(self, device: str | torch.device) -> "ReasonScoreAccumulator":
        """Move every running tensor (e.g. back to the CPU once the pass is done)."""
        for name in ("sum_r", "sum_not_r", "sum_groups", "count_groups", "f_max", "top_values", "top_index"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def means(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """μ(·, D_R), μ(·, D_¬R) and μ(·, D_{r_j}) ``[G, m]``."""
        mu_r = self.sum_r / max(self.count_r, 1)
        mu_not_r = self.sum_not_r / max(self.count_not_r, 1)
        mu_groups = self.sum_groups / self.count_groups.clamp_min(1)[:, None].double()
        return mu_r, mu_not_r, mu_groups


@dataclass
class ReasonScores:
    score: torch.Tensor
    share_r: torch.Tensor
    share_not_r: torch.Tensor
    entropy: torch.Tensor
    group_share: torch.Tensor  # p_i(r_j), [G, m]


def reason_scores(mu_r: torch.Tensor, mu_not_r: torch.Tensor, mu_groups: torch.Tensor, alpha: float = 0.7,
                  n_groups: int | None = None) -> ReasonScores:
    """Eq. 5. ``n_groups`` = |R| for the entropy normalisation (defaults to ``mu_groups.shape[0]``)."""
    mu_r, mu_not_r, mu_groups = mu_r.double(), mu_not_r.double(), mu_groups.double()
    n_groups = n_groups or mu_groups.shape[0]
    p = mu_groups / (mu_groups.sum(0, keepdim=True) + EPS)
    plogp = torch.where(p > 0, p * torch.log(p.clamp_min(EPS)), torch.zeros_like(p))
    entropy = (-plogp.sum(0) / math.log(n_groups)).clamp(0.0, 1.0)
    share_r = mu_r / (mu_r.sum() + EPS)
    share_not_r = mu_not_r / (mu_not_r.sum() + EPS)
    score = share_r * entropy.pow(alpha) - share_not_r
    return ReasonScores(score=score, share_r=share_r, share_not_r=share_not_r, entropy=entropy, group_share=p)


def select_features(score: torch.Tensor | np.ndarray, quantile: float) -> tuple[list[int], float, bool]:
    """Eq. 6: latents with score above the ``quantile`` of all scores, best first.

    Returns ``(latents, threshold, forced)``; when no latent clears the threshold (ties at the top), the best one
    is selected and ``forced`` is True so the caller can report it.
    """
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"config key reasoning.quantile must be in (0, 1), got {quantile}")
    score = np.asarray(score, dtype=np.float64)
    threshold = float(np.quantile(score, quantile))
    chosen = np.flatnonzero(score > threshold)
    forced = chosen.size == 0
    if forced:
        chosen = np.array([int(np.argmax(score))])
    order = chosen[np.argsort(-score[chosen], kind="stable")]
    return [int(i) for i in order], threshold, forced
