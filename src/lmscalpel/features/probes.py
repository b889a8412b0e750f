"""Linear probes of SAEBench (spec §5 steps 2-3 and §8), trained in torch with a seeded generator."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class BinaryProbe:
    weight: torch.Tensor  # [d]
    bias: float
    test_accuracy: float

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight + self.bias

    def accuracy(self, x: torch.Tensor, y: torch.Tensor) -> float:
        return accuracy(self.logits(x), y)


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Share of ``(logit > 0) == y``."""
    return float(((logits > 0).long() == y.long()).float().mean())


def f1_score(pred: torch.Tensor, y: torch.Tensor) -> float:
    """Binary F1 of boolean predictions (0 when there are no positives at all)."""
    pred, y = pred.bool(), y.bool()
    tp = float((pred & y).sum())
    denom = float(pred.sum() + y.sum())
    return 2 * tp / denom if denom else 0.0


def train_binary_probe(x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor,
                       *, epochs: int, lr: float, batch_size: int, l1: float, seed: int) -> BinaryProbe:
    """``nn.Linear(d, 1)``, BCE + ``l1``·Σ|w|, AdamW; keeps the epoch with the best test accuracy (SAEBench §8).

    The small batch (16 by default) matters: it sets how much of the spurious signal the probe picks up.
    """
    gen = torch.Generator().manual_seed(seed)
    linear = torch.nn.Linear(x_train.shape[1], 1)
    with torch.no_grad():
        bound = 1 / x_train.shape[1] ** 0.5
        linear.weight.uniform_(-bound, bound, generator=gen)
        linear.bias.uniform_(-bound, bound, generator=gen)
    opt = torch.optim.AdamW(linear.parameters(), lr=lr)
    best = BinaryProbe(linear.weight.detach()[0].clone(), float(linear.bias.detach()), -1.0)
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(len(x_train), generator=gen)
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                logits = linear(x_train[idx]).squeeze(-1)
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y_train[idx].float())
                loss = loss + l1 * linear.weight.abs().sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
            probe = BinaryProbe(linear.weight.detach()[0].clone(), float(linear.bias.detach()), 0.0)
            probe.test_accuracy = probe.accuracy(x_test, y_test)
            if probe.test_accuracy > best.test_accuracy:
                best = probe
    return best


def train_multiclass_ovr(x: torch.Tensor, labels: torch.Tensor, n_classes: int, *, epochs: int, lr: float,
                         final_lr: float, weight_decay: float, batch_size: int, l1: float,
                         seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One-vs-rest linear probe (absorption's ground truth and k-sparse selection probe, spec §5 steps 2-3).

    BCE-with-logits with ``pos_weight = #neg / #pos`` per class, Adam, exponential lr decay from ``lr`` to
    ``final_lr`` over the epochs, plus ``l1``·mean over classes of Σ|w| (0 for the ground-truth probe).
    The L1 (latent-selection) probe starts from zero weights so its largest weights reflect learned signal, not
    the random init, which on small word lists is as large as what 50 epochs learn (SAEBench's ~10k-word
    vocabulary makes the init negligible there). Returns ``(W [C, d], b [C])``.
    """
    gen = torch.Generator().manual_seed(seed)
    targets = torch.nn.functional.one_hot(labels.long(), n_classes).float()
    pos = targets.sum(0)
    pos_weight = (len(labels) - pos) / pos.clamp(min=1)
    linear = torch.nn.Linear(x.shape[1], n_classes)
    with torch.no_grad():
        bound = 0.0 if l1 else 1 / x.shape[1] ** 0.5
        linear.weight.uniform_(-bound, bound, generator=gen)
        linear.bias.uniform_(-bound, bound, generator=gen)
    opt = torch.optim.Adam(linear.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=(final_lr / lr) ** (1 / max(epochs, 1)))
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=gen)
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                loss = torch.nn.functional.binary_cross_entropy_with_logits(
                    linear(x[idx]), targets[idx], pos_weight=pos_weight)
                if l1:
                    loss = loss + l1 * linear.weight.abs().sum(dim=1).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
            sched.step()
    return linear.weight.detach().clone(), linear.bias.detach().clone()
