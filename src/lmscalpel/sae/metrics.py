"""Core SAE metrics (spec §4, SAEBench ``evals/core``): sparsity, reconstruction, shrinkage, density, decoder
geometry, and the model-level cross-entropy / KL with the SAE spliced into the forward pass.

Every function takes an SAE working on raw activations (what :func:`lmscalpel.sae.load_sae` returns).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F
from tqdm import tqdm

from lmscalpel.models.layers import residual_module
from lmscalpel.sae.base import SparseAutoencoder


@torch.no_grad()
def max_cosine(rows: torch.Tensor, block: int = 1024) -> torch.Tensor:
    """maxcos_i = max_{j≠i} d̂_i·d̂_j over unit-normalised rows (signed; SAEBench ``calculate_max_cosine_sim``)."""
    unit = rows.float() / rows.float().norm(dim=-1, keepdim=True).clamp_min(1e-12)
    out = torch.empty(unit.shape[0], device=unit.device)
    for start in range(0, unit.shape[0], block):
        sims = unit[start:start + block] @ unit.t()
        idx = torch.arange(start, min(start + block, unit.shape[0]), device=unit.device)
        sims[idx - start, idx] = float("-inf")
        out[start:start + block] = sims.max(-1).values
    return out


def _ratio(num: float, den: float) -> float:
    return num / den if den != 0 else float("nan")


@dataclass
class ReconstructionStats:
    """Accumulates reconstruction/sparsity statistics over batches of raw activations (special tokens removed).

    - ``fvu``: Σ‖x − x̂‖² / Σ‖x − x̄‖², x̄ = mean over all evaluated tokens (project primary; EV = 1 − FVU).
    - ``explained_variance_legacy_per_token``: SAELens' mean_t[1 − ‖x_t − x̂_t‖² / ‖x_t − x̄_batch‖²].
    - ``explained_variance_saebench``: SAEBench's value as its code computes it,
      1 − mean_b(mean_t‖x−x̂‖²) / (mean_b(mean_t‖x‖²) − (mean_{b,dim} mean_t x²)²); not a centred variance.
    """

    d_sae: int
    n: int = 0
    sum_x: torch.Tensor | None = None
    sum_sq: float = 0.0
    rss: float = 0.0
    l0: float = 0.0
    l1: float = 0.0
    legacy_ev: float = 0.0
    l2_ratio: float = 0.0
    cos: float = 0.0
    xhat_sq: float = 0.0
    x_dot_xhat: float = 0.0
    fired: torch.Tensor | None = None
    batch_mss: list[float] = field(default_factory=list)
    batch_msr: list[float] = field(default_factory=list)
    batch_mean_sq: list[float] = field(default_factory=list)

    @torch.no_grad()
    def update(self, x: torch.Tensor, x_hat: torch.Tensor, f: torch.Tensor) -> None:
        if x.shape[0] == 0:
            return
        x, x_hat, f = x.double(), x_hat.double(), f.double()
        if self.sum_x is None:
            self.sum_x = torch.zeros(x.shape[1], dtype=torch.float64)
            self.fired = torch.zeros(self.d_sae, dtype=torch.float64)
        res = (x - x_hat).pow(2).sum(-1)
        x_sq = x.pow(2).sum(-1)
        norm_x, norm_xhat = x_sq.sqrt(), x_hat.norm(dim=-1)
        self.n += x.shape[0]
        self.sum_x += x.sum(0).cpu()
        self.sum_sq += float(x_sq.sum())
        self.rss += float(res.sum())
        self.l0 += float((f != 0).sum())
        self.l1 += float(f.sum())
        self.legacy_ev += float((1 - res / (x - x.mean(0)).pow(2).sum(-1)).sum())
        self.l2_ratio += float((norm_xhat / norm_x.masked_fill(norm_x < 1e-4, 1.0)).sum())
        self.cos += float(((x * x_hat).sum(-1) / (norm_x * norm_xhat).clamp_min(1e-12)).sum())
        self.xhat_sq += float(norm_xhat.pow(2).sum())
        self.x_dot_xhat += float((x * x_hat).sum())
        self.fired += (f > 0).sum(0).double().cpu()
        self.batch_mss.append(float(x_sq.mean()))
        self.batch_msr.append(float(res.mean()))
        self.batch_mean_sq.append(float(x.pow(2).mean()))

    def result(self) -> dict[str, float]:
        if self.n == 0:
            raise ValueError("no evaluation tokens (all special, or no eval text)")
        n = self.n
        centred = self.sum_sq - float(self.sum_x.pow(2).sum()) / n
        fvu = _ratio(self.rss, centred)
        mean_sq = sum(self.batch_mean_sq) / len(self.batch_mean_sq)
        saebench_ev = 1 - (sum(self.batch_msr) / len(self.batch_msr)) / (
            sum(self.batch_mss) / len(self.batch_mss) - mean_sq**2)
        density = self.fired / n
        return {
            "l0": self.l0 / n, "l1": self.l1 / n, "fvu": fvu, "explained_variance": 1 - fvu,
            "explained_variance_legacy_per_token": self.legacy_ev / n,
            "explained_variance_saebench": saebench_ev, "mse": self.rss / n,
            "l2_ratio": self.l2_ratio / n, "relative_reconstruction_bias": _ratio(self.xhat_sq, self.x_dot_xhat),
            "cossim": self.cos / n, "dead_fraction": float((density == 0).double().mean()),
            "dense_fraction_over_1pct": float((density > 0.01).double().mean()),
            "dense_fraction_over_10pct": float((density > 0.1).double().mean()), "n_tokens": n,
        }


def geometry_metrics(sae: SparseAutoencoder, thresholds: Sequence[float] = (0.5, 0.7)) -> dict[str, float]:
    """Mean max-cosine of decoder rows and encoder columns (spec §7) and distinct-latent counts."""
    dec = max_cosine(sae.W_dec.detach())
    enc = max_cosine(sae.W_enc.detach().t())
    out = {"mean_max_cos_decoder": float(dec.mean()), "mean_max_cos_encoder": float(enc.mean())}
    for tau in thresholds:
        out[f"distinct_decoder_latents_below_{tau:g}"] = int((dec < tau).sum())
    return out


class _Splice:
    """Forward hook replacing the hooked activation: SAE reconstruction (special positions keep x) or zeros."""

    def __init__(self, model, layer: int, hook: str):
        self.mode, self.keep, self.captured = "capture", None, None
        self.sae: SparseAutoencoder | None = None
        block = residual_module(model, layer)
        if hook == "resid_post":
            self.handle = block.register_forward_hook(self._post)
        elif hook == "mlp_in":
            self.handle = block.mlp.register_forward_pre_hook(self._pre)
        else:
            raise ValueError(f"hook {hook!r}: expected resid_post or mlp_in")

    def _replace(self, x: torch.Tensor) -> torch.Tensor | None:
        if self.mode == "capture":
            self.captured = x.detach()
            return None
        if self.mode == "zero":
            return torch.zeros_like(x)
        x_hat = self.sae.decode(self.sae.encode(x.to(self.sae.dtype))).to(x.dtype)
        return torch.where(self.keep[..., None], x_hat, x)

    def _post(self, module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        new = self._replace(hidden)
        if new is None:
            return None
        return (new, *output[1:]) if isinstance(output, tuple) else new

    def _pre(self, module, args):
        new = self._replace(args[0])
        return None if new is None else (new, *args[1:])


@torch.no_grad()
def site_activations(model, layer: int, hook: str, ids: torch.Tensor, special_ids: Sequence[int]) -> torch.Tensor:
    """Activations at the SAE's site for the non-special positions of ``ids``, as (tokens, d_model)."""
    splice = _Splice(model, layer, hook)
    try:
        model(input_ids=ids, use_cache=False)
    finally:
        splice.handle.remove()
    keep = ~torch.isin(ids, torch.tensor(sorted(set(special_ids)), device=ids.device, dtype=torch.long))
    return splice.captured[keep]


