"""Steering directions (unit norm) and the activation scale μ(l) (spec §2–3).

- random: vector k is drawn from N(0, I_d) with a generator seeded by (seed, k), so any chunk of the grid can be
  regenerated on its own;
- SAE: decoder rows W_dec[i] / ‖W_dec[i]‖ of a uniform seeded sample of latents;
- refusal: Arditi et al. (2024) difference of means at the last prompt token, harmful minus harmless (positive
  control; steer with its negative).
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import numpy as np
import torch

from lmscalpel.models import residual_module
from lmscalpel.steering.data import chat_prompt
from lmscalpel.steering.hook import skip_token_ids


def _vector_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint64)[0] >> 1)


def random_directions(d_model: int, indices: Sequence[int], seed: int) -> torch.Tensor:
    """Unit vectors ``[len(indices), d]``; row j depends only on ``(seed, indices[j])``."""
    rows = []
    for k in indices:
        g = torch.randn(d_model, generator=torch.Generator().manual_seed(_vector_seed(seed, k)))
        rows.append(g / g.norm())
    return torch.stack(rows) if rows else torch.empty(0, d_model)


def sample_latents(n_latents: int, n: int, seed: int, alive: torch.Tensor | None = None) -> list[int]:
    """``n`` latent ids uniformly without replacement (restricted to ``alive`` when given)."""
    pool = np.flatnonzero(alive.cpu().numpy()) if alive is not None else np.arange(n_latents)
    if n > len(pool):
        raise ValueError(f"steering.sae.n_features={n} but the SAE has only {len(pool)} eligible latents")
    return sorted(int(i) for i in np.random.default_rng(seed).choice(pool, size=n, replace=False))


def decoder_directions(w_dec: torch.Tensor, latents: Sequence[int]) -> torch.Tensor:
    """Unit-norm decoder rows ``W_dec[latents]`` (``W_dec`` is ``[m, d]``, SAELens layout)."""
    rows = w_dec.detach().float()[list(latents)]
    return rows / rows.norm(dim=1, keepdim=True).clamp_min(1e-12)


def unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)


@contextlib.contextmanager
def capture_residual(model: torch.nn.Module, layer: int) -> Iterator[list[torch.Tensor]]:
    """Collect the output of block ``layer`` of every forward inside the block (detached, float32)."""
    store: list[torch.Tensor] = []

    def grab(module, args, output):
        store.append((output[0] if isinstance(output, tuple) else output).detach().float())

    handle = residual_module(model, layer).register_forward_hook(grab)
    try:
        yield store
    finally:
        handle.remove()


def _batches(model, tokenizer, prompts: Sequence[str], batch_size: int):
    """Chat-templated, left-padded batches: ``(input_ids, attention_mask)`` on the model's device."""
    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    for start in range(0, len(prompts), batch_size):
        texts = [chat_prompt(tokenizer, p) for p in prompts[start:start + batch_size]]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        yield enc["input_ids"].to(device), enc["attention_mask"].to(device)


@torch.no_grad()
def mean_activation_norm(model, tokenizer, prompts: Sequence[str], layer: int, *, exclude_special: bool = True,
                         skip_tokens: str = "special", batch_size: int = 32) -> float:
    """μ(l): mean ‖x_t^(l)‖₂ over prompt tokens; with ``exclude_special`` the tokens steering skips
    (``skip_tokens`` mode) are left out, so μ and steering use the same positions; padding never counts."""
    skip = torch.tensor(skip_token_ids(tokenizer, skip_tokens) if exclude_special else [tokenizer.pad_token_id])
    total, count = 0.0, 0
    for ids, mask in _batches(model, tokenizer, prompts, batch_size):
        with capture_residual(model, layer) as store:
            model(input_ids=ids, attention_mask=mask)
        keep = mask.bool() & ~torch.isin(ids, skip.to(ids.device))
        norms = store[0].norm(dim=-1)
        total += float(norms[keep].sum())
        count += int(keep.sum())
    if count == 0:
        raise ValueError("mean_activation_norm: no non-special prompt tokens")
    return total / count


@torch.no_grad()
def last_token_means(model, tokenizer, prompts: Sequence[str], layer: int, batch_size: int = 32) -> torch.Tensor:
    """Mean residual at the last prompt token (left padding puts it at position −1)."""
    acc = None
    for ids, mask in _batches(model, tokenizer, prompts, batch_size):
        with capture_residual(model, layer) as store:
            model(input_ids=ids, attention_mask=mask)
        last = store[0][:, -1].sum(0)
        acc = last if acc is None else acc + last
    return acc / len(prompts)


def refusal_direction(model, tokenizer, harmful: Sequence[str], harmless: Sequence[str], layer: int,
                      batch_size: int = 32) -> torch.Tensor:
    """r̂ = unit(mean_harmful − mean_harmless) at the last prompt token (Arditi et al. 2024)."""
    diff = (last_token_means(model, tokenizer, harmful, layer, batch_size)
            - last_token_means(model, tokenizer, harmless, layer, batch_size))
    return unit(diff.cpu())
