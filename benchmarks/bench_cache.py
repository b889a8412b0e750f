"""Caching throughput vs a bare forward pass over the same batches (goal: ratio >= 0.9).

Caching stops each forward pass after the deepest cached block, so with layers short of the last it can beat
the bare full forward (ratio > 1).

Uses the trained toy model when results/toy/model/toy-llama exists, else a random model of the default toy
size (throughput does not depend on the weights). Both measurements alternate over several rounds and the
median is reported, so background load affects both alike.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch
import yaml
from transformers import LlamaForCausalLM

from lmscalpel.cache.writer import CacheSpec, compute_shard
from lmscalpel.models import ModelRef, load_model
from lmscalpel.toyworld.train import ToyModelConfig

REPO = Path(__file__).resolve().parents[1]


def toy_model():
    trained = REPO / "results" / "toy" / "model" / "toy-llama"
    if trained.exists():
        return load_model(ModelRef(str(trained), device="cpu"))[0], "trained toy model"
    cfg = ToyModelConfig.from_dict(yaml.safe_load((REPO / "config.yaml").read_text())["toy_model"])
    fake_tok = type("Tok", (), {"__len__": lambda self: cfg.vocab_size, "bos_token_id": 1, "eos_token_id": 2,
                                "pad_token_id": 0})()
    return LlamaForCausalLM(cfg.llama_config(fake_tok)).eval(), "random model of the default toy size"


def main(rounds: int = 5, n_blocks: int = 128) -> float:
    torch.manual_seed(0)
    model, label = toy_model()
    cache_cfg = yaml.safe_load((REPO / "config.yaml").read_text())["cache"]
    ctx, batch = cache_cfg["context_length"], cache_cfg["batch_size"]
    blocks = torch.randint(5, model.config.vocab_size, (n_blocks, ctx)).tolist()
    spec = CacheSpec(layers=cache_cfg["layers"], hook=cache_cfg["hook"], context_length=ctx, n_tokens=n_blocks * ctx,
                     shard_tokens=n_blocks * ctx, batch_size=batch, out_dirs=[Path("unused")] * len(cache_cfg["layers"]))

    @torch.no_grad()
    def bare():
        for start in range(0, n_blocks, batch):
            model(input_ids=torch.tensor(blocks[start:start + batch]), use_cache=False)

    def caching():
        compute_shard(model, blocks, spec, special_ids={0, 1, 2})

    timings = {"bare": [], "cache": []}
    for _ in range(rounds):
        for name, fn in (("bare", bare), ("cache", caching)):
            start = time.perf_counter()
            fn()
            timings[name].append(time.perf_counter() - start)
    tokens = n_blocks * ctx
    bare_tps, cache_tps = tokens / statistics.median(timings["bare"]), tokens / statistics.median(timings["cache"])
    ratio = cache_tps / bare_tps
    print(f"model: {label}; layers {spec.layers} ({spec.hook}); {tokens} tokens x {rounds} rounds, torch threads "
          f"{torch.get_num_threads()}")
    print(f"bare forward: {bare_tps:,.0f} tokens/s")
    print(f"caching:      {cache_tps:,.0f} tokens/s")
    print(f"ratio caching/bare: {ratio:.3f} (goal >= 0.9)")
    return ratio


if __name__ == "__main__":
    sys.exit(0 if main() > 0 else 1)
