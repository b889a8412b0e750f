"""Feature absorption on the first-letter task: SAEBench's projection version (spec §5, Chanin et al. 2409.14507).

The ground-truth letter probe is SAE-independent (one per model and layer); the k-sparse probes, main latents and
per-word absorption fractions are computed per SAE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from lmscalpel.features.data import LETTERS
from lmscalpel.features.probes import f1_score, train_multiclass_ovr

EPS = 1e-8


@dataclass(frozen=True)
class AbsorptionConfig:
    """Defaults are SAEBench v0.6.0's; every field is a key of ``features.absorption`` (whose other keys make the
    spelling prompts and the letter probe)."""

    section: ClassVar[str] = "features.absorption"

    max_k: int = 10
    f1_jump: float = 0.03
    f1_gate: float = 0.6
    min_letters: int = 20
    sparse_l1: float = 0.01
    sparse_epochs: int = 50
    sparse_lr: float = 0.01
    sparse_final_lr: float = 1e-5
    sparse_weight_decay: float = 1e-6
    sparse_batch_size: int = 4096
    cos_threshold: float = 0.1
    full_cos_threshold: float = 0.025
    projection_threshold: float = 0.4
    max_absorbing_latents: int = 3
    top_latents: int = 10


def letter_ids(letters: list[str]) -> torch.Tensor:
    return torch.tensor([LETTERS.index(ch) for ch in letters])


def per_letter_f1(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Test F1 of each letter's one-vs-rest row with logit > 0 (letters without test examples are left out)."""
    return {LETTERS[c]: f1_score(logits[:, c] > 0, labels == c) for c in range(len(LETTERS)) if (labels == c).any()}


def main_latents(a_train: torch.Tensor, a_test: torch.Tensor, y_train: torch.Tensor, y_test: torch.Tensor,
                 weights: torch.Tensor, cfg: AbsorptionConfig) -> tuple[list[int], list[float]]:
    """Walk k = 1..max_k over the k largest signed weights of the letter's sparse-probe row (spec §5 step 4).

    Returns the main latents and the F1 of every k tried.
    """
    order = torch.argsort(weights, descending=True).tolist()
    accepted: list[int] = []
    f1s: list[float] = []
    best = -1.0
    for k in range(1, cfg.max_k + 1):
        chosen = order[:k]
        clf = LogisticRegression(max_iter=500, class_weight="balanced")
        clf.fit(a_train[:, chosen].numpy(), y_train.numpy())
        f1 = f1_score(torch.from_numpy(clf.decision_function(a_test[:, chosen].numpy()) > 0), y_test.bool())
        f1s.append(f1)
        if k > 1 and f1 <= best + cfg.f1_jump:
            break
        accepted, best = chosen, max(best, f1)
    return accepted, f1s


def word_absorption(x: torch.Tensor, a: torch.Tensor, probe_dir: torch.Tensor, cos: torch.Tensor,
                    main: list[int], cfg: AbsorptionConfig) -> tuple[float, bool]:
    """Absorption fraction and full-absorption flag of one word (spec §5 step 6).

    ``x`` [d] raw activation, ``a`` [m] SAE latents, ``probe_dir`` unit probe row, ``cos`` [m] cos(probe, W_dec).
    """
    p = float(x @ probe_dir)
    q = a * cos
    m_proj = float(q[main].sum())
    candidates = torch.ones_like(q, dtype=torch.bool)
    candidates[main] = False
    candidates &= (cos >= cfg.cos_threshold) & (q > 0)
    pool = q[candidates]
    absorbed = float(pool.topk(min(cfg.max_absorbing_latents, pool.numel())).values.sum()) if pool.numel() else 0.0
    if p == 0 or m_proj >= p or absorbed / p < cfg.projection_threshold:
        frac = 0.0
    elif m_proj <= 0:
        frac = 1.0
    else:
        u = min(absorbed, p - m_proj)
        frac = float(np.clip(u / (u + m_proj), 0.0, 1.0))
    top = int(q.topk(min(cfg.top_latents, q.numel())).indices[0])
    full = (bool((a[main].abs() < EPS).all()) and float(cos[top]) >= cfg.full_cos_threshold and p >= 0
            and float(q[top]) / p >= cfg.projection_threshold) if p != 0 else False
    return frac, full


