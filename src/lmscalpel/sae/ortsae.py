"""OrtSAE = BatchTopK + a chunked orthogonality penalty on decoder rows (spec §3; the project default, since
the paper's exact formula is not public).

Each step (or every ``rechunk_every`` steps) the m latents are randomly permuted and cut into chunks of
``chunk_size``; inside each chunk, with unit rows d̂ and G_ij = d̂_i·d̂_j, the ``max_sq`` variant penalises
(1/m) Σ_i relu(max_{j≠i} G_ij)². Cost is m·s·d per step: linear in m at fixed chunk size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from lmscalpel.sae.base import StepContext, register_sae, setting, swept
from lmscalpel.sae.batchtopk import BatchTopKConfig, BatchTopKSAE

VARIANTS = ("max_sq", "max", "mean_sq", "hinge_sq")
TARGETS = ("decoder", "encoder", "both")


@dataclass
class OrtSAEConfig(BatchTopKConfig):
    """BatchTopK's settings (``sae.batchtopk``, ``sae.train``'s AuxK keys) plus the penalty's (``sae.ortsae``)."""

    sections: ClassVar[dict[str, str]] = {
        "ortsae": "OrtSAE orthogonality penalty (project default of spec §3; the paper's exact form is not public)."}

    gamma: float = swept(1.0, "Orthogonality weights gamma of OrtSAE (0 reproduces BatchTopK with the same seed).",
                         values="ortsae_gammas", default_values=[1.0], tag="g{:g}", minimum=0)
    chunk_size: int = setting(256, "Latents per random chunk (cost linear in width at fixed chunk size).",
                              section="ortsae", minimum=2)
    variant: str = setting("max_sq", "Penalty per chunk: max_sq (1/m) sum relu(max cos)^2, max (unsquared), mean_sq "
                           "(mean squared cos), hinge_sq (mean relu(cos - tau)^2).", section="ortsae",
                           enum=list(VARIANTS))
    abs_cos: bool = setting(False, "Penalise |cos| instead of signed cosines.", section="ortsae")
    target: str = setting("decoder", "Which weights the penalty acts on.", section="ortsae", enum=list(TARGETS))
    gamma_warmup_steps: int = setting(0, "Steps of linear gamma warm-up.", section="ortsae", minimum=0)
    rechunk_every: int = setting(1, "Steps between new random chunkings.", section="ortsae", minimum=1)
    hinge_tau: float = setting(0.2, "Margin tau of hinge_sq.", section="ortsae", minimum=0, maximum=1)

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"sae.ortsae.variant: {self.variant!r} not in {VARIANTS}")
        if self.target not in TARGETS:
            raise ValueError(f"sae.ortsae.target: {self.target!r} not in {TARGETS}")
        if self.chunk_size < 2:
            raise ValueError("sae.ortsae.chunk_size must be at least 2")


