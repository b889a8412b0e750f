"""Activation cache: write/read, resume after a kill, checksum corruption, shuffled batches."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from lmscalpel.cache import ActivationReader, CacheSpec, cache_activations
from lmscalpel.cache import writer as cache_writer
from lmscalpel.data.text import iter_texts
from lmscalpel.models import ModelRef, load_model

from conftest import random_cache, truncate, zero_64k


def make_spec(tmp_path: Path, layers=(0, 1), hook="resid_post") -> CacheSpec:
    return CacheSpec(layers=list(layers), hook=hook, context_length=32, n_tokens=1200, shard_tokens=320,
                     batch_size=4, out_dirs=[tmp_path / f"layer{l}" for l in layers], provenance={"model": "tiny"})


@pytest.fixture()
def model_and_tokenizer(tiny_lm_dir):
    return load_model(ModelRef(str(tiny_lm_dir), device="cpu"))


def texts(toyworld_dir):
    return iter_texts({"path": "toyworld"}, toyworld_dir, default_split="train")


def test_cached_activations_equal_hidden_states(tmp_path, toyworld_dir, model_and_tokenizer):
    model, tok = model_and_tokenizer
    manifests = cache_activations(model, tok, texts(toyworld_dir), make_spec(tmp_path))
    assert [m["layer"] for m in manifests] == [0, 1] and manifests[0]["n_tokens"] > 0
    reader = ActivationReader(tmp_path / "layer0", verify=True)
    acts, tokens = reader.read_all(), reader.read_all(key="tokens")
    assert acts.shape == (reader.n_tokens, 64) and len(tokens) == reader.n_tokens
    assert not set(tokens.tolist()) & set(tok.all_special_ids)
    # the first block, recomputed directly: hidden_states[l + 1] at its non-special positions (HF applies the
    # final norm to the last entry of hidden_states, so the check uses a block that is not the last)
    from lmscalpel.data.text import iter_token_blocks

    block = torch.tensor([next(iter_token_blocks(texts(toyworld_dir), tok, 32))])
    with torch.no_grad():
        hidden = model(input_ids=block, output_hidden_states=True).hidden_states[1][0]
    keep = ~torch.isin(block[0], torch.tensor(tok.all_special_ids))
    torch.testing.assert_close(acts[: int(keep.sum())], hidden[keep], rtol=1e-4, atol=1e-5)


def test_mlp_in_hook_differs_from_resid_post(tmp_path, toyworld_dir, model_and_tokenizer):
    model, tok = model_and_tokenizer
    cache_activations(model, tok, texts(toyworld_dir), make_spec(tmp_path / "a", layers=(0,)))
    cache_activations(model, tok, texts(toyworld_dir), make_spec(tmp_path / "b", layers=(0,), hook="mlp_in"))
    a, b = ActivationReader(tmp_path / "a" / "layer0").read_all(), ActivationReader(tmp_path / "b" / "layer0").read_all()
    assert a.shape == b.shape and not torch.allclose(a, b)


def test_resume_after_kill_keeps_finished_shards(tmp_path, toyworld_dir, model_and_tokenizer, monkeypatch):
    model, tok = model_and_tokenizer
    spec = make_spec(tmp_path)
    real_compute, calls = cache_writer.compute_shard, []

    def dying_compute(*args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated kill")
        calls.append(1)
        return real_compute(*args, **kwargs)

    monkeypatch.setattr(cache_writer, "compute_shard", dying_compute)
    with pytest.raises(KeyboardInterrupt):
        cache_activations(model, tok, texts(toyworld_dir), spec)
    assert not (tmp_path / "layer0" / "manifest.json").exists()
    finished = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "layer0").glob("shard_*.safetensors")}
    assert len(finished) == 2

    resumed = []
    monkeypatch.setattr(cache_writer, "compute_shard", lambda *a, **k: resumed.append(1) or real_compute(*a, **k))
    manifest = cache_activations(model, tok, texts(toyworld_dir), spec)[0]
    assert len(resumed) == spec.n_shards - 2
    assert all((tmp_path / "layer0" / n).stat().st_mtime_ns == t for n, t in finished.items())
    fresh = cache_activations(model, tok, texts(toyworld_dir), make_spec(tmp_path / "fresh"))[0]
    assert [s["sha256"] for s in manifest["shards"]] == [s["sha256"] for s in fresh["shards"]]


def test_corrupted_shard_detected_and_rebuilt(tmp_path, toyworld_dir, model_and_tokenizer):
    model, tok = model_and_tokenizer
    spec = make_spec(tmp_path, layers=(1,))
    manifest = cache_activations(model, tok, texts(toyworld_dir), spec)[0]
    shard = tmp_path / "layer1" / manifest["shards"][1]["file"]
    data = bytearray(shard.read_bytes())
    data[-5] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum mismatch"):
        ActivationReader(tmp_path / "layer1", verify=True)
    rebuilt = cache_activations(model, tok, texts(toyworld_dir), spec)[0]
    assert rebuilt["shards"][1]["sha256"] == manifest["shards"][1]["sha256"]
    ActivationReader(tmp_path / "layer1", verify=True)


def test_iter_batches_shuffles_deterministically_and_covers_everything(tmp_path, toyworld_dir, model_and_tokenizer):
    model, tok = model_and_tokenizer
    cache_activations(model, tok, texts(toyworld_dir), make_spec(tmp_path, layers=(0,)))
    reader = ActivationReader(tmp_path / "layer0")
    first = list(reader.iter_batches(64, seed=3, drop_last=False))
    again = list(reader.iter_batches(64, seed=3, drop_last=False))
    other = list(reader.iter_batches(64, seed=4, drop_last=False))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], other[0])
    everything = torch.cat(first)
    assert everything.shape == (reader.n_tokens, 64)
    ordered = reader.read_all()
    assert torch.allclose(everything.sum(0), ordered.sum(0), atol=1e-2)
    assert not torch.equal(everything, ordered)


def every_read(directory: Path):
    """Each way the cache is read: all shards up front, in memory, streamed, and by SAE training."""
    from lmscalpel.sae.stage import train_layer

    spec = {"sae_id": "layer0-topk", "architecture": "topk", "width": 32, "k": 4}
    return {
        "verify": lambda: ActivationReader(directory, verify=True),
        "read_all": lambda: ActivationReader(directory).read_all(),
        "iter_batches": lambda: list(ActivationReader(directory).iter_batches(64, seed=0)),
        "sae_train": lambda: train_layer(directory / "manifest.json", {spec["sae_id"]: directory.parent / "sae"}, [spec],
                                         {"train": {"batch_size": 64, "epochs": 1, "lr": 1e-3}}, seed=0, checkpoint_dir=None,
                                         device="cpu"),
    }


@pytest.mark.parametrize("damage", [zero_64k, truncate], ids=["zeros-same-size", "truncated"])
def test_every_reader_stops_at_a_damaged_shard_with_its_name(tmp_path, damage):
    directory = random_cache(tmp_path / "layer0")
    damage(directory / "shard_00001.safetensors")
    for name, read in every_read(directory).items():
        with pytest.raises(ValueError, match=r"shard_00001\.safetensors: checksum mismatch .*--forcerun cache_activations"):
            read()
        assert not (tmp_path / "sae").exists(), name


def test_a_missing_shard_is_named(tmp_path):
    directory = random_cache(tmp_path / "layer0")
    (directory / "shard_00002.safetensors").unlink()
    for read in every_read(directory).values():
        with pytest.raises(FileNotFoundError, match=r"shard_00002\.safetensors: shard 2 of .* is missing"):
            read()


def test_a_streamed_cache_is_hashed_once_and_a_shard_written_between_epochs_is_caught(tmp_path, monkeypatch):
    directory = random_cache(tmp_path / "layer0")
    reader, hashed = ActivationReader(directory), []
    real_check = reader._check
    monkeypatch.setattr(reader, "_check", lambda index, digest: hashed.append(index) or real_check(index, digest))
    for epoch in range(3):
        list(reader.iter_batches(64, seed=epoch))
    assert sorted(hashed) == [0, 1, 2]
    shard = directory / "shard_00001.safetensors"
    zero_64k(shard)
    os.utime(shard, ns=(shard.stat().st_atime_ns, shard.stat().st_mtime_ns + 1))  # however coarse the clock
    with pytest.raises(ValueError, match=r"shard_00001\.safetensors: checksum mismatch"):
        list(reader.iter_batches(64, seed=3))


def test_an_intact_cache_reads_as_written(tmp_path):
    directory = random_cache(tmp_path / "layer0", n_shards=2)
    reader = ActivationReader(directory, verify=True)
    assert reader.read_all().shape == (800, 64) and reader.read_all(max_tokens=500).shape == (500, 64)
    assert sum(len(b) for b in reader.iter_batches(100, seed=1)) == 800


def test_a_cached_layer_beyond_the_model_stops_the_job_naming_its_key(tmp_path, tiny_lm_dir):
    """A hub model's depth is known only once it is loaded: the job checks before any forward pass."""
    from lmscalpel.cache.stage import run_cache

    with pytest.raises(ValueError, match=r"config key cache\.layers: block 2 is beyond the 2 blocks \(0-1\) of "):
        run_cache(ModelRef(str(tiny_lm_dir), device="cpu"), {"layers": [1, 2]}, [str(tmp_path / "manifest.json")])


