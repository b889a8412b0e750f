"""Gather the grid's cell JSONs into one table, a summary of the paper's claims, and figures.

Claims checked on every model (spec section 10): perplexity ordering unstructured <= 16:32 <= 8:16 <= 4:8 <= 2:4
for the magnitude criterion without mitigation, and activation pruning below magnitude weight pruning at 2:4.
"x better" is reported as a ratio of degradations from dense, e.g. (PPL_2:4 - PPL_dense) / (PPL_16:32 - PPL_dense).
The ordering allows noise (the issue's "small noise allowed"): a reversed neighbour pair counts as a violation only
when its paired mean-NLL difference over the shared windows is below -NOISE_SE standard errors; the strict
ordering is reported too. The single-pattern claims get the same paired standard errors over windows: 8:16 against
2:4 (a paired z of the window NLLs) and 16:32's closeness to unstructured (the PPL margin (2:4 - 16:32) -
(16:32 - u50) with its delta-method SE), so that the report can call a difference inside the noise "within noise".
"""

from __future__ import annotations

import math
import os
from typing import Iterable

import numpy as np
import pandas as pd

from lmscalpel.io import atomic_path, read_json, save_figure, write_json
from lmscalpel.pruning.masks import parse_pattern

ORDERING = ("u50", "16-32", "8-16", "4-8", "2-4")
NOISE_SE = 2.0


def pattern_order(slug: str) -> tuple:
    """Most flexible first: dense, unstructured (by sparsity), then N:M by decreasing M."""
    if slug == "dense":
        return (0, 0.0)
    spec = parse_pattern(slug)
    return (1, spec.sparsity) if spec.is_unstructured else (2, -spec.m, spec.n)


def gather_table(cell_files: Iterable[str | os.PathLike], chat_files: Iterable[str | os.PathLike] = ()
                 ) -> pd.DataFrame:
    cells = pd.DataFrame([read_json(path) for path in cell_files])
    chat_files = list(chat_files)
    if chat_files:
        keys = ["family", "targets", "pattern", "criterion", "mitigation"]
        chat = pd.DataFrame([read_json(path) for path in chat_files])
        chat = chat[keys + ["refusal_rate", "benign_compliance", "benign_refusal_rate"]]
        cells = cells.merge(chat, on=keys, how="left")
    cells["_order"] = cells["pattern"].map(pattern_order)
    cells = cells.sort_values(["family", "targets", "_order", "criterion", "mitigation"]).drop(columns="_order")
    return cells.reset_index(drop=True)


def _cell(table: pd.DataFrame, **where) -> pd.Series | None:
    rows = table
    for key, value in where.items():
        rows = rows[rows[key] == value]
    return rows.iloc[0] if len(rows) else None


def _ppl(table: pd.DataFrame, **where) -> float | None:
    cell = _cell(table, **where)
    return None if cell is None else float(cell["perplexity"])


def _window_nlls(table: pd.DataFrame, **where) -> np.ndarray | None:
    cell = _cell(table, **where)
    if cell is None or not isinstance(cell.get("window_nlls"), list):
        return None
    return np.asarray(cell["window_nlls"], dtype=float)


def paired_z(low: np.ndarray | None, high: np.ndarray | None) -> float | None:
    """Mean of (high - low) window NLLs over its standard error: below -NOISE_SE means ``high`` is truly lower."""
    if low is None or high is None or low.shape != high.shape or len(low) < 2:
        return None
    diff = high - low
    se = diff.std(ddof=1) / np.sqrt(len(diff))
    if se == 0:
        return 0.0 if diff.mean() == 0 else math.copysign(math.inf, diff.mean())
    return float(diff.mean() / se)


def ppl_contrast(nlls: dict[str, np.ndarray | None], weights: dict[str, float]) -> tuple[float, float] | None:
    """Σ_p weight_p · PPL_p over patterns p, and its standard error from the windows they share (delta method:
    PPL_p = exp(mean of p's window NLLs), so window w contributes Σ_p weight_p · PPL_p · nll_pw / W; paired, as
    every pattern is evaluated on the same windows). None without per-window NLLs on two or more shared windows."""
    arrays = [nlls.get(p) for p in weights]
    if any(a is None for a in arrays) or len({a.shape for a in arrays}) != 1 or len(arrays[0]) < 2:
        return None
    ppl = {p: math.exp(float(a.mean())) for p, a in zip(weights, arrays)}
    contributions = sum(w * ppl[p] * a for (p, w), a in zip(weights.items(), arrays))
    value = sum(w * ppl[p] for p, w in weights.items())
    return value, float(contributions.std(ddof=1) / np.sqrt(len(contributions)))


