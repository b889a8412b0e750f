"""The claims table: every headline claim of the five papers (and the project's cross-paper questions), this run's
number with its uncertainty, and a verdict computed from the result files.

A claim is one entry of ``claims.yaml``: its words, the paper's number, the report section it links to, and a
*measure* (a function below) with its parameters. A measure reads the stage's result files and returns an
:class:`Outcome`; a missing file, key or row (another stage not configured, a result format that changed) yields
"not measured in this run" with the reason, never an exception.

Noise allowances are the stages' own: the steering stage's 95 % bootstrap CIs over vectors (for random steering
against the unsteered model: its best cell re-measured on held-out prompts, beside the unsteered rate's Wilson
interval on them), the pruning stage's ``NOISE_SE`` paired standard errors over perplexity windows (the ordering,
8:16 against 2:4, 16:32's closeness to unstructured) and its strict act-vs-weight check, the universal attack's
paired SE over held-out prompts, the reasoning stage's selected-minus-random length comparison; the OrtSAE
claims the spread over ``sae.seeds`` and, for absorption, the paired SE over letters. A difference inside such an
allowance is "within noise": neither holds nor does not hold. Where a stage has no uncertainty (one SAE seed for a
metric without per-letter values, one unlearning run per cell), the verdict is the direction of the effect and the
row says so. Accuracy deltas get a binomial standard error, held to the same ``NOISE_SE``.

Each outcome also names the data its number was measured on (``data``, the table's "measured on" column): the
benchmark or prompt set, its split and sample, as recorded in the very result files the measure read (their
provenance keys), so a reader can tell a GSM8K accuracy from a toy-world one without opening the config.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import yaml

from lmscalpel.io import read_json
from lmscalpel.report.values import (MISSING, NotMeasured, first_match, format_interval, format_number,
                                     is_missing, lookup, read_table)

log = logging.getLogger(__name__)
CLAIMS_FILE = Path(__file__).with_name("claims.yaml")
NOISE_SE = 2.0  # as lmscalpel.pruning.table.NOISE_SE: a difference counts when it exceeds 2 standard errors
Z95 = 1.96
HOLDS, FAILS, WITHIN_NOISE, UNMEASURED = "holds", "does not hold", "within noise", "not measured"
MEASURES: dict[str, Callable[..., "Outcome"]] = {}


@dataclass
class Outcome:
    this_run: str  # the number with its uncertainty, in words
    verdict: str
    why: str
    value: float | None = None
    low: float | None = None
    high: float | None = None
    data: str = MISSING  # what the number was measured on: benchmark / prompt set, split, sample


@dataclass
class Context:
    results: Path
    config: dict


def measure(function: Callable[..., Outcome]) -> Callable[..., Outcome]:
    MEASURES[function.__name__] = function
    return function


def load_claims(path: Path = CLAIMS_FILE) -> list[dict]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))["claims"]


def evaluate_claims(results: Path, config: dict, stages: list[str], claims: list[dict] | None = None) -> list[dict]:
    """Every claim with this run's outcome (a dict per claim, as written to claims.json)."""
    ctx = Context(Path(results), config)
    return [{**claim, **asdict(evaluate_claim(ctx, claim, stages))} for claim in (claims or load_claims())]


def evaluate_claim(ctx: Context, claim: dict, stages: list[str]) -> Outcome:
    missing = [s for s in claim.get("stages", [claim["section"]]) if s not in stages]
    if missing:
        return Outcome("—", UNMEASURED, f"stage {', '.join(missing)} not in this run's stages")
    try:
        return MEASURES[claim["measure"]](ctx, **claim.get("params", {}))
    except NotMeasured as reason:
        return Outcome("—", UNMEASURED, str(reason))
    except Exception as error:  # a stage's result format changed: say so in the row, keep the report
        log.warning("claim %s: %s: %s", claim["id"], type(error).__name__, error, exc_info=True)
        return Outcome("—", UNMEASURED, f"could not read the result ({type(error).__name__}: {error})")


def _number(data: dict, key: str) -> float:
    value = lookup(data, key)
    if is_missing(value):
        raise NotMeasured(f"{key} is empty (NaN) in this run")
    return float(value)


def _verdict(ok: bool) -> str:
    return HOLDS if ok else FAILS


def _truthy(value: Any) -> bool:
    """A table's ``l1`` column: booleans, their strings, or an L1 weight (0 = off)."""
    if isinstance(value, str):
        value = value.strip().lower()
        return value not in ("false", "0", "0.0", "none", "off", "")
    return bool(value) and not is_missing(value)


def _optional(ctx: Context, pattern: str) -> dict:
    """A JSON result read only to name the data behind a number: {} when absent, since the verdict does not
    depend on it."""
    matches = sorted(ctx.results.glob(pattern))
    return read_json(matches[0]) if matches else {}


def _counted(description: Any, count: Any, what: str, judge: Any = None) -> str:
    """A recorded data description with how many items of it the number used (and the judge that scored them),
    e.g. "harmbench test (standard), max 60: 60 prompts, judge keyword"; "—" without a description."""
    if is_missing(description) or not description:
        return MISSING
    text = str(description) + (f": {format_number(count, 'count')} {what}" if not is_missing(count) else "")
    return text + (f", judge {judge}" if judge else "")


# --- Rogue Scalpel --------------------------------------------------------------------------------------------

def _cells(ctx: Context) -> pd.DataFrame:
    return read_table(ctx.results, "steering/compliance_cells.csv")


