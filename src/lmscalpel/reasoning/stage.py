"""The reasoning stage's rule bodies: the model's own chain-of-thought corpus, ReasonScore + selection +
interpretation, the unsteered baseline, steering selected and random latents (add / clamp), and the vocabulary ban.
Scripts in ``workflow/scripts/reasoning-*.py`` call these functions only."""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from lmscalpel.checkpoint import files_identity
from lmscalpel.data.plan import PACKAGED_REASONING_BENCHMARKS, reasoning_eval_subset
from lmscalpel.io import atomic_path, read_json, read_jsonl, write_json, write_jsonl, write_text
from lmscalpel.models import load_model
from lmscalpel.models.intervention import special_token_ids
from lmscalpel.models.loader import ModelRef, model_provenance
from lmscalpel.models.refusal import wilson_interval
from lmscalpel.reasoning.activations import FoldedSAE, corpus_rows, residual_stream, sae_layer
from lmscalpel.reasoning.evaluate import load_problems, packaged_problems, render_prompts, run_condition, summarise
from lmscalpel.reasoning.interpret import interpretation_markdown, logit_lens, reasoning_share, top_contexts
from lmscalpel.reasoning.intervene import add_latent, ban_processor_factory, banned_sequences, clamp_latent
from lmscalpel.reasoning.score import ReasonScoreAccumulator, reason_scores, select_features
from lmscalpel.reasoning.vocabulary import (VocabEntry, expand_windows, form_token_ids, match_positions,
                                            parse_vocabulary)

log = logging.getLogger(__name__)


# --- shared loading -------------------------------------------------------------------------------------------

def load_folded_sae(sae_dir: str | Path, device: torch.device) -> FoldedSAE:
    from lmscalpel.sae import load_sae

    sae = load_sae(sae_dir)
    if hasattr(sae, "to"):
        sae = sae.to(device)
    return FoldedSAE(sae)


def corpus_texts(corpus_cfg: dict, toyworld_dir: str | Path | None, cot_corpus: str | Path | None = None
                 ) -> Iterable[str]:
    """Toy world: the train split of ``reasoning.jsonl`` rendered as the LM saw it; ``model_cot``: the model's own
    chain-of-thought answers (``cot_corpus``, rule reasoning_cot_corpus), prompt and reply as it saw them; otherwise
    any ``load_dataset`` source (``lmscalpel.data.text.iter_texts``)."""
    if corpus_cfg.get("path") == "model_cot":
        if cot_corpus is None:
            raise ValueError("config key reasoning.corpus.path 'model_cot' needs the chain-of-thought corpus as input")
        return (r["text"] for r in read_jsonl(cot_corpus))
    if corpus_cfg.get("path", "toyworld") == "toyworld":
        if toyworld_dir is None:
            raise ValueError("config key reasoning.corpus.path 'toyworld' needs the toy world's files as inputs")
        from lmscalpel.toyworld.generate import reasoning_text

        return (reasoning_text(r) for r in read_jsonl(Path(toyworld_dir) / "reasoning.jsonl") if r["split"] == "train")
    from lmscalpel.data.text import iter_texts

    return iter_texts(corpus_cfg, key="reasoning.corpus", default_split="train")


# --- ReasonScore ----------------------------------------------------------------------------------------------

