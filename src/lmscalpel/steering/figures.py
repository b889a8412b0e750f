"""Figures of the steering stage (matplotlib, Agg): compliance vs c, per-category bars, universal vs random."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from lmscalpel.io import atomic_path  # noqa: E402


def _save(fig, path: str) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)


def compliance_vs_c(cells: pd.DataFrame, path: str, outcome: str) -> None:
    """One panel per layer; one line per direction kind with its bootstrap CI; the unsteered rate dashed."""
    layers = sorted(cells["layer"].unique())
    fig, axes = plt.subplots(1, len(layers), figsize=(4.5 * len(layers), 3.6), squeeze=False, sharey=True)
    for ax, layer in zip(axes[0], layers):
        sub = cells[cells["layer"] == layer]
        for kind, group in sub[sub["direction_kind"] != "none"].groupby("direction_kind"):
            group = group.sort_values("c")
            ax.plot(group["c"], 100 * group["compliance_rate"], marker="o", label=kind)
            ax.fill_between(group["c"], 100 * group["ci_low"], 100 * group["ci_high"], alpha=0.15)
        none = sub[sub["direction_kind"] == "none"]
        if len(none):
            ax.axhline(100 * none["compliance_rate"].iloc[0], ls="--", color="grey", label="unsteered")
        ax.set_xlabel("steering coefficient c (α = c·μ(l))")
        ax.set_title(f"layer {layer}")
    axes[0][0].set_ylabel(f"compliance rate (%, {outcome})")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle("Harmful compliance under steering")
    _save(fig, path)


def per_category(categories: pd.DataFrame, cells: pd.DataFrame, path: str) -> None:
    """Per-category CR of every kind at the (layer, c) where random steering peaks."""
    rnd = cells[cells["direction_kind"] == "random"].sort_values(["compliance_rate", "c"], ascending=[False, True])
    layer, c = (rnd.iloc[0]["layer"], rnd.iloc[0]["c"]) if len(rnd) else (cells["layer"].iloc[0], cells["c"].max())
    sub = categories[(categories["layer"] == layer) & (categories["c"] == c)]
    table = sub.pivot(index="category", columns="direction_kind", values="compliance_rate").fillna(0) * 100
    fig, ax = plt.subplots(figsize=(8, 4))
    if len(table):
        table.plot.bar(ax=ax)
    ax.set_xlabel("category")
    ax.set_ylabel("compliance rate (%)")
    ax.set_title(f"Compliance per category (layer {layer}, c = {c:g})")
    ax.tick_params(axis="x", labelrotation=60)
    _save(fig, path)


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
    _save(fig, path)
