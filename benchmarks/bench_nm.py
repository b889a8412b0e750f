"""Perplexity-evaluation time with 8:16 activation masking vs dense, on the same windows (goal: <= 1.3x).

    python benchmarks/bench_nm.py [--model results/toy/model/toy-llama] [--windows 32] [--seqlen 128]

Two rows: the toy model (without its directory, a random-init Llama of the toy size: hidden 128, 4 layers, MLP
384) and a random-init Llama of a real model's width (hidden 2048, MLP 5632, one layer, the width of
TinyLlama-1.1B). The mask costs O(width) per token and the matmuls O(width^2), so the toy row measures mostly
per-op overhead while the wide row is what the presets pay. Dense and masked runs alternate ``--repeats`` times
after one warm-up each (fair on a shared machine); the best time of each is compared.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from lmscalpel.pruning import activation_pruning, window_nlls


def build_model(path: str | None):
    if path and Path(path).is_dir():
        from lmscalpel.models import ModelRef, load_model

        model, _ = load_model(ModelRef(path, device="cpu"))
        return model, f"{path}"
    return random_llama(hidden=128, intermediate=384, layers=4), "random toy-size Llama"


def random_llama(hidden: int, intermediate: int, layers: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    heads = max(4, hidden // 64)
    config = LlamaConfig(vocab_size=1024, hidden_size=hidden, intermediate_size=intermediate,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                         max_position_embeddings=256)
    return LlamaForCausalLM(config).eval()


def best_times(fns, repeats: int) -> list[float]:
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, record in zip(fns, times):
            start = time.perf_counter()
            fn()
            record.append(time.perf_counter() - start)
    return [min(record) for record in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="results/toy/model/toy-llama")
    parser.add_argument("--windows", type=int, default=32)
    parser.add_argument("--seqlen", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--pattern", default="8:16")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.windows} windows x {args.seqlen} tokens, batch {args.batch_size}, {args.threads} thread(s), "
          f"torch {torch.__version__}")
    models = [build_model(args.model), (random_llama(hidden=2048, intermediate=5632, layers=1),
                                        "random Llama, TinyLlama width (hidden 2048, MLP 5632, 1 layer)")]
    for model, name in models:
        windows = torch.randint(0, model.config.vocab_size, (args.windows, args.seqlen),
                                generator=torch.Generator().manual_seed(0))

        def dense():
            window_nlls(model, windows, args.batch_size)

        def pruned():
            with activation_pruning(model, args.pattern):
                window_nlls(model, windows, args.batch_size)

        dense_s, masked_s = best_times([dense, pruned], args.repeats)
        print(f"{name}: dense {dense_s:.3f} s, {args.pattern} masked {masked_s:.3f} s, "
              f"ratio masked/dense {masked_s / dense_s:.2f}x (goal <= 1.30x)")


if __name__ == "__main__":
    main()