def pattern_claims(nlls: dict[str, np.ndarray | None]) -> dict:
    """Paired uncertainties of the claims about single patterns: 2:4 over 8:16 (z of the window-NLL difference; >
    NOISE_SE: 8:16 degrades less), and 16:32's margin (2:4 - 16:32) - (16:32 - u50) in PPL with its SE (> 0: 16:32
    is closer to unstructured than to 2:4)."""
    summary: dict = {}
    z = paired_z(nlls.get("8-16"), nlls.get("2-4"))
    if z is not None:
        summary["paired_z_2-4_over_8-16"] = z
    margin = ppl_contrast(nlls, {"2-4": 1.0, "16-32": -2.0, "u50": 1.0})
    if margin is not None:
        value, se = margin
        margin_z = value / se if se > 0 else 0.0 if value == 0 else math.copysign(math.inf, value)
        summary |= {"near_unstructured_margin": value, "near_unstructured_margin_se": se,
                    "near_unstructured_margin_z": margin_z}
    return summary


def per_kind_summary(table: pd.DataFrame) -> dict:
    """The dense job's per-kind diagnostic (input kurtosis, one-kind act vs weight perplexity) with a verdict."""
    dense = table[table["family"] == "dense"]
    if not len(dense):
        return {}
    row = dense.iloc[0]
    keys = [k for k in dense.columns if k.startswith(("input_kurtosis_", "per_kind_")) and pd.notna(row[k])]
    summary = {key: float(row[key]) for key in keys}
    for key in keys:
        if "_act_ppl_" in key:
            weight = key.replace("_act_ppl_", "_weight_ppl_")
            if weight in summary:
                summary[key.replace("_act_ppl_", "_act_beats_weight_")] = summary[key] < summary[weight]
    return summary


def summarise(table: pd.DataFrame, targets: str) -> dict:
    dense = _ppl(table, family="dense")
    magnitude_cell = {"family": "act", "targets": targets, "criterion": "magnitude", "mitigation": "none"}
    magnitude = {p: _ppl(table, pattern=p, **magnitude_cell) for p in ORDERING}
    chain = [p for p in ORDERING if magnitude[p] is not None]
    gaps = [magnitude[b] - magnitude[a] for a, b in zip(chain, chain[1:])]  # should all be >= 0
    z = [paired_z(_window_nlls(table, pattern=a, **magnitude_cell), _window_nlls(table, pattern=b, **magnitude_cell))
         for a, b in zip(chain, chain[1:])]
    summary = {"targets": targets, "dense_perplexity": dense,
               **{f"act_magnitude_ppl_{p}": v for p, v in magnitude.items()},
               "magnitude_ordering": " <= ".join(chain),
               "magnitude_ordering_strict": all(g >= 0 for g in gaps) if gaps else None,
               "magnitude_ordering_holds": (all(g >= 0 or (zv is not None and zv >= -NOISE_SE)
                                                for g, zv in zip(gaps, z)) if gaps else None),
               "magnitude_ordering_noise_se": NOISE_SE,
               "magnitude_ordering_worst_gap": min(gaps) if gaps else None,
               "magnitude_ordering_worst_z": min((v for v in z if v is not None), default=None)}
    summary |= pattern_claims({p: _window_nlls(table, pattern=p, **magnitude_cell) for p in ORDERING})
    summary |= per_kind_summary(table)
    for pattern in ("2-4", "8-16"):
        act = magnitude.get(pattern)
        for method in ("magnitude", "wanda"):
            weight = _ppl(table, family="weight", targets=targets, pattern=pattern, criterion=method)
            if weight is not None:
                summary[f"weight_{method}_ppl_{pattern}"] = weight
                if act is not None:
                    summary[f"act_beats_weight_{method}_{pattern}"] = act < weight
    if dense is not None:
        for pattern in ("2-4", "8-16"):
            for flexible in ("16-32", "u50"):
                low, high = magnitude.get(flexible), magnitude.get(pattern)
                if low is not None and high is not None and low - dense > 0:
                    summary[f"degradation_ratio_{pattern}_over_{flexible}"] = (high - dense) / (low - dense)
    return summary


