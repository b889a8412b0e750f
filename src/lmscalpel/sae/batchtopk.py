"""BatchTopK SAE (Bussmann et al.): top k·B activations over the batch while training, JumpReLU with one
global threshold θ at inference."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from lmscalpel.sae.base import SparseAutoencoder, StepContext, StepOutput, register_sae, setting
from lmscalpel.sae.jumprelu import ThresholdMixin, jumprelu
from lmscalpel.sae.sparse import SparsePattern, select_batch_topk
from lmscalpel.sae.topk import TopKConfig, TopKTrainingMixin


@dataclass
class BatchTopKConfig(TopKConfig):
    """θ tracking (dictionary_learning rule): from ``threshold_start_step`` on, θ starts at the batch's smallest
    kept activation, then θ ← (1 − rate)·θ + rate·min. ``threshold_start_step`` None → min(1000, 10% of the
    steps): the spec's 1,000 on real runs, earlier on short toy runs so θ gets enough updates."""

    sections: ClassVar[dict[str, str]] = {
        "batchtopk": "Inference threshold of BatchTopK and of the architectures built on it (dictionary_learning "
                     "rule)."}

    threshold_start_step: int | None = setting(
        None, "Step from which theta is tracked; null = min(1000, 10% of steps) (spec: 1000). A value the run never "
        "reaches is refused before training: an unset theta would encode as a dense ReLU (SAEBench refuses such an "
        "SAE too).", section="batchtopk", minimum=0)
    threshold_rate: float = setting(
        0.01, "EMA rate of theta toward the batch's smallest kept activation (spec default 0.001 = "
        "dictionary_learning; 0.01 = SAELens, used on the short toy run).", section="batchtopk",
        exclusiveMinimum=0, maximum=1)


UNSET_THRESHOLD = ("BatchTopK inference threshold was never set: tracking starts at sae.batchtopk.threshold_start_step, "
                   "which training never reached")


@register_sae("batchtopk")
class BatchTopKSAE(ThresholdMixin, TopKTrainingMixin, SparseAutoencoder):
    config_class = BatchTopKConfig
    saelens_architecture = "jumprelu"  # exported in inference form: JumpReLU with the global threshold
    colour = "tab:green"
    cfg: BatchTopKConfig

    def __init__(self, cfg: BatchTopKConfig, generator: torch.Generator | None = None):
        super().__init__(cfg, generator)
        self._init_threshold(-1.0)  # negative = not yet estimated

    def select(self, pre: torch.Tensor) -> SparsePattern:
        return select_batch_topk(pre, self.cfg.k)

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        """JumpReLU with θ; refused while θ was never set (SAEBench's BatchTopK raises too), since θ = −1 would
        encode as a dense ReLU."""
        if not self.threshold_is_set:
            raise RuntimeError(UNSET_THRESHOLD)
        return jumprelu(pre, self.threshold)

    def encode_batch_topk(self, x: torch.Tensor) -> torch.Tensor:
        """Training-mode codes of a batch: its k·B largest positive pre-activations (dense [B, m])."""
        pre = self.pre_activation(x)
        pattern = self.select(pre)
        codes = torch.zeros_like(pre)
        codes[pattern.rows, pattern.cols] = pattern.values
        return codes

    @property
    def threshold_is_set(self) -> bool:
        return bool(self.threshold.min() >= 0)

    def check_threshold_schedule(self, total_steps: int) -> None:
        """Refuse, before training, a run of ``total_steps`` whose θ tracking would never start."""
        start = self.threshold_start(total_steps)
        if start >= total_steps:
            raise ValueError(f"sae.batchtopk.threshold_start_step: {start} >= the {total_steps} training steps, so "
                             "the inference threshold would never be set; lower it or train longer")

    def threshold_start(self, total_steps: int) -> int:
        if self.cfg.threshold_start_step is not None:
            return self.cfg.threshold_start_step
        return min(1000, total_steps // 10)

    @torch.no_grad()
    def after_optimizer_step(self, out: StepOutput, ctx: StepContext) -> None:
        if out.min_active is None or ctx.step < self.threshold_start(ctx.total_steps):
            return
        if not self.threshold_is_set:
            self.threshold.fill_(out.min_active)
        else:
            rate = self.cfg.threshold_rate
            self.threshold.mul_(1 - rate).add_(rate * out.min_active)