@torch.no_grad()
def absorption_metrics(sae, spelling: dict[str, torch.Tensor], probe_w: torch.Tensor, probe_b: torch.Tensor,
                       probe_f1: dict[str, float], cfg: AbsorptionConfig, seed: int) -> dict[str, float]:
    """All of §5 for one SAE.

    ``spelling``: ``train_x``/``train_y``/``test_x``/``test_y`` (probe prompts, letters as 0..25) and
    ``absorb_x``/``absorb_y`` (fresh prompts of the test words). ``probe_w`` [26, d], ``probe_b`` [26] is the
    ground-truth probe, ``probe_f1`` its test F1 per letter.
    """
    present = set(spelling["train_y"].tolist())
    passing = [ch for ch, f1 in probe_f1.items() if f1 > cfg.f1_gate and LETTERS.index(ch) in present]
    if len(passing) < cfg.min_letters:
        raise ValueError(f"absorption: only {len(passing)} letters pass the probe F1 gate {cfg.f1_gate} "
                         f"(need features.absorption.min_letters = {cfg.min_letters}); per-letter F1: {probe_f1}")
    a_train, a_test = sae.encode(spelling["train_x"]).float(), sae.encode(spelling["test_x"]).float()
    sparse_w, _ = train_multiclass_ovr(
        a_train, spelling["train_y"], len(LETTERS), epochs=cfg.sparse_epochs, lr=cfg.sparse_lr,
        final_lr=cfg.sparse_final_lr, weight_decay=cfg.sparse_weight_decay, batch_size=cfg.sparse_batch_size,
        l1=cfg.sparse_l1, seed=seed)
    x_abs = spelling["absorb_x"]
    a_abs = sae.encode(x_abs).float()
    w_dec = sae.W_dec.detach().float().cpu()
    w_dec_unit = w_dec / w_dec.norm(dim=1, keepdim=True).clamp(min=1e-12)
    logits_abs = x_abs @ probe_w.T + probe_b

    per_letter: dict[str, dict[str, float]] = {}
    for ch in passing:
        c = LETTERS.index(ch)
        main, _ = main_latents(a_train, a_test, spelling["train_y"] == c, spelling["test_y"] == c, sparse_w[c], cfg)
        probe_dir = probe_w[c] / probe_w[c].norm()
        cos = w_dec_unit @ probe_dir
        words = ((spelling["absorb_y"] == c) & (logits_abs[:, c] > 0)).nonzero().flatten().tolist()
        results = [word_absorption(x_abs[i], a_abs[i], probe_dir, cos, main, cfg) for i in words]
        n_tp = len(results)
        per_letter[ch] = {
            "absorption_fraction": sum(r[0] for r in results) / n_tp if n_tp else 0.0,
            "full_absorption_rate": sum(r[1] for r in results) / n_tp if n_tp else 0.0,
            "num_split_features": len(main),  # SAEBench reports len(split_feats), the main latents themselves
            "n_true_positives": n_tp,
        }
    metrics: dict[str, float] = {
        "mean_absorption_fraction_score": _mean(per_letter, "absorption_fraction"),
        "mean_full_absorption_score": _mean(per_letter, "full_absorption_rate"),
        "mean_num_split_features": _mean(per_letter, "num_split_features"),
        "n_letters_passing": len(passing),
        "n_words_evaluated": sum(int(v["n_true_positives"]) for v in per_letter.values()),
    }
    for ch, values in per_letter.items():
        for key, value in values.items():
            metrics[f"letter_{ch}_{key}"] = value
    return metrics


def _mean(per_letter: dict[str, dict[str, float]], key: str) -> float:
    return float(np.mean([v[key] for v in per_letter.values()]))