def _cell_ci(cells: pd.DataFrame, kind: str, layer: Any, c: Any) -> tuple[float, float]:
    row = cells[(cells["direction_kind"] == kind) & (cells["layer"] == layer) & np.isclose(cells["c"], float(c))]
    if not len(row):
        return math.nan, math.nan
    return float(row["ci_low"].iloc[0]), float(row["ci_high"].iloc[0])


def _rate(value: float, low: Any, high: Any) -> str:
    return format_number(value, "percent") + format_interval(low, high, "percent")


def _steering_data(metrics: dict) -> str:
    """The grid's evaluation prompts as steering_metrics recorded them (source, split, cap), their number and the
    headline judge: every cell of the grid (compliance_cells.csv, the cross-paper table) uses the same."""
    return _counted(metrics.get("evaluation_prompts"), metrics.get("n_prompts"), "prompts",
                    metrics.get("headline_judge"))


@measure
def steering_above_unsteered(ctx: Context, kind: str = "random") -> Outcome:
    """Steering of ``kind`` raises compliance above the unsteered model's own rate, on prompts the best cell was not
    chosen on: the stage picks the best (layer, c) cell on a random half of the evaluation prompts and measures it
    on the other half. Holds when that held-out CR's 95 % CI lies wholly above the unsteered rate's 95 % Wilson
    interval on the same prompts (two non-overlapping intervals: a conservative test); does not hold when the
    held-out CR is not above the unsteered one; within noise in between. So a model that refuses by itself (an
    unsteered rate above 0) is compared with its own rate, and a cell that wins only by selection is flagged."""
    metrics = read_json(first_match(ctx.results, "steering/metrics.json"))
    unsteered, best = _number(metrics, "unsteered_compliance"), _number(metrics, f"{kind}_max_cr")
    layer, c = lookup(metrics, f"{kind}_max_cr_layer"), lookup(metrics, f"{kind}_max_cr_c")
    cells = _cells(ctx)
    low, high = _cell_ci(cells, kind, layer, c)
    u_high = metrics.get("unsteered_ci_high")
    text = (f"best cell {_rate(best, low, high)} at layer {layer}, c = {c:g} vs unsteered "
            f"{_rate(unsteered, metrics.get('unsteered_ci_low'), u_high)} (all {metrics.get('n_prompts')} prompts)")
    if f"{kind}_confirm_cr" not in metrics:
        raise NotMeasured(f"steering/metrics.json has no held-out confirmation of the best {kind} cell (a result "
                          "from before it, or fewer than two prompts): rerun steering_metrics")
    held, h_low, h_high = (_number(metrics, f"{kind}_confirm_cr"), metrics.get(f"{kind}_confirm_ci_low"),
                           metrics.get(f"{kind}_confirm_ci_high"))
    base, b_high = _number(metrics, "unsteered_confirm_cr"), _number(metrics, "unsteered_confirm_ci_high")
    text += (f"; held out: {_rate(held, h_low, h_high)} at layer "
             f"{metrics[f'{kind}_confirm_layer']}, c = {metrics[f'{kind}_confirm_c']:g} (chosen on "
             f"{metrics.get('n_selection_prompts')} other prompts) vs unsteered "
             f"{_rate(base, metrics.get('unsteered_confirm_ci_low'), b_high)} on the "
             f"{metrics.get('n_confirmation_prompts')} held-out prompts")
    bound = h_low if not is_missing(h_low) else held  # no CI (one vector, bootstrap over vectors): the point value
    if held <= base:
        verdict, why = FAILS, "on held-out prompts the best cell is not above the unsteered rate"
    elif bound > b_high:
        verdict = HOLDS
        why = ("held-out 95 % CI above the unsteered rate's 95 % Wilson interval" if not is_missing(h_low) else
               "held-out point value (no CI: one vector) above the unsteered rate's 95 % Wilson interval")
    else:
        verdict, why = WITHIN_NOISE, "held-out CR above the unsteered rate, but the intervals overlap"
        if not is_missing(low) and low > (unsteered if is_missing(u_high) else u_high):
            n_cells = int((cells["direction_kind"] == kind).sum())
            why += (f"; the best of {n_cells} cells is clear of it only with the prompts it was chosen on "
                    "(a win by selection)")
    why += "; best cell chosen on one half of the prompts, tested on the other"
    return Outcome(text, verdict, why, held, h_low, h_high, data=_steering_data(metrics))


def _sae_kind(cells: pd.DataFrame, config: dict) -> str:
    """The paper's SAE (an external one) when the run steers with it, else the first project architecture."""
    kinds = sorted(k for k in cells["direction_kind"].unique() if str(k).startswith("sae-"))
    project = [f"sae-{a}" for a in config.get("steering", {}).get("sae", {}).get("architectures", [])]
    external = [k for k in kinds if k not in project]
    ordered = external + [k for k in project if k in kinds]
    if not ordered:
        raise NotMeasured("no SAE-feature directions in the steering grid")
    return ordered[0]


def _matched_difference(cells: pd.DataFrame, kind: str, baseline: str) -> tuple[float, float, int]:
    """Mean CR difference over the (layer, c) cells both kinds have, and its SE from the cells' bootstrap CIs."""
    keys = ["layer", "c"]
    a = cells[cells["direction_kind"] == kind].set_index(keys)
    b = cells[cells["direction_kind"] == baseline].set_index(keys)
    shared = a.index.intersection(b.index)
    if not len(shared):
        raise NotMeasured(f"no (layer, c) cell has both {kind} and {baseline} directions")
    diff = a.loc[shared, "compliance_rate"] - b.loc[shared, "compliance_rate"]
    se2 = (((a.loc[shared, "ci_high"] - a.loc[shared, "ci_low"]) / (2 * Z95)) ** 2
           + ((b.loc[shared, "ci_high"] - b.loc[shared, "ci_low"]) / (2 * Z95)) ** 2)
    return float(diff.mean()), float(math.sqrt(se2.sum()) / len(shared)), len(shared)


