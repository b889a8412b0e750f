"""Stage entry points called by ``workflow/scripts/steering-*.py``: each loads what it needs, runs one step of the
Rogue Scalpel protocol and writes its declared outputs atomically."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from lmscalpel.io import atomic_path, read_json, read_jsonl, sha256_file, write_json
from lmscalpel.models import ModelRef, check_blocks, load_model
from lmscalpel.models.loader import model_provenance
from lmscalpel.models.refusal import chat_verdicts
from lmscalpel.steering import capability as cap, judge_check as JC, metrics as M
from lmscalpel.data.prompts import PromptSet, load_prompt_set, without
from lmscalpel.steering.directions import (capture_residual, decoder_directions, mean_activation_norm,
                                           random_directions, refusal_direction, sample_latents)
from lmscalpel.steering.grid import DirectionSet, judge_key, run_grid
from lmscalpel.steering.judges import CoherenceRule, CoherenceScorer, build_judge, calibrate_coherence
from lmscalpel.steering.universal import universal_attack
from lmscalpel.toyworld.judge import is_compliant

log = logging.getLogger(__name__)


def evaluation_prompts(cfg: dict, chat_eval: str | None) -> PromptSet:
    """``steering.prompts``: the harmful prompts every steered reply is judged on (toy world: held-out ones,
    capped at ``max_prompts`` taking the categories in turn)."""
    return load_prompt_set(cfg["prompts"], kind="harmful", role="evaluation", key="steering.prompts",
                           chat_eval=chat_eval)


def refusal_prompts(cfg: dict, chat_eval: str | None) -> PromptSet:
    """``steering.refusal.prompts``: the harmful side of the refusal direction (toy world: its train split)."""
    return load_prompt_set(cfg["refusal"]["prompts"], kind="harmful", role="train", key="steering.refusal.prompts",
                           chat_eval=chat_eval)


def benign_prompts(cfg: dict, chat_eval: str | None, role: str) -> PromptSet:
    """``steering.prompts.benign``: the harmless side of the refusal direction (``train``) or the coherence
    calibration's prompts (``evaluation``)."""
    return load_prompt_set(cfg["prompts"]["benign"], kind="benign", role=role, key="steering.prompts.benign",
                           chat_eval=chat_eval, parent=cfg["prompts"])


def _outcome_fn(cfg: dict, toy: bool, judge, coherence: CoherenceRule | None = None):
    """Compliance of (request, response) pairs and what defines it: toy ground truth when available/asked, else
    the judge. With ``coherence`` the function returns columns: ``complied`` (the headline,
    ``steering.metrics.headline``), ``complied_judge``, ``complied_coherent`` (judged compliant and coherent) and
    ``coherence_logprob``."""
    mode = cfg.get("metrics", {}).get("outcome", "auto")
    if mode == "ground_truth" or (mode == "auto" and toy):
        plain, key = (lambda requests, responses: [is_compliant(r) for r in responses]), "ground_truth"
    else:
        plain, key = (lambda requests, responses: [v == "unsafe" for v in judge(requests, responses)]), judge_key(judge)
    if coherence is None:
        return plain, key
    coherent_headline = cfg["metrics"]["headline"] == "coherent"

    def outcome(requests, responses):
        judged = plain(requests, responses)
        scores, fluent = coherence(requests, responses)
        both = [a and b for a, b in zip(judged, fluent)]
        return {"complied": both if coherent_headline else judged, "complied_judge": judged,
                "complied_coherent": both, "coherence_logprob": scores}
    return outcome, {"judge": key, "coherence": coherence.description, "headline": cfg["metrics"]["headline"]}


def headline_judge(outcome: str, judge_name: str, coherent: bool) -> str:
    """What a headline number counts: 'ground_truth', the judge's name (e.g. 'keyword'), plus '+coherence'."""
    base = "ground_truth" if outcome == "ground_truth" else judge_name
    return f"{base}+coherence" if coherent else base


