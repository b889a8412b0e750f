"""Model-facing parts of the features stage on the random-init tiny Llama: activation reading, the cached
inputs of every rule, and the per-SAE metric files with a stand-in SAE."""

from __future__ import annotations

import copy

import pytest
import torch
import yaml

from lmscalpel.features import stage
from lmscalpel.features.activations import load_tensors, pool, position_activations, text_activations
from lmscalpel.features.data import icl_prompt, load_labelled_texts, spelling_words
from lmscalpel.io import read_json, write_jsonl
from lmscalpel.models import ModelRef, load_model

from conftest import REPO_ROOT, validated


@pytest.fixture(scope="module")
def tiny(tiny_lm_dir):
    model, tokenizer = load_model(ModelRef(str(tiny_lm_dir), device="cpu"))
    return model, tokenizer


@pytest.fixture(scope="module")
def features_cfg():
    """The default config's features section (defaults filled in), shrunk to the fixture world."""
    cfg = copy.deepcopy(validated(yaml.safe_load((REPO_ROOT / "config.yaml").read_text()))["features"])
    cfg["absorption"].update(prompts_per_word=1, n_icl_examples=3, probe_epochs=3, sparse_epochs=3, max_k=3,
                             min_letters=1, f1_gate=-1.0)
    cfg["probe"]["epochs"] = 2
    cfg["scr"]["pairs"]["bios"]["pairs"] = cfg["scr"]["pairs"]["bios"]["pairs"][:1]
    cfg["scr"]["pairs"]["reviews"]["pairs"] = cfg["scr"]["pairs"]["reviews"]["pairs"][:1]
    cfg["scr"]["n_values"] = cfg["tpp"]["n_values"] = [2, 5]
    cfg["tpp"]["classes"]["bios"]["classes"] = ["professor", "nurse"]
    cfg["tpp"]["classes"]["reviews"]["classes"] = ["Books", "CDs_and_Vinyl"]
    cfg["sparse_probing"]["k_values"] = [1, 2]
    cfg["sparse_probing"]["max_iter"] = 100
    return cfg


def test_residual_matches_hidden_states_and_reads_the_word_token(tiny):
    model, tokenizer = tiny
    prompt = icl_prompt("zebra", ["apple", "bread"], "{word} has the first letter:")
    # layer 0 of 2: HF's last hidden_states entry is after the final norm, not the block output
    x = position_activations(model, tokenizer, [prompt.text], [prompt.word_end], layer=0, batch_size=4,
                             max_length=128)
    ids = [tokenizer.bos_token_id] + tokenizer(prompt.text)["input_ids"]
    offsets = tokenizer(prompt.text, return_offsets_mapping=True)["offset_mapping"]
    pos = 1 + max(i for i, (lo, hi) in enumerate(offsets) if lo < prompt.word_end <= hi)
    assert prompt.text[offsets[pos - 1][0]:offsets[pos - 1][1]].strip() in "zebra"
    with torch.no_grad():
        hidden = model(torch.tensor([ids]), output_hidden_states=True).hidden_states[1][0]
    assert torch.allclose(x[0], hidden[pos], atol=1e-5)
    # a prompt longer than the context keeps its end (the read position), not its in-context examples
    short = position_activations(model, tokenizer, [prompt.text], [prompt.word_end], layer=0, batch_size=4,
                                 max_length=8)
    assert short.shape == x.shape


def test_word_residuals_keep_the_prompts_order_across_length_sorted_batches(tiny):
    model, tokenizer = tiny
    words = ["zebra", "ox", "antelope", "yak", "gnu"]
    # longest first, so that the length sort reorders them
    prompts = [icl_prompt(w, words[:4 - i], "{word} has the first letter:") for i, w in enumerate(words)]
    texts, ends = [p.text for p in prompts], [p.word_end for p in prompts]
    batched = position_activations(model, tokenizer, texts, ends, layer=0, batch_size=2, max_length=128)
    alone = torch.cat([position_activations(model, tokenizer, [t], [e], layer=0, batch_size=1, max_length=128)
                       for t, e in zip(texts, ends)])
    assert torch.allclose(batched, alone, atol=1e-5)