def _difference_outcome(mean: float, se: float, n: int, label: str, expect: str, data: str) -> Outcome:
    low, high = (mean - Z95 * se, mean + Z95 * se) if not is_missing(se) else (math.nan, math.nan)
    text = f"{100 * mean:+.1f} pt" + (f" [95 % CI {100 * low:+.1f}–{100 * high:+.1f} pt]" if not is_missing(low) else "")
    text += f" ({label}, mean over {n} matched cells)"
    if is_missing(low):
        ok = mean > 0 if expect == "higher" else mean <= 0
        return Outcome(text, _verdict(ok), "no CI (fewer than 2 vectors per cell): point value", mean, data=data)
    ok = low > 0 if expect == "higher" else low <= 0
    why = {("higher", True): "95 % CI above 0", ("higher", False): "95 % CI includes 0 or below",
           ("not higher", True): "95 % CI reaches 0 or below", ("not higher", False): "95 % CI above 0"}[(expect, ok)]
    return Outcome(text, _verdict(ok), why, mean, low, high, data=data)


@measure
def steering_sae_over_random(ctx: Context) -> Outcome:
    """SAE-feature minus random CR at the same layer and c; holds when the difference's 95 % CI is above 0."""
    cells = _cells(ctx)
    kind = _sae_kind(cells, ctx.config)
    mean, se, n = _matched_difference(cells, kind, "random")
    return _difference_outcome(mean, se, n, f"{kind} − random", "higher",
                               _steering_data(_optional(ctx, "steering/metrics.json")))


@measure
def steering_cross_paper(ctx: Context, kinds: tuple[str, str] = ("sae-batchtopk", "sae-ortsae")) -> Outcome:
    """OrtSAE minus BatchTopK feature CR (same layer, c, feature count); holds unless significantly above 0."""
    cross = read_table(ctx.results, "steering/cross_paper_*.csv")
    if not len(cross):
        raise NotMeasured("the cross-paper table is empty (the run steers with fewer than two project SAE kinds)")
    first, second = kinds
    diff = cross[f"{second}_cr"] - cross[f"{first}_cr"]
    se2 = (((cross[f"{first}_ci_high"] - cross[f"{first}_ci_low"]) / (2 * Z95)) ** 2
           + ((cross[f"{second}_ci_high"] - cross[f"{second}_ci_low"]) / (2 * Z95)) ** 2)
    se = float(math.sqrt(se2.sum()) / len(cross))
    return _difference_outcome(float(diff.mean()), se, len(cross), f"{second} − {first}", "not higher",
                               _steering_data(_optional(ctx, "steering/metrics.json")))


@measure
def universal_over_random(ctx: Context) -> Outcome:
    """Held-out CR of the universal vectors over random ones. The verdict is the paired difference over held-out
    prompts (universal − random, each prompt's CR averaged over its vectors): holds above ``NOISE_SE`` standard
    errors, does not hold below −``NOISE_SE``, within noise between (a summary without the paired SE: the sign of
    the stage's ``universal_beats_random``, one run)."""
    summary = read_json(first_match(ctx.results, "steering/universal/summary.json"))
    if summary.get("universal_n_vectors") == 0:
        found = ", ".join(f"{n} of {t}" for n, t in zip(summary.get("pool_selected", []),
                                                         summary.get("pool_trials", [])))
        raise NotMeasured("no universal vector: fewer random vectors complied on the training prompt than "
                          f"steering.universal.n_select needs ({found or 'none'} trials at c* = "
                          f"{summary.get('c_star')}) within steering.universal.max_trials")
    universal, random = _number(summary, "universal_cr_mean"), _number(summary, "random_cr_mean")
    low, high = summary.get("universal_cr_min"), summary.get("universal_cr_max")
    n = int(summary.get("universal_n_vectors") or 0)
    ratio = summary.get("universal_over_random")
    spread = format_interval(low, high, "percent", label=f"range over {n} vectors") if n > 1 else " (1 vector)"
    text = (f"{format_number(ratio, 'ratio')}: universal {format_number(universal, 'percent')}{spread} vs random "
            f"{format_number(random, 'percent')}")
    data = _counted(summary.get("evaluation_prompts"), summary.get("n_heldout_prompts"), "held-out prompts",
                    summary.get("headline_judge"))
    diff, se = summary.get("universal_minus_random"), summary.get("universal_minus_random_se")
    if is_missing(diff) or is_missing(se):
        ok = bool(lookup(summary, "universal_beats_random"))
        why = "universal mean above random mean" if ok else "universal mean not above random"
        return Outcome(text, _verdict(ok), f"{why} (one run, no paired SE)", ratio, low, high, data=data)
    prompts, n_random = summary.get("n_heldout_prompts"), int(summary.get("random_n_vectors") or 0)
    vectors = f" and {n_random} random vectors" if n_random else ""
    text += f"; paired difference {100 * diff:+.1f} pt ± {100 * se:.1f} (SE over {prompts} held-out prompts{vectors})"
    caveat = ("; one random vector (steering.universal.n_baseline): the SE leaves out the spread between random "
              "vectors" if n_random == 1 else "")
    if abs(diff) <= NOISE_SE * se:
        return Outcome(text, WITHIN_NOISE, f"the paired difference is within {NOISE_SE:g} SE of 0{caveat}", ratio,
                       low, high, data=data)
    ok = diff > 0
    why = f"the paired difference is {'above' if ok else 'below'} 0 by more than {NOISE_SE:g} SE{caveat}"
    return Outcome(text, _verdict(ok), why, ratio, low, high, data=data)


