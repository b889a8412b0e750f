"""Perplexity-evaluation time with 8:16 activation masking vs dense, on the same windows (goal: <= 1.3x).

    python benchmarks/bench_nm.py [--model results/toy/model/toy-llama] [--windows 32] [--seqlen 128]

Without a model directory a random-init Llama of the toy size (hidden 128, 4 layers, MLP 384, vocab 1024) is used.
Dense and masked runs alternate ``--repeats`` times after one warm-up each (fair on a shared machine); the best
time of each is compared.
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
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=1024, hidden_size=128, intermediate_size=384, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256)
    return LlamaForCausalLM(config).eval(), "random toy-size Llama"


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
    model, name = build_model(args.model)
    vocab = model.config.vocab_size
    windows = torch.randint(0, vocab, (args.windows, args.seqlen), generator=torch.Generator().manual_seed(0))

    def pruned():
        with activation_pruning(model, args.pattern):
            window_nlls(model, windows, args.batch_size)

    dense, masked = best_times([lambda: window_nlls(model, windows, args.batch_size), pruned], args.repeats)
    print(f"model: {name}; {args.windows} windows x {args.seqlen} tokens, batch {args.batch_size}, "
          f"{args.threads} thread(s), torch {torch.__version__}")
    print(f"dense perplexity eval: {dense:.3f} s")
    print(f"{args.pattern} masked eval:  {masked:.3f} s")
    print(f"ratio masked/dense: {masked / dense:.2f}x (goal <= 1.30x)")


if __name__ == "__main__":
    main()
