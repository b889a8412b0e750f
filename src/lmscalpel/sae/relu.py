"""Standard ReLU SAE with the decoder-norm-weighted L1 penalty (Anthropic "April update" recipe, spec §2.2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from lmscalpel.sae.base import SAEConfig, SparseAutoencoder, StepContext, StepOutput, register_sae, setting, swept


@dataclass
class ReLUConfig(SAEConfig):
    """λ is in units of the scaled activations (E‖x‖² = 1); the paper's λ = 5 assumes E‖x‖² = d, so its
    equivalent here is about 5/√d."""

    sections: ClassVar[dict[str, str]] = {"relu": "ReLU SAE recipe (Anthropic April update, spec §2.2)."}

    apply_b_dec_to_input: bool = setting(False, "Subtract b_dec before encoding (false in the recipe).",
                                         section="relu")
    l1_coefficient: float = swept(
        5.0, "L1 weights lambda of the ReLU SAE, in units of activations scaled to E|x|^2 = 1 (the SAE-reasoning "
        "paper's 5 assumes E|x|^2 = d, about 5/sqrt(d) here).",
        values="relu_l1_coefficients", default_values=[0.3], tag="l1c{:g}", minimum=0)
    l1_warmup_fraction: float = setting(0.05, "Share of steps over which lambda ramps up from 0.", section="relu",
                                        minimum=0, maximum=1)
    init_decoder_norm: float = setting(0.1, "Norm of the random initial decoder rows.", section="relu",
                                       exclusiveMinimum=0)


@register_sae("relu")
class ReLUSAE(SparseAutoencoder):
    config_class = ReLUConfig
    unit_norm_decoder = False  # the penalty weights each latent by its decoder norm instead
    learning_rate_key = "relu_lr"
    saelens_architecture = "standard"
    colour = "tab:blue"
    cfg: ReLUConfig

    @torch.no_grad()
    def init_parameters(self, generator: torch.Generator | None = None) -> None:
        super().init_parameters(generator)
        self.W_dec.mul_(getattr(self.cfg, "init_decoder_norm", 1.0))
        self.W_enc.copy_(self.W_dec.t())

    @torch.no_grad()
    def init_from_data(self, geometric_median: torch.Tensor) -> None:
        """The recipe keeps b_dec = 0."""

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        return torch.relu(pre)

    def l1_coefficient_at(self, ctx: StepContext) -> float:
        warmup = self.cfg.l1_warmup_fraction * ctx.total_steps
        return self.cfg.l1_coefficient * (min(1.0, (ctx.step + 1) / warmup) if warmup > 0 else 1.0)

    def training_step(self, x: torch.Tensor, ctx: StepContext) -> StepOutput:
        f = self.encode(x)
        x_hat = self.decode(f)
        sq_err = (x - x_hat).pow(2).sum(-1)
        mse = sq_err.mean()
        sparsity = (f * self.W_dec.norm(dim=-1)).sum(-1).mean()
        loss = mse + self.l1_coefficient_at(ctx) * sparsity
        with torch.no_grad():
            active = f > 0
            fvu = sq_err.sum() / (x - x.mean(0)).pow(2).sum().clamp_min(1e-12)
        stats = {"loss": float(loss.detach()), "mse": float(mse.detach()), "fvu": float(fvu),
                 "l0": float(active.sum(-1).float().mean()), "l1_penalty": float(sparsity.detach())}
        return StepOutput(loss=loss, fired=active.any(0), stats=stats)
