"""Table and figures of the unlearning grid, and the cross-paper robustness table."""

from __future__ import annotations

import math
import os
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from lmscalpel.io import atomic_path, read_json, save_figure, write_text  # noqa: E402

COLUMNS = ["method", "split", "modality", "l1", "l1_lambda", "real", "retain", "forget", "forget_quality",
           "log_forget_quality_ln", "log_forget_quality_log10", "model_utility", "forget_prob",
           "forget_truth_ratio", "forget_facerec_option_accuracy", "retain_prob", "retain_facerec_option_accuracy",
           "tofu_forget_prob", "tofu_retain_prob", "real_faces_prob", "real_world_prob"]


def load_table(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    rows = []
    for path in paths:
        record = read_json(path)
        rows.append({c: record.get(c) for c in COLUMNS})
    return pd.DataFrame(rows, columns=COLUMNS)


def write_table(paths: Sequence[str | os.PathLike], csv_out: str, md_out: str) -> pd.DataFrame:
    table = load_table(paths).sort_values(["split", "modality", "l1", "method", "l1_lambda"], kind="stable")
    with atomic_path(csv_out) as tmp:
        table.to_csv(tmp, index=False)
    write_text(md_out, _markdown(table))
    return table


def _markdown(table: pd.DataFrame) -> str:
    shown = ["method", "split", "modality", "l1", "l1_lambda", "real", "retain", "forget", "log_forget_quality_ln",
             "model_utility"]
    lines = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    for _, row in table[shown].iterrows():
        lines.append("| " + " | ".join(_fmt(row[c]) for c in shown) + " |")
    note = ("\nReal / Retain / Forget: CLEAR's harmonic means of probability and truth ratio; log FQ = ln of the "
            "KS-test p-value of the Forget truth ratios against the gold model's (CLEAR); model utility = harmonic "
            "mean of probability, ROUGE-L and truth ratio on Real Faces, Real World, Retain and Retain FaceRec "
            "(CLEAR's tasks; CLEAR also averages chrF++).\n")
    return "\n".join(lines) + "\n" + note


def _fmt(value) -> str:
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else f"{value:.3f}"
    return "" if value is None else str(value)


def plot_scatter(table: pd.DataFrame, out: str) -> None:
    """Forget quality (log10) against model utility, one point per method, without / with L1."""
    split = sorted(table["split"].dropna().unique())[-1]
    sub = table[(table["split"] == split) & table["modality"].isin(["both", "none"])]
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    runs = sub[sub["modality"] == "both"]
    for method, group in runs.groupby("method"):
        pts = group.sort_values("l1")
        xs, ys = pts["model_utility"].astype(float), pts["log_forget_quality_log10"].astype(float)
        ax.plot(xs, ys, color="0.7", lw=0.8, zorder=1)
        for _, row in pts.iterrows():
            ax.scatter(row["model_utility"], row["log_forget_quality_log10"], marker="^" if row["l1"] else "o",
                       color="tab:red" if row["l1"] else "tab:blue", zorder=2)
            ax.annotate(method, (row["model_utility"], row["log_forget_quality_log10"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    for _, row in sub[sub["modality"] == "none"].iterrows():
        ax.scatter(row["model_utility"], row["log_forget_quality_log10"], marker="*", s=120, color="black")
        ax.annotate(row["method"], (row["model_utility"], row["log_forget_quality_log10"]), fontsize=8,
                    xytext=(4, -8), textcoords="offset points")
    ax.scatter([], [], marker="o", color="tab:blue", label="without L1")
    ax.scatter([], [], marker="^", color="tab:red", label="LoRA + L1")
    ax.scatter([], [], marker="*", color="black", label="original / gold")
    ax.set_xlabel("model utility (harmonic mean of non-forget metrics)")
    ax.set_ylabel("log10 forget quality (KS p-value vs gold)")
    ax.set_title(f"Forget quality vs model utility ({split}, both modalities)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out)


def plot_forget_retain(table: pd.DataFrame, out: str) -> None:
    """Forget against Retain per method: without L1 and with LoRA + L1 at every λ (largest split, both
    modalities), so the λ sweep shows whether L1 buys a better trade-off or only a frozen model."""
    split = sorted(table["split"].dropna().unique())[-1]
    sub = table[table["split"] == split]
    runs = sub[sub["modality"] == "both"]
    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (method, group) in enumerate(runs.groupby("method")):
        color = colors[i % len(colors)]
        plain = group[~group["l1"].astype(bool)]
        lora = group[group["l1"].astype(bool)].sort_values("l1_lambda")
        ax.scatter(plain["retain"], plain["forget"], marker="o", color=color, label=method)
        ax.plot(lora["retain"], lora["forget"], marker="^", color=color, lw=0.8)
        for _, row in lora.iterrows():
            ax.annotate(f"λ={row['l1_lambda']:g}", (row["retain"], row["forget"]), fontsize=6, color=color,
                        xytext=(3, 2), textcoords="offset points")
    for _, row in sub[sub["modality"] == "none"].iterrows():
        ax.scatter(row["retain"], row["forget"], marker="*", s=120, color="black")
        ax.annotate(row["method"], (row["retain"], row["forget"]), fontsize=8, xytext=(4, -8),
                    textcoords="offset points")
    ax.scatter([], [], marker="^", color="0.4", label="LoRA + L1 (λ labelled)")
    ax.set_xlabel("Retain (hmean of prob. and truth ratio, Retain + Retain FaceRec; higher is better)")
    ax.set_ylabel("Forget (same on Forget + Forget FaceRec; lower is better)")
    ax.set_title(f"Forget vs retain, without / with LoRA + L1 ({split}, both modalities)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out)


def plot_split_bars(table: pd.DataFrame, out: str) -> None:
    """Forget / Retain / Real aggregates per method, one panel per split (without L1, both modalities)."""
    splits = sorted(table["split"].dropna().unique())
    fig, axes = plt.subplots(1, len(splits), figsize=(max(6.0, 5.5 * len(splits)), 4.2), squeeze=False)
    for ax, split in zip(axes[0], splits):
        sub = table[(table["split"] == split) & (table["modality"].isin(["both", "none"])) & (~table["l1"].astype(bool))]
        sub = sub.sort_values("method")
        x = np.arange(len(sub))
        for i, (col, color) in enumerate([("forget", "tab:red"), ("retain", "tab:green"), ("real", "tab:blue")]):
            ax.bar(x + (i - 1) * 0.27, sub[col].astype(float).fillna(0), width=0.27, color=color, label=col)
        ax.set_xticks(x, sub["method"], rotation=60, fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_xlabel("method")
        ax.set_ylabel("harmonic mean of probability and truth ratio")
        ax.set_title(f"{split}: Forget (lower is better), Retain, Real")
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out)


def write_robustness(paths: Sequence[str | os.PathLike], csv_out: str, png_out: str) -> pd.DataFrame:
    table = pd.DataFrame([read_json(p) for p in paths])
    keep = [c for c in table.columns if not c.startswith(("examples",))]
    table = table[keep]
    with atomic_path(csv_out) as tmp:
        table.to_csv(tmp, index=False)
    labels = [f"{r.method}{' +L1' if r.l1 else ''}\n{r.split}/{r.modality}" for r in table.itertuples()]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(table)), 4.2))
    x = np.arange(len(table))
    for i, (cond, color) in enumerate([("none", "0.4"), ("steering", "tab:orange"), ("pruning", "tab:purple")]):
        fq = table[f"{cond}_forget_quality"].astype(float).clip(lower=1e-300)
        ax.bar(x + (i - 1) * 0.27, np.log10(fq), width=0.27, color=color, label=cond)
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_xlabel("model")
    ax.set_ylabel("log10 forget quality (KS p-value vs gold)")
    ax.set_title("Does forgetting survive random steering and 8:16 activation pruning?")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, png_out)
    return table