# --- OrtSAE ---------------------------------------------------------------------------------------------------

@dataclass
class _Pair:
    """One OrtSAE of the grid against its reference (BatchTopK, same layer, width, k and seed)."""

    group: str  # the OrtSAE's seed-0 id: the grid entry its seeds replicate
    sae: str
    reference: str
    change: float  # (OrtSAE − reference) / |reference|
    reference_value: float


def _reference_pairs(table: pd.DataFrame, column: str, arch: str) -> list[_Pair]:
    by_path = table.set_index("sae_path")
    pairs, skipped = [], set()
    for _, row in table[table["architecture"] == arch].iterrows():
        ref_path = row.get("reference_sae_path")
        if not isinstance(ref_path, str) or ref_path not in by_path.index:
            skipped.add("no reference SAE")
            continue
        ref = by_path.loc[ref_path]
        if is_missing(row[column]) or is_missing(ref[column]):
            skipped.add(f"{column} is NaN")
        elif ref[column] == 0:
            skipped.add(f"the reference's {column} is 0 (no relative change)")
        else:
            group = row["base_sae"] if isinstance(row.get("base_sae"), str) else row["sae"]
            pairs.append(_Pair(group, str(row["sae"]), str(ref["sae"]),
                               (row[column] - ref[column]) / abs(ref[column]), abs(float(ref[column]))))
    if not pairs:
        raise NotMeasured(f"no {arch} SAE to compare: {'; '.join(sorted(skipped)) or f'no {arch} row'}")
    return pairs


def _by_group(pairs: list[_Pair]) -> dict[str, list[_Pair]]:
    groups: dict[str, list[_Pair]] = {}
    for pair in pairs:
        groups.setdefault(pair.group, []).append(pair)
    return groups


def seed_se(changes_by_group: list[list[float]]) -> float:
    """SE of the mean over grid entries of each entry's mean over seeds: per entry sd / √n over its seeds, combined
    as √Σ SE² / G. NaN unless every entry has two seeds or more."""
    if not changes_by_group or min(len(c) for c in changes_by_group) < 2:
        return math.nan
    ses = [np.std(c, ddof=1) / math.sqrt(len(c)) for c in changes_by_group]
    return float(math.sqrt(sum(se ** 2 for se in ses)) / len(ses))


def letter_paired_se(letter_values: list[tuple[dict[str, float], dict[str, float]]]) -> tuple[float, int]:
    """SE over letters of the per-letter difference (SAE − reference), each letter's difference averaged over the
    seeds given as (SAE letters, reference letters) pairs, on the letters every pair has; and that letter count.
    NaN with fewer than two shared letters."""
    shared = set.intersection(*(set(a) & set(b) for a, b in letter_values)) if letter_values else set()
    if len(shared) < 2:
        return math.nan, len(shared)
    diffs = np.array([np.mean([a[ch] - b[ch] for a, b in letter_values]) for ch in sorted(shared)])
    return float(diffs.std(ddof=1) / math.sqrt(len(diffs))), len(diffs)


def _letters(ctx: Context, sae: str, key: str) -> dict[str, float]:
    """The per-letter values ``letter_<X>_<key>`` of one SAE's absorption result."""
    data = read_json(first_match(ctx.results, f"features/{sae}/absorption.json"))
    prefix, suffix = "letter_", f"_{key}"
    return {k[len(prefix):-len(suffix)]: float(v) for k, v in data.items()
            if k.startswith(prefix) and k.endswith(suffix) and not is_missing(v)}


def _letter_se(ctx: Context, groups: dict[str, list[_Pair]], key: str) -> tuple[float, int]:
    """The per-letter paired SE of the relative change, combined over grid entries as :func:`seed_se` does."""
    ses, counts = [], []
    for pairs in groups.values():
        se, n = letter_paired_se([(_letters(ctx, p.sae, key), _letters(ctx, p.reference, key)) for p in pairs])
        ses.append(se / np.mean([p.reference_value for p in pairs]))
        counts.append(n)
    return float(math.sqrt(sum(se ** 2 for se in ses)) / len(ses)), min(counts)


def _feature_data(ctx: Context, sae: str, column: str) -> str:
    """What a feature metric of ``sae`` was measured on. Its metric file (the JSON under features/<sae>/ that holds
    ``column``) names its dataset(s) ("decoder rows" for the weight-only metrics) and its own sample counts
    (``n_*``: letters passing the probe gate, words evaluated, probe runs, latents); each dataset's activation
    metadata (features/activations/layer<L>/<dataset>.json) adds its source and size."""
    files = sorted((ctx.results / "features" / sae).glob("*.json"))
    metric = next((data for data in map(read_json, files) if column in data), {})
    if not metric.get("dataset"):
        return MISSING
    datasets = []
    for name in str(metric["dataset"]).split(","):
        meta = _optional(ctx, f"features/activations/layer{metric.get('layer')}/{name}.json")
        source = meta.get("source") or meta.get("words_source")
        size = next((f"{format_number(meta[k], 'count')} {k[2:]}" for k in ("n_texts", "n_words") if k in meta), None)
        details = [part for part in (source, size) if part]
        datasets.append(name + (f" ({', '.join(details)})" if details else ""))
    counts = [f"{format_number(v, 'count')} {k[2:].replace('_', ' ')}" for k, v in metric.items()
              if k.startswith("n_") and not is_missing(v)]
    return ", ".join(datasets) + (f": {', '.join(counts)}" if counts else "")


