"""Question/answer items and their encoding for a LLaVA-style model.

An :class:`Item` is one (image or None, prompt, answer) triple. :class:`Encoder` renders the prompt with the
processor's chat template (image part first, as LLaVA does), tokenises prompt and answer separately (so the
answer tokens never merge with the prompt) and masks the prompt out of the labels. ``max_length`` budgets text
tokens: the processor expands ``<image>`` into the model's image tokens (576 on LLaVA-1.5), which come on top and
are never cut (a cut one makes LLaVA's image features and image tokens disagree); only the answer's tail is.
Items with ``chat=False`` use the prompt as raw text (completion-style facts learned in pre-training).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from lmscalpel.models.chat import chat_prompt

IGNORE = -100


@dataclass(frozen=True)
class Item:
    prompt: str
    answer: str
    image: Any = None
    chat: bool = True
    owner: str = ""  # the person (or fact) the item is about; random-answer pools exclude the owner
    kind: str = "text"  # "caption", "face" or "text": random answers come from items of the same kind
    extra: dict = field(default_factory=dict, compare=False)

    def with_answer(self, answer: str) -> "Item":
        return replace(self, answer=answer)


def rows_to_items(rows: list[dict], *, caption_prompts: list[str], face_prompt: str | None) -> list[Item]:
    """Turn CLEAR training rows into items.

    Image rows (image, caption, name) give a caption item (prompt ``caption_prompts[i % n]``) and, when
    ``face_prompt`` is set, a face-recognition item answering the name; text rows (question, answer) give a text
    item. Both CLEAR layouts are accepted (``+tofu`` subsets have image = None on text rows).
    """
    items = []
    for i, row in enumerate(rows):
        image = row.get("image")
        if image is not None:
            owner = row.get("name") or f"image-{i}"
            items.append(Item(caption_prompts[i % len(caption_prompts)], row["caption"], image, owner=owner,
                              kind="caption"))
            if face_prompt is not None and row.get("name"):
                items.append(Item(face_prompt, row["name"], image, owner=owner, kind="face"))
        else:
            # CLEAR's text rows carry no person id: the question is the owner, so a "random answer of another
            # person" may come from another question about the same person.
            items.append(Item(row["question"], row["answer"], None, owner=row["question"], kind="text"))
    return items


class Encoder:
    """Encode items for teacher-forced scoring (right padding) and prompts for generation (left padding)."""

    def __init__(self, processor: Any, max_length: int = 512):
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.max_length = max_length
        image_token = getattr(processor, "image_token", None)
        self._image_token_id = self.tokenizer.convert_tokens_to_ids(image_token) if image_token else None
        self._special = tuple(t for t in self.tokenizer.all_special_tokens if t)
        self._prompt_cache: dict[tuple, tuple] = {}

    def prompt_text(self, item: Item) -> str:
        if not item.chat:
            return (self.tokenizer.bos_token or "") + item.prompt
        content = ([{"type": "image"}] if item.image is not None else []) + [{"type": "text", "text": item.prompt}]
        return chat_prompt(self.processor, content)

    def _prompt_ids(self, item: Item) -> tuple[list[int], torch.Tensor | None, str]:
        """Prompt ids, pixel values and prompt text; cached, since an item is scored with many answers."""
        key = (item.prompt, item.chat, id(item.image))
        if key not in self._prompt_cache:
            if len(self._prompt_cache) > 4096:
                self._prompt_cache.clear()
            text = self.prompt_text(item)
            if item.image is None:
                ids, pixels = self.tokenizer(text, add_special_tokens=False)["input_ids"], None
            else:
                enc = self.processor(text=[text], images=[item.image.convert("RGB")], add_special_tokens=False,
                                     return_tensors="pt")
                ids, pixels = enc["input_ids"][0].tolist(), enc["pixel_values"]
            # keep the image alive with the entry so its id cannot be reused by another image
            self._prompt_cache[key] = (ids, pixels, text, item.image)
        ids, pixels, text, _ = self._prompt_cache[key]
        return ids, pixels, text

    def _answer_ids(self, item: Item, prompt: str) -> list[int]:
        glue = "" if prompt.endswith((" ", "\n") + self._special) else " "
        eos = self.tokenizer.eos_token or ""
        return self.tokenizer(glue + item.answer + eos, add_special_tokens=False)["input_ids"]

    def encode(self, items: list[Item]) -> dict[str, torch.Tensor]:
        """``input_ids``, ``attention_mask``, ``labels`` (prompt masked) and, if any item has one, ``pixel_values``."""
        seqs, labels, pixels = [], [], []
        for item in items:
            prompt_ids, pixel_values, prompt = self._prompt_ids(item)
            answer_ids = self._answer_ids(item, prompt)[: self._answer_room(prompt_ids)]
            seqs.append(prompt_ids + answer_ids)
            labels.append([IGNORE] * len(prompt_ids) + answer_ids)
            if pixel_values is not None:
                pixels.append(pixel_values)
        return self._pad(seqs, labels, pixels, left=False)

    def _answer_room(self, prompt_ids: list[int]) -> int:
        """Answer tokens that fit: ``max_length`` text tokens plus the prompt's image tokens, less the prompt."""
        n_image = prompt_ids.count(self._image_token_id) if self._image_token_id is not None else 0
        room = self.max_length + n_image - len(prompt_ids)
        if room < 1:
            raise ValueError(f"config key unlearning.max_length = {self.max_length}: a prompt of "
                             f"{len(prompt_ids) - n_image} text tokens (+ {n_image} image tokens) leaves no room "
                             "for its answer; raise unlearning.max_length")
        return room

    def encode_prompts(self, items: list[Item]) -> dict[str, torch.Tensor]:
        """Left-padded prompts for ``generate``."""
        seqs, pixels = [], []
        for item in items:
            prompt_ids, pixel_values, _ = self._prompt_ids(item)
            seqs.append(prompt_ids)
            if pixel_values is not None:
                pixels.append(pixel_values)
        batch = self._pad(seqs, None, pixels, left=True)
        batch.pop("labels")
        return batch

    def _pad(self, seqs, labels, pixels, *, left: bool) -> dict[str, torch.Tensor]:
        pad_id = self.tokenizer.pad_token_id
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        lab = torch.full((len(seqs), width), IGNORE, dtype=torch.long)
        for i, s in enumerate(seqs):
            cols = slice(width - len(s), width) if left else slice(0, len(s))
            ids[i, cols] = torch.tensor(s)
            mask[i, cols] = 1
            if labels is not None:
                lab[i, cols] = torch.tensor(labels[i])
        batch = {"input_ids": ids, "attention_mask": mask, "labels": lab}
        if pixels:
            batch["pixel_values"] = torch.cat(pixels)
        return batch


def random_answers(items: list[Item], pools: list[list[Item]], k: int, rng: random.Random) -> list[list[Item]]:
    """``k`` lists of the items answered with answers of other owners' items of the same kind.

    Candidates come from the first pool in ``pools`` that has any (e.g. other forget items, then all items)."""
    out = []
    for item in items:
        candidates: list[str] = []
        for pool in pools:
            candidates = [p.answer for p in pool if p.kind == item.kind and p.owner != item.owner]
            if candidates:
                break
        if not candidates:
            raise ValueError(f"no {item.kind!r} answers of other persons to draw random answers from")
        out.append([item.with_answer(rng.choice(candidates)) for _ in range(k)])
    return [[row[j] for row in out] for j in range(k)]
