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
from lmscalpel.steering.encoding import encode_prompts


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
    zero = [latents[i] for i in torch.nonzero(rows.norm(dim=1) == 0).flatten().tolist()]
    if zero:
        raise ValueError(f"SAE decoder rows of latents {zero} are zero: no direction to steer along "
                         "(steering.sae.seed or steering.sae.alive_only picks other latents)")
    return unit(rows)


def unit(v: torch.Tensor, what: str = "steering direction") -> torch.Tensor:
    """``v / ‖v‖`` along the last axis; a zero vector has no direction and would silently leave the model
    unsteered, so it is an error."""
    norm = v.norm(dim=-1, keepdim=True)
    if bool((norm == 0).any()):
        raise ValueError(f"{what} has zero norm")
    return v / norm


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


def _batches(model, tokenizer, prompts: Sequence[str], batch_size: int, skip_tokens: str = "special"):
    """Chat-templated, left-padded batches: ``(input_ids, attention_mask, keep)`` on the model's device, ``keep``
    being the positions steering acts on (:func:`lmscalpel.steering.encoding.encode_prompts`)."""
    device = next(model.parameters()).device
    for start in range(0, len(prompts), batch_size):
        enc, keep = encode_prompts(tokenizer, prompts[start:start + batch_size], skip_tokens=skip_tokens,
                                   device=device)
        yield enc["input_ids"], enc["attention_mask"], keep


@torch.no_grad()
def mean_activation_norm(model, tokenizer, prompts: Sequence[str], layer: int, *, exclude_special: bool = True,
                         skip_tokens: str = "special", batch_size: int = 32) -> float:
    """μ(l): mean ‖x_t^(l)‖₂ over prompt tokens; with ``exclude_special`` the positions steering skips
    (``skip_tokens`` mode) are left out, so μ and steering use the same positions; padding never counts."""
    total, count = 0.0, 0
    for ids, mask, steered in _batches(model, tokenizer, prompts, batch_size, skip_tokens):
        with capture_residual(model, layer) as store:
            model(input_ids=ids, attention_mask=mask)
        keep = steered if exclude_special else mask.bool()
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
    for ids, mask, _ in _batches(model, tokenizer, prompts, batch_size):
        with capture_residual(model, layer) as store:
            model(input_ids=ids, attention_mask=mask)
        last = store[0][:, -1].sum(0)
        acc = last if acc is None else acc + last
    return acc / len(prompts)


def refusal_direction(model, tokenizer, harmful: Sequence[str], harmless: Sequence[str], layer: int,
                      batch_size: int = 32) -> torch.Tensor:
    """r̂ = unit(mean_harmful − mean_harmless) at the last prompt token (Arditi et al. 2024); an error when the
    two means coincide (up to float noise), e.g. the same prompts on both sides."""
    mean_harmful = last_token_means(model, tokenizer, harmful, layer, batch_size)
    diff = (mean_harmful - last_token_means(model, tokenizer, harmless, layer, batch_size)).cpu()
    if float(diff.norm()) <= 1e-6 * float(mean_harmful.norm()):
        raise ValueError(f"refusal direction at layer {layer} has zero norm: the harmful and harmless prompts give "
                         "the same mean activation (check steering.prompts.benign)")
    return unit(diff, "refusal direction")
