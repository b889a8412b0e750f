"""Universal attack (spec §7): on one training prompt pick c*, keep the first ``n_select`` random vectors that make
the model comply, average and renormalise, and compare the result with random vectors on held-out prompts.

Every step's generations are cached as Parquet in the checkpoint directory (``lmscalpel.checkpoint``), so a killed
job resumes. The directory is keyed by everything shared by the steps (model files, layer, μ, seed, judge,
max_new_tokens...) and each file name carries a digest of its own step (c, prompts, vector indices), so a changed c*
never reuses a stale step.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from lmscalpel.checkpoint import Checkpoint, model_identity, open_checkpoint
from lmscalpel.steering.directions import random_directions, unit
from lmscalpel.steering.generation import generate_steered
from lmscalpel.steering.grid import fingerprint

log = logging.getLogger(__name__)
# Compliance per (request, response): a list of bools, or columns with the headline one named ``complied``.
Outcome = Callable[[Sequence[str], Sequence[str]], "list[bool] | dict[str, list]"]


class _Runner:
    """Generates (prompt, vector, c) rows and caches each named step."""

    def __init__(self, model, tokenizer, *, layer, mu, outcome: Outcome, max_new_tokens, batch_size,
                 ckpt: Checkpoint, skip_tokens: str):
        self.model, self.tokenizer, self.layer, self.mu, self.outcome = model, tokenizer, layer, mu, outcome
        self.max_new_tokens, self.batch_size, self.ckpt, self.skip_tokens = max_new_tokens, batch_size, ckpt, skip_tokens

    def run(self, name: str, prompts: Sequence[str], vectors: torch.Tensor, c: float | Sequence[float],
            labels: dict) -> pd.DataFrame:
        """Rows (prompt i, vector i, c or c[i]), generated in one batched call: a CPU pays per decoding step."""
        cs = [float(x) for x in c] if isinstance(c, Sequence) else [float(c)] * len(prompts)
        path = f"{name}-{fingerprint([list(prompts), cs, labels])}.parquet"
        if self.ckpt.exists(path):
            return pd.read_parquet(self.ckpt.path(path))
        responses = generate_steered(self.model, self.tokenizer, prompts, vectors, [x * self.mu for x in cs],
                                     layer=self.layer, max_new_tokens=self.max_new_tokens,
                                     batch_size=self.batch_size, skip_tokens=self.skip_tokens)
        judged = self.outcome(prompts, responses)
        columns = judged if isinstance(judged, dict) else {"complied": judged}
        frame = pd.DataFrame({**labels, "c": cs, "prompt": list(prompts), "response": responses, **columns})
        with self.ckpt.writing(path) as tmp:
            frame.to_parquet(tmp, index=False)
        return frame


def universal_attack(model, tokenizer, *, layer: int, mu: float, train_prompt: str | None, eval_prompts: Sequence[dict],
                     coefficients: Sequence[float], outcome: Outcome, seed: int, sweep_vectors: int,
                     max_trials: int, n_select: int, n_universal: int, n_baseline: int, max_new_tokens: int,
                     batch_size: int, checkpoint_dir: str | Path, skip_tokens: str = "special",
                     outcome_key: dict | str = "") -> tuple[pd.DataFrame, dict]:
    """Return (held-out rows of every evaluated vector, summary). Random vector pools are disjoint index ranges of
    the (seed, k) stream: sweep [0, S), universal pool u [S + u·T, S + (u+1)·T), baseline after those.
    ``train_prompt`` None: the first evaluation prompt the model refuses unsteered (a model that refuses by itself
    complies with some prompts already; steering cannot "break" a refusal that is not there).
    ``outcome_key`` describes ``outcome`` (ground truth, or the judge's model, template and decoding) for the
    checkpoint key."""
    d_model = int(model.config.hidden_size) if hasattr(model.config, "hidden_size") else \
        int(model.get_input_embeddings().weight.shape[1])
    key = {"seed": seed, "outcome": outcome_key, "model": model_identity(model), "layer": layer, "mu": round(mu, 6),
           "max_new_tokens": max_new_tokens, "skip_tokens": skip_tokens}
    with open_checkpoint(checkpoint_dir, key, what="steering.universal") as ckpt:
        runner = _Runner(model, tokenizer, layer=layer, mu=mu, outcome=outcome, max_new_tokens=max_new_tokens,
                         batch_size=batch_size, ckpt=ckpt, skip_tokens=skip_tokens)
        if train_prompt is None:
            train_prompt = first_refused_prompt(runner, [p["prompt"] for p in eval_prompts], d_model)
        sweep_dirs = random_directions(d_model, range(sweep_vectors), seed)
        sweep = runner.run("sweep", [train_prompt] * (sweep_vectors * len(coefficients)),
                           sweep_dirs.repeat(len(coefficients), 1),
                           [c for c in coefficients for _ in range(sweep_vectors)],
                           {"vector": list(range(sweep_vectors)) * len(coefficients)})
        by_c = sweep.groupby("c")["complied"].mean()
        c_star = float(by_c.idxmax())  # ties → the smallest c (groupby sorts)
        log.info("training-prompt sweep: %s; c* = %g", by_c.round(3).to_dict(), c_star)

        held_out = [p for p in eval_prompts if p["prompt"] != train_prompt]
        evaluated, universal_info = [], []  # (kind, pool or baseline index, unit vector)
        for u in range(n_universal):
            start = sweep_vectors + u * max_trials
            selected, trials = _select(runner, train_prompt, d_model, seed, start, max_trials, n_select, c_star, u)
            if len(selected) < n_select:
                log.warning("pool %d: only %d of %d trials complied; universal vector skipped", u, len(selected),
                            max_trials)
            else:
                evaluated.append(("universal", u, unit(random_directions(d_model, selected, seed).mean(0))))
            pool = random_directions(d_model, range(start, start + n_select), seed)
            evaluated.append(("unselected_mean", u, unit(pool.mean(0))))
            universal_info.append({"pool": u, "trials": trials, "n_selected": len(selected)})
        base_start = sweep_vectors + n_universal * max_trials
        evaluated += [("random", j, random_directions(d_model, [base_start + j], seed)[0]) for j in range(n_baseline)]
        # every held-out row of every vector in one call (at c*)
        table = runner.run("eval", [p["prompt"] for _ in evaluated for p in held_out],
                           torch.stack([vec for *_, vec in evaluated]).repeat_interleave(len(held_out), 0), c_star,
                           {"prompt_id": [p["id"] for _ in evaluated for p in held_out],
                            "category": [p["category"] for _ in evaluated for p in held_out],
                            "kind": [kind for kind, *_ in evaluated for _ in held_out],
                            "vector": [index for _, index, _ in evaluated for _ in held_out]})
    return table, _summary(table, by_c, c_star, universal_info, layer, mu, train_prompt, len(held_out))


def first_refused_prompt(runner: _Runner, prompts: Sequence[str], d_model: int, step: int = 8) -> str:
    """The first of ``prompts`` the unsteered model does not comply with (generated ``step`` at a time)."""
    for offset in range(0, len(prompts), step):
        batch = list(prompts[offset:offset + step])
        frame = runner.run(f"unsteered-{offset}", batch, torch.zeros(len(batch), d_model), 0.0,
                           {"index": list(range(offset, offset + len(batch)))})
        refused = [p for p, ok in zip(batch, frame["complied"]) if not ok]
        if refused:
            return refused[0]
    raise ValueError(f"the model complies with all {len(prompts)} evaluation prompts unsteered (steering.prompts): "
                     "there is no refusal for the universal attack to break; set steering.universal.train_prompt")


def _select(runner, train_prompt, d_model, seed, start, max_trials, n_select, c_star, u):
    """First ``n_select`` indices of the pool that comply on the training prompt (batched, early stop)."""
    selected, trials, step = [], 0, runner.batch_size
    # one generate call per batch of trials (its own bar is off for a single batch): this bar shows the search
    bar = tqdm(range(0, max_trials, step), desc=f"universal pool {u}: trials", mininterval=10)
    for offset in bar:
        idx = list(range(start + offset, start + min(offset + step, max_trials)))
        frame = runner.run(f"select-{u}-{offset}", [train_prompt] * len(idx),
                           random_directions(d_model, idx, seed), c_star, {"vector": idx})
        for k, ok in zip(idx, frame["complied"]):
            trials += 1
            if ok:
                selected.append(k)
                if len(selected) == n_select:
                    bar.set_postfix_str(f"{n_select} of {n_select} complied by trial {trials}", refresh=True)
                    bar.close()
                    return selected, trials
        bar.set_postfix_str(f"{len(selected)} of {n_select} complied")
    return selected, trials


def _summary(table, by_c, c_star, universal_info, layer, mu, train_prompt, n_heldout) -> dict:
    per_vector = table.groupby(["kind", "vector"])["complied"].mean()
    out = {"layer": layer, "mu": mu, "c_star": c_star, "train_prompt": train_prompt, "n_heldout_prompts": n_heldout,
           **{f"train_cr_c{c:g}": float(v) for c, v in by_c.items()}}
    for kind in ("universal", "unselected_mean", "random"):
        values = per_vector[kind] if kind in per_vector.index.get_level_values(0) else pd.Series(dtype=float)
        out[f"{kind}_n_vectors"] = int(len(values))
        out[f"{kind}_cr_mean"] = float(values.mean()) if len(values) else float("nan")
        out[f"{kind}_cr_min"] = float(values.min()) if len(values) else float("nan")
        out[f"{kind}_cr_max"] = float(values.max()) if len(values) else float("nan")
    for column, judge in (("complied_judge", "judge"), ("complied_coherent", "coherent")):
        if column in table:
            means = table.groupby("kind")[column].mean()
            out.update({f"{kind}_cr_mean_{judge}": float(means.get(kind, float("nan")))
                        for kind in ("universal", "unselected_mean", "random")})
    out["universal_over_random"] = (out["universal_cr_mean"] / out["random_cr_mean"]
                                    if out["random_cr_mean"] > 0 else float("nan"))
    out["universal_beats_random"] = bool(out["universal_cr_mean"] > out["random_cr_mean"])
    out["universal_minus_random"], out["universal_minus_random_se"] = paired_difference(table, "universal", "random")
    out["pool_trials"] = [p["trials"] for p in universal_info]
    out["pool_selected"] = [p["n_selected"] for p in universal_info]
    return out


def paired_difference(table: pd.DataFrame, kind: str, reference: str) -> tuple[float, float]:
    """Mean over held-out prompts of (``kind``'s CR − ``reference``'s CR on that prompt, each averaged over its
    vectors) and its standard error. Both kinds answer the same prompts, so the prompt-to-prompt variation cancels;
    the vectors are a sample too (one random vector can comply 0 % where another complies 9 %), so the SE adds each
    kind's spread between its vectors, var(per-vector CR) / vectors, where it has two or more (a kind with one vector
    adds nothing: its spread is unknown; the summary records the counts). NaN where a kind has no vector, or fewer
    than two prompts give no SE."""
    per_prompt = table.groupby(["kind", "prompt_id"])["complied"].mean().unstack("kind")
    if kind not in per_prompt or reference not in per_prompt:
        return float("nan"), float("nan")
    diff = (per_prompt[kind] - per_prompt[reference]).dropna()
    if len(diff) < 2:
        return float(diff.mean()) if len(diff) else float("nan"), float("nan")
    per_vector = table[table["prompt_id"].isin(diff.index)].groupby(["kind", "vector"])["complied"].mean()
    variance = float(diff.var()) / len(diff)
    for name in (kind, reference):
        values = per_vector[name]
        if len(values) > 1:
            variance += float(values.var()) / len(values)
    return float(diff.mean()), float(np.sqrt(variance))