def compute_reason_scores(model, tokenizer, sae: FoldedSAE, layer: int, rows: torch.Tensor,
                          vocab: Sequence[VocabEntry], window: dict, alpha: float, batch_size: int,
                          top_k: int) -> dict[str, Any]:
    """One pass over ``rows [N, T]``: accumulate ReasonScore statistics, f_max and top-k positions."""
    groups = form_token_ids(tokenizer, vocab)
    hits = match_positions(rows, groups)
    valid = ~torch.isin(rows, torch.tensor(special_token_ids(tokenizer)))
    windows = expand_windows(hits, window["before"], window["after"]) & valid[None]
    device = next(model.parameters()).device
    acc = ReasonScoreAccumulator(sae.n_latents, len(vocab), top_k, device=sae.device)
    n, t = rows.shape
    for start in tqdm(range(0, n, batch_size), desc="reasonscore", leave=False, mininterval=5):
        ids = rows[start:start + batch_size]
        hidden = residual_stream(model, layer, ids.to(device), torch.ones_like(ids).to(device))
        with torch.no_grad():
            acts = sae.encode(hidden.reshape(-1, hidden.shape[-1]))
        acc.update(acts, windows[:, start:start + batch_size].reshape(len(vocab), -1),
                   valid[start:start + batch_size].reshape(-1), offset=start * t)
    acc.to("cpu")
    scores = reason_scores(*acc.means(), alpha=alpha, n_groups=len(vocab))
    bits = torch.zeros_like(rows, dtype=torch.long)
    for g in range(len(vocab)):
        bits |= windows[g].long() << g
    return {"acc": acc, "scores": scores, "window_bits": bits, "group_tokens": hits.sum((1, 2)).tolist(),
            "group_window_tokens": windows.sum((1, 2)).tolist(), "forms": groups}


def run_reason_score(*, model_ref: ModelRef, sae_dir: str, sae_id: str, toyworld_dir: str | None, cfg: dict,
                     seed: int, out_scores: str, out_selected: str, out_interpretation: str,
                     cot_corpus: str | None = None) -> dict:
    model, tokenizer = load_model(model_ref)
    device = next(model.parameters()).device
    sae, layer = load_folded_sae(sae_dir, device), sae_layer(sae_dir)
    corpus = cfg["corpus"]
    rows = corpus_rows(tokenizer, corpus_texts(corpus, toyworld_dir, cot_corpus), corpus)
    vocab = parse_vocabulary(cfg["vocabulary"])
    words = [v.word for v in vocab]
    res = compute_reason_scores(model, tokenizer, sae, layer, rows, vocab, cfg["window"], cfg["alpha"],
                                cfg["batch_size"], cfg["top_k_contexts"])
    acc, sc = res["acc"], res["scores"]
    mu_r, mu_not_r, _ = acc.means()
    selected, threshold, forced = select_features(sc.score, cfg["quantile"])
    table = pd.DataFrame({"latent": np.arange(sae.n_latents), "reason_score": sc.score.numpy(),
                          "share_r": sc.share_r.numpy(), "share_not_r": sc.share_not_r.numpy(),
                          "entropy": sc.entropy.numpy(), "mu_r": mu_r.numpy(), "mu_not_r": mu_not_r.numpy(),
                          "f_max": acc.f_max.numpy()})
    for g, word in enumerate(words):
        table[f"p_{word.replace(' ', '_')}"] = sc.group_share[g].numpy()
    table["selected"] = table["latent"].isin(selected)
    table["rank"] = table["reason_score"].rank(ascending=False, method="first").astype(int)
    with atomic_path(out_scores) as tmp:
        table.to_parquet(tmp, index=False)

    features = []
    for latent in selected:
        contexts = top_contexts(rows, acc.top_values[:, latent], acc.top_index[:, latent], res["window_bits"],
                                tokenizer, words)
        features.append({"latent": latent, "score": float(sc.score[latent]), "entropy": float(sc.entropy[latent]),
                         "f_max": float(acc.f_max[latent]), "share": reasoning_share(contexts),
                         "contexts": contexts, "lens": logit_lens(model, tokenizer, sae.direction(latent),
                                                                 cfg["logit_lens_k"])})
    write_text(out_interpretation, interpretation_markdown(f"Reasoning features of SAE {sae_id} (layer {layer})",
                                                           features))
    shares = [f["share"] for f in features if not math.isnan(f["share"])]
    summary = {
        **model_provenance(model_ref), "sae_id": sae_id, "sae_path": sae_dir, "layer": layer, "seed": seed,
        "dataset": corpus["path"], "text_column": corpus.get("text_column"), "shuffle_seed": corpus.get("shuffle_seed"),
        "n_rows": int(rows.shape[0]), "n_tokens": acc.n_tokens, "n_tokens_r": acc.count_r,
        "n_tokens_not_r": acc.count_not_r, "n_latents": sae.n_latents, "alpha": cfg["alpha"],
        "quantile": cfg["quantile"], "threshold": threshold, "window_before": cfg["window"]["before"],
        "window_after": cfg["window"]["after"], "n_selected": len(selected), "selected": selected,
        "selection_forced": forced,
        "group_matched_tokens": dict(zip(words, res["group_tokens"])),
        "group_window_tokens": dict(zip(words, res["group_window_tokens"])),
        "vocabulary_forms": {w: [tokenizer.decode(list(f)) for f in forms] for w, forms in zip(words, res["forms"])},
        "max_reasoning_context_share": max(shares) if shares else float("nan"),
        "mean_reasoning_context_share": float(np.mean(shares)) if shares else float("nan"),
        "features": [{k: v for k, v in f.items() if k != "contexts"} |
                     {"top_context_words": dict(Counter(w for c in f["contexts"] for w in c["words"]))}
                     for f in features],
    }
    write_json(out_selected, summary)
    log.info("selected %d latents (threshold %.3g): %s", len(selected), threshold, selected)
    return summary


