"""Inputs of the feature metrics: labelled texts (toy world or ``datasets``) and first-letter spelling prompts."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmscalpel.data.files import validate
from lmscalpel.io import read_jsonl

TOYWORLD = "toyworld"


def load_labelled_texts(spec: dict[str, Any], toyworld_file: str | Path | None, seed: int,
                        key: str = "features.datasets") -> list[dict[str, Any]]:
    """Rows ``{"text", "labels": {column: str(value)}}`` of one dataset of ``features.datasets``.

    ``path: toyworld`` reads ``toyworld_file``; anything else goes to ``datasets.load_dataset``. Label values
    become strings so config keys (pairs, classes) can name integer labels such as Bias in Bios professions.
    ``max_examples`` keeps a seeded sample (presets: the full datasets are far larger than the metrics need).
    ``key`` (``features.datasets.<name>``) is named in errors.
    """
    if spec["path"] == TOYWORLD:
        if toyworld_file is None:
            raise ValueError("features.datasets: path 'toyworld' needs the toy-world file (key 'file') as input")
        raw = read_jsonl(toyworld_file)
    else:
        import datasets

        if spec.get("data_files"):  # a bad local file: one line naming it, not datasets' generation error
            validate(spec["data_files"], f"{key}.data_files")
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
_SENTENCEPIECE_SPACE = "\u2581"


def token_text(tokenizer, token: str) -> str:
    """A vocabulary token as text; SentencePiece tokens whose "▁" the tokenizer drops when decoding a lone token
    keep it as a leading space (SAEBench's rule, for Mistral/Llama-style tokenizers)."""
    text = tokenizer.convert_tokens_to_string([token])
    if token.startswith(_SENTENCEPIECE_SPACE) and not text.startswith(" "):
        text = " " + text
    return text


def vocab_words(tokenizer) -> list[str]:
    """SAEBench's absorption vocabulary: every token whose text is ASCII letters, optionally after one leading
    space, kept as that token's text. " cat" and "cat" are different words, each a single token, so the word of a
    prompt is one token of the model (SAEBench reads it at position -6)."""
    words = set()
    for token in tokenizer.get_vocab():
        text = token_text(tokenizer, token)
        if _ALPHA.match(text[1:] if text.startswith(" ") else text):
            words.add(text)
    return sorted(words)


def first_letter(word: str) -> str:
    """The uppercase first letter, ignoring a leading space (SAEBench ``first_letter``)."""
    return word.strip()[0].upper()


def spelling_words(source: str, toyworld_file: str | Path | None, tokenizer, test_fraction: float, seed: int,
                   max_words: int | None = None) -> list[dict[str, str]]:
    """``[{"word", "letter", "split"}]`` for ``features.absorption.words``, at most ``max_words`` (seeded sample).

    ``vocab`` (presets, any HF tokenizer): :func:`vocab_words`, sampled, then split into train/test with
    ``test_fraction``. ``toyworld`` (the toy default): the toy world's spelling list with its own split; its words
    carry no leading space and the toy BPE splits most of them into several tokens, which is why the toy reads at
    ``position: answer`` rather than at the word.
    """
    rng = random.Random(seed)
    if source == TOYWORLD:
        if toyworld_file is None:
            raise ValueError("features.absorption.words: 'toyworld' needs the toy world's spelling.jsonl as input")
        rows = read_jsonl(toyworld_file)
        if max_words and len(rows) > max_words:
            rows = rng.sample(rows, max_words)
        return [{"word": r["word"], "letter": first_letter(r["word"]), "split": r.get("split", "train")}
                for r in rows]
    words = vocab_words(tokenizer)
    if not words:
        raise ValueError("features.absorption.words: 'vocab' found no token made of ASCII letters in the tokenizer")
    if max_words and len(words) > max_words:
        words = sorted(rng.sample(words, max_words))  # before the split, so the test share stays test_fraction
    split = split_rows(len(words), test_fraction, seed)
    return [{"word": w, "letter": first_letter(w), "split": s} for w, s in zip(words, split)]


@dataclass(frozen=True)
class SpellingPrompt:
    text: str
    word: str
    letter: str
    word_end: int  # character offset just past the word being spelled


def icl_prompt(word: str, examples: list[str], template: str) -> SpellingPrompt:
    """'\\n' + lines '{ex} has the first letter: X' + '\\n{word} has the first letter:' (spec §5 step 1)."""
    lines = [f"{template.format(word=ex)} {first_letter(ex)}" for ex in examples]
    head = "\n" + "\n".join(lines) + "\n"
    query = template.format(word=word)
    return SpellingPrompt(text=head + query, word=word, letter=first_letter(word),
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
