"""Token windows for perplexity and calibration, from the texts of :func:`lmscalpel.data.text.load_texts`
(``pruning.perplexity.dataset``, ``pruning.calibration.dataset``; WikiText-2 on presets: path wikitext, name
wikitext-2-raw-v1)."""

from __future__ import annotations

import random

import torch


def sample_texts(texts: list[str], max_texts: int | None, seed: int) -> list[str]:
    """A seeded subset (in random order) when ``max_texts`` is smaller than the corpus."""
    if max_texts is None or len(texts) <= max_texts:
        return texts
    return random.Random(seed).sample(texts, max_texts)


def token_stream(tokenizer, texts: list[str], join: str = "text") -> torch.Tensor:
    """One token stream from many texts.

    ``join="text"``: texts joined with a blank line and tokenised once (the WikiText protocol of Wanda, SparseGPT
    and the paper). ``join="documents"``: every text as its own document, BOS + text + EOS, tokenised without
    added specials (the toy model's training format and the model card's perplexity).
    """
    if join == "text":
        return tokenizer("\n\n".join(texts), return_tensors="pt").input_ids[0].long()
    if join != "documents":
        raise ValueError(f"config key join: expected 'text' or 'documents', got {join!r}")
    bos, eos = tokenizer.bos_token, tokenizer.eos_token
    ids: list[int] = []
    for text in texts:
        document = (text if bos is None or text.startswith(bos) else bos + text)
        document = document if eos is None or document.endswith(eos) else document + eos
        ids += tokenizer(document, add_special_tokens=False)["input_ids"]
    return torch.tensor(ids, dtype=torch.long)


def eval_windows(stream: torch.Tensor, seqlen: int, max_windows: int | None = None) -> torch.Tensor:
    """Non-overlapping windows of ``seqlen`` tokens; the last partial window is dropped."""
    count = stream.numel() // seqlen
    if max_windows is not None:
        count = min(count, max_windows)
    if count == 0:
        raise ValueError(f"the evaluation text has {stream.numel()} tokens, fewer than one window of {seqlen}")
    return stream[: count * seqlen].reshape(count, seqlen)


def calibration_windows(stream: torch.Tensor, n_windows: int, seqlen: int, seed: int) -> torch.Tensor:
    """``n_windows`` windows at seeded random offsets (Wanda's C4 sampling, applied to a token stream)."""
    if stream.numel() <= seqlen:
        raise ValueError(f"calibration text has {stream.numel()} tokens, not more than one window of {seqlen}")
    generator = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, stream.numel() - seqlen, (n_windows,), generator=generator)
    return torch.stack([stream[s:s + seqlen] for s in starts.tolist()])