# --- evaluation conditions ------------------------------------------------------------------------------------

SAE_FILES = ("cfg.json", "*.safetensors", "params.npz")


def model_key(model_ref: ModelRef) -> dict:
    """A condition's model: its provenance and the content of its files (a re-trained or re-imported model
    invalidates its generations; one saved again unchanged does not)."""
    return {**model_provenance(model_ref), "files": files_identity(model_ref.name_or_path)}


def _problems(eval_cfg: dict, benchmark: str, toyworld_dir: str | None, seed: int) -> tuple[list[dict], dict]:
    """The benchmark's problems and, for a packaged one, its provenance as flat ``benchmark_*`` metric keys."""
    if benchmark in PACKAGED_REASONING_BENCHMARKS:
        problems, provenance = packaged_problems(reasoning_eval_subset(eval_cfg, benchmark),
                                                 f"reasoning.eval.subsets.{benchmark}")
        return problems, _benchmark_keys(provenance)
    return load_problems(benchmark, toyworld_dir=toyworld_dir, data_file=(eval_cfg.get("data_files") or {}).get(
        benchmark), limit=eval_cfg["max_problems"], seed=seed), {}


def _benchmark_keys(provenance: dict) -> dict:
    return {f"benchmark_{key}": value for key, value in provenance.items() if key != "benchmark"}


def _eval_cfg(cfg: dict, seed: int) -> dict:
    return {**cfg["eval"], "seed": seed}


def run_cot_corpus(*, model_ref: ModelRef, cfg: dict, seed: int, checkpoint_dir: str, out_corpus: str,
                   out_summary: str) -> dict:
    """The ReasonScore corpus ``model_cot``: the model's greedy step-by-step answers to the subset
    ``reasoning.corpus.benchmark``, with the prompt the evaluation gives that benchmark. Each record holds the prompt
    as rendered for the model, the reply, and ``text`` = both, the document ReasonScore reads, so that the corpus is
    what the model saw and wrote (the reference's corpus is also problem + trace + solution); its verdict and
    thinking length come along, and the summary gives the corpus's accuracy."""
    model, tokenizer = load_model(model_ref)
    corpus, vocab = cfg["corpus"], parse_vocabulary(cfg["vocabulary"])
    problems, provenance = packaged_problems(corpus["benchmark"], "reasoning.corpus.benchmark")
    gen_cfg = {**cfg["eval"], "max_new_tokens": corpus["max_new_tokens"], "batch_size": corpus["generation_batch_size"],
               "temperature": 0.0, "top_p": 1.0, "n_samples": 1, "seed": seed}
    records = run_condition(model, tokenizer, problems, gen_cfg, checkpoint_dir=checkpoint_dir,
                            key={"model": model_key(model_ref)}, vocabulary=vocab, desc="cot corpus")
    prompts = render_prompts(tokenizer, problems, gen_cfg["chat_template"], gen_cfg["add_bos"])
    write_jsonl(out_corpus, [{"id": r["id"], "prompt": prompt, "reply": r["text"], "text": prompt + r["text"],
                              "answer": problem["answer"], "prediction": r["prediction"], "correct": r["correct"],
                              "length": r["length"], "reflection_words": r["reflection_words"]}
                             for problem, prompt, r in zip(problems, prompts, records)])
    summary = {**model_provenance(model_ref), "seed": seed, **_benchmark_keys(provenance), **summarise(records),
               "max_new_tokens": corpus["max_new_tokens"], "thinking_end": gen_cfg["thinking_end"],
               "chat_template": gen_cfg["chat_template"]}
    write_json(out_summary, summary)
    log.info("chain-of-thought corpus: %d answers, accuracy %.3f", len(records), summary["maj_accuracy"])
    return summary