# --- coherence: the threshold of the coherence judge ---------------------------------------------------------------
def run_coherence_stage(ref: ModelRef, *, reference: ModelRef, cfg: dict, chat_eval: str | None, output: str) -> None:
    """Score the unsteered model's replies to held-out benign prompts under ``reference`` (the model as shipped);
    the threshold is their ``steering.coherence.quantile``."""
    from lmscalpel.steering.generation import generate_steered

    ccfg = cfg["coherence"]
    calibration = benign_prompts(cfg, chat_eval, "evaluation")
    prompts = calibration.prompts[:ccfg["n_prompts"]]
    model, tokenizer = load_model(ref)
    replies = generate_steered(model, tokenizer, prompts, torch.zeros(len(prompts), model.config.hidden_size),
                               [0.0] * len(prompts), layer=0, max_new_tokens=cfg["max_new_tokens"],
                               batch_size=cfg["batch_size"], skip_tokens=cfg["skip_tokens"])
    del model
    ref_model, ref_tokenizer = load_model(reference)
    scores = CoherenceScorer(ref_model, ref_tokenizer, batch_size=ccfg["batch_size"])(prompts, replies)
    threshold = calibrate_coherence(scores, ccfg["quantile"])
    rule = (f"mean token log-prob of the reply under {reference.name_or_path} (as shipped) >= {threshold:.4f}, "
            f"the {ccfg['quantile']:g} quantile of {len(prompts)} unsteered benign replies")
    write_json(output, {"threshold": threshold, "quantile": ccfg["quantile"], "rule": rule, "n_replies": len(prompts),
                        "score_mean": float(pd.Series(scores).mean()), "reference_model": reference.name_or_path,
                        "examples": [{"prompt": p, "reply": r, "score": s}
                                     for p, r, s in list(zip(prompts, replies, scores))[:5]],
                        "prompt_source": cfg["prompts"]["source"], "calibration_prompts": calibration.provenance,
                        **model_provenance(ref)})


def load_coherence(cfg: dict, coherence_json: str | None, reference: ModelRef | None) -> CoherenceRule | None:
    """The calibrated coherence rule (None when steering.coherence is off: no calibration input)."""
    if coherence_json is None:
        return None
    calibration = read_json(coherence_json)
    model, tokenizer = load_model(reference)
    return CoherenceRule(CoherenceScorer(model, tokenizer, batch_size=cfg["coherence"]["batch_size"]),
                         float(calibration["threshold"]), calibration["rule"])


# --- setup: μ(l) and the refusal direction ---------------------------------------------------------------------
def run_setup(ref: ModelRef, *, layer: int, cfg: dict, chat_eval: str | None, output_vectors: str,
              output_json: str) -> None:
    """μ(l) over the evaluation prompts and the refusal direction: mean of ``steering.refusal.prompts`` minus mean
    of ``steering.prompts.benign`` (both disjoint from the evaluation prompts: the plan checks); setup.json records
    which prompts built what."""
    model, tokenizer = load_model(ref)
    check_blocks(model, {"steering.layers or steering.universal.layer": [layer]})  # every steered layer has a setup
    evaluation = evaluation_prompts(cfg, chat_eval)
    prompts = evaluation.prompts
    mu = mean_activation_norm(model, tokenizer, prompts, layer, exclude_special=cfg["mu"]["exclude_special"],
                              skip_tokens=cfg["skip_tokens"])
    harmful_set = without(refusal_prompts(cfg, chat_eval), evaluation)
    harmless_set = benign_prompts(cfg, chat_eval, "train")
    harmful, harmless = harmful_set.prompts, harmless_set.prompts
    check_distinct_sets(harmful, harmless)
    refusal = refusal_direction(model, tokenizer, harmful, harmless, layer)
    with atomic_path(output_vectors) as tmp:
        save_file({"refusal": refusal.contiguous()}, str(tmp))
    write_json(output_json, {"layer": layer, "mu": mu, "mu_exclude_special": cfg["mu"]["exclude_special"],
                             "skip_tokens": cfg["skip_tokens"], "n_mu_prompts": len(prompts),
                             "n_refusal_harmful": len(harmful),
                             "n_refusal_harmless": len(harmless), "refusal_split": harmful_set.provenance["split"],
                             "prompt_source": cfg["prompts"]["source"],
                             "benign_source": cfg["prompts"].get("benign", {}).get("source", "auto"),
                             "evaluation_prompts": evaluation.provenance,
                             "refusal_harmful_prompts": harmful_set.provenance,
                             "refusal_harmless_prompts": harmless_set.provenance, **model_provenance(ref)})


def check_distinct_sets(harmful: Sequence[str], harmless: Sequence[str]) -> None:
    """The refusal direction is harmful minus harmless means: the same prompts on both sides give a zero vector."""
    if set(harmful) == set(harmless):
        raise ValueError("steering.refusal.prompts and steering.prompts.benign: the harmful and harmless prompts of "
                         f"the refusal direction are the same {len(set(harmful))} prompts; give the harmless ones "
                         "their own source (steering.prompts.benign)")
    overlap = len(set(harmful) & set(harmless))
    if overlap:
        log.warning("%d prompts are both harmful and harmless in the refusal-direction sets", overlap)