def test_missing_cache_names_the_rule(tmp_path):
    with pytest.raises(FileNotFoundError, match="cache_activations"):
        ActivationReader(tmp_path)


def test_local_dataset_loader(tmp_path):
    data = tmp_path / "corpus.jsonl"
    data.write_text('{"body": "hello world"}\n{"body": "second line"}\n')
    got = list(iter_texts({"path": "json", "data_files": str(data), "split": "train", "text_column": "body"},
                          default_split="train"))
    assert got == ["hello world", "second line"]
    with pytest.raises(KeyError, match="text_column"):
        list(iter_texts({"path": "json", "data_files": str(data), "split": "train", "text_column": "text"},
                        default_split="train"))


def test_shards_of_another_model_are_rebuilt(tmp_path, toyworld_dir, model_and_tokenizer):
    model, tok = model_and_tokenizer
    spec = make_spec(tmp_path, layers=(1,))
    first = cache_activations(model, tok, texts(toyworld_dir), spec)[0]
    retrained = make_spec(tmp_path, layers=(1,))
    retrained.weights_identity = "model.safetensors:123:456"  # the weights file was rewritten
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.5)
    second = cache_activations(model, tok, texts(toyworld_dir), retrained)[0]
    assert all(a["sha256"] != b["sha256"] for a, b in zip(first["shards"], second["shards"]))