def noise_verdict(difference: float, better: str, noises: dict[str, float]) -> tuple[str, str]:
    """Verdict and reason for a difference (OrtSAE − reference) whose expected sign is ``better``: "within noise"
    when it lies within NOISE_SE times the largest of the available uncertainties (``noises``: name → SE; NaN ones
    are left out), else holds / does not hold by its sign; with no uncertainty at all, the direction alone."""
    direction = "higher than" if difference > 0 else "lower than" if difference < 0 else "equal to"
    ok = difference > 0 if better == "higher" else difference < 0
    known = {name: se for name, se in noises.items() if not is_missing(se)}
    if not known:
        return _verdict(ok), f"{direction} the reference; one seed: no spread, the direction only"
    name, se = max(known.items(), key=lambda item: item[1])
    decided = f"{NOISE_SE:g} SE of the {name}" + (" (the larger uncertainty)" if len(known) > 1 else "")
    if abs(difference) <= NOISE_SE * se:
        return WITHIN_NOISE, f"{direction} the reference by less than {decided}: neither holds nor fails"
    return _verdict(ok), f"{direction} the reference by more than {decided}"


@measure
def ortsae_relative(ctx: Context, columns: list[str], better: str, arch: str = "ortsae",
                    per_letter: str | None = None) -> Outcome:
    """Relative change of OrtSAE against the reference SAE its ``distinct`` metric used (BatchTopK at the same width
    and seed), mean over seeds (and widths). Its uncertainty: the spread over seeds (SE of the mean of the per-seed
    changes) and, for a per-letter metric (``per_letter``: the key of ``letter_<X>_<key>`` in absorption.json), the
    paired SE over letters; a change within NOISE_SE of the larger is "within noise"."""
    table = read_table(ctx.results, "features/comparison.csv")
    column = next((c for c in columns if c in table and table[c].notna().any()), None)
    if column is None:
        raise NotMeasured(f"none of {', '.join(columns)} measured (empty or absent in features/comparison.csv)")
    groups = _by_group(_reference_pairs(table, column, arch))
    changes = [[p.change for p in pairs] for pairs in groups.values()]
    mean = float(np.mean([np.mean(c) for c in changes]))
    n_seeds = min(len(c) for c in changes)
    noises = {f"seed spread ({n_seeds} seeds)": seed_se(changes)}
    if per_letter is not None:
        se, n_letters = _letter_se(ctx, groups, per_letter)
        noises[f"per-letter paired difference ({n_letters} letters)"] = se
    known = {name: se for name, se in noises.items() if not is_missing(se)}
    uncertainty = "; ".join(f"± {format_number(se, 'relative').lstrip('+')} SE, {name}" for name, se in known.items())
    refs = [pairs[0].reference for pairs in groups.values()]  # seed 0's: its id sorts first
    seeds = f"mean over {n_seeds} seeds" if n_seeds > 1 else "one seed"
    text = (f"{format_number(mean, 'relative')}" + (f" ({uncertainty})" if uncertainty else "")
            + f" ({column.replace('_', ' ')}, {seeds}, vs {', '.join(refs)}{' and its seeds' * (n_seeds > 1)})")
    verdict, why = noise_verdict(mean, better, noises)
    flat = [c for group in changes for c in group]
    data = _feature_data(ctx, next(iter(groups.values()))[0].sae, column)  # its reference reads the same data
    if known:
        se = max(known.values())
        return Outcome(text, verdict, why, mean, mean - Z95 * se, mean + Z95 * se, data=data)
    return Outcome(text, verdict, why, mean, min(flat), max(flat), data=data)


# --- N:M activation pruning -----------------------------------------------------------------------------------

def _pruning_summary(ctx: Context) -> dict:
    return read_json(first_match(ctx.results, "pruning/summary.json"))


def _perplexity_data(ctx: Context) -> str:
    """The text the summary's perplexities were measured on, from its cells' rows (pruning/table.csv:
    ``eval_dataset``, ``eval_split``, ``n_windows`` × ``seqlen`` tokens); each distinct setting is named."""
    columns = ["eval_dataset", "eval_split", "n_windows", "seqlen"]
    try:
        table = read_table(ctx.results, "pruning/table.csv")
    except NotMeasured:
        return MISSING
    if not set(columns) <= set(table):
        return MISSING
    settings = table[columns].dropna(subset=["eval_dataset"]).drop_duplicates()
    return "; ".join(f"{r.eval_dataset}{'' if is_missing(r.eval_split) else ' ' + str(r.eval_split)}, "
                     f"{format_number(r.n_windows, 'count')} windows × {format_number(r.seqlen, 'count')} tokens"
                     for r in settings.itertuples()) or MISSING


def _pattern_label(slug: str) -> str:
    return "unstructured 50 %" if slug == "u50" else slug.replace("-", ":")


@measure
def pruning_act_beats_weight(ctx: Context) -> Outcome:
    """Every activation-vs-weight comparison of the summary (magnitude / Wanda at 2:4 and 8:16), strict as the
    stage's ``act_beats_weight_*``."""
    summary = _pruning_summary(ctx)
    flags = {k: v for k, v in summary.items() if k.startswith("act_beats_weight_")}
    if not flags:
        raise NotMeasured("no weight-pruning baseline at an activation pattern (pruning.weight_patterns)")
    parts = []
    for key in sorted(flags):
        method, pattern = key.removeprefix("act_beats_weight_").rsplit("_", 1)
        act, weight = summary.get(f"act_magnitude_ppl_{pattern}"), summary.get(f"weight_{method}_ppl_{pattern}")
        parts.append(f"{_pattern_label(pattern)} vs {method}: PPL {format_number(act)} vs {format_number(weight)}")
    ok = all(bool(v) for v in flags.values())
    why = f"{sum(map(bool, flags.values()))} of {len(flags)} comparisons won by activation pruning (strict)"
    return Outcome("; ".join(parts), _verdict(ok), why, data=_perplexity_data(ctx))


