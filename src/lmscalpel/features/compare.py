"""Comparison tables and figures across every SAE of the grid (OrtSAE and BatchTopK side by side): one row per SAE,
and one per grid entry over its seeds (``sae.seeds``: mean, sample sd, min and max of every metric)."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from lmscalpel.features.activations import load_tensors  # noqa: E402
from lmscalpel.io import atomic_path, read_json, save_figure  # noqa: E402

TABLE_COLUMNS = {
    "absorption": ["mean_absorption_fraction_score", "mean_full_absorption_score", "mean_num_split_features",
                   "n_letters_passing"],
    "composition": ["meta_sae_fve"],
    "distinct": ["mean_max_cos_decoder", "mean_max_cos_encoder"],
    "sparse_probing": ["l0_on_probe_texts"],
}
RELATIVE = ["mean_absorption_fraction_score", "meta_sae_fve", "mean_max_cos_decoder"]


# the SAE stage's L0, FVU and both explained variances (1 − FVU, and SAEBench's, which is not a centred variance)
CORE_COLUMNS = ["l0", "fvu", "explained_variance", "explained_variance_saebench"]
NOT_AGGREGATED = ("width", "seed")


def comparison_table(metric_files: list[str], archs: dict[str, str], core_files: list[str] = (),
                     replicates: dict[str, tuple[str, int]] | None = None) -> pd.DataFrame:
    """One row per SAE: headline metrics, the SAE stage's core metrics (``core_l0``, ``core_fvu``, ...), the relative
    change versus the reference SAE that ``distinct`` used, and which grid entry (``base_sae``, seed 0's id) and
    seed offset (``seed``) it is (``replicates``; an SAE missing there is its own seed 0)."""
    rows: dict[str, dict] = {}
    for path in core_files:
        data = read_json(path)
        rows[Path(path).parent.name] = {f"core_{k}": data[k] for k in CORE_COLUMNS if k in data}
    for path in metric_files:
        sae, metric = Path(path).parent.name, Path(path).stem
        data = read_json(path)
        row = rows.setdefault(sae, {})
        row.update(sae=sae, architecture=archs.get(sae), width=data.get("sae_width"), sae_path=data.get("sae_path"))
        keys = list(TABLE_COLUMNS.get(metric, []))
        if metric == "distinct":
            keys += [k for k in data if k.startswith(("distinct_decoder_below_", "no_counterpart_in_reference"))]
            row["reference_sae_path"] = data.get("reference_sae_path")
        elif metric == "scr":
            keys += sorted((k for k in data if re.fullmatch(r"scr_metric_n\d+", k)), key=_n_of)
        elif metric == "tpp":
            keys += sorted((k for k in data if re.fullmatch(r"tpp_total_n\d+", k)), key=_n_of)
        elif metric == "sparse_probing":
            keys += [k for k in data if re.fullmatch(r"(sae|llm)_(top_\d+|full)_test_accuracy", k)]
        row.update({k: data[k] for k in keys if k in data})
    for sae, row in rows.items():
        row["base_sae"], row["seed"] = (replicates or {}).get(sae, (sae, 0))
    table = pd.DataFrame(list(rows.values())).sort_values(["architecture", "width", "sae"]).reset_index(drop=True)
    by_path = table.set_index("sae_path")
    for col in RELATIVE:
        if col in table and "reference_sae_path" in table:
            ref = table["reference_sae_path"].map(lambda p: by_path[col].get(p) if isinstance(p, str) else None)
            table[f"{col}_rel_change_vs_reference"] = (table[col] - ref) / ref.abs()
    return table


def seeds_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per grid entry (``base_sae``) over its seeds: ``n_seeds``, the ``seeds``, and for every numeric
    metric its mean (under the metric's name), ``_sd`` (sample sd; NaN with one seed), ``_min`` and ``_max``."""
    metrics = [c for c in table.select_dtypes("number") if c not in NOT_AGGREGATED]
    rows = []
    for base, group in table.groupby("base_sae", sort=False):
        row = {"sae": base, "architecture": group["architecture"].iloc[0], "width": group["width"].iloc[0],
               "n_seeds": len(group), "seeds": " ".join(map(str, sorted(group["seed"])))}
        for column in metrics:
            values = group[column].dropna()
            row |= {column: values.mean(), f"{column}_sd": values.std(ddof=1), f"{column}_min": values.min(),
                    f"{column}_max": values.max()}
        rows.append(row)
    return pd.DataFrame(rows)


def _n_of(key: str) -> int:
    return int(key.rsplit("_n", 1)[1])


def _by_arch(table: pd.DataFrame):
    return table.groupby("architecture", sort=True)


def scatter_figure(table: pd.DataFrame, x: str, y: str, xlabel: str, ylabel: str, title: str, path: str) -> None:
    fig, ax = plt.subplots(figsize=(5, 4))
    for arch, group in _by_arch(table):
        ax.scatter(group[x], group[y], label=arch)
        for _, r in group.iterrows():
            ax.annotate(r["sae"], (r[x], r[y]), fontsize=6, alpha=0.7)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend()
    save_figure(fig, path, bbox_inches="tight")


def curve_figure(table: pd.DataFrame, prefix: str, ylabel: str, title: str, path: str) -> None:
    cols = sorted((c for c in table if re.fullmatch(rf"{prefix}\d+", c)), key=_n_of)
    fig, ax = plt.subplots(figsize=(5, 4))
    for _, r in table.iterrows():
        ax.plot([_n_of(c) for c in cols], [r[c] for c in cols], marker="o", label=f"{r['sae']} ({r['architecture']})")
    ax.set_xscale("log")
    ax.set(xlabel="ablated latents n", ylabel=ylabel, title=title)
    ax.legend(fontsize=6)
    save_figure(fig, path, bbox_inches="tight")


def max_cos_figure(max_cos_files: list[str], archs: dict[str, str], path: str) -> None:
    fig, ax = plt.subplots(figsize=(5, 4))
    for file in sorted(max_cos_files):
        sae = Path(file).parent.name
        values = load_tensors(file)["max_cos_decoder"].numpy()
        ax.hist(values, bins=50, range=(-0.1, 1.0), density=True, histtype="step", label=f"{sae} ({archs.get(sae)})")
    ax.set(xlabel="max cosine to any other decoder row", ylabel="density",
           title="Decoder max-cosine distribution per SAE")
    ax.legend(fontsize=6)
    save_figure(fig, path, bbox_inches="tight")


def run_compare(metric_files: list[str], max_cos_files: list[str], archs: dict[str, str], outputs,
                core_files: list[str] = (), replicates: dict[str, tuple[str, int]] | None = None) -> None:
    table = comparison_table(metric_files, archs, core_files, replicates)
    with atomic_path(outputs.table) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(outputs.seeds) as tmp:
        seeds_table(table).to_csv(tmp, index=False)
    l0 = "core_l0" if "core_l0" in table else "l0_on_probe_texts"
    scatter_figure(table, l0, "mean_absorption_fraction_score", f"L0 ({l0})", "mean absorption fraction",
                   "Absorption vs L0", outputs.absorption_vs_l0)
    scatter_figure(table, "width", "meta_sae_fve", "SAE width (latents)", "meta-SAE decoder FVE",
                   "Composition (meta-SAE FVE) vs width", outputs.composition_vs_width)
    max_cos_figure(max_cos_files, archs, outputs.max_cos_hist)
    curve_figure(table, "scr_metric_n", "SCR normalised score", "SCR vs ablated latents", outputs.scr_vs_n)
    curve_figure(table, "tpp_total_n", "TPP score", "TPP vs ablated latents", outputs.tpp_vs_n)
