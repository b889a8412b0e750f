"""Additive residual-stream steering: ``x_t ← x_t + α_b · v_b · mask_t`` at the output of one decoder block.

Generic on purpose (the steering, reasoning and unlearning stages share it): the caller chooses the direction(s)
and computes α (Rogue Scalpel uses α = c·μ(l) with unit v; other stages use their own scales). The hook fires on
every forward pass, so it steers the prompt during prefill and each new token during decoding; with a KV cache a
decode step only carries the new token, which is exactly the one to steer, so cached and uncached generation give
the same outputs.

Positions whose token id is in ``skip_token_ids`` (special tokens: BOS, chat-template markers, padding) are not
steered, following Neuronpedia's convention (spec §2). The token ids of the current forward pass are read by a
pre-hook on the input embedding; a forward called with ``inputs_embeds`` only (no ids) steers every position.
``prompt_keep`` ([B, T] bool, the prompt's positions to steer) adds a positional mask on the prompt, for what ids
cannot tell: the ordinary tokens a chat template puts around the user's text ("user", "assistant", newlines).

The hook is prepended to the block's forward hooks: transformers 5 records ``output_hidden_states`` with forward
hooks of its own, installed on first use, and ours must run first so that ``hidden_states[l + 1]`` shows the
steered stream whatever the installation order.
"""

from __future__ import annotations

import contextlib
from typing import Iterable, Iterator, Sequence

import torch

from lmscalpel.models import residual_module
from lmscalpel.models.chat import chat_prompt


def special_token_ids(tokenizer) -> list[int]:
    """Ids that steering skips: every special token of the tokenizer, padding included: the named ones
    (``all_special_ids``) and every added token marked special, such as ChatML's ``<|im_start|>``, which
    transformers 5 leaves out of ``all_special_ids`` for Qwen2.5's tokenizer (only ``<|im_end|>`` and
    ``<|endoftext|>`` are named there)."""
    ids = set(tokenizer.all_special_ids)
    ids |= {i for i, token in getattr(tokenizer, "added_tokens_decoder", {}).items() if token.special}
    if tokenizer.pad_token_id is not None:
        ids.add(tokenizer.pad_token_id)
    return sorted(ids)


SKIP_MODES = ("special", "bos_pad", "template")


def template_added_ids(tokenizer) -> list[int]:
    """Ids of the tokenizer's added tokens (special or not, e.g. ChatML's ``<|im_start|>``, Llama-3's
    ``<|start_header_id|>``) that its chat template emits around a user turn; ``all_special_ids`` may miss them."""
    if not getattr(tokenizer, "chat_template", None):
        return []
    text = chat_prompt(tokenizer, "x")
    ids = set(tokenizer(text, add_special_tokens=False)["input_ids"])
    return sorted(ids & set(tokenizer.added_tokens_decoder))


def skip_token_ids(tokenizer, mode: str = "special") -> list[int]:
    """Ids left unsteered: ``special`` = every named special token and padding (spec §2, Neuronpedia);
    ``template`` = those plus every added token of the chat template (with a positional mask on prompts, see
    :func:`lmscalpel.steering.encoding.encode_prompts`, that also skips the template's ordinary tokens); ``bos_pad`` =
    only BOS and padding, for chat templates whose post-instruction marker is itself a special token (the toy's
    ``<|assistant|>``), where masking it would keep steering off the position that decides the reply."""
    if mode == "special":
        return special_token_ids(tokenizer)
    if mode == "template":
        return sorted(set(special_token_ids(tokenizer)) | set(template_added_ids(tokenizer)))
    if mode == "bos_pad":
        return sorted({i for i in (tokenizer.bos_token_id, tokenizer.pad_token_id) if i is not None})
    raise ValueError(f"steering.skip_tokens: unknown {mode!r} (expected one of {', '.join(SKIP_MODES)})")


