"""JumpReLU SAE (inference only): f_i = pre_i · 1[pre_i > θ_i]. Gemma Scope files and every exported
BatchTopK/OrtSAE use this form."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lmscalpel.sae.base import SAEConfig, SparseAutoencoder, register_sae


def jumprelu(pre: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """SAELens' JumpReLU: ReLU then zero every unit whose pre-activation is not above its threshold."""
    return torch.relu(pre) * (pre > threshold)


@dataclass
class JumpReLUConfig(SAEConfig):
    apply_b_dec_to_input: bool = False


class ThresholdMixin:
    """A per-latent ``threshold`` buffer that rescales with the encoder when decoder norms are folded."""

    def _init_threshold(self, value: float) -> None:
        self.register_buffer("threshold", torch.full((self.cfg.d_sae,), float(value)))

    def _scale_thresholds(self, norms: torch.Tensor) -> None:
        self.threshold.mul_(norms)


@register_sae("jumprelu")
class JumpReLUSAE(ThresholdMixin, SparseAutoencoder):
    config_class = JumpReLUConfig
    saelens_architecture = "jumprelu"

    def __init__(self, cfg: JumpReLUConfig, generator: torch.Generator | None = None):
        super().__init__(cfg, generator)
        self._init_threshold(0.0)

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        return jumprelu(pre, self.threshold)
