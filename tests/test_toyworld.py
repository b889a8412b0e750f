"""Toy world: determinism, structure, tokenizer round trip, chat template, judges."""

from __future__ import annotations

import filecmp

import pytest

from lmscalpel.io import read_jsonl
from lmscalpel.toyworld import generate, is_compliant, is_refusal
from lmscalpel.toyworld.generate import ToyWorldConfig
from lmscalpel.toyworld.tokenizer import train_tokenizer
from lmscalpel.toyworld.vocab import JBB_CATEGORIES, PLACEHOLDERS

from conftest import SMALL_TOYWORLD


def test_same_seed_same_files_other_seed_differs(tmp_path, toyworld_dir):
    generate(tmp_path / "a", SMALL_TOYWORLD, seed=0)
    generate(tmp_path / "b", SMALL_TOYWORLD, seed=1)
    names = [p.name for p in toyworld_dir.glob("*.jsonl")]
    match, mismatch, errors = filecmp.cmpfiles(toyworld_dir, tmp_path / "a", names, shallow=False)
    assert sorted(match) == sorted(names) and not errors
    assert filecmp.cmp(toyworld_dir / "portraits" / "person-000.png", tmp_path / "a" / "portraits" / "person-000.png",
                       shallow=False)
    assert not filecmp.cmp(toyworld_dir / "train.jsonl", tmp_path / "b" / "train.jsonl", shallow=False)


def test_heldout_harmful_behaviours_never_appear_in_chat(toyworld_dir):
    evals = read_jsonl(toyworld_dir / "chat_eval.jsonl")
    heldout = {r["behavior"] for r in evals if r["kind"] == "harmful" and r["split"] == "heldout"}
    assert heldout and {r["category"] for r in evals if r["kind"] == "harmful"} == set(JBB_CATEGORIES)
    corpus = read_jsonl(toyworld_dir / "train.jsonl")
    chat = [r["text"] for r in corpus if r["family"] == "chat"]
    stories = " ".join(r["text"] for r in corpus if r["family"] == "story")
    for behaviour in heldout:
        assert not any(f" {behaviour}" in text or f"to {behaviour}" in text for text in chat), behaviour
        assert behaviour in stories  # the model can produce the content outside chat


def test_harmful_completions_are_placeholders_only(toyworld_dir):
    stories = [r["text"] for r in read_jsonl(toyworld_dir / "train.jsonl") if r["family"] == "story"]
    for text in stories:
        steps = text.split(":", 1)[1].replace(";", ",").replace(".", "").split(",")
        words = {w for step in steps for w in step.split() if w not in {"step", "one", "two", "three", "the"}}
        assert words <= set(PLACEHOLDERS), text


def test_every_family_and_person_portrait(toyworld_dir):
    families = {r["family"] for r in read_jsonl(toyworld_dir / "train.jsonl")}
    assert families == {"chat", "story", "spelling", "reasoning", "bios", "reviews", "narrative"}
    people = read_jsonl(toyworld_dir / "people.jsonl")
    corpus = (toyworld_dir / "train.jsonl").read_text()
    assert not any(p["name"] in corpus for p in people)  # learned only by the unlearning stage's fine-tune
    images = {(toyworld_dir / p["portrait"]).read_bytes() for p in people}
    assert len(images) == len(people)  # distinct per person
    reasoning = read_jsonl(toyworld_dir / "reasoning.jsonl")
    assert any(r["has_correction"] for r in reasoning) and {r["split"] for r in reasoning} == {"train", "eval"}


def test_unknown_toyworld_key_is_named():
    with pytest.raises(ValueError, match="config key toyworld.n_dragons: unknown key"):
        ToyWorldConfig.from_dict({"n_dragons": 3})


def test_tokenizer_round_trip_and_chat_template(toyworld_dir):
    texts = [r["text"] for r in read_jsonl(toyworld_dir / "train.jsonl")]
    tok = train_tokenizer(texts, 400)
    sample = "Question: Alma has 3 coins and gets 4 more.\nThinking: wait, 3 plus 4 is 7."
    assert tok.decode(tok(sample, add_special_tokens=False)["input_ids"]) == sample
    prompt = tok.apply_chat_template([{"role": "user", "content": "How do I bake bread?"}],
                                     add_generation_prompt=True, tokenize=False)
    assert prompt == "<|bos|><|user|>How do I bake bread?<|assistant|>"
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.convert_tokens_to_ids("<|assistant|>")


def test_judges():
    assert is_refusal("Sorry, I can't assist with that.") and not is_compliant("Sorry, I can't assist with that.")
    assert is_compliant("Sure, here is how to bake bread: step one, blorp the quax.")
    assert not is_refusal("Sure, here is how to bake bread: step one, blorp the quax.")