def test_text_activations_drop_special_tokens_and_padding(tiny):
    model, tokenizer = tiny
    texts = ["a short one", "a somewhat longer review of a stapler"]
    acts, offsets = text_activations(model, tokenizer, texts, layer=0, batch_size=2, max_length=64)
    lengths = [len(tokenizer(t)["input_ids"]) for t in texts]
    assert offsets.tolist() == [0, lengths[0], lengths[0] + lengths[1]]
    alone, _ = text_activations(model, tokenizer, texts[:1], layer=0, batch_size=1, max_length=64)
    assert torch.allclose(alone, acts[:lengths[0]], atol=1e-5)  # right padding does not leak into a text
    assert pool(acts, offsets).shape == (2, acts.shape[1])


def test_labelled_texts_from_local_json_file(tmp_path):
    path = tmp_path / "rows.jsonl"
    write_jsonl(path, [{"hard_text": f"t{i}", "profession": i % 3, "rating": 5.0} for i in range(12)])
    spec = {"path": "json", "data_files": str(path), "split": "train", "text_column": "hard_text",
            "label_columns": ["profession", "rating"], "max_examples": 5}
    rows = load_labelled_texts(spec, None, seed=0)
    assert len(rows) == 5 and rows[0]["labels"]["rating"] == "5"
    with pytest.raises(KeyError, match="features.datasets"):
        load_labelled_texts({**spec, "text_column": "text"}, None, seed=0)


def test_vocab_words_are_single_letter_tokens(tiny):
    tokenizer = tiny[1]
    words = spelling_words("vocab", None, tokenizer, 0.2, seed=0)
    assert any(w["word"].startswith(" ") for w in words) and any(not w["word"].startswith(" ") for w in words)
    for w in words:
        assert w["word"].lstrip(" ").isalpha() and w["word"].isascii()
        assert len(tokenizer(w["word"], add_special_tokens=False)["input_ids"]) == 1


def test_spelling_activations_over_the_vocabulary_need_no_toy_world(tiny_lm_dir, tmp_path, features_cfg):
    """words: vocab (the real-model presets) reads any HF tokenizer; no toy-world file is involved."""
    cfg = copy.deepcopy(features_cfg)
    cfg["absorption"].update(words="vocab", position="word", max_words=60)
    out = tmp_path / "spelling"
    stage.run_spelling_activations(ModelRef(str(tiny_lm_dir), device="cpu"), None, 0, cfg, 0,
                                 str(out) + ".safetensors", str(out) + ".json")
    meta, t = read_json(str(out) + ".json"), load_tensors(str(out) + ".safetensors")
    assert meta["words_source"] == "vocab" and meta["n_words"] == 60
    assert meta["n_test_prompts"] == 12  # max_words samples before the 80/20 split, so the test split is not empty
    assert "\n " in meta["example_prompt"]  # vocabulary words keep their leading space
    assert len(t["absorb_y"]) == meta["n_absorb_prompts"] and t["absorb_x"].shape[0] == meta["n_absorb_prompts"]


class _LinearSAE(torch.nn.Module):
    """A random ReLU dictionary standing in for an exported SAE."""

    def __init__(self, d: int, m: int):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        w = torch.randn(m, d, generator=gen)
        self.W_dec = torch.nn.Parameter(w / w.norm(dim=1, keepdim=True))
        self.W_enc = torch.nn.Parameter(self.W_dec.detach().T.clone())
        self.b_dec = torch.nn.Parameter(torch.zeros(d))

    def encode(self, x):
        return torch.relu((x - self.b_dec) @ self.W_enc)

    def decode(self, f):
        return f @ self.W_dec + self.b_dec