def steering_deltas(vectors: torch.Tensor, alphas: float | Sequence[float] | torch.Tensor) -> torch.Tensor:
    """``α_b · v_b`` as a ``[B, d]`` (or ``[1, d]``) tensor; ``vectors`` is ``[d]`` or ``[B, d]``."""
    vectors = torch.as_tensor(vectors, dtype=torch.float32)
    if vectors.ndim == 1:
        vectors = vectors.unsqueeze(0)
    if vectors.ndim != 2:
        raise ValueError(f"steering vectors must be [d] or [B, d], got shape {tuple(vectors.shape)}")
    alphas = torch.as_tensor(alphas, dtype=torch.float32).reshape(-1)
    if alphas.numel() not in (1, vectors.shape[0]) and vectors.shape[0] != 1:
        raise ValueError(f"{alphas.numel()} alphas for {vectors.shape[0]} vectors: give one alpha or one per vector")
    return alphas.unsqueeze(1) * vectors


class _SteeringState:
    """Holds the delta and the token mask of the forward pass in flight."""

    def __init__(self, deltas: torch.Tensor, skip_token_ids: Iterable[int], prompt_keep: torch.Tensor | None):
        self.deltas = deltas
        self.skip = torch.tensor(sorted(set(int(i) for i in skip_token_ids)), dtype=torch.long)
        self.prompt_keep = prompt_keep
        self.mask: torch.Tensor | None = None
        self.calls = 0
        self._cast: torch.Tensor | None = None

    def _deltas_like(self, hidden: torch.Tensor) -> torch.Tensor:
        if self._cast is None or self._cast.device != hidden.device or self._cast.dtype != hidden.dtype:
            self._cast = self.deltas.to(device=hidden.device, dtype=hidden.dtype)
        return self._cast

    def record_ids(self, module, args, kwargs):
        ids = args[0] if args else kwargs.get("input")
        if ids is None or ids.ndim != 2:
            self.mask = None
            return
        skip = self.skip.to(ids.device)
        self.mask = ~torch.isin(ids, skip) if skip.numel() else torch.ones_like(ids, dtype=torch.bool)
        keep = self.prompt_keep
        # Prefill (and uncached passes) start with the prompt; a cached decode step holds only new tokens.
        if keep is not None and ids.shape[0] == keep.shape[0] and ids.shape[1] >= keep.shape[1]:
            self.mask[:, :keep.shape[1]] &= keep.to(ids.device)

    def add(self, module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        batch, seq = hidden.shape[0], hidden.shape[1]
        deltas = self._deltas_like(hidden)
        if deltas.shape[0] not in (1, batch):
            raise ValueError(f"steering has {deltas.shape[0]} vectors but the batch has {batch} rows")
        update = deltas[:, None, :].expand(batch, seq, -1)
        mask, self.mask = self.mask, None  # consume: a later inputs_embeds-only call must not reuse it
        if mask is not None:
            if mask.shape != (batch, seq):
                raise ValueError(f"token mask {tuple(mask.shape)} does not match hidden states {(batch, seq)}")
            update = update * mask.unsqueeze(-1).to(hidden.dtype)
        self.calls += 1
        steered = hidden + update
        return (steered, *output[1:]) if isinstance(output, tuple) else steered


@contextlib.contextmanager
def steering(
    model: torch.nn.Module,
    layer: int,
    vectors: torch.Tensor,
    alphas: float | Sequence[float] | torch.Tensor = 1.0,
    *,
    skip_token_ids: Iterable[int] = (),
    prompt_keep: torch.Tensor | None = None,
) -> Iterator[_SteeringState]:
    """Add ``alphas[b] * vectors[b]`` to the output of decoder block ``layer`` for batch row ``b``.

    ``vectors``: ``[d]`` (same for every row) or ``[B, d]`` (one per row, B = batch size of every forward inside the
    block). ``alphas``: a scalar or one per vector. Vectors are used as given (normalise them first if α is meant as
    a norm). ``skip_token_ids``: positions holding these ids are left untouched (see :func:`special_token_ids`).
    ``prompt_keep``: [B, T_prompt] bool, False on prompt positions to leave untouched (left-padded prompts).
    Yields the state object; ``state.calls`` counts steered forward passes (tests check one per decode step).
    """
    state = _SteeringState(steering_deltas(vectors, alphas), skip_token_ids, prompt_keep)
    handles = [
        model.get_input_embeddings().register_forward_pre_hook(state.record_ids, with_kwargs=True),
        residual_module(model, layer).register_forward_hook(state.add, prepend=True),
    ]
    try:
        yield state
    finally:
        for handle in handles:
            handle.remove()
