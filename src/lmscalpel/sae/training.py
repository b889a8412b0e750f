"""Train a grid of SAEs from one pass over the same shuffled activations (dictionary_learning ``trainSAE``
pattern, spec §0/§2): one activation scale, one geometric median, every SAE sees every batch.

Resumable: the whole state (weights, Adam moments, step, thresholds, dead-latent counters, OrtSAE chunk
generators) is saved every ``checkpoint_every`` steps as one ``lmscalpel.checkpoint`` state file; the data order is
a function of (seed, epoch), so a resumed run skips the batches already seen and ends with the same weights as an
uninterrupted one.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Iterator, Protocol

import torch
from tqdm import tqdm

from lmscalpel.checkpoint import STATE_FILE, Checkpoint
from lmscalpel.sae.base import SparseAutoencoder, StepContext, StepOutput

log = logging.getLogger(__name__)


@dataclass
class TrainingConfig:
    """Optimisation shared by every SAE of the grid: config section ``sae.train`` less the keys each SAE reads
    itself (its learning rate, its architecture's settings there); defaults as the schema's (None = derived from
    the run length)."""

    section: ClassVar[str] = "sae.train"

    batch_size: int = 2048
    epochs: int = 3
    warmup_steps: int | None = None  # None → min(1000, 5% of steps)
    decay_fraction: float = 0.2  # linear decay to 0 over the last 20% of steps
    adam_betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0
    dead_window_tokens: int | None = None  # None → min(10M, 10% of training tokens)
    scale_batches: int = 100
    geometric_median_samples: int = 32768
    checkpoint_every: int = 200

    def __post_init__(self):
        self.adam_betas = tuple(self.adam_betas)  # a config list


class BatchSource(Protocol):
    steps_per_epoch: int
    batch_size: int

    def epoch_batches(self, epoch: int) -> Iterator[torch.Tensor]: ...


class TensorBatches:
    """Shuffled fixed-size batches from an in-memory [N, d] tensor; the order depends only on (seed, epoch)."""

    def __init__(self, x: torch.Tensor, batch_size: int, seed: int = 0):
        if x.shape[0] < batch_size:
            raise ValueError(f"{x.shape[0]} activations < one batch of {batch_size} (sae.train.batch_size)")
        self.x, self.batch_size, self.seed = x, batch_size, seed
        self.steps_per_epoch = x.shape[0] // batch_size

    def epoch_batches(self, epoch: int) -> Iterator[torch.Tensor]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        perm = torch.randperm(self.x.shape[0], generator=gen)
        for i in range(self.steps_per_epoch):
            yield self.x[perm[i * self.batch_size:(i + 1) * self.batch_size]].float()


class StreamBatches:
    """Re-chunks an activation reader's shuffled stream into exact batches (for caches too big for memory)."""

    def __init__(self, reader, batch_size: int, seed: int = 0):
        self.reader, self.batch_size, self.seed = reader, batch_size, seed
        self.steps_per_epoch = reader.n_tokens // batch_size

    def epoch_batches(self, epoch: int) -> Iterator[torch.Tensor]:
        buffer: list[torch.Tensor] = []
        held = 0
        for chunk in self.reader.iter_batches(self.batch_size, seed=self.seed * 1_000_003 + epoch, shuffle=True):
            buffer.append(chunk.float())
            held += chunk.shape[0]
            while held >= self.batch_size:
                data = torch.cat(buffer)
                yield data[:self.batch_size]
                buffer, held = [data[self.batch_size:]], held - self.batch_size


def cache_batches(reader, batch_size: int, seed: int, max_in_memory_bytes: int = 2 << 30) -> BatchSource:
    """Hold small caches in memory (exact global shuffles); stream large ones."""
    if reader.n_tokens * reader.d_model * 4 <= max_in_memory_bytes:
        return TensorBatches(reader.read_all().float(), batch_size, seed)
    return StreamBatches(reader, batch_size, seed)


@torch.no_grad()
def activation_scale(batches: Iterator[torch.Tensor], n_batches: int) -> float:
    """s with E‖s·x‖² = 1 over the first ``n_batches`` batches (dictionary_learning ``get_norm_factor``)."""
    total, count = 0.0, 0
    for i, x in enumerate(batches):
        if i >= n_batches:
            break
        total += float(x.double().pow(2).sum())
        count += x.shape[0]
    if count == 0 or total == 0:
        raise ValueError("cannot estimate the activation scale: no data or all-zero activations")
    return math.sqrt(count / total)


@torch.no_grad()
def geometric_median(x: torch.Tensor, max_iter: int = 100, tol: float = 1e-5) -> torch.Tensor:
    """Weiszfeld iterations from the mean; stops when the estimate moves less than ``tol``."""
    x = x.double()
    median = x.mean(0)
    for _ in range(max_iter):
        weights = 1.0 / (x - median).norm(dim=-1).clamp_min(1e-8)
        new = (weights[:, None] * x).sum(0) / weights.sum()
        moved = float((new - median).norm())
        median = new
        if moved < tol:
            break
    return median.float()


def auto_lr(d_sae: int) -> float:
    """Gao et al. scaling: 2e-4 / √(m / 2^14)."""
    return 2e-4 / math.sqrt(d_sae / 2**14)


def lr_multiplier(step: int, total: int, warmup: int, decay_fraction: float) -> float:
    mult = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    decay_steps = int(decay_fraction * total)
    decay_start = total - decay_steps
    if decay_steps > 0 and step >= decay_start:
        mult *= (total - step) / decay_steps
    return mult


class _Member:
    """One SAE of the grid with its optimiser and dead-latent counter."""

    def __init__(self, sae: SparseAutoencoder, lr: float, betas: tuple[float, float]):
        self.sae, self.lr = sae, lr
        self.optimizer = torch.optim.Adam(sae.parameters(), lr=lr, betas=tuple(betas))
        self.tokens_since_fired = torch.zeros(sae.d_sae, dtype=torch.int64)
        self.stats: dict[str, float] = {}

    def state(self) -> dict[str, Any]:
        return {"model": self.sae.state_dict(), "optimizer": self.optimizer.state_dict(),
                "tokens_since_fired": self.tokens_since_fired, "extra": self.sae.extra_state(), "stats": self.stats}

    def load(self, state: dict[str, Any]) -> None:
        self.sae.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.tokens_since_fired = state["tokens_since_fired"]
        self.sae.load_extra_state(state["extra"])
        self.stats = state["stats"]


def grid_key(saes: dict[str, tuple[SparseAutoencoder, float]], cfg: TrainingConfig) -> dict[str, Any]:
    """The trainer's part of a checkpoint key: its settings and each SAE's architecture, config and learning rate."""
    return {"training": asdict(cfg),
            "saes": {k: (type(s).__name__, s.cfg.to_dict(), lr) for k, (s, lr) in saes.items()}}


class GridTrainer:
    """Trains several SAEs on the same batches. ``saes`` maps an id to (module, learning rate); ``checkpoint`` (keyed
    by at least :func:`grid_key`) keeps the state of a killed run."""

    def __init__(self, saes: dict[str, tuple[SparseAutoencoder, float]], cfg: TrainingConfig,
                 checkpoint: Checkpoint | None = None):
        self.cfg, self.checkpoint = cfg, checkpoint
        self.members = {name: _Member(sae, lr, cfg.adam_betas) for name, (sae, lr) in saes.items()}
        self.step = 0
        self.scale: float | None = None

    # --- checkpointing ---
    def save_checkpoint(self) -> None:
        if self.checkpoint is not None:
            self.checkpoint.save_state({"step": self.step, "scale": self.scale,
                                        "members": {k: m.state() for k, m in self.members.items()}})

    def try_resume(self) -> bool:
        state = self.checkpoint.load_state() if self.checkpoint is not None else None
        if state is None:
            return False
        self.step, self.scale = state["step"], state["scale"]
        for k, m in self.members.items():
            m.load(state["members"][k])
        log.info("resumed from %s at step %d", self.checkpoint.directory, self.step)
        return True

    def remove_checkpoint(self) -> None:
        if self.checkpoint is not None:
            self.checkpoint.remove(STATE_FILE)

    # --- training ---
    def _initialise(self, source: BatchSource) -> None:
        self.scale = activation_scale(source.epoch_batches(0), self.cfg.scale_batches)
        sample, held = [], 0
        for x in source.epoch_batches(0):
            sample.append(x)
            held += x.shape[0]
            if held >= self.cfg.geometric_median_samples:
                break
        median = geometric_median(torch.cat(sample)[:self.cfg.geometric_median_samples] * self.scale)
        for m in self.members.values():
            m.sae.activation_scale.fill_(self.scale)
            m.sae.init_from_data(median)
        log.info("activation scale %.6g (E|s x|^2 = 1), geometric median norm %.4g", self.scale, float(median.norm()))

    def fit(self, source: BatchSource, stop_after_steps: int | None = None) -> dict[str, dict[str, float]]:
        """Train to the end (or until ``stop_after_steps`` total steps, to test resumption); returns final stats."""
        total = self.cfg.epochs * source.steps_per_epoch
        if total == 0:
            raise ValueError("no training steps: the cache holds fewer tokens than sae.train.batch_size")
        if self.scale is None and not self.try_resume():  # a second fit() call continues in memory
            self._initialise(source)
            self.save_checkpoint()
        warmup = self.cfg.warmup_steps if self.cfg.warmup_steps is not None else min(1000, int(0.05 * total))
        dead_window = self.cfg.dead_window_tokens or min(10_000_000, max(1, total * source.batch_size // 10))
        end = total if stop_after_steps is None else min(total, stop_after_steps)
        bar = tqdm(total=total, initial=self.step, desc="SAE grid", mininterval=5.0)
        device = next(iter(self.members.values())).sae.device
        while self.step < end:
            epoch, skip = divmod(self.step, source.steps_per_epoch)
            before = self.step
            for i, batch in enumerate(source.epoch_batches(epoch)):
                if i < skip:
                    continue
                self._train_step(batch.to(device, non_blocking=True) * self.scale, total, warmup, dead_window)
                bar.update(1)
                if self.step % 10 == 0 or self.step == end:
                    bar.set_postfix_str(self.progress_line(dead_window))
                if self.step % self.cfg.checkpoint_every == 0 or self.step == end:
                    self.save_checkpoint()
                if self.step >= end:
                    break
            if self.step == before:
                raise RuntimeError(f"epoch {epoch} yielded no batch after the first {skip}: the activation source "
                                   f"holds fewer than steps_per_epoch={source.steps_per_epoch} batches")
        bar.close()
        return {k: {**m.stats, "dead_fraction": self.dead_fraction(m, dead_window)} for k, m in self.members.items()}

    def _train_step(self, x: torch.Tensor, total: int, warmup: int, dead_window: int) -> None:
        mult = lr_multiplier(self.step, total, warmup, self.cfg.decay_fraction)
        for m in self.members.values():
            dead = (m.tokens_since_fired >= dead_window).to(x.device)
            ctx = StepContext(step=self.step, total_steps=total, dead_mask=dead)
            for group in m.optimizer.param_groups:
                group["lr"] = m.lr * mult
            out: StepOutput = m.sae.training_step(x, ctx)
            m.optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            if m.sae.unit_norm_decoder:
                m.sae.remove_parallel_decoder_grad()
            torch.nn.utils.clip_grad_norm_(m.sae.parameters(), self.cfg.grad_clip)
            m.optimizer.step()
            if m.sae.unit_norm_decoder:
                m.sae.normalise_decoder()
            m.sae.after_optimizer_step(out, ctx)
            m.tokens_since_fired += x.shape[0]
            m.tokens_since_fired[out.fired.cpu()] = 0
            m.stats = out.stats
        self.step += 1

    @staticmethod
    def dead_fraction(m: _Member, dead_window: int) -> float:
        return float((m.tokens_since_fired >= dead_window).float().mean())

    def progress_line(self, dead_window: int) -> str:
        return " | ".join(f"{k}: loss {m.stats.get('loss', float('nan')):.3g} L0 {m.stats.get('l0', 0):.1f} "
                          f"fvu {m.stats.get('fvu', float('nan')):.3f} dead {self.dead_fraction(m, dead_window):.2f}"
                          for k, m in self.members.items())
