"""N:M and unstructured keep-masks over the last dimension of a score tensor.

A group is M consecutive entries of the last dimension (input channels of one token, or input columns of one
weight row); in each group the N highest scores are kept. Ties are broken toward the lower index (stable sort),
because ``torch.topk``'s tie order is unspecified. When the width is not divisible by M the score tail is padded
with -inf, so padded slots are never kept (project default; the paper's code pads with zeros). The masks equal
those of a stable descending sort (tested) but are computed from the N-th largest score per group.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F

_NM = re.compile(r"^(\d+)[:_-](\d+)$")
_UNSTRUCTURED = re.compile(r"^(?:u|unstructured[:_-]?)(\d+(?:\.\d+)?)%?$")


@dataclass(frozen=True)
class Pattern:
    """Either N kept out of every M (``n``, ``m``) or unstructured with ``sparsity`` (fraction removed)."""

    n: int | None = None
    m: int | None = None
    sparsity: float | None = None

    def __post_init__(self):
        if self.is_unstructured:
            if not 0.0 <= self.sparsity < 1.0:
                raise ValueError(f"unstructured sparsity must lie in [0, 1), got {self.sparsity}")
        elif self.n is None or self.m is None or not 0 < self.n <= self.m:
            raise ValueError(f"N:M pattern needs 0 < N <= M, got {self.n}:{self.m}")

    @property
    def is_unstructured(self) -> bool:
        return self.sparsity is not None

    @property
    def density(self) -> float:
        return 1.0 - self.sparsity if self.is_unstructured else self.n / self.m

    @property
    def slug(self) -> str:
        """File-name form: ``8-16`` or ``u50``."""
        if self.is_unstructured:
            return f"u{_percent(self.sparsity)}"
        return f"{self.n}-{self.m}"

    @property
    def label(self) -> str:
        if self.is_unstructured:
            return f"unstructured {_percent(self.sparsity)}%"
        return f"{self.n}:{self.m}"

    def keep_count(self, width: int) -> int:
        """Entries kept per row of ``width`` (unstructured: floor(width * (1 - sparsity)))."""
        if self.is_unstructured:
            return int(width * (1.0 - self.sparsity) + 1e-9)
        full, rest = divmod(width, self.m)
        return full * self.n + min(rest, self.n)


def _percent(sparsity: float) -> str:
    value = round(sparsity * 100, 6)
    return str(int(value)) if value == int(value) else str(value)


def parse_pattern(text: str | Pattern) -> Pattern:
    """Parse ``"8:16"``/``"8-16"`` (N kept of M) or ``"u50"``/``"unstructured:50"``/``"unstructured-50%"``."""
    if isinstance(text, Pattern):
        return text
    spec = str(text).strip().lower()
    if match := _NM.match(spec):
        return Pattern(n=int(match.group(1)), m=int(match.group(2)))
    if match := _UNSTRUCTURED.match(spec):
        return Pattern(sparsity=float(match.group(1)) / 100.0)
    raise ValueError(f"unknown sparsity pattern {text!r}; expected 'N:M' (e.g. '8:16') or 'uP' (e.g. 'u50')")


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
