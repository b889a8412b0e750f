"""Inputs of the feature metrics: labelled texts (toy world or ``datasets``) and first-letter spelling prompts."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmscalpel.io import read_jsonl

TOYWORLD = "toyworld"


def load_labelled_texts(spec: dict[str, Any], toyworld_file: str | Path | None, seed: int) -> list[dict[str, Any]]:
    """Rows ``{"text", "labels": {column: str(value)}}`` of one dataset of ``features.datasets``.

    ``path: toyworld`` reads ``toyworld_file``; anything else goes to ``datasets.load_dataset``. Label values
    become strings so config keys (pairs, classes) can name integer labels such as Bias in Bios professions.
    ``max_examples`` keeps a seeded sample (presets: the full datasets are far larger than the metrics need).
    """
    if spec["path"] == TOYWORLD:
        if toyworld_file is None:
            raise ValueError("features.datasets: path 'toyworld' needs the toy-world file (key 'file') as input")
        raw = read_jsonl(toyworld_file)
    else:
        import datasets

        raw = datasets.load_dataset(spec["path"], spec.get("name"), split=spec["split"],
                                    revision=spec.get("revision"), data_files=spec.get("data_files"))
    rows = []
    for record in raw:
        missing = [c for c in [spec["text_column"], *spec["label_columns"]] if c not in record]
        if missing:
            raise KeyError(f"features.datasets: columns {missing} not in {spec['path']} (keys: {sorted(record)})")
        rows.append({"text": str(record[spec["text_column"]]),
                     "labels": {c: _label(record[c]) for c in spec["label_columns"]}})
    if spec.get("max_examples") and len(rows) > spec["max_examples"]:
        rows = random.Random(seed).sample(rows, spec["max_examples"])
    return rows


def _label(value: Any) -> str:
    """Integral floats (Amazon ratings 1.0/5.0) print as integers."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def split_rows(n: int, test_fraction: float, seed: int) -> list[str]:
    """A seeded train/test assignment per row."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_test = int(round(test_fraction * n))
    split = ["train"] * n
    for i in order[:n_test]:
        split[i] = "test"
    return split


# --- spelling (absorption, spec §5) ---

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_ALPHA = re.compile(r"^[A-Za-z]+$")
_BANNED = re.compile(r"[\d<>]")


def vocab_words(tokenizer) -> list[str]:
    """Tokenizer tokens whose text (leading space allowed) is ASCII letters only (SAEBench's word list)."""
    words = set()
    for token in tokenizer.get_vocab():
        text = tokenizer.convert_tokens_to_string([token])
        stripped = text[1:] if text.startswith(" ") else text
        if _ALPHA.match(stripped) and not _BANNED.search(text):
            words.add(stripped)
    return sorted(words)


def spelling_words(source: str, toyworld_file: str | Path | None, tokenizer, test_fraction: float,
                   seed: int) -> list[dict[str, str]]:
    """``[{"word", "letter", "split"}]``: the toy world's spelling list (its own split) or the tokenizer vocabulary
    (shuffled 80/20 with ``test_fraction``)."""
    if source == TOYWORLD:
        if toyworld_file is None:
            raise ValueError("features.absorption.words: 'toyworld' needs the toy world's spelling.jsonl as input")
        rows = read_jsonl(toyworld_file)
        return [{"word": r["word"], "letter": r["word"][0].upper(), "split": r.get("split", "train")} for r in rows]
    words = vocab_words(tokenizer)
    split = split_rows(len(words), test_fraction, seed)
    return [{"word": w, "letter": w[0].upper(), "split": s} for w, s in zip(words, split)]


@dataclass(frozen=True)
class SpellingPrompt:
    text: str
    word: str
    letter: str
    word_end: int  # character offset just past the word being spelled


def icl_prompt(word: str, examples: list[str], template: str) -> SpellingPrompt:
    """'\\n' + lines '{ex} has the first letter: X' + '\\n{word} has the first letter:' (spec §5 step 1)."""
    lines = [f"{template.format(word=ex)} {ex[0].upper()}" for ex in examples]
    head = "\n" + "\n".join(lines) + "\n"
    query = template.format(word=word)
    return SpellingPrompt(text=head + query, word=word, letter=word[0].upper(),
                          word_end=len(head) + query.index(word) + len(word))


def build_prompts(words: list[str], pool: list[str], n_examples: int, template: str, repeats: int,
                  rng: random.Random) -> list[SpellingPrompt]:
    """``repeats`` prompts per word, each with ``n_examples`` in-context examples drawn from ``pool`` minus the word."""
    prompts = []
    for word in words:
        others = [w for w in pool if w != word]
        for _ in range(repeats):
            prompts.append(icl_prompt(word, rng.sample(others, min(n_examples, len(others))), template))
    return prompts
