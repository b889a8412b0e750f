"""Corpus packing, residual-stream capture and a unit-decoder-norm view of any SAE.

ReasonScore, f_max and steering all live in the *folded* scale of the released code (``sae.fold_W_dec_norm()``):
latent activations are multiplied by their decoder-row norms and decoder rows are unit vectors, so
f_i · W_dec,i (and hence γ · f_max,i · W_dec,i) is unchanged and lives in the raw residual space.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from lmscalpel.models import residual_module
from lmscalpel.sae.saelens_format import CFG_FILENAME, parse_hook_name


class FoldedSAE:
    """Wrap an SAE exposing ``encode``, ``decode`` and ``W_dec [m, d]`` so that decoder rows have unit norm."""

    def __init__(self, sae):
        self.sae = sae
        w_dec = sae.W_dec.detach().float()
        self.norms = w_dec.norm(dim=1).clamp_min(1e-12)
        self.W_dec = w_dec / self.norms[:, None]

    @property
    def n_latents(self) -> int:
        return self.W_dec.shape[0]

    @property
    def device(self) -> torch.device:
        return self.sae.W_dec.device

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        dtype = self.sae.W_dec.dtype
        return self.sae.encode(x.to(self.device, dtype)).float() * self.norms.to(self.device)

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return self.sae.decode((f.to(self.device) / self.norms.to(self.device)).to(self.sae.W_dec.dtype)).float()

    def direction(self, latent: int) -> torch.Tensor:
        return self.W_dec[latent]


def sae_layer(sae_dir: str | Path) -> int:
    """0-based block whose output an SAE reads, from the hook of its SAELens ``cfg.json`` (≥ 6 or pre-6 keys), read
    as :func:`lmscalpel.sae.parse_hook_name` reads it."""
    cfg = json.loads((Path(sae_dir) / CFG_FILENAME).read_text())
    hook = (cfg.get("metadata") or {}).get("hook_name") or cfg.get("hook_name") or cfg.get("hook_point")
    try:
        layer, site = parse_hook_name(str(hook))
    except ValueError:
        site = None
    if site != "resid_post":
        raise ValueError(f"{sae_dir}/cfg.json: hook {hook!r} is not blocks.<l>.hook_resid_post; the reasoning stage "
                         "steers the residual stream after a block")
    return layer


def pack_texts(tokenizer, texts: Iterable[str], context_length: int, max_tokens: int | None,
               add_bos: bool = True, drop_last: bool = False) -> torch.Tensor:
    """Pack documents ``[BOS] text EOS`` (the toy model's training layout) into ``[N, context_length]`` rows.

    ``max_tokens`` None packs every text. The last row is right-padded with the pad token (padding and special
    tokens are excluded downstream), or dropped when incomplete with ``drop_last`` (as TransformerLens'
    ``tokenize_and_concatenate`` in the released code).
    """
    bos = [tokenizer.bos_token_id] if add_bos and tokenizer.bos_token_id is not None else []
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    chunks, total = [], 0
    for text in texts:
        chunks.append(np.asarray(bos + tokenizer.encode(text, add_special_tokens=False) + eos, dtype=np.int64))
        total += len(chunks[-1])
        if max_tokens is not None and total >= max_tokens:
            break
    stream = np.concatenate(chunks)[:max_tokens] if chunks else np.zeros(0, dtype=np.int64)
    n_rows = len(stream) // context_length if drop_last else -(-len(stream) // context_length)
    if n_rows == 0:
        raise ValueError("reasoning corpus is empty or shorter than one row (config key reasoning.corpus)")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos[0] if eos else 0)
    rows = np.full(n_rows * context_length, pad, dtype=np.int64)
    rows[:min(len(stream), len(rows))] = stream[:len(rows)]
    return torch.from_numpy(rows).view(n_rows, context_length)


def corpus_rows(tokenizer, texts: Iterable[str], corpus: dict) -> torch.Tensor:
    """The ReasonScore rows of config ``reasoning.corpus``.

    ``shuffle_seed`` null (project default): the documents in file order, packed up to the budget. An integer: the
    released code's selection — pack the whole corpus (incomplete last row dropped), permute the rows as
    ``datasets.Dataset.shuffle(seed=...)`` does (``numpy.random.default_rng(seed).permutation``) and keep the first
    rows, so every domain of a corpus stored in domain order is sampled. The budget is ``n_rows`` rows when set
    (released code 4,096), else ``max_tokens`` tokens.
    """
    length, n_rows, seed = corpus["context_length"], corpus.get("n_rows"), corpus.get("shuffle_seed")
    budget = n_rows * length if n_rows else corpus["max_tokens"]
    if seed is None:
        return pack_texts(tokenizer, texts, length, budget, add_bos=corpus["add_bos"])
    rows = pack_texts(tokenizer, texts, length, None, add_bos=corpus["add_bos"], drop_last=True)
    keep = np.random.default_rng(seed).permutation(len(rows))[:-(-budget // length)]
    return rows[torch.from_numpy(keep)]


class _StopForward(Exception):
    pass


@torch.no_grad()
def residual_stream(model, layer: int, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
    """Output of decoder block ``layer`` (``hidden_states[layer + 1]``); the forward stops at that block."""
    captured = {}

    def grab(module, args, output):
        captured["h"] = output[0] if isinstance(output, tuple) else output
        raise _StopForward

    handle = residual_module(model, layer).register_forward_hook(grab)
    try:
        model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    except _StopForward:
        pass
    finally:
        handle.remove()
    return captured["h"]