def plot_heatmaps(table: pd.DataFrame, targets: str, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    act = table[(table["family"] == "act") & (table["targets"] == targets)]
    mitigations = sorted(act["mitigation"].unique(), key=lambda m: (m != "none", m))
    patterns = sorted(act["pattern"].unique(), key=pattern_order)
    criteria = sorted(act["criterion"].unique())
    fig, axes = plt.subplots(1, max(1, len(mitigations)), figsize=(3.2 * max(1, len(mitigations)) + 1, 3.6),
                             squeeze=False)
    for ax, mitigation in zip(axes[0], mitigations):
        grid = (act[act["mitigation"] == mitigation].pivot_table(index="pattern", columns="criterion",
                                                                  values="perplexity")
                .reindex(index=patterns, columns=criteria))
        values = grid.to_numpy(dtype=float)
        image = ax.imshow(values, cmap="viridis_r", aspect="auto", vmin=act["perplexity"].min(),
                          vmax=act["perplexity"].max())
        ax.set_xticks(range(len(criteria)), criteria, rotation=45, ha="right")
        ax.set_yticks(range(len(patterns)), patterns)
        for i, j in zip(*np.nonzero(np.isfinite(values))):
            ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=7, color="white")
        ax.set_title(f"mitigation: {mitigation}")
        ax.set_xlabel("criterion")
        ax.set_ylabel("pattern")
        fig.colorbar(image, ax=ax, fraction=0.046, label="perplexity")
    fig.suptitle(f"Activation pruning perplexity (targets: {targets})")
    fig.tight_layout()
    save_figure(fig, path)


def plot_act_vs_weight(table: pd.DataFrame, targets: str, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    subset = table[(table["targets"] == targets) & (table["mitigation"] == "none")
                   & (((table["family"] == "act") & (table["criterion"] == "magnitude"))
                      | (table["family"] == "weight"))]
    subset = subset.assign(method=subset["family"].map({"act": "activation", "weight": "weight"})
                           + " " + subset["criterion"])
    patterns = sorted(subset["pattern"].unique(), key=pattern_order)
    methods = sorted(subset["method"].unique())
    fig, ax = plt.subplots(figsize=(1.4 * len(patterns) + 3, 3.6))
    width = 0.8 / max(1, len(methods))
    for k, method in enumerate(methods):
        values = subset[subset["method"] == method].set_index("pattern")["perplexity"].reindex(patterns)
        ax.bar([i + k * width for i in range(len(patterns))], values.to_numpy(dtype=float), width, label=method)
    dense = _ppl(table, family="dense")
    if dense is not None:
        ax.axhline(dense, color="black", linestyle="--", linewidth=1, label="dense")
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(patterns))], patterns)
    ax.set_yscale("log")
    ax.set_xlabel("pattern")
    ax.set_ylabel("perplexity (log scale)")
    ax.set_title(f"Activation vs weight pruning (targets: {targets})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def plot_chat(table: pd.DataFrame, targets: str, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = table[((table["family"] == "dense") | ((table["targets"] == targets) & (table["family"] == "act")
                  & (table["criterion"] == "magnitude") & (table["mitigation"] == "none")))]
    rows = rows.dropna(subset=["refusal_rate"]) if "refusal_rate" in rows else rows.iloc[0:0]
    fig, ax = plt.subplots(figsize=(5, 3.6))
    if len(rows):
        rows = rows.sort_values("pattern", key=lambda s: s.map(pattern_order))
        ax.plot(rows["pattern"], rows["refusal_rate"], marker="o", label="refusal rate (harmful, held-out)")
        ax.plot(rows["pattern"], rows["benign_compliance"], marker="s", label="benign compliance")
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("pattern (magnitude criterion, no mitigation)")
    ax.set_ylabel("rate")
    ax.set_title("Refusal and benign compliance under activation pruning")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def run_table(cell_files, chat_files, *, targets: str, table_out, summary_out, heatmap_out, bars_out,
              chat_out) -> pd.DataFrame:
    table = gather_table(cell_files, chat_files)
    with atomic_path(table_out) as tmp:
        table.drop(columns="window_nlls", errors="ignore").to_csv(tmp, index=False)
    write_json(summary_out, summarise(table, targets))
    plot_heatmaps(table, targets, heatmap_out)
    plot_act_vs_weight(table, targets, bars_out)
    plot_chat(table, targets, chat_out)
    return table
