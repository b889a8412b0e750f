"""TOFU metrics (locuslab/tofu ``aggregate_eval_stat.py`` definitions; spec §7).

Per sample, L = mean NLL of the answer tokens. Truth ratio R = exp(mean_k L_pert,k − L_para) = P̃(para)/P̃(pert)
(TOFU's paper writes the inverse). Set scores: forget sets mean min(R, 1/R); other sets mean max(0, 1 − 1/R).
Forget quality = KS-test p-value between the forget-set truth ratios of a model and of the gold model.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
from rouge_score import rouge_scorer
from scipy.stats import ks_2samp

_ROUGE = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def truth_ratios(para_nll: Sequence[float], pert_nll: Sequence[Sequence[float]]) -> np.ndarray:
    """R_i = exp(mean_k L_pert,i,k − L_para,i), averaged per sample (TOFU, not CLEAR's all-sample mean)."""
    para = np.asarray(para_nll, dtype=np.float64)
    pert = np.asarray([np.mean(p) for p in pert_nll], dtype=np.float64)
    return np.exp(pert - para)


def truth_ratio_score(ratios: Sequence[float], *, forget: bool) -> float:
    r = np.asarray(ratios, dtype=np.float64)
    if forget:
        return float(np.mean(np.minimum(r, 1.0 / r)))
    return float(np.mean(np.maximum(0.0, 1.0 - 1.0 / r)))


def answer_probability(true_nll: Sequence[float]) -> float:
    """Forget/retain sets: mean P(a|q)^{1/|a|} = mean exp(−L)."""
    return float(np.mean(np.exp(-np.asarray(true_nll, dtype=np.float64))))


def normalised_probability(true_nll: Sequence[float], option_nll: Sequence[Sequence[float]]) -> float:
    """Real sets: mean exp(−L_true) / (exp(−L_true) + Σ_k exp(−L_pert,k))."""
    scores = []
    for t, opts in zip(true_nll, option_nll):
        p_true = math.exp(-t)
        scores.append(p_true / (p_true + sum(math.exp(-o) for o in opts)))
    return float(np.mean(scores))


def option_accuracy(true_nll: Sequence[float], option_nll: Sequence[Sequence[float]]) -> float:
    """Share of samples whose true answer has a lower NLL than every alternative (identification accuracy)."""
    return float(np.mean([t < min(opts) for t, opts in zip(true_nll, option_nll)]))


def rouge_l_recall(predictions: Iterable[str], references: Iterable[str]) -> list[float]:
    return [_ROUGE.score(ref, pred)["rougeL"].recall for pred, ref in zip(predictions, references)]


def forget_quality(ratios: Sequence[float], gold_ratios: Sequence[float]) -> float:
    """Two-sample KS-test p-value (high = indistinguishable from the gold model)."""
    return float(ks_2samp(np.asarray(ratios), np.asarray(gold_ratios)).pvalue)


def harmonic_mean(values: Sequence[float]) -> float:
    """TOFU's model utility aggregate; any zero (or negative) value makes it 0."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("harmonic mean of no values")
    if np.any(v <= 0):
        return 0.0
    return float(v.size / np.sum(1.0 / v))
