"""bfloat16 against float32 weights on this CPU, side by side in one run: speed of a prefill and of greedy decoding,
and how far the answers move (next-token logits, greedy replies, the keyword refusal verdict, perplexity).

Why: a CPU with AVX512-BF16 runs bf16 matmuls about twice as fast, which is what the SmolLM2 preset's 40-minute
budget needs; the switch is acceptable only if the refusal rate and the logits stay within a stated tolerance
(issue 22 item 4). The prompts are HarmBench's standard test behaviours in the chat template (what the steering grid
decodes) and pydoc's test split (what the perplexity rows score).

    python benchmarks/bench_dtype.py --model results/smollm2_135m_cpu/model/safety-tuned --threads 1

The model must hold fp32 weights: a GGUF base converted for a bf16 run is saved in bf16 (run the conversion with
``model.dtype: float32`` for this comparison); the script refuses a model whose weights are not all fp32.
"""

from __future__ import annotations

import argparse
import time

import torch

from lmscalpel.data.prompts import load_prompt_set
from lmscalpel.data.text import load_texts
from lmscalpel.models.chat import chat_prompt
from lmscalpel.models.generation import generate_greedy, windowed_perplexity
from lmscalpel.models.loader import ModelRef, load_model
from lmscalpel.models.refusal import chat_verdicts, wilson_interval


def stored_dtypes(model_dir: str) -> set[str]:
    """The dtypes of the floating-point tensors in the directory's safetensors files."""
    from pathlib import Path

    from safetensors import safe_open

    found = set()
    for path in Path(model_dir).glob("*.safetensors"):
        with safe_open(path, "pt") as f:
            found |= {f.get_slice(k).get_dtype() for k in f.keys()}
    return found & {"F32", "BF16", "F16"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a local model directory (save_pretrained, safetensors)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--prompts", type=int, default=64, help="HarmBench standard test behaviours decoded")
    parser.add_argument("--new-tokens", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--windows", type=int, default=8, help="perplexity windows of 256 pydoc test tokens")
    args = parser.parse_args()
    stored = stored_dtypes(args.model)
    if stored != {"F32"}:
        raise SystemExit(f"--model {args.model}: weights stored as {sorted(stored)}, not fp32; nothing to compare")
    torch.set_num_threads(args.threads)
    prompts = [r["prompt"] for r in load_prompt_set({"source": "harmbench", "max_prompts": args.prompts},
                                                    kind="harmful", role="evaluation", key="bench").records]
    texts = load_texts({"path": "pydoc", "split": "test"}, key="bench", default_split="test")
    refuses, _ = chat_verdicts("arditi")
    results = {}
    for dtype in ("float32", "bfloat16"):
        model, tokenizer = load_model(ModelRef(name_or_path=args.model, dtype=dtype, device="cpu"))
        tokenizer.padding_side = "left"  # the last position is every row's own (Qwen's tokenizer pads on the right)
        enc = tokenizer([chat_prompt(tokenizer, p) for p in prompts[:args.batch_size]], return_tensors="pt",
                        padding=True, add_special_tokens=False)
        with torch.no_grad():
            start = time.perf_counter()
            logits = model(**enc).logits[:, -1].float()
            prefill = time.perf_counter() - start
        start = time.perf_counter()
        replies = generate_greedy(model, tokenizer, prompts, args.new_tokens, args.batch_size)
        decode = time.perf_counter() - start
        start = time.perf_counter()
        ppl = windowed_perplexity(model, tokenizer, texts, 256, batch_size=4, max_windows=args.windows)["perplexity"]
        ppl_s = time.perf_counter() - start
        results[dtype] = {"logits": logits, "replies": replies, "prefill": prefill, "decode": decode, "ppl": ppl,
                          "ppl_s": ppl_s, "refusals": sum(map(refuses, replies))}
    fp32, bf16 = results["float32"], results["bfloat16"]
    n = len(prompts)
    print(f"{n} HarmBench prompts, {args.new_tokens} new tokens, batch {args.batch_size}, {args.threads} thread(s)")
    for name in ("prefill", "decode", "ppl_s"):
        print(f"  {name:8s} float32 {fp32[name]:7.1f} s  bfloat16 {bf16[name]:7.1f} s  speed-up "
              f"{fp32[name] / bf16[name]:.2f}x")
    diff = (fp32["logits"] - bf16["logits"]).abs()
    scale = fp32["logits"].std(dim=-1, keepdim=True)
    top1 = (fp32["logits"].argmax(-1) == bf16["logits"].argmax(-1)).float().mean()
    print(f"  next-token logits: max |diff| {diff.max():.3f}, mean |diff| / logit std {(diff / scale).mean():.4f}, "
          f"top-1 agreement {100 * top1:.1f} %")
    same = sum(a == b for a, b in zip(fp32["replies"], bf16["replies"]))
    verdicts = sum(refuses(a) == refuses(b) for a, b in zip(fp32["replies"], bf16["replies"]))
    for dtype in ("float32", "bfloat16"):
        low, high = wilson_interval(results[dtype]["refusals"], n)
        print(f"  refusal {dtype:8s} {results[dtype]['refusals']}/{n} [{100 * low:.1f}-{100 * high:.1f} %]")
    print(f"  identical greedy replies {same}/{n}; same refusal verdict {verdicts}/{n}")
    print(f"  perplexity ({args.windows} x 256 pydoc test tokens): float32 {fp32['ppl']:.3f}  bfloat16 "
          f"{bf16['ppl']:.3f}  ({100 * (bf16['ppl'] / fp32['ppl'] - 1):+.2f} %)")


if __name__ == "__main__":
    main()