# --- grid --------------------------------------------------------------------------------------------------------
def sae_direction_set(kind: str, sae_dir: str, *, n: int, seed: int, alive_only: bool,
                      alive_from: torch.Tensor | None = None) -> DirectionSet:
    """``n`` sampled decoder rows of the SAE at ``sae_dir`` (read with ``lmscalpel.sae.load_sae``)."""
    from lmscalpel.sae import load_sae

    sae = load_sae(sae_dir)
    w_dec = sae.W_dec.detach()
    alive = None
    if alive_only:
        if alive_from is None:
            raise ValueError("steering.sae.alive_only needs activations to test latents on")
        with torch.no_grad():
            alive = (sae.encode(alive_from.to(w_dec.dtype)) > 0).any(0)
    latents = sample_latents(w_dec.shape[0], n, seed, alive)
    return DirectionSet(kind, decoder_directions(w_dec, latents), source=str(sae_dir), latents=latents)


def _prompt_activations(model, tokenizer, prompts: Sequence[str], layer: int, skip_tokens: str) -> torch.Tensor:
    """Residual activations of the steered prompt tokens (for the SAE alive check)."""
    from lmscalpel.steering.encoding import encode_prompts

    enc, keep = encode_prompts(tokenizer, prompts, skip_tokens=skip_tokens, device=next(model.parameters()).device)
    with torch.no_grad(), capture_residual(model, layer) as store:
        model(**enc)
    return store[0][keep].cpu()


def run_grid_stage(ref: ModelRef, *, layer: int, cfg: dict, chat_eval: str | None, setup_vectors: str,
                   setup_json: str, sae_dirs: dict[str, str], checkpoint_dir: str, output: str, toy: bool,
                   seed: int, coherence_json: str | None = None, reference: ModelRef | None = None) -> None:
    """One layer's grid: unsteered + random + SAE (per kind) + (−refusal) directions × c × held-out prompts."""
    model, tokenizer = load_model(ref)
    prompts = evaluation_prompts(cfg, chat_eval).records
    mu = float(read_json(setup_json)["mu"])
    refusal = load_file(setup_vectors)["refusal"]
    d_model = refusal.shape[0]
    rnd = cfg["random"]
    directions = [DirectionSet("random", random_directions(d_model, range(rnd["n_vectors"]), rnd["seed"]),
                               source=f"gaussian-seed{rnd['seed']}")]
    sae_cfg = cfg["sae"]
    alive_from = (_prompt_activations(model, tokenizer, [p["prompt"] for p in prompts], layer, cfg["skip_tokens"])
                  if sae_cfg["alive_only"] and sae_dirs else None)
    for kind, sae_dir in sorted(sae_dirs.items()):
        directions.append(sae_direction_set(kind, sae_dir, n=sae_cfg["n_features"], seed=sae_cfg["seed"],
                                            alive_only=sae_cfg["alive_only"], alive_from=alive_from))
    if cfg["refusal"]["enabled"]:
        directions.append(DirectionSet("refusal", -refusal.unsqueeze(0), source="-diff_of_means"))
    judge = build_judge(cfg["judge"], toy=toy, seed=seed)
    frame = run_grid(model, tokenizer, layer=layer, mu=mu, prompts=prompts, directions=directions,
                     coefficients=cfg["coefficients"], judge=judge, ground_truth=is_compliant if toy else None,
                     max_new_tokens=cfg["max_new_tokens"], batch_size=cfg["batch_size"],
                     chunk_rows=cfg["chunk_rows"], checkpoint_dir=checkpoint_dir, refusal=refusal,
                     skip_tokens=cfg["skip_tokens"], coherence=load_coherence(cfg, coherence_json, reference))
    frame["model"] = ref.name_or_path
    with atomic_path(output) as tmp:
        frame.to_parquet(tmp, index=False)


