"""Distinct features (spec §7): each latent's largest cosine to any other latent, and counts below thresholds."""

from __future__ import annotations

import torch


def unit_rows(w: torch.Tensor) -> torch.Tensor:
    return w.float() / w.float().norm(dim=1, keepdim=True).clamp(min=1e-12)


@torch.no_grad()
def max_cosine(rows: torch.Tensor, others: torch.Tensor | None = None, block: int = 100) -> torch.Tensor:
    """``maxcos_i = max_j cos(rows_i, others_j)`` (signed), computed in blocks of ``block`` rows.

    With ``others=None`` the reference is ``rows`` itself and ``j ≠ i`` (SAEBench ``calculate_max_cosine_sim``).
    """
    a = unit_rows(rows)
    b = a if others is None else unit_rows(others)
    out = torch.empty(len(a))
    for start in range(0, len(a), block):
        sims = a[start:start + block] @ b.T
        if others is None:
            idx = torch.arange(start, min(start + block, len(a)))
            sims[idx - start, idx] = -float("inf")
        out[start:start + block] = sims.max(dim=1).values
    return out


def distinct_features(w_dec: torch.Tensor, w_enc: torch.Tensor, thresholds: list[float],
                      reference_w_dec: torch.Tensor | None = None) -> tuple[dict[str, float], torch.Tensor]:
    """Flat metrics and the decoder maxcos vector (for the histograms).

    ``reference_w_dec``: decoder of the run's BatchTopK SAE; counts latents with no counterpart there
    (max cosine to every reference row below τ), the project default reading of "distinct features".
    """
    dec = max_cosine(w_dec)
    enc = max_cosine(w_enc.T)
    metrics: dict[str, float] = {
        "n_latents": len(dec),
        "mean_max_cos_decoder": float(dec.mean()),
        "median_max_cos_decoder": float(dec.median()),
        "mean_max_cos_encoder": float(enc.mean()),
    }
    for tau in thresholds:
        metrics[f"distinct_decoder_below_{tau}"] = int((dec < tau).sum())
        metrics[f"distinct_decoder_fraction_below_{tau}"] = float((dec < tau).float().mean())
    if reference_w_dec is not None:
        cross = max_cosine(w_dec, reference_w_dec)
        for tau in thresholds:
            metrics[f"no_counterpart_in_reference_below_{tau}"] = int((cross < tau).sum())
    return metrics, dec