@measure
def pruning_ordering(ctx: Context) -> Outcome:
    """The magnitude-criterion PPL ordering with the stage's paired-SE allowance (``magnitude_ordering_holds``)."""
    summary = _pruning_summary(ctx)
    holds = summary.get("magnitude_ordering_holds")
    if holds is None:
        raise NotMeasured("fewer than two of u50, 16:32, 8:16, 4:8, 2:4 in pruning.patterns")
    chain = summary.get("magnitude_ordering", "")
    z = summary.get("magnitude_ordering_worst_z")
    text = f"{chain.replace('-', ':')} (worst paired z {format_number(z)})"
    allowance = summary.get("magnitude_ordering_noise_se", NOISE_SE)
    return Outcome(text, _verdict(bool(holds)), f"a reversal counts only beyond {allowance:g} paired SE", z,
                   data=_perplexity_data(ctx))


def _degradation(summary: dict, pattern: str) -> float:
    return _number(summary, f"act_magnitude_ppl_{pattern}") - _number(summary, "dense_perplexity")


def _paired_verdict(z: Any, point_ok: bool, claim: str) -> tuple[str, str]:
    """Verdict on ``claim`` from a paired z over perplexity windows (positive = the claim's direction): beyond
    NOISE_SE it holds or fails, inside "within noise"; without z (no per-window NLLs) the point values decide."""
    if is_missing(z):
        return _verdict(point_ok), f"{claim}: {'yes' if point_ok else 'no'} by the point values (no per-window NLLs)"
    z = float(z)
    if abs(z) <= NOISE_SE:
        return WITHIN_NOISE, f"{claim}? paired z {z:+.2f} over perplexity windows, within {NOISE_SE:g} SE"
    answer = "yes" if z > 0 else "no"
    return _verdict(z > 0), f"{claim}: {answer}, paired z {z:+.2f} over windows (beyond {NOISE_SE:g} SE)"


@measure
def pruning_near_unstructured(ctx: Context) -> Outcome:
    """16:32 approaches unstructured 50 %: its PPL degradation from dense is closer to unstructured's than to 2:4's,
    i.e. the margin (2:4 − 16:32) − (16:32 − u50) is above 0, held to NOISE_SE paired SEs over the windows."""
    summary = _pruning_summary(ctx)
    try:
        d16, du, d24 = (_degradation(summary, p) for p in ("16-32", "u50", "2-4"))
    except NotMeasured as reason:
        raise NotMeasured(f"needs 16:32, unstructured 50 % and 2:4 in pruning.patterns ({reason})") from None
    ratio = summary.get("degradation_ratio_2-4_over_16-32")
    margin, se = (d24 - d16) - (d16 - du), summary.get("near_unstructured_margin_se")
    text = (f"ΔPPL from dense: u50 {format_number(du)}, 16:32 {format_number(d16)}, 2:4 {format_number(d24)}; "
            f"2:4 / 16:32 degradation {format_number(ratio, 'ratio')}; margin (2:4 − 16:32) − (16:32 − u50) "
            f"{format_number(margin)}" + (f" ± {format_number(se)} SE" if not is_missing(se) else ""))
    verdict, why = _paired_verdict(summary.get("near_unstructured_margin_z"), margin > 0,
                                   "16:32 closer to unstructured than to 2:4")
    return Outcome(text, verdict, why, ratio, data=_perplexity_data(ctx))


@measure
def pruning_8_16_practical(ctx: Context) -> Outcome:
    """8:16 degrades less than 2:4 (ratio of PPL degradations from dense above 1), held to NOISE_SE paired SEs of
    the window-NLL difference 2:4 − 8:16."""
    summary = _pruning_summary(ctx)
    try:
        d8, d2 = _degradation(summary, "8-16"), _degradation(summary, "2-4")
    except NotMeasured as reason:
        raise NotMeasured(f"needs 8:16 and 2:4 in pruning.patterns ({reason})") from None
    z = summary.get("paired_z_2-4_over_8-16")
    verdict, why = _paired_verdict(z, d2 > d8, "8:16 degrades less than 2:4")
    data = _perplexity_data(ctx)
    if d8 <= 0:
        return Outcome(f"ΔPPL 8:16 {format_number(d8)}, 2:4 {format_number(d2)}", verdict,
                       f"8:16 does not degrade the model at all; {why}", data=data)
    ratio = d2 / d8
    return Outcome(f"2:4 / 8:16 degradation {format_number(ratio, 'ratio')} (ΔPPL {format_number(d2)} vs "
                   f"{format_number(d8)})", verdict, why, ratio, data=data)


def _chat_rows(ctx: Context) -> dict[str, dict]:
    rows = {path.stem: read_json(path) for path in sorted(ctx.results.glob("pruning/chat/*/*.json"))}
    if not rows:
        raise NotMeasured("no refusal row under pruning (pruning.chat_patterns)")
    return rows