def run_baseline(*, model_ref: ModelRef, benchmark: str, toyworld_dir: str | None, cfg: dict, seed: int,
                 checkpoint_dir: str, out_generations: str, out_metrics: str) -> dict:
    model, tokenizer = load_model(model_ref)
    eval_cfg = _eval_cfg(cfg, seed)
    problems, provenance = _problems(eval_cfg, benchmark, toyworld_dir, seed)
    records = run_condition(model, tokenizer, problems, eval_cfg, checkpoint_dir=checkpoint_dir,
                            key={"model": model_key(model_ref)}, vocabulary=parse_vocabulary(cfg["vocabulary"]),
                            desc="baseline")
    write_jsonl(out_generations, records)
    metrics = {**model_provenance(model_ref), "benchmark": benchmark, **provenance, "seed": seed,
               **summarise(records), "max_new_tokens": eval_cfg["max_new_tokens"],
               "thinking_end": eval_cfg["thinking_end"], "temperature": eval_cfg["temperature"]}
    write_json(out_metrics, metrics)
    return metrics


def compare(records: Sequence[dict], baseline: Sequence[dict]) -> dict:
    """Metrics of a condition and its paired differences to the baseline (same problems and samples)."""
    base = {(r["id"], r["sample"]): r for r in baseline}
    diffs = np.array([r["length"] - base[(r["id"], r["sample"])]["length"] for r in records
                      if (r["id"], r["sample"]) in base], dtype=float)
    ours, theirs = summarise(records), summarise([base[(r["id"], r["sample"])] for r in records
                                                   if (r["id"], r["sample"]) in base])
    return {**ours, "baseline_pass_at_1": theirs["pass_at_1"], "baseline_maj_accuracy": theirs["maj_accuracy"],
            "baseline_mean_length": theirs["mean_length"],
            "baseline_mean_reflection_words": theirs["mean_reflection_words"],
            "reflection_delta": ours["mean_reflection_words"] - theirs["mean_reflection_words"],
            "accuracy_delta_points": 100 * (ours["maj_accuracy"] - theirs["maj_accuracy"]),
            "length_delta": ours["mean_length"] - theirs["mean_length"],
            "length_delta_percent": 100 * (ours["mean_length"] / theirs["mean_length"] - 1)
            if theirs["mean_length"] else float("nan"),
            "length_delta_se": float(diffs.std(ddof=1) / math.sqrt(len(diffs))) if len(diffs) > 1 else float("nan"),
            "example": records[0]["text"][:400] if records else ""}


def random_latents(table: pd.DataFrame, exclude: Sequence[int], n: int, seed: int) -> list[int]:
    """``n`` control latents drawn (seeded) among latents that fire on the corpus (f_max > 0) and are not selected."""
    pool = table.loc[(table["f_max"] > 0) & ~table["latent"].isin(list(exclude)), "latent"].to_numpy()
    if len(pool) == 0:
        return []
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(pool, size=min(n, len(pool)), replace=False))


