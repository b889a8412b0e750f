"""Sparse probing (spec §9, SAEBench): k latents chosen by mean difference, then logistic regression."""

from __future__ import annotations

import torch
from sklearn.linear_model import LogisticRegression

from lmscalpel.features.scr_tpp import ProbeSet


def top_k_by_mean_difference(x: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` columns with the largest |mean(x⁺) − mean(x⁻)| on the training rows."""
    diff = (x[y == 1].mean(0) - x[y == 0].mean(0)).abs()
    return torch.topk(diff, min(k, x.shape[1])).indices


def probe_accuracy(x_train, y_train, x_test, y_test, max_iter: int) -> float:
    clf = LogisticRegression(C=1.0, max_iter=max_iter)  # L2 is the default penalty
    clf.fit(x_train.numpy(), y_train.numpy())
    return float(clf.score(x_test.numpy(), y_test.numpy()))


def sparse_probe_task(features: torch.Tensor, sets: dict[str, ProbeSet], k_values: list[int],
                      max_iter: int) -> dict[str, float]:
    """Mean test accuracy over the one-vs-rest sets at each k, plus the full-width probe (``k = all``).

    ``features`` [N, F] are mean-pooled activations (SAE latents or raw residual dims, the baseline).
    """
    acc: dict[str, list[float]] = {f"top_{k}": [] for k in k_values}
    acc["full"] = []
    for s in sets.values():
        x_tr, y_tr, x_te, y_te = features[s.train_idx], s.train_y, features[s.test_idx], s.test_y
        for k in k_values:
            cols = top_k_by_mean_difference(x_tr, y_tr, k)
            acc[f"top_{k}"].append(probe_accuracy(x_tr[:, cols], y_tr, x_te[:, cols], y_te, max_iter))
        acc["full"].append(probe_accuracy(x_tr, y_tr, x_te, y_te, max_iter))
    return {key: sum(v) / len(v) for key, v in acc.items()}
