"""Figures of the reasoning stage (matplotlib, Agg): the ReasonScore distribution with the selection threshold,
and accuracy / length deltas per steered latent (selected vs random controls)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from lmscalpel.io import read_json, save_figure  # noqa: E402


def plot_reasonscore(scores_path: str, selected_path: str, out_png: str) -> None:
    table = pd.read_parquet(scores_path)
    meta = read_json(selected_path)
    scores = np.sort(table["reason_score"].to_numpy())[::-1]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.hist(scores, bins=60, color="tab:blue")
    left.axvline(meta["threshold"], color="tab:red", linestyle="--", label=f"q={meta['quantile']} threshold")
    left.set(yscale="log", xlabel="ReasonScore", ylabel="latents", title="ReasonScore distribution")
    left.legend()
    right.plot(np.arange(1, len(scores) + 1), scores, color="tab:blue")
    right.axhline(meta["threshold"], color="tab:red", linestyle="--")
    right.set(xscale="log", xlabel="rank", ylabel="ReasonScore",
              title=f"sorted scores ({meta['n_selected']} selected of {meta['n_latents']})")
    fig.suptitle(f"SAE {meta['sae_id']}, layer {meta['layer']}")
    fig.tight_layout()
    save_figure(fig, out_png, dpi=110)


def plot_steering(metrics_path: str, out_png: str) -> None:
    metrics = read_json(metrics_path)
    rows = pd.DataFrame(metrics["rows"])
    modes = list(dict.fromkeys(rows["mode"])) if len(rows) else ["add"]
    fig, axes = plt.subplots(2, len(modes), figsize=(5 * len(modes), 7), squeeze=False)
    for col, mode in enumerate(modes):
        part = rows[rows["mode"] == mode] if len(rows) else rows
        labels = [f"{'S' if k == 'selected' else 'R'}{lat}" for k, lat in zip(part.get("kind", []),
                                                                              part.get("latent", []))]
        colors = ["tab:orange" if k == "selected" else "tab:gray" for k in part.get("kind", [])]
        for row, (key, name) in enumerate((("length_delta_percent", "thinking length change (%)"),
                                           ("accuracy_delta_points", "accuracy change (points)"))):
            ax = axes[row][col]
            ax.bar(range(len(labels)), part.get(key, []), color=colors)
            ax.axhline(0, color="black", linewidth=0.8)
            ax.set_xticks(range(len(labels)), labels, rotation=45)
            ax.set(xlabel="latent (S = selected, R = random control)", ylabel=name,
                   title=f"{mode}, γ={metrics['gamma']}, n={metrics['n_problems']} problems")
    fig.suptitle(f"Steering {metrics['sae_id']} on {metrics['benchmark']} "
                 f"(baseline length {metrics['baseline_mean_length']:.1f}, "
                 f"accuracy {metrics['baseline_maj_accuracy']:.2f})")
    fig.tight_layout()
    save_figure(fig, out_png, dpi=110)
