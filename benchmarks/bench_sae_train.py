"""SAE trainer speed: our BatchTopK vs SAELens' BatchTopKTrainingSAE on the same random activations, and the
OrtSAE / BatchTopK step-time ratio at two widths.

    python benchmarks/bench_sae_train.py [--threads 2] [--steps 6]

Setting (issue 3): d_in=256, d_sae=4096, k=32, batch 4096, fp32, CPU. Goals: ours ≥ 3× SAELens tokens/s;
OrtSAE step ≤ 1.25× BatchTopK step at d_sae 4096 and 16384. Both trainers do a full step: forward, AuxK
bookkeeping, backward, grad clip 1.0, Adam, (ours) decoder renormalisation and threshold update. Each number is the
median step time; on a shared machine timings are noisy, so the load average is printed next to each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from lmscalpel.sae import build_sae
from lmscalpel.sae.training import GridTrainer, TensorBatches, TrainingConfig, auto_lr

D_IN, D_SAE, K, BATCH = 256, 4096, 32, 4096


def load() -> str:
    return "load avg %.2f / %.2f / %.2f" % os.getloadavg()


def our_trainer(arch: str, d_sae: int, source: TensorBatches, warm: int = 2) -> GridTrainer:
    sae = build_sae(arch, {"d_in": D_IN, "d_sae": d_sae, "k": K}, generator=torch.Generator().manual_seed(0))
    cfg = TrainingConfig(batch_size=BATCH, epochs=1000, warmup_steps=0, scale_batches=1,
                         geometric_median_samples=BATCH)
    trainer = GridTrainer({arch: (sae, auto_lr(d_sae))}, cfg)
    trainer.fit(source, stop_after_steps=warm)
    return trainer


def timed_step(trainer: GridTrainer, source: TensorBatches) -> float:
    start = time.perf_counter()
    trainer.fit(source, stop_after_steps=trainer.step + 1)
    return time.perf_counter() - start


def our_seconds_per_step(archs: list[str], d_sae: int, source: TensorBatches, steps: int) -> list[float]:
    """Median step time of each architecture; steps are interleaved so machine load hits all alike."""
    trainers = [our_trainer(arch, d_sae, source) for arch in archs]
    times: list[list[float]] = [[] for _ in archs]
    for _ in range(steps):
        for trainer, out in zip(trainers, times):
            out.append(timed_step(trainer, source))
    return [statistics.median(t) for t in times]


def saelens_seconds_per_step(batches: list[torch.Tensor], steps: int, warm: int = 2) -> float | None:
    try:
        from sae_lens.saes.batchtopk_sae import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig
        from sae_lens.saes.sae import TrainStepInput
    except ImportError:
        return None
    sae = BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, k=K, dtype="float32",
                                                          device="cpu"))
    optimizer = torch.optim.Adam(sae.parameters(), lr=auto_lr(D_SAE), betas=(0.9, 0.999))
    since_fired = torch.zeros(D_SAE)

    def step(i: int, x: torch.Tensor) -> None:  # SAETrainer._train_step without logging
        out = sae.training_forward_pass(TrainStepInput(sae_in=x, coefficients={},
                                                       dead_neuron_mask=since_fired > 10_000,
                                                       n_training_steps=i, is_logging_step=False))
        with torch.no_grad():
            since_fired.add_(1)
            since_fired[out.feature_acts.bool().sum(0).bool()] = 0
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()

    for i in range(warm):
        step(i, batches[i % len(batches)])
    times = []
    for i in range(steps):
        start = time.perf_counter()
        step(warm + i, batches[(warm + i) % len(batches)])
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = torch.randn(8 * BATCH, D_IN)
    source = TensorBatches(data, BATCH, seed=0)
    print(f"torch {torch.__version__}, {args.threads} threads, d_in={D_IN} d_sae={D_SAE} k={K} batch={BATCH}, fp32 CPU")

    (ours,) = our_seconds_per_step(["batchtopk"], D_SAE, source, args.steps)
    print(f"ours    BatchTopK: {BATCH / ours:8.0f} tokens/s ({ours * 1e3:.0f} ms/step)  [{load()}]")
    theirs = saelens_seconds_per_step(list(data.split(BATCH)), args.steps)
    if theirs is None:
        print("SAELens not installed (pip install 'lmscalpel[saelens]'); skipping the comparison")
    else:
        print(f"SAELens BatchTopK: {BATCH / theirs:8.0f} tokens/s ({theirs * 1e3:.0f} ms/step)  [{load()}]")
        print(f"speed-up ours / SAELens: {theirs / ours:.2f}x (goal >= 3x)")

    for width in (4096, 16384):
        steps = max(2, args.steps // (width // 4096))
        base, ort = our_seconds_per_step(["batchtopk", "ortsae"], width, source, steps)
        print(f"d_sae {width:5d}: OrtSAE {ort * 1e3:.0f} ms / BatchTopK {base * 1e3:.0f} ms per step = "
              f"{ort / base:.2f} (goal <= 1.25)  [{load()}]")


if __name__ == "__main__":
    main()