# --- universal attack ----------------------------------------------------------------------------------------------
def run_universal_stage(ref: ModelRef, *, layer: int, cfg: dict, chat_eval: str | None, setup_json: str,
                        checkpoint_dir: str, output_table: str, output_json: str, toy: bool, seed: int,
                        coherence_json: str | None = None, reference: ModelRef | None = None) -> None:
    model, tokenizer = load_model(ref)
    ucfg = cfg["universal"]
    evaluation = evaluation_prompts(cfg, chat_eval)
    prompts = evaluation.records
    # Like the paper's bomb prompt (one of the 100 JBB goals, evaluated on the other 99): a pick from the evaluation
    # prompts that the model refuses unsteered (universal_attack picks the first when none is configured), excluded
    # from the held-out evaluation.
    train_prompt = ucfg["train_prompt"]
    judge = build_judge(cfg["judge"], toy=toy, seed=seed)
    mu = float(read_json(setup_json)["mu"])
    coherence = load_coherence(cfg, coherence_json, reference)
    outcome, outcome_key = _outcome_fn(cfg, toy, judge, coherence)
    table, summary = universal_attack(
        model, tokenizer, layer=layer, mu=mu, train_prompt=train_prompt, eval_prompts=prompts,
        coefficients=cfg["coefficients"], outcome=outcome, seed=ucfg["seed"],
        sweep_vectors=ucfg["sweep_vectors"], max_trials=ucfg["max_trials"], n_select=ucfg["n_select"],
        n_universal=ucfg["n_universal"], n_baseline=ucfg["n_baseline"], max_new_tokens=cfg["max_new_tokens"],
        batch_size=cfg["batch_size"], checkpoint_dir=checkpoint_dir, skip_tokens=cfg["skip_tokens"],
        outcome_key=outcome_key)
    with atomic_path(output_table) as tmp:
        table.to_parquet(tmp, index=False)
    outcome = "ground_truth" if (cfg["metrics"]["outcome"] == "ground_truth" or
                                 (cfg["metrics"]["outcome"] == "auto" and toy)) else f"judge:{judge.name}"
    coherent = coherence is not None and cfg["metrics"]["headline"] == "coherent"
    write_json(output_json, {**summary, "outcome": outcome, "seed": ucfg["seed"], **model_provenance(ref),
                             "headline_judge": headline_judge(outcome, judge.name, coherent),
                             "coherence_rule": coherence.description if coherence else None,
                             "prompt_source": cfg["prompts"]["source"],
                             "evaluation_prompts": evaluation.provenance["description"],
                             "train_prompt_from": "steering.universal.train_prompt" if ucfg["train_prompt"] else
                             "the first evaluation prompt refused unsteered (left out of the held-out ones)"})


# --- capability ----------------------------------------------------------------------------------------------------
def run_capability_stage(ref: ModelRef, *, layer: int, cfg: dict, setup_json: str, toyworld_dir: str | None,
                         output: str, seed: int, markers: str = "toyworld") -> None:
    """Capability vs c; on the toy world, benign replies are judged with the model card's keyword verdicts
    (``markers``: toyworld ground truth on the toy model, arditi refusal substrings on real models)."""
    model, tokenizer = load_model(ref)
    ccfg = cfg["capability"]
    mu = float(read_json(setup_json)["mu"])
    common = dict(coefficients=cfg["coefficients"], mu=mu, layer=layer, n_vectors=ccfg["n_vectors"],
                  seed=cfg["random"]["seed"], skip_tokens=cfg["skip_tokens"])
    extra = {}  # lm-eval's SEs, the range over vectors, the benchmarks' provenance
    if ccfg["task"] == "toy":
        if toyworld_dir is None:
            raise ValueError("steering.capability.task 'toy' needs the toy world's files as inputs")
        world = Path(toyworld_dir)
        benign = [r["prompt"] for r in read_jsonl(world / "chat_eval.jsonl")
                  if r["kind"] == "benign" and r["split"] == "heldout"][:ccfg["n_prompts"]]
        problems = [r for r in read_jsonl(world / "reasoning.jsonl") if r["split"] == "eval"][:ccfg["n_prompts"]]
        results = cap.toy_capability(model, tokenizer, benign=benign, problems=problems, chat_tokens=cfg["max_new_tokens"],
                                     arithmetic_tokens=ccfg["arithmetic_max_new_tokens"],
                                     batch_size=cfg["batch_size"], complies=chat_verdicts(markers)[1], **common)
    else:
        if ccfg["task"] == "benchmarks":
            runs, extra = cap.benchmark_capability(model, tokenizer, tasks=ccfg["benchmark_tasks"],
                                                   limit=ccfg["benchmark_limit"], item_seed=seed,
                                                   batch_size=ccfg["mmlu_batch_size"], **common)
        else:
            runs = cap.mmlu_capability(model, tokenizer, limit=ccfg["mmlu_limit"], batch_size=ccfg["mmlu_batch_size"],
                                       **common)
        results = cap.mean_accuracy(runs)
        extra |= cap.run_uncertainty(runs)
    flat = {f"{task}_c{c:g}": acc for task, values in results.items() for c, acc in values.items()}
    write_json(output, {**flat, **extra, "layer": layer, "mu": mu, "task": ccfg["task"], "n_vectors": ccfg["n_vectors"],
                        "n_prompts": ccfg["n_prompts"], "skip_tokens": cfg["skip_tokens"], "max_drop": ccfg["max_drop"],
                        "sweet_spot_c": cap.sweet_spot(results, ccfg["max_drop"]), "seed": seed,
                        **model_provenance(ref)})


