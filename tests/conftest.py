"""Shared fixtures: a small generated toy world and a random-init tiny Llama with the toy tokenizer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"
SMALL_TOYWORLD = {"n_harmful_behaviours": 40, "n_benign_requests": 40, "chat_repeats": 1, "story_repeats": 1,
                  "n_spelling_words": 60, "n_reasoning_problems": 60, "n_people": 10, "portrait_size": 32,
                  "n_reviews": 40, "n_bios": 40, "n_narrative": 40}
TINY_LLAMA = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 4, "max_position_embeddings": 256}


def validated(config: dict) -> dict:
    """``config`` checked against the effective schema and completed with its defaults, as ``common.smk`` does."""
    from lmscalpel.config import check_config, effective_schema, fill_defaults

    schema = effective_schema(SCHEMA_PATH)
    check_config(config, schema)
    fill_defaults(config, schema)
    return config


def random_cache(directory: Path, layer: int = 0, n_shards: int = 3, n_tokens: int = 400, d_model: int = 64) -> Path:
    """A cache of random activations as cache_activations writes it (no model): shards of 100 KiB."""
    from lmscalpel.cache import CacheSpec
    from lmscalpel.cache import writer as cache_writer

    spec = CacheSpec(layers=[layer], hook="resid_post", context_length=16, n_tokens=n_shards * n_tokens,
                     shard_tokens=n_tokens, batch_size=4, out_dirs=[directory], provenance={"model": "random"})
    gen = torch.Generator().manual_seed(0)
    for index in range(n_shards):
        cache_writer.save_shard(directory, index, {"activations": torch.randn(n_tokens, d_model, generator=gen),
                                                   "tokens": torch.zeros(n_tokens, dtype=torch.int32)},
                                spec.fingerprint)
    cache_writer.write_manifest(directory, layer, spec, n_shards)
    return directory


def zero_64k(shard: Path) -> None:
    """64 KiB of zeros written into the shard's data, its size unchanged."""
    size = shard.stat().st_size
    with open(shard, "r+b") as fh:
        fh.seek(size - (80 << 10))
        fh.write(bytes(64 << 10))
    assert shard.stat().st_size == size


def truncate(shard: Path) -> None:
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])


@pytest.fixture(scope="session")
def toyworld_dir(tmp_path_factory) -> Path:
    from lmscalpel.toyworld import generate

    out = tmp_path_factory.mktemp("toyworld") / "toyworld"
    generate(out, SMALL_TOYWORLD, seed=0)
    return out


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory, toyworld_dir) -> Path:
    """A random-init tiny Llama (hidden 64, 2 layers) + the toy tokenizer, saved with save_pretrained."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from lmscalpel.io import read_jsonl
    from lmscalpel.toyworld.tokenizer import train_tokenizer
    from lmscalpel.toyworld.train import document_text

    tokenizer = train_tokenizer([document_text(r) for r in read_jsonl(toyworld_dir / "train.jsonl")], 400)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         tie_word_embeddings=True, **TINY_LLAMA)
    out = tmp_path_factory.mktemp("tiny_lm") / "tiny-llama"
    LlamaForCausalLM(config).save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory, toyworld_dir):
    """``tiny_qwen2(tie_word_embeddings)``: the directory of a random-init tiny Qwen2 (q/k/v biases, GQA) with a
    ChatML tokenizer and Qwen2.5's chat template (tests/tiny_qwen2.py), built once per setting."""
    from tiny_qwen2 import build_tiny_qwen2

    from lmscalpel.io import read_jsonl
    from lmscalpel.toyworld.train import document_text

    texts = [document_text(r) for r in read_jsonl(toyworld_dir / "train.jsonl")]
    texts += ["You are Qwen, created by Alibaba Cloud. You are a helpful assistant.", "system user assistant"] * 5
    built = {}

    def build(tie_word_embeddings: bool) -> Path:
        if tie_word_embeddings not in built:
            out = tmp_path_factory.mktemp("qwen2") / f"tiny-qwen2-{'tied' if tie_word_embeddings else 'untied'}"
            built[tie_word_embeddings] = build_tiny_qwen2(out, texts, tie_word_embeddings=tie_word_embeddings)
        return built[tie_word_embeddings]

    return build


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tiny_qwen2) -> Path:
    """The tiny Qwen2 with untied embeddings (as transformers loads Qwen2.5-Coder-1.5B's GGUF)."""
    return tiny_qwen2(False)
