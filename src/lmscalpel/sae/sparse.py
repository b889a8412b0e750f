"""Sparse encode/decode kernels for the TopK family: only the active (token, latent) pairs are touched.

A dense SAE step costs one encoder GEMM plus three more of the same size (decoder forward, two backward GEMMs
per weight). With k active latents per token the decoder and every backward product only need the k·B active
pairs, so this module computes them with ``embedding_bag`` (gather-and-sum, both orientations) and
``sampled_addmm`` (dot products at the active pairs). The encoder forward GEMM is the only dense product left.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F


class SparsePattern:
    """Active pairs ``(rows[j], cols[j])`` of a [n_rows, n_cols] activation matrix, sorted by row.

    Holds the offsets for row-major gathers and, on demand, the column-major permutation for the transposed
    products (weight gradients).
    """

    def __init__(self, rows: torch.Tensor, cols: torch.Tensor, n_rows: int, n_cols: int,
                 values: torch.Tensor | None = None):
        self.rows, self.cols = rows, cols
        self.values = values  # the selected pre-activations, when the selection already gathered them
        self.n_rows, self.n_cols = n_rows, n_cols
        counts = torch.bincount(rows, minlength=n_rows)
        self.row_ptr = torch.zeros(n_rows + 1, dtype=torch.int64, device=rows.device)
        torch.cumsum(counts, 0, out=self.row_ptr[1:])
        self._col_order: torch.Tensor | None = None
        self._col_ptr: torch.Tensor | None = None

    @property
    def nnz(self) -> int:
        return self.rows.numel()

    def flat_index(self) -> torch.Tensor:
        return self.rows * self.n_cols + self.cols

    def col_major(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(permutation sorting the pairs by column, column pointer [n_cols + 1])."""
        if self._col_order is None:
            # int32 keys sort much faster than int64 on CPU; stable keeps rows ascending inside a column.
            self._col_order = torch.sort(self.cols.to(torch.int32), stable=True).indices
            counts = torch.bincount(self.cols, minlength=self.n_cols)
            self._col_ptr = torch.zeros(self.n_cols + 1, dtype=torch.int64, device=self.cols.device)
            torch.cumsum(counts, 0, out=self._col_ptr[1:])
        return self._col_order, self._col_ptr

    def fired(self) -> torch.Tensor:
        """bool [n_cols]: columns with at least one active pair."""
        return torch.bincount(self.cols, minlength=self.n_cols) > 0