# --- the judges against replies labelled by reading them ------------------------------------------------------------
def run_judge_check_stage(*, cfg: dict, labels: str, run: str, coherence_json: str | None,
                          reference: ModelRef | None, output_csv: str, output_json: str) -> None:
    """Re-judge run ``run``'s labelled replies with this run's judge (and coherence rule) and score each against the
    labels (:mod:`lmscalpel.steering.judge_check`); metrics.headline is checked against the best-κ judge."""
    frame = JC.load_labels(labels, run)
    prompts, replies = frame["prompt"].tolist(), frame["reply"].tolist()
    judge = build_judge(cfg["judge"], toy=False)
    judged = [v == "unsafe" for v in judge(prompts, replies)]
    verdicts = {judge.name: judged}
    coherence = load_coherence(cfg, coherence_json, reference)
    if coherence is not None:
        _, fluent = coherence(prompts, replies)
        verdicts[f"{judge.name}+coherence"] = [a and b for a, b in zip(judged, fluent)]
    table = JC.agreement(frame["label"].tolist(), verdicts)
    with atomic_path(output_csv) as tmp:
        table.to_csv(tmp, index=False)
    headline = headline_judge("judge", judge.name, coherence is not None and cfg["metrics"]["headline"] == "coherent")
    best = JC.best_judge(table)
    write_json(output_json, {"labelled_run": run, "labels_file": Path(labels).name, "labels_sha256": sha256_file(labels),
                             "n_replies": len(frame), "labels": frame["label"].value_counts().to_dict(),
                             "headline_judge": headline, "best_kappa_judge": best,
                             "headline_is_best": best is None or best == headline,
                             "coherence_rule": coherence.description if coherence is not None else None})


# --- metrics -------------------------------------------------------------------------------------------------------
def run_metrics_stage(*, grids: Sequence[str], cfg: dict, sae_kinds: Sequence[str], output_json: str,
                      output_cells: str, output_categories: str, output_vectors: str, output_cross: str,
                      output_per_vector: str, output_cross_category: str, prompt_sets: dict[str, str],
                      card_json: str | None = None) -> None:
    """The compliance tables and metrics.json; ``prompt_sets`` (config key -> what it reads) says which prompts
    were evaluated and which built the refusal direction; ``card_json`` (the model card) is what the unsteered rows
    are checked against."""
    mcfg = cfg["metrics"]
    df = M.with_outcome(pd.concat([pd.read_parquet(g) for g in grids], ignore_index=True), mcfg["outcome"])
    df = M.with_coherence(df, mcfg["headline"])
    boot = dict(n_resamples=mcfg["bootstrap_resamples"], seed=mcfg["seed"], over=mcfg["bootstrap"])
    cells = M.compliance_table(df, **boot)
    categories = M.compliance_table(df, by=M.CELL + ["category"], **boot)
    vectors = M.per_vector_table(df)
    vsum = M.vector_summary(vectors, thresholds=mcfg["break_thresholds"], top_k=mcfg["top_k_cosine"])
    cross = (M.cross_paper_table(df, tuple(sae_kinds), **boot) if len(sae_kinds) == 2 else pd.DataFrame())
    for frame, path in ((cells, output_cells), (categories, output_categories), (vsum, output_vectors),
                        (cross, output_cross), (vectors, output_per_vector),
                        (M.cross_category_table(df), output_cross_category)):
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False)
    write_json(output_json, {**headline_metrics(df, cells, vsum, cross, sae_kinds),
                             **M.held_out_best_cells(df, **boot),
                             **M.card_agreement(df, read_json(card_json) if card_json else None),
                             "prompt_source": cfg["prompts"]["source"],
                             "evaluation_prompts": prompt_sets["steering.prompts"],
                             "refusal_direction_prompts": f"harmful: {prompt_sets['steering.refusal.prompts']}; "
                                                          f"harmless: {prompt_sets['steering.prompts.benign']}"})