@measure
def pruning_keeps_refusal(ctx: Context, pattern: str = "8-16") -> Outcome:
    """Refusal of held-out harmful prompts under pruning within NOISE_SE binomial SEs of the dense model's."""
    rows = _chat_rows(ctx)
    dense = rows.get("dense")
    pattern = pattern if pattern in rows else next((p for p in rows if p != "dense"), None)
    if dense is None or pattern is None:
        raise NotMeasured("the refusal row needs the dense model and one pruned pattern")
    d, p = _number(dense, "refusal_rate"), _number(rows[pattern], "refusal_rate")
    n = int(dense.get("n_harmful") or 0)
    se = _binomial_se(d, n) * math.sqrt(2)
    text = f"{_pattern_label(pattern)}: {format_number(p, 'percent')} vs dense {format_number(d, 'percent')} (n = {n})"
    ok = p >= d - NOISE_SE * se
    why = f"drop {100 * (d - p):.1f} pt {'within' if ok else 'beyond'} {NOISE_SE:g} SE ({100 * se:.1f} pt)"
    return Outcome(text, _verdict(ok), why, p - d, data=_counted(dense.get("harmful_prompts"), n, "harmful prompts"))


def _binomial_se(p: float, n: int) -> float:
    """SE of a rate from n trials, with the (k + 1) / (n + 2) estimate so that 0 % and 100 % still have one."""
    if n <= 0:
        return math.nan
    smoothed = (p * n + 1) / (n + 2)
    return math.sqrt(smoothed * (1 - smoothed) / n)


# --- SAE-Reasoning --------------------------------------------------------------------------------------------

def _benchmark_data(data: dict, what: str = "problems") -> str:
    """The problems a reasoning result was measured on: for a packaged benchmark its ``benchmark_*`` provenance
    (the file, how many of its rows, the subset rule: order, seed, skip, keep), else the ``benchmark`` name (the
    toy world) and ``n_problems``."""
    name = ", ".join("/".join(Path(f).parts[-2:]) for f in data.get("benchmark_files") or []) or data.get("benchmark")
    if not name:
        return MISSING
    n, rows = data.get("benchmark_n_items", data.get("n_problems")), data.get("benchmark_n_rows")
    subset = data.get("benchmark_subset")
    return (f"{name}, {format_number(n, 'count')}" + (f" of {format_number(rows, 'count')}" if rows else "")
            + f" {what}" + (f" ({subset})" if subset else ""))


def _corpus_data(ctx: Context, selected: dict) -> str:
    """The corpus ReasonScore ran on: ``model_cot`` is the model's own chains of thought on a benchmark (whose
    provenance reasoning/corpus/cot.json records), any other the dataset the config named; and its token count."""
    corpus = selected.get("dataset")
    if not corpus:
        return MISSING
    if corpus == "model_cot":
        corpus = f"the model's chains of thought on {_benchmark_data(_optional(ctx, 'reasoning/corpus/cot.json'))}"
    tokens = selected.get("n_tokens")
    return f"{corpus}" + (f"; {format_number(tokens, 'count')} tokens" if not is_missing(tokens) else "")


@measure
def reasoning_features_found(ctx: Context) -> Outcome:
    """ReasonScore selects latents (above its quantile threshold, not forced) whose top contexts hold reasoning words."""
    selected = read_json(first_match(ctx.results, "reasoning/*/selected.json"))
    n, total = int(lookup(selected, "n_selected")), lookup(selected, "n_latents")
    share = selected.get("mean_reasoning_context_share")
    text = (f"{n} of {total} latents selected; reasoning words in {format_number(share, 'percent')} of their top "
            f"contexts (SAE {selected.get('sae_id')})")
    forced = bool(selected.get("selection_forced"))
    ok = n > 0 and not forced
    why = ("latents above the ReasonScore threshold" if ok else
           "no latent above the threshold (selection forced)" if forced else "no latent selected")
    return Outcome(text, _verdict(ok), why, n, data=_corpus_data(ctx, selected))


def _reasoning_steering(ctx: Context) -> dict:
    return read_json(first_match(ctx.results, "reasoning/*/*/steering.json"))


@measure
def reasoning_steering_length(ctx: Context, mode: str = "add") -> Outcome:
    """The stage's comparison (selected latents lengthen thinking more than random latents at the same γ), held to
    NOISE_SE standard errors of the per-problem paired length changes where the stage has them."""
    data = _reasoning_steering(ctx)
    diff = _number(data, f"{mode}_selected_minus_random_length")
    sel, rnd = data.get(f"{mode}_selected_length_delta_percent"), data.get(f"{mode}_random_length_delta_percent")
    se = _difference_se([r for r in data.get("rows", []) if r.get("mode") == mode])
    text = (f"thinking length {format_number(_pct(sel), 'relative')} (selected) vs "
            f"{format_number(_pct(rnd), 'relative')} (random); selected − random {diff:+.1f} tokens"
            + (f" ± {se:.1f} SE" if not is_missing(se) else "") + f", γ = {data.get('gamma')}")
    if is_missing(se):
        return Outcome(text, _verdict(diff > 0), "no per-problem SE: the stage's strict comparison", _pct(sel),
                       data=_benchmark_data(data))
    verdict, why = _against_noise(diff, se, "difference")
    return Outcome(text, verdict, why, _pct(sel), diff - Z95 * se, diff + Z95 * se, data=_benchmark_data(data))


def _against_noise(difference: float, se: float, what: str) -> tuple[str, str]:
    """Holds beyond +NOISE_SE standard errors, does not hold beyond −NOISE_SE, within noise between (the same rule
    as the OrtSAE and pruning claims: a small sample says neither)."""
    if difference > NOISE_SE * se:
        return HOLDS, f"{what} above 0 by more than {NOISE_SE:g} SE"
    if difference < -NOISE_SE * se:
        return FAILS, f"{what} below 0 by more than {NOISE_SE:g} SE"
    return WITHIN_NOISE, f"{what} within {NOISE_SE:g} SE of 0: neither holds nor fails"


