"""Generated tokens/s with the steering hook vs without, on the same batches, in one run (goal: ratio ≥ 0.9).

Uses the toy model when it exists (``results/toy/model/toy-llama``), else a random-init Llama of the toy size.
Every batch row carries its own vector (the grid's workload); runs alternate plain/steered to share warm-up.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_steering.py [--model DIR] [--batch 64] [--tokens 32]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from lmscalpel.models.intervention import special_token_ids, steering


def toy_sized_model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=1024, hidden_size=128, intermediate_size=384, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
                      pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return LlamaForCausalLM(cfg).eval(), None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="results/toy/model/toy-llama")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--prompt-len", type=int, default=24)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if Path(args.model).is_dir():
        from lmscalpel.models import ModelRef, load_model

        model, tok = load_model(ModelRef(args.model, device="cpu"))
        skip = special_token_ids(tok)
    else:
        model, tok = toy_sized_model()
        skip = [0, 1, 2]
    vocab, d = model.config.vocab_size, model.config.hidden_size
    ids = torch.randint(5, vocab, (args.batch, args.prompt_len), generator=torch.Generator().manual_seed(0))
    vectors = torch.nn.functional.normalize(torch.randn(args.batch, d), dim=1)
    kw = dict(max_new_tokens=args.tokens, min_new_tokens=args.tokens, do_sample=False,
              attention_mask=torch.ones_like(ids), pad_token_id=model.config.pad_token_id)
    layer = model.config.num_hidden_layers // 2
    times = {"plain": 0.0, "steered": 0.0}
    with torch.no_grad():
        model.generate(ids, **{**kw, "max_new_tokens": 2, "min_new_tokens": 2})  # warm-up
        for _ in range(args.repeats):
            start = time.perf_counter()
            model.generate(ids, **kw)
            times["plain"] += time.perf_counter() - start
            start = time.perf_counter()
            with steering(model, layer, vectors, 4.0, skip_token_ids=skip):
                model.generate(ids, **kw)
            times["steered"] += time.perf_counter() - start
    n_tokens = args.repeats * args.batch * args.tokens
    plain, steered = n_tokens / times["plain"], n_tokens / times["steered"]
    print(f"model: {args.model if tok is not None else 'random toy-size Llama'}; batch {args.batch}, "
          f"{args.tokens} new tokens, {args.repeats} repeats, threads {torch.get_num_threads()}")
    print(f"plain   : {plain:10.1f} generated tokens/s")
    print(f"steered : {steered:10.1f} generated tokens/s")
    print(f"ratio steered/plain: {steered / plain:.3f} (goal >= 0.9)")


if __name__ == "__main__":
    main()
