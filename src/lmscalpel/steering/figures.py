"""Figures of the steering stage (matplotlib, Agg): compliance vs c, per-category bars, universal vs random, the
per-vector histogram and the cross-category heatmap (both at the layer and c where random steering peaks)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from lmscalpel.io import save_figure  # noqa: E402


def compliance_vs_c(cells: pd.DataFrame, path: str, outcome: str) -> None:
    """One panel per layer; one line per direction kind with its bootstrap CI; the unsteered rate dashed. With the
    coherence judge, the other judge's rate (plain judge vs judge + coherence) is dotted next to the headline."""
    layers = sorted(cells["layer"].unique())
    other, other_label = None, ""
    if "coherent_compliance_rate" in cells:
        coherent_headline = outcome.endswith("+coherence")
        other = "judge_compliance_rate" if coherent_headline else "coherent_compliance_rate"
        other_label = "judge alone" if coherent_headline else "coherent"
    fig, axes = plt.subplots(1, len(layers), figsize=(4.5 * len(layers), 3.6), squeeze=False, sharey=True)
    for ax, layer in zip(axes[0], layers):
        sub = cells[cells["layer"] == layer]
        for kind, group in sub[sub["direction_kind"] != "none"].groupby("direction_kind"):
            group = group.sort_values("c")
            line, = ax.plot(group["c"], 100 * group["compliance_rate"], marker="o", label=kind)
            ax.fill_between(group["c"], 100 * group["ci_low"], 100 * group["ci_high"], alpha=0.15)
            if other:
                ax.plot(group["c"], 100 * group[other], ls=":", color=line.get_color(), label=f"{kind} ({other_label})")
        none = sub[sub["direction_kind"] == "none"]
        if len(none):
            ax.axhline(100 * none["compliance_rate"].iloc[0], ls="--", color="grey", label="unsteered")
        ax.set_xlabel("steering coefficient c (α = c·μ(l))")
        ax.set_title(f"layer {layer}")
    axes[0][0].set_ylabel(f"compliance rate (%, {outcome})")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle("Harmful compliance under steering")
    save_figure(fig, path, bbox_inches="tight")


def headline_cell(cells: pd.DataFrame) -> tuple[int, float]:
    """The (layer, c) where random steering complies most (ties: the smallest c); the largest c without random."""
    rnd = cells[cells["direction_kind"] == "random"].sort_values(["compliance_rate", "c"], ascending=[False, True])
    row = rnd.iloc[0] if len(rnd) else cells.sort_values("c").iloc[-1]
    return int(row["layer"]), float(row["c"])


def _at(frame: pd.DataFrame, layer: int, c: float) -> pd.DataFrame:
    return frame[(frame["layer"] == layer) & (frame["c"] == c)]


def _vector_kinds(frame: pd.DataFrame) -> list[str]:
    """Steered kinds with a population of vectors (the single refusal control has no distribution)."""
    return [k for k in sorted(frame["direction_kind"].unique()) if k not in ("none", "refusal")]


def per_category(categories: pd.DataFrame, cells: pd.DataFrame, path: str) -> None:
    """Per-category CR of every kind at the (layer, c) where random steering peaks."""
    layer, c = headline_cell(cells)
    sub = _at(categories, layer, c)
    table = sub.pivot(index="category", columns="direction_kind", values="compliance_rate").fillna(0) * 100
    fig, ax = plt.subplots(figsize=(8, 4))
    if len(table):
        table.plot.bar(ax=ax)
    ax.set_xlabel("category")
    ax.set_ylabel("compliance rate (%)")
    ax.set_title(f"Compliance per category (layer {layer}, c = {c:g})")
    ax.tick_params(axis="x", labelrotation=60)
    save_figure(fig, path, bbox_inches="tight")


def universal_vs_random(table: pd.DataFrame, summary: dict, path: str) -> None:
    """Held-out CR of each universal vector, the unselected-mean control and the random vectors at c*."""
    per_vector = table.groupby(["kind", "vector"])["complied"].mean().reset_index()
    kinds = [k for k in ("random", "unselected_mean", "universal") if k in set(per_vector["kind"])]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for x, kind in enumerate(kinds):
        values = 100 * per_vector[per_vector["kind"] == kind]["complied"]
        ax.bar(x, values.mean(), alpha=0.6)
        ax.scatter([x] * len(values), values, color="black", s=10, zorder=3)
    ax.set_xticks(range(len(kinds)), kinds)
    ax.set_xlabel("vector")
    ax.set_ylabel("held-out compliance rate (%)")
    ax.set_title(f"Universal attack vs random (layer {summary['layer']}, c* = {summary['c_star']:g})")
    save_figure(fig, path, bbox_inches="tight")


def vector_histogram(per_vector: pd.DataFrame, cells: pd.DataFrame, path: str) -> None:
    """Histogram of prompts broken per vector (spec §5), one panel per direction kind, at the headline cell."""
    layer, c = headline_cell(cells)
    sub = _at(per_vector, layer, c)
    kinds = _vector_kinds(sub) or ["random"]
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.2 * len(kinds), 3.4), squeeze=False, sharey=True)
    for ax, kind in zip(axes[0], kinds):
        group = sub[sub["direction_kind"] == kind]
        n_prompts = int(group["n_prompts"].max()) if len(group) else 0
        ax.hist(group["n_broken"], bins=range(n_prompts + 2), align="left", color="tab:blue")
        share = float((group["n_broken"] >= 1).mean()) if len(group) else float("nan")
        ax.set_title(f"{kind}: {len(group)} vectors, {100 * share:.0f}% break ≥ 1", fontsize=9)
        ax.set_xlabel(f"prompts broken (of {n_prompts})")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0][0].set_ylabel("vectors")
    fig.suptitle(f"Prompts jailbroken per vector (layer {layer}, c = {c:g})")
    save_figure(fig, path, bbox_inches="tight")


def cross_category(cross: pd.DataFrame, cells: pd.DataFrame, path: str) -> None:
    """P(a vector breaking a prompt of source category A breaks a prompt of target B), one heatmap per kind."""
    layer, c = headline_cell(cells)
    sub = _at(cross, layer, c)
    kinds = _vector_kinds(sub) or ["random"]
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.5 * len(kinds), 4.8), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        table = (sub[sub["direction_kind"] == kind]
                 .pivot(index="source_category", columns="target_category", values="p_break"))
        image = ax.imshow(100 * table.to_numpy(dtype=float), vmin=0, vmax=100, cmap="viridis")
        ax.set_xticks(range(len(table.columns)), table.columns, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(table.index)), table.index, fontsize=7)
        ax.set_xlabel("target category")
        ax.set_title(kind)
    axes[0][0].set_ylabel("source category (vector breaks ≥ 1 of its prompts)")
    fig.colorbar(image, ax=axes[0].tolist(), label="prompts of the target broken (%)")
    fig.suptitle(f"Cross-category generalisation (layer {layer}, c = {c:g})")
    save_figure(fig, path, bbox_inches="tight")
