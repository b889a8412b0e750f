"""The reasoning vocabulary R and its token-level matching (SAE-Reasoning v2 §3.1; released
``extraction/compute_score.py``).

Each vocabulary entry is one *group* (e.g. "wait"); its surface forms are token sequences. A match is an exact
contiguous token subsequence, and every token of a match belongs to its group. Windows (paper: 2 before, 3 after;
released code: 1 before, 2 after) are taken around every matched token and unioned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch

#: The paper's ten entries with the released case rules: "but" and "another" count only capitalised and without a
#: leading-space variant (``extraction/reason_tokens.json``, 34 strings in all). The toy config adds " But" and
#: " Another" (``leading_space: true``), which is how they occur in toy traces.
RELEASED_VOCABULARY = [
    {"word": w, "case": "any", "leading_space": True}
    for w in ("alternatively", "hmm", "maybe", "wait", "perhaps", "let me", "therefore", "however")
] + [{"word": "but", "case": "capitalized", "leading_space": False},
     {"word": "another", "case": "capitalized", "leading_space": False}]


@dataclass(frozen=True)
class VocabEntry:
    """One group of R. ``case``: ``any`` (lower and capitalised) or ``capitalized`` (capitalised only);
    ``leading_space`` adds the " word" variant of every cased form (byte-level BPE tokenises it differently)."""

    word: str
    case: str = "any"
    leading_space: bool = True

    def __post_init__(self):
        if self.case not in ("any", "capitalized"):
            raise ValueError(f"config key reasoning.vocabulary: case must be 'any' or 'capitalized', got {self.case!r}")
        if not self.word.strip():
            raise ValueError("config key reasoning.vocabulary: empty word")

    @property
    def forms(self) -> list[str]:
        word = self.word.strip().lower()
        capitalised = word[0].upper() + word[1:]
        cased = [word, capitalised] if self.case == "any" else [capitalised]
        return cased + ([" " + f for f in cased] if self.leading_space else [])


def parse_vocabulary(entries: Iterable[dict | VocabEntry] | None) -> list[VocabEntry]:
    """Config entries (``reasoning.vocabulary``) as groups; None gives the released list."""
    entries = RELEASED_VOCABULARY if entries is None else list(entries)
    vocab = [e if isinstance(e, VocabEntry) else VocabEntry(**e) for e in entries]
    words = [v.word.lower() for v in vocab]
    if len(set(words)) != len(words) or len(vocab) < 2:
        raise ValueError(f"config key reasoning.vocabulary: need ≥ 2 distinct words, got {words}")
    return vocab


def count_words(text: str, vocab: Sequence[VocabEntry]) -> int:
    """Occurrences of the words of R in ``text`` as whole words (letters on neither side), in the capitalisations
    each entry counts: the reflection-word count of a reply, on its text, so that it reads the same for any
    tokenizer."""
    forms = sorted({form.strip() for entry in vocab for form in entry.forms}, key=len, reverse=True)
    if not forms:
        return 0
    pattern = r"(?<![A-Za-z])(?:" + "|".join(re.escape(f) for f in forms) + r")(?![A-Za-z])"
    return len(re.findall(pattern, text))


def form_token_ids(tokenizer, vocab: Sequence[VocabEntry]) -> list[list[tuple[int, ...]]]:
    """Token-id sequences of every surface form, per group (tokenised without special tokens)."""
    groups = []
    for entry in vocab:
        seqs = {tuple(tokenizer.encode(form, add_special_tokens=False)) for form in entry.forms}
        groups.append(sorted(s for s in seqs if s))
    return groups


def match_positions(token_ids: torch.Tensor, groups: Sequence[Sequence[tuple[int, ...]]]) -> torch.Tensor:
    """``[G, N, T]`` bool: position (n, t) is a token of a match of a form of group g."""
    n, t = token_ids.shape
    hits = torch.zeros(len(groups), n, t, dtype=torch.bool)
    for g, forms in enumerate(groups):
        for form in forms:
            length = len(form)
            if length > t:
                continue
            start = torch.ones(n, t - length + 1, dtype=torch.bool)
            for k, tok in enumerate(form):
                start &= token_ids[:, k:t - length + 1 + k] == tok
            for k in range(length):
                hits[g, :, k:t - length + 1 + k] |= start
    return hits


def expand_windows(hits: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """Dilate matched positions along the last axis: position p marks p−before … p+after (clipped, no wrap)."""
    if before < 0 or after < 0:
        raise ValueError("config key reasoning.window: before and after must be ≥ 0")
    out = hits.clone()
    t = hits.shape[-1]
    for shift in range(1, after + 1):
        if shift < t:
            out[..., shift:] |= hits[..., :t - shift]
    for shift in range(1, before + 1):
        if shift < t:
            out[..., :t - shift] |= hits[..., shift:]
    return out