def _difference_se(rows: list[dict]) -> float:
    """SE of mean(selected length change) − mean(random length change) from each latent's paired SE."""
    parts = []
    for kind in ("selected", "random"):
        ses = [r.get("length_delta_se") for r in rows if r.get("kind") == kind]
        if not ses or any(is_missing(s) for s in ses):
            return math.nan
        parts.append(sum(s ** 2 for s in ses) / len(ses) ** 2)
    return math.sqrt(sum(parts))


@measure
def reasoning_steering_accuracy(ctx: Context, mode: str = "add") -> Outcome:
    """Accuracy gain of the selected latents over the baseline, beyond NOISE_SE binomial SEs of the difference."""
    data = _reasoning_steering(ctx)
    delta = _number(data, f"{mode}_selected_accuracy_delta_points")
    base = _number(data, "baseline_maj_accuracy")
    n = int(data.get("n_problems") or 0)
    se = 100 * _binomial_se(base, n) * math.sqrt(2)
    text = (f"{format_number(delta, 'points')} (baseline {format_number(base, 'percent')}, {n} problems, "
            f"SE {se:.1f} pt)")
    verdict, why = _against_noise(delta, se, "gain")
    return Outcome(text, verdict, why, delta, delta - Z95 * se, delta + Z95 * se, data=_benchmark_data(data))


def _pct(value: Any) -> float | None:
    return None if is_missing(value) else float(value) / 100


# --- CLEAR ----------------------------------------------------------------------------------------------------

def _unlearning_data(ctx: Context, table: pd.DataFrame) -> str:
    """The CLEAR data and forget splits a table's rows were measured on: the splits from the table, the dataset
    from its ``dataset`` column (robustness.csv) or, for the grid's table (which keeps none), from the run's
    per-split metric files (unlearning/<split>/original.json: ``dataset``, mini-clear or a hub id)."""
    if "dataset" in table:
        datasets = ", ".join(sorted(set(table["dataset"].dropna().astype(str))))
    else:
        datasets = _optional(ctx, "unlearning/*/original.json").get("dataset")
    splits = ", ".join(sorted(set(table["split"].dropna().astype(str)))) if "split" in table else ""
    return ", ".join(p for p in (datasets, f"split {splits}" if splits else "") if p) or MISSING


@measure
def clear_l1_keeps_retain(ctx: Context) -> Outcome:
    """Retain score with LoRA + L1 (each λ of a sweep) above the same method, split and modality without it (every
    pair; one run each, so the verdict is the direction)."""
    table = read_table(ctx.results, "unlearning/table.csv")
    table = table[~table["method"].isin(["original", "gold", "retain"])]
    table = table.assign(_l1=table["l1"].map(_truthy))
    if "l1_lambda" not in table:
        table["l1_lambda"] = math.nan
    pairs = []
    for (method, split, modality), group in table.groupby(["method", "split", "modality"], sort=True):
        off = group[~group["_l1"]]["retain"]
        if not len(off) or off.isna().any():
            continue
        for lam, on in group[group["_l1"]].groupby(group["l1_lambda"].fillna(-1.0), sort=True)["retain"]:
            if on.notna().all():
                label = f"{method} {split}/{modality}" + (f" λ={lam:g}" if lam >= 0 else "")
                pairs.append((label, float(off.mean()), float(on.mean())))
    if not pairs:
        raise NotMeasured("no method runs both without and with L1 (unlearning.grid l1: [false, true])")
    gains = [on - off for _, off, on in pairs]
    text = "; ".join(f"{label}: {off:.3g} → {on:.3g}" for label, off, on in pairs[:4])
    text += f" (retain score without → with L1{', ' + str(len(pairs)) + ' pairs' if len(pairs) > 4 else ''})"
    ok = all(g > 0 for g in gains)
    why = f"{sum(g > 0 for g in gains)} of {len(gains)} pairs keep more retain with L1 (one run each, no uncertainty)"
    return Outcome(text, _verdict(ok), why, float(np.mean(gains)), data=_unlearning_data(ctx, table))


@measure
def forgetting_survives(ctx: Context, condition: str = "steering") -> Outcome:
    """Forget quality of the unlearned models under an intervention not below its unperturbed value (log10 scale,
    within one decade: the KS p-value moves by orders of magnitude between seeds)."""
    table = read_table(ctx.results, "unlearning/robustness.csv")
    table = table[table["method"] != "original"]
    if not len(table) or f"{condition}_forget_quality" not in table:
        raise NotMeasured(f"no unlearned model re-measured under {condition} (unlearning.robustness.runs)")
    none = np.log10(table["none_forget_quality"].astype(float).clip(lower=1e-300))
    perturbed = np.log10(table[f"{condition}_forget_quality"].astype(float).clip(lower=1e-300))
    change = perturbed - none
    text = "; ".join(f"{r.method}{' +L1' if _truthy(r.l1) else ''}: log10 FQ {n:.2f} → {p:.2f}"
                     for r, n, p in zip(table.itertuples(), none, perturbed))
    ok = bool((change >= -1).all())
    drop = float(-change.min())
    why = (f"largest drop {drop:.2f} decades ({'within' if ok else 'beyond'} one decade; one run each)" if drop > 0
           else "forget quality not lower under the intervention (one run each)")
    return Outcome(text, _verdict(ok), why, float(change.mean()), data=_unlearning_data(ctx, table))