# the unsteered model's metrics that every steering and ban JSON repeats beside the steered ones
BASELINE_KEYS = ("maj_accuracy", "maj_accuracy_ci_low", "maj_accuracy_ci_high", "pass_at_1", "mean_length",
                 "length_se", "mean_reflection_words")
# a condition's metrics averaged over its latents (accuracy also pooled, with its interval, below)
CONDITION_KEYS = ("length_delta", "length_delta_percent", "accuracy_delta_points", "mean_length",
                  "mean_reflection_words", "reflection_delta")


def condition_summary(rows: Sequence[dict], prefix: str) -> dict:
    """One steering condition (mode x selected / random) over its latents: the mean of each metric, and the
    accuracy pooled over every latent's problems with its Wilson 95 % interval (NaN without latents)."""
    out = {f"{prefix}_{key}": float(np.mean([r[key] for r in rows])) if rows else float("nan")
           for key in CONDITION_KEYS}
    correct, n = sum(r["maj_accuracy"] * r["n_problems"] for r in rows), sum(r["n_problems"] for r in rows)
    low, high = wilson_interval(correct, n)
    return out | {f"{prefix}_maj_accuracy": correct / n if n else float("nan"), f"{prefix}_maj_accuracy_ci_low": low,
                  f"{prefix}_maj_accuracy_ci_high": high}


def run_steering(*, model_ref: ModelRef, sae_dir: str, sae_id: str, benchmark: str, toyworld_dir: str | None,
                 cfg: dict, seed: int, scores_path: str, selected_path: str, baseline_path: str, checkpoint_dir: str,
                 out_metrics: str) -> dict:
    model, tokenizer = load_model(model_ref)
    device = next(model.parameters()).device
    sae, layer = load_folded_sae(sae_dir, device), sae_layer(sae_dir)
    steer_cfg, eval_cfg, vocab = cfg["steering"], _eval_cfg(cfg, seed), parse_vocabulary(cfg["vocabulary"])
    problems, provenance = _problems(eval_cfg, benchmark, toyworld_dir, seed)
    baseline = read_jsonl(baseline_path)
    table = pd.read_parquet(scores_path)
    f_max = dict(zip(table["latent"].astype(int), table["f_max"].astype(float)))
    selected = read_json(selected_path)["selected"]
    features = selected[:steer_cfg["max_features"]]
    n_random = steer_cfg["n_random_latents"]
    controls = random_latents(table, selected, len(features) if n_random is None else n_random, seed)
    gamma, positions = steer_cfg["gamma"], steer_cfg["positions"]
    base_key = {"model": model_key(model_ref), "sae": files_identity(sae_dir, SAE_FILES), "layer": layer,
                "gamma": gamma, "positions": positions}
    rows = []
    for mode in steer_cfg["modes"]:
        for kind, latents in (("selected", features), ("random", controls)):
            for latent in latents:
                target = gamma * f_max[latent]
                if mode == "add":
                    factory = lambda lat=latent, a=target: add_latent(model, layer, sae.direction(lat), a, positions)
                else:
                    factory = lambda lat=latent, a=target: clamp_latent(model, layer, sae, lat, a, positions)
                key = {**base_key, "mode": mode, "latent": latent, "f_max": f_max[latent], "strength": target}
                records = run_condition(model, tokenizer, problems, eval_cfg, intervention=factory, key=key,
                                        checkpoint_dir=Path(checkpoint_dir) / f"{mode}-latent{latent}",
                                        vocabulary=vocab, desc=f"{mode} {kind} {latent}")
                rows.append({"mode": mode, "kind": kind, "latent": latent, "f_max": f_max[latent],
                             "strength": target, **compare(records, baseline)})
    summary = {}
    for mode in steer_cfg["modes"]:
        for kind in ("selected", "random"):
            summary |= condition_summary([r for r in rows if r["mode"] == mode and r["kind"] == kind],
                                         f"{mode}_{kind}")
        # the must-hold comparison: selected latents vs random latents steered at the same γ
        summary[f"{mode}_selected_minus_random_length"] = (summary[f"{mode}_selected_mean_length"]
                                                           - summary[f"{mode}_random_mean_length"])
    base = summarise(baseline)
    metrics = {**model_provenance(model_ref), "sae_id": sae_id, "sae_path": sae_dir, "layer": layer,
               "benchmark": benchmark, **provenance, "seed": seed, "gamma": gamma, "positions": positions,
               "n_problems": base["n_problems"], "n_samples": base["n_samples"],
               **{f"baseline_{key}": base[key] for key in BASELINE_KEYS}, "selected_latents": features,
               "random_latents": controls, **summary, "rows": rows}
    write_json(out_metrics, metrics)
    return metrics


