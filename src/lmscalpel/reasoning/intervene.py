"""Interventions on one SAE latent during generation (spec §6) and the vocabulary ban (spec §8).

* ``add`` (paper Eq. 7): x' = x + γ · f_max,i · W_dec,i, through the generic steering hook of
  :mod:`lmscalpel.models.intervention` (nothing is re-implemented here).
* ``clamp`` (released code): encode x, keep the error e = x − decode(f), set latent i to γ · f_max,i, return
  decode(f') + e. Decode is linear, so this is x' = x + (γ · f_max,i − f_i(x)) · W_dec,i, computed that way.

``positions``: ``all`` (every forward pass, prompt included, as the released code) or ``generated`` (skip the
prefill pass, i.e. steer only tokens the model generated; assumes KV-cache decoding, the HF default, and one
``generate`` call per context).
"""

from __future__ import annotations

import contextlib
from typing import Iterable, Iterator, Sequence

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from lmscalpel.models import residual_module
from lmscalpel.models.intervention import steering
from lmscalpel.reasoning.activations import FoldedSAE

POSITIONS = ("all", "generated")


def _check_positions(positions: str) -> None:
    if positions not in POSITIONS:
        raise ValueError(f"config key reasoning.steering.positions must be one of {POSITIONS}, got {positions!r}")


@contextlib.contextmanager
def add_latent(model, layer: int, direction: torch.Tensor, alpha: float, positions: str = "all") -> Iterator:
    """Add ``alpha · direction`` (alpha = γ · f_max, direction = unit W_dec row) to block ``layer``'s output."""
    _check_positions(positions)
    with steering(model, layer, direction, alpha) as state:
        if positions == "all":
            yield state
            return
        calls = {"n": 0}

        def mask_prefill(module, args, kwargs):  # runs after the steering hook recorded this pass's token mask
            calls["n"] += 1
            if calls["n"] == 1 and state.mask is not None:
                state.mask = torch.zeros_like(state.mask)

        handle = model.get_input_embeddings().register_forward_pre_hook(mask_prefill, with_kwargs=True)
        try:
            yield state
        finally:
            handle.remove()


class _ClampState:
    def __init__(self, sae: FoldedSAE, latent: int, target: float, positions: str):
        self.sae, self.latent, self.target, self.positions = sae, latent, float(target), positions
        self.calls = 0

    def edit(self, module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        self.calls += 1
        if self.positions == "generated" and self.calls == 1:
            return None
        steered = hidden + clamp_delta(self.sae, hidden, self.latent, self.target)
        return (steered, *output[1:]) if isinstance(output, tuple) else steered


def clamp_delta(sae: FoldedSAE, hidden: torch.Tensor, latent: int, target: float) -> torch.Tensor:
    """(target − f_i(x)) · W_dec,i for every position of ``hidden [..., d]``, in ``hidden``'s dtype/device."""
    flat = hidden.reshape(-1, hidden.shape[-1])
    current = sae.encode(flat)[:, latent]
    delta = (target - current)[:, None] * sae.direction(latent).to(current.device)[None, :]
    return delta.to(hidden.device, hidden.dtype).view_as(hidden)


@contextlib.contextmanager
def clamp_latent(model, layer: int, sae: FoldedSAE, latent: int, target: float,
                 positions: str = "all") -> Iterator[_ClampState]:
    """Set latent ``latent`` to ``target`` (= γ · f_max) at block ``layer``'s output, keeping the SAE error."""
    _check_positions(positions)
    state = _ClampState(sae, latent, target, positions)
    handle = residual_module(model, layer).register_forward_hook(state.edit, prepend=True)
    try:
        yield state
    finally:
        handle.remove()


# --- vocabulary ban -------------------------------------------------------------------------------------------

BAN_MODES = ("first_token", "sequence")


def banned_sequences(form_ids: Iterable[Sequence[tuple[int, ...]]], mode: str) -> list[tuple[int, ...]]:
    """What the ban forbids. ``first_token`` (spec §8 project default): the first token of every surface form.
    ``sequence``: every form's full token sequence (its last token is banned right after the rest), which leaves
    shared word pieces alone when a small BPE splits the words (the toy tokenizer turns "therefore" into
    " the" + "refore")."""
    if mode not in BAN_MODES:
        raise ValueError(f"config key reasoning.ban.mode must be one of {BAN_MODES}, got {mode!r}")
    forms = {form for group in form_ids for form in group}
    return sorted({form[:1] for form in forms} if mode == "first_token" else forms)


class SuppressUntilMarker(LogitsProcessor):
    """Forbid the banned token sequences in each row until that row has generated ``marker`` (the thinking span):
    a sequence's last token gets −∞ whenever the row's latest tokens equal the rest of it (one-token sequences
    always). One instance per batch (it keeps per-row state)."""

    def __init__(self, sequences: Sequence[Sequence[int]], tokenizer, marker: str, prompt_length: int,
                 tail: int = 16):
        self.sequences = [tuple(s) for s in sequences if len(s)]
        self.singles = torch.tensor(sorted({s[0] for s in self.sequences if len(s) == 1}), dtype=torch.long)
        self.multi = [s for s in self.sequences if len(s) > 1]
        self.tokenizer, self.marker, self.prompt_length, self.tail = tokenizer, marker, prompt_length, tail
        self.done: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.done is None:
            self.done = torch.zeros(input_ids.shape[0], dtype=torch.bool)
        generated = input_ids[:, self.prompt_length:]
        if generated.shape[1]:
            for row in torch.nonzero(~self.done).flatten().tolist():
                recent = self.tokenizer.decode(generated[row, -self.tail:].tolist(), skip_special_tokens=False)
                self.done[row] = self.marker in recent
        scores = scores.clone()
        for row in torch.nonzero(~self.done).flatten().tolist():
            banned = [s[-1] for s in self.multi if len(s) - 1 <= generated.shape[1]
                      and tuple(generated[row, generated.shape[1] - len(s) + 1:].tolist()) == s[:-1]]
            if self.singles.numel():
                scores[row, self.singles.to(scores.device)] = float("-inf")
            if banned:
                scores[row, torch.tensor(banned, device=scores.device)] = float("-inf")
        return scores


def ban_processor_factory(sequences: Sequence[Sequence[int]], tokenizer, marker: str):
    return lambda prompt_length: LogitsProcessorList([SuppressUntilMarker(sequences, tokenizer, marker,
                                                                          prompt_length)])