def _next_token_ce(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Per-position next-token loss [B, T−1]: position t predicts token t+1."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten(),
                           reduction="none").view(ids.shape[0], -1)


def _kl(clean_logp: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Per-position KL(p_clean ‖ p_modified)."""
    logp = torch.log_softmax(logits.float(), -1)
    return (clean_logp.exp() * (clean_logp - logp)).sum(-1)


@torch.no_grad()
def model_metrics(model, sae: SparseAutoencoder, layer: int, hook: str, blocks: Sequence[Sequence[int]],
                  special_ids: Sequence[int], batch_size: int = 16) -> dict[str, float]:
    """CE loss recovered and KL score with the SAE spliced in at ``layer`` (spec §4), plus the reconstruction
    metrics of the same tokens. ``blocks`` are equal-length token id lists.

    Positions holding a special token (BOS, EOS, pad, ...) are left out of every average, as SAEBench's
    ``ignore_tokens``: the CE of position t (predicting token t+1) counts when token t is not special, the KL of
    position t likewise.
    """
    device = next(model.parameters()).device
    sae = sae.to(device)
    splice = _Splice(model, layer, hook)
    splice.sae = sae
    special = torch.tensor(sorted(set(special_ids)), device=device, dtype=torch.long)
    stats = ReconstructionStats(sae.d_sae)
    sums = {"ce_clean": 0.0, "ce_sae": 0.0, "ce_zero": 0.0, "kl_sae": 0.0, "kl_zero": 0.0}
    n_ce = n_kl = 0
    try:
        for start in tqdm(range(0, len(blocks), batch_size), desc="core metrics", mininterval=5, leave=False):
            ids = torch.tensor(blocks[start:start + batch_size], device=device, dtype=torch.long)
            splice.mode = "capture"
            clean = model(input_ids=ids, use_cache=False).logits
            x = splice.captured
            keep = ~torch.isin(ids, special)
            x_hat, f = sae(x.to(sae.dtype))
            stats.update(x[keep].float(), x_hat[keep].float(), f[keep].float())
            splice.keep = keep
            splice.mode = "sae"
            with_sae = model(input_ids=ids, use_cache=False).logits
            splice.mode = "zero"
            zeroed = model(input_ids=ids, use_cache=False).logits
            clean_logp = torch.log_softmax(clean.float(), -1)
            ce_keep = keep[:, :-1]
            sums["ce_clean"] += float(_next_token_ce(clean, ids)[ce_keep].sum())
            sums["ce_sae"] += float(_next_token_ce(with_sae, ids)[ce_keep].sum())
            sums["ce_zero"] += float(_next_token_ce(zeroed, ids)[ce_keep].sum())
            sums["kl_sae"] += float(_kl(clean_logp, with_sae)[keep].sum())
            sums["kl_zero"] += float(_kl(clean_logp, zeroed)[keep].sum())
            n_ce += int(ce_keep.sum())
            n_kl += int(keep.sum())
    finally:
        splice.handle.remove()
    if n_ce == 0:
        raise ValueError("no evaluation tokens: the eval text is shorter than one context window, or every "
                         "position holds a special token")
    ce = {k: sums[k] / n_ce for k in ("ce_clean", "ce_sae", "ce_zero")}
    kl = {k: sums[k] / n_kl for k in ("kl_sae", "kl_zero")}
    denom = ce["ce_zero"] - ce["ce_clean"]
    out = {
        "ce_loss_clean": ce["ce_clean"], "ce_loss_with_sae": ce["ce_sae"], "ce_loss_zero_ablation": ce["ce_zero"],
        "ce_loss_recovered": (ce["ce_zero"] - ce["ce_sae"]) / denom if denom != 0 else float("nan"),
        "kl_div_with_sae": kl["kl_sae"], "kl_div_zero_ablation": kl["kl_zero"],
        "kl_div_score": (kl["kl_zero"] - kl["kl_sae"]) / kl["kl_zero"] if kl["kl_zero"] != 0 else float("nan"),
        "n_ce_tokens": n_ce,
    }
    out.update(stats.result())
    return out
