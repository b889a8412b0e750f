"""Spurious correlation removal (SCR) and targeted probe perturbation (TPP), spec §8 (SAEBench, Karvonen et al.).

Probes on mean-pooled model activations are SAE-independent and trained once per (layer, dataset)
(:func:`build_scr_probes`, :func:`build_tpp_probes`); per SAE only latent selection and ablation run.
Ablation ``x' = decode(f with S zeroed) + (x − decode(f))`` equals ``x − (decode(f_S) − decode(0))`` for an affine
decoder, so on mean-pooled activations it is exact to subtract ``decode(pooled f_S) − decode(0)``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import ClassVar

import torch

from lmscalpel.features.probes import BinaryProbe, accuracy, train_binary_probe


@dataclass
class ProbeSet:
    """A binary task: row indices into the dataset cache and 0/1 labels, per split."""

    train_idx: torch.Tensor
    train_y: torch.Tensor
    test_idx: torch.Tensor
    test_y: torch.Tensor


@dataclass(frozen=True)
class ProbeConfig:
    """Config section ``features.probe``."""

    section: ClassVar[str] = "features.probe"

    epochs: int = 20
    lr: float = 1e-3
    batch_size: int = 16
    l1: float = 1e-3


SPLITS = ("train", "test")


def _rows(labels: list[dict], split: list[str], which: str, **want: str) -> list[int]:
    return [i for i, (lab, s) in enumerate(zip(labels, split)) if s == which
            and all(lab[k] == v for k, v in want.items())]


def _set(pos: dict[str, list[int]], neg: dict[str, list[int]]) -> ProbeSet:
    def part(which):
        idx = sorted(pos[which]) + sorted(neg[which])
        y = [1] * len(pos[which]) + [0] * len(neg[which])
        return torch.tensor(idx, dtype=torch.long), torch.tensor(y, dtype=torch.long)

    (tr_i, tr_y), (te_i, te_y) = part("train"), part("test")
    return ProbeSet(tr_i, tr_y, te_i, te_y)


def scr_sets(labels: list[dict], split: list[str], column1: str, column2: str, pair: tuple[str, str],
             values2: tuple[str, str], train_size: int, test_size: int, seed: int) -> dict[str, ProbeSet]:
    """The three keyed sets of one SCR pair (spec §8, SAEBench ``get_spurious_corr_data``): ``column1`` (e.g.
    profession, balanced over column2), ``column2`` (e.g. gender, balanced over column1) and ``biased``
    (pair[0]&values2[0] vs pair[1]&values2[1]).

    q = size/4 rows per quadrant (fewer if the split's smallest quadrant has fewer); every class of a keyed set
    gets 2q rows, q from each of its two quadrants, so a set has 4q = size rows. The biased classes take their 2q
    from one quadrant each (the first q are the rows the balanced sets use, as in SAEBench; fewer if that
    quadrant has fewer than 2q).
    """
    rng = random.Random(seed)
    (a1, a2), (b1, b2) = pair, values2
    corners = ((a1, b1), (a2, b2))
    sample: dict[tuple[str, str], dict[str, list[int]]] = {(a, b): {} for a in pair for b in values2}
    q, n_biased = {}, {}
    for which, size in (("train", train_size), ("test", test_size)):
        rows = {key: _rows(labels, split, which, **{column1: key[0], column2: key[1]}) for key in sample}
        q[which] = min(size // 4, *(len(v) for v in rows.values()))
        if q[which] < 1:
            raise ValueError(f"SCR pair {pair} x {values2}: a {which} quadrant is empty "
                             f"(sizes {[len(v) for v in rows.values()]}); check features.scr.pairs")
        n_biased[which] = min(2 * q[which], *(len(rows[key]) for key in corners))
        for key, found in rows.items():
            sample[key][which] = rng.sample(found, n_biased[which] if key in corners else q[which])

    def classes(*keys, n=None):
        return {w: sum((sample[k][w][:q[w] if n is None else n[w]] for k in keys), []) for w in SPLITS}

    return {
        "column1": _set(classes((a1, b1), (a1, b2)), classes((a2, b1), (a2, b2))),
        "column2": _set(classes((a1, b1), (a2, b1)), classes((a1, b2), (a2, b2))),
        "biased": _set(classes((a1, b1), n=n_biased), classes((a2, b2), n=n_biased)),
    }


def _class_samples(labels: list[dict], split: list[str], column: str, classes: list[str], balance_column: str | None,
                   which: str, size: int, rng: random.Random) -> dict[str, list[int]]:
    """Equal-size row samples of every class (SAEBench ``get_balanced_dataset``): with ``balance_column``, q = size/4
    rows of each of its values per class (2q for a two-valued attribute such as gender), else size/2 rows; fewer
    when the smallest group of the split has fewer."""
    groups: dict[str, list[list[int]]] = {}
    for cls in classes:
        own = _rows(labels, split, which, **{column: cls})
        if balance_column is None:
            groups[cls] = [own]
        else:
            values = sorted({labels[i][balance_column] for i in own})
            groups[cls] = [[i for i in own if labels[i][balance_column] == v] for v in values] or [[]]
    per_group = size // 2 if balance_column is None else size // 4
    n = min(per_group, *(len(g) for gs in groups.values() for g in gs))
    if n < 1:
        raise ValueError(f"one-vs-rest classes {classes} of column {column!r}"
                         f"{f' balanced over {balance_column!r}' if balance_column else ''}: a {which} group is "
                         "empty; check features.tpp.classes / features.sparse_probing.tasks")
    return {cls: sum((rng.sample(g, n) for g in gs), []) for cls, gs in groups.items()}


def one_vs_rest_sets(labels: list[dict], split: list[str], column: str, classes: list[str], train_size: int,
                     test_size: int, seed: int, balance_column: str | None = None) -> dict[str, ProbeSet]:
    """One-vs-rest per class (SAEBench ``prepare_probe_data``): the class's sample (see :func:`_class_samples`) as
    positives, and as many negatives stratified over the other classes (⌈n/(C−1)⌉ drawn from each other class's
    sample, then n of those at random)."""
    rng = random.Random(seed)
    samples = {w: _class_samples(labels, split, column, classes, balance_column, w, size, rng)
               for w, size in (("train", train_size), ("test", test_size))}
    sets = {}
    for cls in classes:
        pos, neg = {}, {}
        for which in SPLITS:
            pos[which] = samples[which][cls]
            others = [c for c in classes if c != cls]
            per_class = -(-len(pos[which]) // len(others))
            pool = sum((rng.sample(samples[which][c], min(per_class, len(samples[which][c]))) for c in others), [])
            neg[which] = rng.sample(pool, min(len(pos[which]), len(pool)))
        sets[cls] = _set(pos, neg)
    return sets


def train_probes(pooled_x: torch.Tensor, sets: dict[str, ProbeSet], cfg: ProbeConfig,
                 seed: int) -> dict[str, BinaryProbe]:
    return {key: train_binary_probe(pooled_x[s.train_idx], s.train_y, pooled_x[s.test_idx], s.test_y,
                                    epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size, l1=cfg.l1,
                                    seed=seed + i)
            for i, (key, s) in enumerate(sorted(sets.items()))}


@torch.no_grad()
def latent_effects(pooled_f: torch.Tensor, y: torch.Tensor, probe_w: torch.Tensor, w_dec: torch.Tensor,
                   scr: bool) -> torch.Tensor:
    """effect_f = (ā⁺_f − ā⁻_f)·(w·W_dec[f]); SCR takes |effect|, TPP clamps the difference at ≥ 0 first."""
    diff = pooled_f[y == 1].mean(0) - pooled_f[y == 0].mean(0)
    if not scr:
        diff = diff.clamp(min=0)
    effect = diff * (w_dec.float() @ probe_w.float())
    return effect.abs() if scr else effect


def top_latents(effects: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of the ``n`` largest effects among the non-zero ones (fewer if fewer are non-zero)."""
    k = min(n, int((effects != 0).sum()))
    return torch.topk(effects, k).indices if k else torch.zeros(0, dtype=torch.long)


@torch.no_grad()
def ablate_pooled(sae, pooled_x: torch.Tensor, pooled_f: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
    """Mean-pooled activations after zeroing ``latents`` on every token (error term kept)."""
    if latents.numel() == 0:
        return pooled_x
    kept = torch.zeros_like(pooled_f)
    kept[:, latents] = pooled_f[:, latents]
    return pooled_x - (sae.decode(kept) - sae.decode(torch.zeros_like(kept))).float().cpu()


def normalised_scr(a_abl: float, a_orig: float, a_clean: float) -> float:
    """S_SCR = (A_abl − A_orig) / (A_clean − A_orig); 0 when A_clean − A_orig < 0.001."""
    gap = a_clean - a_orig
    return (a_abl - a_orig) / gap if gap >= 0.001 else 0.0


def scr_run(sae, pooled_x, pooled_f, sets: dict[str, ProbeSet], probes: dict[str, BinaryProbe], w_dec,
            n_values: list[int]) -> dict[str, float]:
    """SCR for one pair at every n: dir1 ablates column2 (e.g. gender) latents and scores the biased probe on
    column1 data; dir2 the reverse. The metric uses dir1 when the biased probe is worse on column1 data than on
    column2 data (it learned mostly column2), else dir2."""
    biased = probes["biased"]
    out: dict[str, float] = {}
    acc_b = {}
    for direction, (ablated, evaluated) in {1: ("column2", "column1"), 2: ("column1", "column2")}.items():
        ev = sets[evaluated]
        x_test, y_test = pooled_x[ev.test_idx], ev.test_y
        a_orig = biased.accuracy(x_test, y_test)
        a_clean = probes[evaluated].accuracy(x_test, y_test)
        acc_b[direction] = a_orig
        sel = sets[ablated]
        effects = latent_effects(pooled_f[sel.train_idx], sel.train_y, probes[ablated].weight, w_dec, scr=True)
        for n in n_values:
            x_abl = ablate_pooled(sae, x_test, pooled_f[ev.test_idx], top_latents(effects, n))
            out[f"dir{direction}_n{n}"] = normalised_scr(biased.accuracy(x_abl, y_test), a_orig, a_clean)
        out[f"dir{direction}_original_accuracy"] = a_orig
        out[f"dir{direction}_clean_accuracy"] = a_clean
    chosen = 1 if acc_b[1] < acc_b[2] else 2
    out["direction"] = chosen
    for n in n_values:
        out[f"metric_n{n}"] = out[f"dir{chosen}_n{n}"]
    return out


def tpp_run(sae, pooled_x, pooled_f, sets: dict[str, ProbeSet], probes: dict[str, BinaryProbe], w_dec,
            n_values: list[int]) -> dict[str, float]:
    """TPP(n) = mean_i [(acc_i clean − acc_i ablated) − mean_{j≠i}(acc_j clean − acc_j ablated)]."""
    classes = sorted(sets)
    clean = {j: probes[j].accuracy(pooled_x[sets[j].test_idx], sets[j].test_y) for j in classes}
    out: dict[str, float] = {}
    for n in n_values:
        totals, intended_all, unintended_all = [], [], []
        for i in classes:
            effects = latent_effects(pooled_f[sets[i].train_idx], sets[i].train_y, probes[i].weight, w_dec,
                                     scr=False)
            latents = top_latents(effects, n)
            drop = {}
            for j in classes:
                x_abl = ablate_pooled(sae, pooled_x[sets[j].test_idx], pooled_f[sets[j].test_idx], latents)
                drop[j] = clean[j] - accuracy(probes[j].logits(x_abl), sets[j].test_y)
            unintended = sum(drop[j] for j in classes if j != i) / (len(classes) - 1)
            totals.append(drop[i] - unintended)
            intended_all.append(drop[i])
            unintended_all.append(unintended)
        out[f"total_n{n}"] = sum(totals) / len(totals)
        out[f"intended_n{n}"] = sum(intended_all) / len(intended_all)
        out[f"unintended_n{n}"] = sum(unintended_all) / len(unintended_all)
    return out