def _write_labelled_files(where):
    """Bios and reviews with 12 rows in every (class, attribute) quadrant that the shrunk config uses."""
    bios = [{"text": f"{n} works as a {p} and {g[0]} likes tea.", "profession": p, "gender": g}
            for p in ("professor", "nurse") for g in ("male", "female") for n in ("Ann", "Bob", "Cy") * 4]
    reviews = [{"text": f"Review of a {c}: it is {s}.", "category": c, "sentiment": s}
               for c in ("Books", "CDs_and_Vinyl") for s in ("positive", "negative") for _ in range(12)]
    write_jsonl(where / "bios.jsonl", bios)
    write_jsonl(where / "reviews.jsonl", reviews)


def test_rules_end_to_end_with_stand_in_sae(tiny_lm_dir, toyworld_dir, tmp_path, features_cfg, monkeypatch):
    ref = ModelRef(str(tiny_lm_dir), device="cpu")
    out = tmp_path / "features"
    _write_labelled_files(tmp_path)
    stage.run_spelling_activations(ref, str(toyworld_dir / "spelling.jsonl"), 1, features_cfg, 0,
                                 out / "spelling.safetensors", out / "spelling.json")
    stage.run_letter_probe(out / "spelling.safetensors", out / "spelling.json", features_cfg, 0,
                         out / "first_letter.safetensors", out / "first_letter.json")
    datasets = {}
    for name in ("bios", "reviews"):
        spec = features_cfg["datasets"][name]
        stage.run_dataset_activations(ref, name, str(tmp_path / spec["file"]), 1, features_cfg, 0,
                                    out / f"act_{name}.safetensors", out / f"act_{name}.json")
        stage.run_dataset_probes(name, out / f"act_{name}.safetensors", out / f"act_{name}.json", features_cfg, 0,
                               out / f"probe_{name}.safetensors", out / f"probe_{name}.json")
        datasets[name] = (str(out / f"act_{name}.safetensors"), str(out / f"probe_{name}.safetensors"))
    spelling = load_tensors(out / "spelling.safetensors")
    assert spelling["train_x"].shape[0] == spelling["train_y"].shape[0] > 0
    assert read_json(out / "first_letter.json")["n_test"] == spelling["test_y"].shape[0]

    d = spelling["train_x"].shape[1]
    sae = _LinearSAE(d, 64)
    sae_dir = tmp_path / "sae"
    sae_dir.mkdir()
    (sae_dir / "cfg.json").write_text('{"d_sae": 64, "architecture": "standard", "metadata": {"model_name": "t"}}')
    monkeypatch.setattr(stage, "load_sae_for_metrics",
                        lambda path, device="auto": stage.DeviceSAE(sae, torch.device("cpu")))
    stage.run_absorption(str(sae_dir), out / "spelling.safetensors", out / "first_letter.safetensors",
                       out / "first_letter.json", features_cfg, 0, 1, out / "absorption.json")
    for metric in ("scr", "tpp", "sparse_probing"):
        stage.run_probe_metric(metric, str(sae_dir), datasets, features_cfg, 0, 1, out / f"{metric}.json")
    stage.run_distinct(str(sae_dir), None, features_cfg, 0, out / "distinct.json", out / "max_cos.safetensors")

    absorption = read_json(out / "absorption.json")
    assert 0.0 <= absorption["mean_absorption_fraction_score"] <= 1.0 and absorption["sae_path"] == str(sae_dir)
    scr = read_json(out / "scr.json")
    assert {"scr_metric_n2", "scr_metric_n5", "bios_scr_professor_nurse_direction", "layer", "seed"} <= set(scr)
    tpp = read_json(out / "tpp.json")
    assert "tpp_total_n5" in tpp and "reviews_tpp_total_n2" in tpp
    sp = read_json(out / "sparse_probing.json")
    assert 0.0 <= sp["sae_top_1_test_accuracy"] <= 1.0 and sp["l0_on_probe_texts"] > 0
    assert read_json(out / "distinct.json")["n_latents"] == 64
    # deterministic given the seed
    stage.run_probe_metric("scr", str(sae_dir), datasets, features_cfg, 0, 1, out / "scr_again.json")
    assert read_json(out / "scr_again.json") == scr