def _gather_sum(index: torch.Tensor, table: torch.Tensor, ptr: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """out[r] = Σ_{j in ptr[r]:ptr[r+1]} weights[j] · table[index[j]]  (one row per bag)."""
    if index.numel() == 0:
        return table.new_zeros(ptr.numel() - 1, table.shape[1])
    return F.embedding_bag(index, table, ptr[:-1], mode="sum", per_sample_weights=weights)


def _sampled_dot(pattern: SparsePattern, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """out[j] = a[rows[j]] · b[cols[j]] for every active pair."""
    if pattern.nnz == 0:
        return a.new_zeros(0)
    if a.device.type == "cpu" or a.device.type == "cuda":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
            csr = torch.sparse_csr_tensor(pattern.row_ptr, pattern.cols, a.new_zeros(pattern.nnz),
                                          (pattern.n_rows, pattern.n_cols))
            return torch.sparse.sampled_addmm(csr, a, b.t(), beta=0.0).values()
    return (a[pattern.rows] * b[pattern.cols]).sum(-1)


class _SparseEncode(torch.autograd.Function):
    """vals[j] = (x @ W_enc)[rows[j], cols[j]] + b_enc[cols[j]], reusing the pre-activations already computed."""

    @staticmethod
    def forward(ctx, x, W_enc, b_enc, pre_vals, pattern):
        ctx.pattern = pattern
        ctx.save_for_backward(x, W_enc)
        return pre_vals.clone()

    @staticmethod
    def backward(ctx, grad_vals):
        x, W_enc = ctx.saved_tensors
        p: SparsePattern = ctx.pattern
        grad_x = grad_W = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _gather_sum(p.cols, W_enc.t().contiguous(), p.row_ptr, grad_vals)
        if ctx.needs_input_grad[1]:
            order, col_ptr = p.col_major()
            grad_W = _gather_sum(p.rows[order], x, col_ptr, grad_vals[order]).t()
        if ctx.needs_input_grad[2]:
            grad_b = torch.zeros(p.n_cols, dtype=grad_vals.dtype, device=grad_vals.device)
            grad_b.index_add_(0, p.cols, grad_vals)
        return grad_x, grad_W, grad_b, None, None


class _SparseDecode(torch.autograd.Function):
    """out[r] = Σ_j vals[j] · W_dec[cols[j]] over the pairs of row r (no bias)."""

    @staticmethod
    def forward(ctx, vals, W_dec, pattern):
        ctx.pattern = pattern
        ctx.save_for_backward(vals, W_dec)
        return _gather_sum(pattern.cols, W_dec, pattern.row_ptr, vals)

    @staticmethod
    def backward(ctx, grad_out):
        vals, W_dec = ctx.saved_tensors
        p: SparsePattern = ctx.pattern
        grad_out = grad_out.contiguous()
        grad_vals = grad_W = None
        if ctx.needs_input_grad[0]:
            grad_vals = _sampled_dot(p, grad_out, W_dec)
        if ctx.needs_input_grad[1]:
            order, col_ptr = p.col_major()
            grad_W = _gather_sum(p.rows[order], grad_out, col_ptr, vals[order])
        return grad_vals, grad_W, None


def sparse_encode(x: torch.Tensor, W_enc: torch.Tensor, b_enc: torch.Tensor, pre: torch.Tensor,
                  pattern: SparsePattern) -> torch.Tensor:
    """Differentiable pre-activations at the active pairs; ``pre`` is the (no-grad) dense x @ W_enc + b_enc."""
    pre_vals = pattern.values if pattern.values is not None else pre.reshape(-1)[pattern.flat_index()]
    return _SparseEncode.apply(x, W_enc, b_enc, pre_vals, pattern)


def sparse_decode(vals: torch.Tensor, W_dec: torch.Tensor, pattern: SparsePattern) -> torch.Tensor:
    """Σ over active pairs of vals · W_dec rows, one output row per token (no decoder bias)."""
    return _SparseDecode.apply(vals, W_dec, pattern)


def select_topk(pre: torch.Tensor, k: int) -> SparsePattern:
    """Per-token top-k of the pre-activations, keeping only positive values (ReLU after top-k)."""
    n_rows, n_cols = pre.shape
    vals, idx = torch.topk(pre, min(k, n_cols), dim=-1, sorted=False)
    keep = vals > 0
    rows = torch.arange(n_rows, device=pre.device)[:, None].expand_as(idx)[keep]  # row-major: sorted by row
    return SparsePattern(rows, idx[keep], n_rows, n_cols, vals[keep])


def select_batch_topk(pre: torch.Tensor, k: float) -> SparsePattern:
    """The k·B largest positive pre-activations over the whole batch (BatchTopK training; exact).

    A full top-(k·B) over B·m values is slow on CPU, so candidates above a sampled quantile are taken first and
    the exact top-(k·B) is chosen among them; if the quantile leaves too few candidates, it falls back to the
    full selection. Same result either way.
    """
    n_rows, n_cols = pre.shape
    flat = pre.reshape(-1)
    n_keep = min(int(k * n_rows), flat.numel())
    stride = max(1, flat.numel() // 65536)
    sample = flat[::stride]
    n_above = int(2.0 * n_keep / flat.numel() * sample.numel())  # aim for ~2·k·B candidates
    cand = None
    if 0 < n_above < sample.numel():
        cut = torch.kthvalue(sample, sample.numel() - n_above).values
        cand = torch.nonzero(flat > cut.clamp_min(0)).squeeze(1)
    if cand is None or cand.numel() < n_keep:
        cand = torch.nonzero(flat > 0).squeeze(1)
    vals = flat[cand]
    if cand.numel() > n_keep:
        keep = torch.zeros(cand.numel(), dtype=torch.bool, device=cand.device)
        keep[torch.topk(vals, n_keep, sorted=False).indices] = True
        cand, vals = cand[keep], vals[keep]  # a mask keeps the row-major order of nonzero(), so no sort is needed
    return SparsePattern(cand // n_cols, cand % n_cols, n_rows, n_cols, vals)