def chunk_permutation(perm: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """[K, s] latent indices: ``perm`` cut into chunks of ``s``; the last chunk is padded with index m
    (a zero row), which never raises the penalty."""
    m = perm.numel()
    s = min(chunk_size, m)
    n_chunks = -(-m // s)
    pad = torch.full((n_chunks * s - m,), m, dtype=perm.dtype, device=perm.device)
    return torch.cat([perm, pad]).view(n_chunks, s)


def orthogonality_penalty(rows: torch.Tensor, chunks: torch.Tensor, variant: str = "max_sq",
                          abs_cos: bool = False, hinge_tau: float = 0.2, unit_rows: bool = False) -> torch.Tensor:
    """Penalty of §3 for rows [m, d] and a chunking [K, s] from :func:`chunk_permutation`.

    ``unit_rows=True`` skips the normalisation for rows already at unit norm (the trained decoder): the gradient
    then differs only by its component parallel to each row, which the trainer removes anyway.
    """
    m, d = rows.shape
    n_chunks, s = chunks.shape
    unit = rows if unit_rows else rows / rows.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    flat = chunks.reshape(-1)
    real = flat < m
    padded = torch.cat([unit, unit.new_zeros(1, d)]) if n_chunks * s > m else unit  # index m = padding
    if variant in ("max_sq", "max"):
        with torch.no_grad():  # only the arg-max pair carries gradient: recompute it as a row-wise dot
            blocks = padded[flat].view(n_chunks, s, d)
            gram = torch.bmm(blocks, blocks.transpose(1, 2))
            if abs_cos:
                gram = gram.abs_()
            gram.diagonal(dim1=1, dim2=2).fill_(float("-inf"))
            partner_pos = gram.argmax(-1) + torch.arange(n_chunks, device=rows.device)[:, None] * s
            partner = torch.empty(m, dtype=flat.dtype, device=flat.device)
            partner[flat[real]] = flat[partner_pos.reshape(-1)[real]]  # partner of each latent, original order
            has_partner = partner < m  # a padding partner means cos 0
            partner[~has_partner] = 0
        c = (unit * unit[partner]).sum(-1) * has_partner
        if abs_cos:
            c = c.abs()
        per_latent = torch.relu(c)
        return (per_latent.pow(2) if variant == "max_sq" else per_latent).sum() / m
    blocks = padded[flat].view(n_chunks, s, d)
    gram = torch.bmm(blocks, blocks.transpose(1, 2))
    if abs_cos:
        gram = gram.abs()
    real = real.view(n_chunks, s)
    eye = torch.eye(s, dtype=torch.bool, device=rows.device)
    values = gram[real[:, :, None] & real[:, None, :] & ~eye]
    if variant == "mean_sq":
        return values.pow(2).mean()
    return torch.relu(values - hinge_tau).pow(2).mean()


@register_sae("ortsae")
class OrtSAE(BatchTopKSAE):
    config_class = OrtSAEConfig
    colour = "tab:red"
    cfg: OrtSAEConfig

    def __init__(self, cfg: OrtSAEConfig, generator: torch.Generator | None = None):
        super().__init__(cfg, generator)
        seed = int(torch.randint(0, 2**62, (1,), generator=generator)) if generator is not None else 0
        self._chunk_generator = torch.Generator().manual_seed(seed)
        self._chunks: torch.Tensor | None = None

    def gamma_at(self, step: int) -> float:
        warm = self.cfg.gamma_warmup_steps
        return self.cfg.gamma * (min(1.0, (step + 1) / warm) if warm > 0 else 1.0)

    def current_chunks(self, step: int) -> torch.Tensor:
        if self._chunks is None or step % self.cfg.rechunk_every == 0:
            perm = torch.randperm(self.cfg.d_sae, generator=self._chunk_generator).to(self.W_dec.device)
            self._chunks = chunk_permutation(perm, self.cfg.chunk_size)
        return self._chunks

    def penalty_targets(self) -> list[tuple[torch.Tensor, bool]]:
        """(rows, already unit norm): decoder rows are kept at unit norm during training."""
        decoder, encoder = (self.W_dec, True), (self.W_enc.t(), False)
        return {"decoder": [decoder], "encoder": [encoder], "both": [decoder, encoder]}[self.cfg.target]

    def orthogonality_loss(self, step: int) -> torch.Tensor:
        chunks = self.current_chunks(step)
        return sum(orthogonality_penalty(rows, chunks, self.cfg.variant, self.cfg.abs_cos, self.cfg.hinge_tau, unit)
                   for rows, unit in self.penalty_targets())

    def extra_loss(self, ctx: StepContext):
        gamma = self.gamma_at(ctx.step)
        if gamma == 0:
            return None, {"orth": 0.0}
        penalty = self.orthogonality_loss(ctx.step)
        return gamma * penalty, {"orth": float(penalty.detach())}

    def extra_state(self) -> dict[str, Any]:
        return {"chunk_generator": self._chunk_generator.get_state(), "chunks": self._chunks}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self._chunk_generator.set_state(state["chunk_generator"])
        self._chunks = state["chunks"]
