"""TopK SAE (Gao et al.): per-token top-k latents, AuxK loss for dead latents, sparse decoder and backward."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from lmscalpel.sae.base import SAEConfig, SparseAutoencoder, StepContext, StepOutput, register_sae, setting, swept
from lmscalpel.sae.sparse import SparsePattern, select_topk, sparse_decode, sparse_encode


@dataclass
class TopKConfig(SAEConfig):
    """``aux_k`` None → d_in/2 (spec §2.1); ``aux_coefficient`` α = 1/32. The AuxK keys sit in ``sae.train``."""

    k: int = swept(32, "Mean active latents per token (k), below every width (k = width keeps every latent).",
                   values="ks", default_values=[16], tag="k{}", less_than_width=True, minimum=1)
    aux_k: int | None = setting(None, "Dead latents used by the AuxK loss; null = d_in / 2.", section="train",
                                minimum=1)
    aux_coefficient: float = setting(1 / 32, "AuxK loss weight alpha (1/32).", section="train", minimum=0)


class TopKTrainingMixin:
    """Shared TopK-family training step; subclasses choose the active pairs in :meth:`select`."""

    cfg: TopKConfig

    def select(self, pre: torch.Tensor) -> SparsePattern:
        raise NotImplementedError

    def extra_loss(self, ctx: StepContext) -> tuple[torch.Tensor | None, dict[str, float]]:
        """Additional penalty (OrtSAE); none by default."""
        return None, {}

    def training_step(self, x: torch.Tensor, ctx: StepContext) -> StepOutput:
        x_in = x - self.b_dec if self.cfg.apply_b_dec_to_input else x
        with torch.no_grad():
            pre = torch.addmm(self.b_enc, x_in, self.W_enc)
        pattern = self.select(pre)
        vals = sparse_encode(x_in, self.W_enc, self.b_enc, pre, pattern)
        x_hat = sparse_decode(vals, self.W_dec, pattern) + self.b_dec
        err = x - x_hat
        mse = err.pow(2).sum(-1).mean()
        aux = self.aux_loss(err.detach(), x_in, pre, ctx.dead_mask)
        loss = mse + self.cfg.aux_coefficient * aux
        extra, extra_stats = self.extra_loss(ctx)
        if extra is not None:
            loss = loss + extra
        with torch.no_grad():
            fvu = err.pow(2).sum() / (x - x.mean(0)).pow(2).sum().clamp_min(1e-12)
        stats = {"loss": float(loss.detach()), "mse": float(mse.detach()), "fvu": float(fvu),
                 "l0": pattern.nnz / x.shape[0], "aux": float(aux.detach()), **extra_stats}
        min_active = float(vals.detach().min()) if pattern.nnz else None
        return StepOutput(loss=loss, fired=pattern.fired(), stats=stats, min_active=min_active)

    def aux_loss(self, residual: torch.Tensor, x_in: torch.Tensor, pre: torch.Tensor,
                 dead_mask: torch.Tensor | None) -> torch.Tensor:
        """AuxK: the top-k_aux dead latents (post-ReLU) reconstruct the residual; normalised by its variance."""
        if dead_mask is None or not bool(dead_mask.any()):
            return residual.new_zeros(())
        dead = dead_mask.nonzero().squeeze(1)
        k_aux = min(self.cfg.aux_k or self.cfg.d_in // 2, dead.numel())
        vals, idx = torch.topk(pre[:, dead], k_aux, dim=-1, sorted=False)
        keep = vals > 0
        if not bool(keep.any()):
            return residual.new_zeros(())
        rows = torch.arange(pre.shape[0], device=pre.device)[:, None].expand_as(idx)[keep]
        pattern = SparsePattern(rows, dead[idx[keep]], pre.shape[0], pre.shape[1], vals[keep])
        aux_vals = sparse_encode(x_in, self.W_enc, self.b_enc, pre, pattern)
        residual_hat = sparse_decode(aux_vals, self.W_dec, pattern)
        loss = (residual - residual_hat).pow(2).sum() / (residual - residual.mean(0)).pow(2).sum()
        return torch.nan_to_num(loss, nan=0.0, posinf=0.0)


@register_sae("topk")
class TopKSAE(TopKTrainingMixin, SparseAutoencoder):
    config_class = TopKConfig
    saelens_architecture = "topk"
    colour = "tab:orange"

    def saelens_fields(self) -> dict[str, Any]:
        return {"k": int(self.cfg.k), "rescale_acts_by_decoder_norm": False}

    @classmethod
    def config_from_saelens(cls, cfg: dict[str, Any]) -> dict[str, Any]:
        return {"k": int(cfg["k"])}

    def select(self, pre: torch.Tensor) -> SparsePattern:
        return select_topk(pre, self.cfg.k)

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        vals, idx = torch.topk(pre, min(self.cfg.k, pre.shape[-1]), dim=-1, sorted=False)
        return torch.zeros_like(pre).scatter_(-1, idx, torch.relu(vals))
