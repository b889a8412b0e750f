"""The one model loader, generation and perplexity helpers."""

from __future__ import annotations

import math

import pytest
import torch

from lmscalpel.models import ModelRef, decoder_layers, load_model, num_layers, residual_module
from lmscalpel.models.generation import generate_greedy, windowed_perplexity


def test_load_local_directory(tiny_lm_dir):
    model, tokenizer = load_model(ModelRef(str(tiny_lm_dir), device="cpu"))
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert num_layers(model) == 2 and residual_module(model, -1) is decoder_layers(model)[1]
    assert tokenizer.pad_token == "<|pad|>"


def test_from_config_prefers_local_path_and_requires_id():
    ref = ModelRef.from_config({"source": "toy", "id": None, "dtype": "float32"}, local_path="/x/toy")
    assert ref.name_or_path == "/x/toy" and not ref.trust_remote_code
    with pytest.raises(ValueError, match="model.id"):
        ModelRef.from_config({"source": "hub", "id": None})


def test_refuses_directory_without_safetensors(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    torch.save({}, tmp_path / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match="safetensors"):
        load_model(ModelRef(str(tmp_path)))


def test_layer_out_of_range(tiny_lm_dir):
    model, _ = load_model(ModelRef(str(tiny_lm_dir), device="cpu"))
    with pytest.raises(ValueError, match="out of range"):
        residual_module(model, 5)


def test_batched_greedy_generation_matches_single_prompts(tiny_lm_dir):
    model, tokenizer = load_model(ModelRef(str(tiny_lm_dir), device="cpu"))
    prompts = ["How do I bake bread?", "Tell me how to fold a shirt, please, with care."]
    batched = generate_greedy(model, tokenizer, prompts, 6, batch_size=2)
    single = [generate_greedy(model, tokenizer, [p], 6, batch_size=1)[0] for p in prompts]
    assert batched == single


def test_windowed_perplexity_matches_direct_loss(tiny_lm_dir):
    model, tokenizer = load_model(ModelRef(str(tiny_lm_dir), device="cpu"))
    texts = ["The farmer walked to the river and the sun went down."] * 6
    result = windowed_perplexity(model, tokenizer, texts, window=16, batch_size=3)
    ids = [tokenizer.bos_token_id]
    for t in texts:
        ids += tokenizer(t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    blocks = torch.tensor(ids[: len(ids) // 16 * 16]).view(-1, 16)
    with torch.no_grad():
        losses = [model(input_ids=b[None], labels=b[None]).loss.item() for b in blocks]
    assert result["windows"] == len(blocks)
    assert math.isclose(result["perplexity"], math.exp(sum(losses) / len(losses)), rel_tol=1e-4)
