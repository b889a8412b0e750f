"""N:M and unstructured keep-masks over the last dimension of a score tensor.

A group is M consecutive entries of the last dimension (input channels of one token, or input columns of one
weight row); in each group the N highest scores are kept. Ties are broken toward the lower index (stable sort),
because ``torch.topk``'s tie order is unspecified. When the width is not divisible by M the score tail is padded
with -inf, so padded slots are never kept (project default; the paper's code pads with zeros). The masks equal
those of a stable descending sort (tested) but are computed from the N-th largest score per group.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from lmscalpel.pruning.patterns import Pattern, parse_pattern

__all__ = ["Pattern", "group_topk_mask", "keep_mask", "parse_pattern"]

_NETWORK_MAX = 64  # groups up to this size use a selection network, larger ones torch.topk


@functools.lru_cache(maxsize=None)
def _selection_network(size: int, target: int) -> tuple[tuple[int, int, bool, bool], ...]:
    """Comparators of Batcher's odd-even merge sort on ``size`` (a power of 2) wires, ascending, pruned to the
    ones that can influence wire ``target``; each is (lo_wire, hi_wire, lo_needed, hi_needed)."""
    comparators = []
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        comparators.append((i + j, i + j + k))
            k //= 2
        p *= 2
    needed, kept = {target}, []
    for lo, hi in reversed(comparators):
        if lo in needed or hi in needed:
            kept.append((lo, hi, lo in needed, hi in needed))
            needed |= {lo, hi}
    return tuple(reversed(kept))


def _keep_top_n(groups: torch.Tensor, n: int) -> torch.Tensor:
    """Keep-mask of the ``n`` highest entries along the last dimension of ``groups`` (ties: lowest index first).

    For small groups the threshold (n-th largest value) comes from a selection network whose wires are strided
    views of the groups (``unbind(-1)``): a few dozen vectorised min/max calls over all groups at once, without a
    transpose or one tiny sort per group, which is what makes per-token N:M masking cheap on CPU. Wide groups
    (unstructured) use ``torch.topk``.
    """
    width = groups.shape[-1]
    if width > _NETWORK_MAX:
        threshold = groups.topk(n, dim=-1).values[..., -1:]
    else:
        size = 1 << (width - 1).bit_length()
        wires = list(groups.unbind(-1))
        if size != width:
            wires += [torch.full_like(wires[0], float("-inf"))] * (size - width)
        for lo, hi, lo_needed, hi_needed in _selection_network(size, size - n):
            a, b = wires[lo], wires[hi]
            if lo_needed:
                wires[lo] = torch.minimum(a, b)
            if hi_needed:
                wires[hi] = torch.maximum(a, b)
        threshold = wires[size - n].unsqueeze(-1)
    mask = groups >= threshold
    # every group keeps at least n (the threshold is its n-th largest), so one total count detects any ties
    if groups.is_cuda or int(mask.count_nonzero()) != n * mask[..., 0].numel():
        above = groups > threshold
        tied = groups == threshold
        mask = above | (tied & (tied.cumsum(-1) <= n - above.sum(-1, keepdim=True)))
    return mask


def group_topk_mask(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Boolean mask keeping the ``n`` highest scores in every group of ``m`` consecutive last-dim entries."""
    width = scores.shape[-1]
    if n == m:
        return torch.ones_like(scores, dtype=torch.bool)
    pad = (-width) % m
    if pad:
        scores = F.pad(scores, (0, pad), value=float("-inf"))
    mask = _keep_top_n(scores.unflatten(-1, (-1, m)), n)
    return mask.flatten(-2)[..., :width]


def keep_mask(scores: torch.Tensor, pattern: str | Pattern) -> torch.Tensor:
    """Keep-mask for ``pattern`` along the last dimension (unstructured = top-k over the whole last dimension)."""
    pattern = parse_pattern(pattern)
    width = scores.shape[-1]
    if pattern.is_unstructured:
        return group_topk_mask(scores, pattern.keep_count(width), width)
    return group_topk_mask(scores, pattern.n, pattern.m)


def global_keep_mask(scores: torch.Tensor, pattern: str | Pattern, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Unstructured keep-mask with one top-k over every entry of ``scores`` [..., d] (the paper code's global
    Amber/CLACT rows): floor(n * d * (1 - sparsity)) entries over the n tokens where ``valid`` [...] is true
    (padding is never kept and does not count)."""
    pattern = parse_pattern(pattern)
    if not pattern.is_unstructured:
        raise ValueError(f"a global top-k needs an unstructured pattern, got {pattern.label}")
    if valid is not None:
        scores = scores.masked_fill(~valid.unsqueeze(-1), float("-inf"))
    n_valid = scores.shape[:-1].numel() if valid is None else int(valid.sum())
    flat = scores.reshape(1, -1)
    keep = pattern.keep_count(n_valid * scores.shape[-1])
    if keep == 0:
        return torch.zeros_like(scores, dtype=torch.bool)
    return group_topk_mask(flat, keep, flat.shape[-1]).reshape(scores.shape)