def headline_metrics(df: pd.DataFrame, cells: pd.DataFrame, vsum: pd.DataFrame, cross: pd.DataFrame,
                     sae_kinds: Sequence[str]) -> dict:
    """The flat summary: unsteered CR with its interval, best CR per kind (with its layer and c), vector shares. No
    fixed ceiling on the unsteered rate: a model that refuses by itself complies a few per cent (issue 22.7)."""
    out = {"outcome": df.attrs.get("outcome"), "judge": str(df["judge"].iloc[0]), "model": str(df["model"].iloc[0]),
           "layers": sorted(int(x) for x in df["layer"].unique()), "n_prompts": int(df["prompt_id"].nunique()),
           "n_rows": len(df), "unparsed_rate": float(df["unparsed"].mean())}
    unsteered = df[df["direction_kind"] == "none"]
    out["unsteered_compliance"] = float(unsteered["outcome"].mean()) if len(unsteered) else float("nan")
    out["unsteered_ci_low"], out["unsteered_ci_high"] = M.unsteered_interval(df)[1:3]
    out["unsteered_judge_unsafe"] = float(unsteered["unsafe"].mean()) if len(unsteered) else float("nan")
    for kind, group in cells[cells["direction_kind"] != "none"].groupby("direction_kind"):
        best = group.sort_values(["compliance_rate", "c"], ascending=[False, True]).iloc[0]
        out.update({f"{kind}_max_cr": float(best["compliance_rate"]), f"{kind}_max_cr_layer": int(best["layer"]),
                    f"{kind}_max_cr_c": float(best["c"]), f"{kind}_mean_cr": float(group["compliance_rate"].mean())})
        vs = vsum[vsum["direction_kind"] == kind]
        out[f"{kind}_best_vector_broken"] = int(vs["best_vector_broken"].max())
        out[f"{kind}_max_frac_break_ge1"] = float(vs["frac_break_ge1"].max())
        out[f"{kind}_top_abs_cos_refusal_mean"] = float(vs["top_abs_cos_refusal_mean"].mean())
    out.update(side_by_side_metrics(df, cells))
    out["check_random_gt0"] = bool(out.get("random_max_cr", 0.0) > 0)
    if len(cross):
        out["cross_paper_mean_difference"] = float(cross["difference"].mean())
        out["cross_paper_kinds"] = list(sae_kinds)
    return out


def side_by_side_metrics(df: pd.DataFrame, cells: pd.DataFrame) -> dict:
    """Which judge the headline numbers use, and (with the coherence judge) the unsteered and best CR per kind
    under both the plain judge and judge + coherence."""
    coherent = df.attrs.get("headline") == "coherent"
    out = {"headline_judge": headline_judge(df.attrs.get("outcome"), str(df["judge"].iloc[0]), coherent),
           "coherence_rule": str(df["coherence_rule"].iloc[0]) if "coherence_rule" in df else None}
    if "coherent_outcome" not in df:
        return out
    unsteered = df[df["direction_kind"] == "none"]
    steered = cells[cells["direction_kind"] != "none"]
    for judge in ("judge", "coherent"):
        out[f"unsteered_compliance_{judge}"] = float(unsteered[f"{judge}_outcome"].mean())
        for kind, group in steered.groupby("direction_kind"):
            out[f"{kind}_max_cr_{judge}"] = float(group[f"{judge}_compliance_rate"].max())
    out["coherent_rate"] = float(df["coherent"].mean())
    return out


# --- figures -------------------------------------------------------------------------------------------------------
def run_figures_stage(*, cells: str, categories: str, metrics_json: str, universal_table: str, universal_json: str,
                      per_vector: str, cross_category: str, output_compliance: str, output_categories: str,
                      output_universal: str, output_histogram: str, output_cross_category: str) -> None:
    from lmscalpel.steering import figures

    cells_df = pd.read_csv(cells)
    metrics = read_json(metrics_json)
    figures.compliance_vs_c(cells_df, output_compliance, outcome=metrics.get("headline_judge", metrics["outcome"]))
    figures.per_category(pd.read_csv(categories), cells_df, output_categories)
    figures.universal_vs_random(pd.read_parquet(universal_table), read_json(universal_json), output_universal)
    figures.vector_histogram(pd.read_csv(per_vector), cells_df, output_histogram)
    figures.cross_category(pd.read_csv(cross_category), cells_df, output_cross_category)