# --- vocabulary ban -------------------------------------------------------------------------------------------

def _words(texts: Iterable[str]) -> Counter:
    return Counter(w.lower() for t in texts for w in re.findall(r"[A-Za-z]+", t or ""))


def ban_word_pool(think_texts: Iterable[str], solution_texts: Iterable[str], exclude: Iterable[str], size: int,
                  rank: str) -> list[str]:
    """The ``size`` candidate words of the random-word ban, words of R (and of its phrases) left out.

    ``p_think`` (paper App. A.2 with §3.1's ranking): words ordered by p_think − p_solution, their relative
    frequencies in reasoning traces and in solutions, keeping words more frequent in the traces.
    ``frequency``: the most frequent words of ``think_texts`` alone (mostly function words).
    """
    banned = {w.lower() for phrase in exclude for w in phrase.split()}
    think = _words(think_texts)
    if rank == "frequency":
        return [w for w, _ in think.most_common() if w not in banned][:size]
    if rank != "p_think":
        raise ValueError(f"config key reasoning.ban.random_pool_rank: {rank!r} is not p_think or frequency")
    solution = _words(solution_texts)
    n_think, n_solution = max(sum(think.values()), 1), max(sum(solution.values()), 1)
    diff = {w: c / n_think - solution[w] / n_solution for w, c in think.items() if w not in banned}
    return [w for w in sorted(diff, key=lambda w: (-diff[w], w)) if diff[w] > 0][:size]


def random_ban_words(pool: Sequence[str], k: int, seed: int) -> list[str]:
    """``k`` words of ``pool`` drawn without replacement (seeded)."""
    rng = np.random.default_rng(seed)
    return [str(w) for w in rng.choice(list(pool), size=min(k, len(pool)), replace=False)] if pool else []


def ban_pool_texts(cfg: dict, toyworld_dir: str | None, baseline: Sequence[dict], cot_corpus: str | None = None
                   ) -> tuple[list[str], list[str]]:
    """(reasoning texts, solution texts) the pool is ranked on. ``p_think``: the corpus' traces and solutions
    (toy world: the train traces and their answers; the model's chain of thought: each reply before and from the
    thinking-end marker; otherwise columns ``reasoning.ban.think_column`` / ``solution_column`` of
    ``reasoning.corpus``). ``frequency``: the toy traces, or the baseline's generations."""
    ban, corpus = cfg["ban"], cfg["corpus"]
    if ban["random_pool_rank"] == "frequency" and toyworld_dir is None:
        return [r["text"] for r in baseline], []
    if ban["random_pool_rank"] == "p_think" and corpus["path"] == "model_cot":
        marker = cfg["eval"]["thinking_end"]
        parts = [r["reply"].partition(marker) for r in read_jsonl(cot_corpus)]
        return [before for before, _, _ in parts], [found + after for _, found, after in parts]
    if ban["random_pool_rank"] == "frequency" or corpus["path"] == "toyworld":
        rows = [r for r in read_jsonl(Path(toyworld_dir) / "reasoning.jsonl") if r["split"] == "train"]
        return [r["trace"] for r in rows], [str(r["answer"]) for r in rows]
    return _corpus_column(corpus, ban, "think_column"), _corpus_column(corpus, ban, "solution_column")


def _corpus_column(corpus: dict, ban: dict, key: str) -> list[str]:
    from lmscalpel.data.text import iter_texts

    try:
        return [t or "" for t in iter_texts({**corpus, "text_column": ban[key]}, key="reasoning.corpus",
                                            default_split="train")]
    except KeyError as err:
        raise KeyError(f"config key reasoning.ban.{key}: {ban[key]!r} is not a column of reasoning.corpus "
                       f"({err})") from err


def run_vocab_ban(*, model_ref: ModelRef, benchmark: str, toyworld_dir: str | None, cfg: dict, seed: int,
                  baseline_path: str, checkpoint_dir: str, out_metrics: str, cot_corpus: str | None = None) -> dict:
    model, tokenizer = load_model(model_ref)
    eval_cfg, ban_cfg = _eval_cfg(cfg, seed), cfg["ban"]
    problems, provenance = _problems(eval_cfg, benchmark, toyworld_dir, seed)
    baseline = read_jsonl(baseline_path)
    vocab = parse_vocabulary(cfg["vocabulary"])
    marker = eval_cfg["thinking_end"]

    def banned_condition(entries, name):
        sequences = banned_sequences(form_token_ids(tokenizer, entries), ban_cfg["mode"])
        key = {"model": model_key(model_ref), "mode": ban_cfg["mode"], "sequences": [list(q) for q in sequences]}
        records = run_condition(model, tokenizer, problems, eval_cfg, checkpoint_dir=Path(checkpoint_dir) / name,
                                key=key, logits_processor=ban_processor_factory(sequences, tokenizer, marker),
                                vocabulary=vocab, desc=name)
        return sequences, compare(records, baseline)

    ids, banned = banned_condition(vocab, "ban-reasoning-vocabulary")
    pool = ban_word_pool(*ban_pool_texts(cfg, toyworld_dir, baseline, cot_corpus), [v.word for v in vocab],
                         ban_cfg["random_pool"], ban_cfg["random_pool_rank"]) if ban_cfg["random_repeats"] else []
    if ban_cfg["random_repeats"] and not pool:
        raise ValueError("config key reasoning.ban.random_pool_rank: no word outside R is commoner in the corpus' "
                         "traces than in its solutions (reasoning.ban.think_column / solution_column); use "
                         "frequency for a corpus without separate solutions")
    controls = []
    for rep in range(ban_cfg["random_repeats"]):
        words = random_ban_words(pool, ban_cfg["random_words"], seed + rep)
        _, result = banned_condition([VocabEntry(w) for w in words], f"ban-random-{rep}")
        controls.append({"words": words, **result})
    base = summarise(baseline)
    mean = lambda key: float(np.mean([c[key] for c in controls])) if controls else float("nan")  # noqa: E731
    metrics = {**model_provenance(model_ref), "benchmark": benchmark, **provenance, "seed": seed,
               "thinking_end": marker, "n_problems": base["n_problems"], "n_samples": base["n_samples"],
               **{f"baseline_{key}": base[key] for key in BASELINE_KEYS},
               **{f"banned_{key}": banned[key] for key in (*BASELINE_KEYS, "marker_rate")},
               "banned_length_delta_percent": banned["length_delta_percent"],
               "ban_mode": ban_cfg["mode"], "banned_sequences": [tokenizer.decode(list(q)) for q in ids],
               "random_ban_maj_accuracy": mean("maj_accuracy"), "random_ban_pass_at_1": mean("pass_at_1"),
               "random_ban_mean_length": mean("mean_length"), "random_pool_rank": ban_cfg["random_pool_rank"],
               "random_pool": pool, "random_ban_repeats": controls,
               "banned_example": banned["example"]}
    write_json(out_metrics, metrics)
    return metrics
