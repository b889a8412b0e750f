"""Pipeline entry points of the pruning stage (one call per Snakemake rule; scripts stay thin).

``cfg`` is the ``pruning`` config section. Every cell JSON is flat: metrics plus provenance (model, pattern,
criterion, mitigation, targets, eval dataset, seqlen, windows, calibration file, seed, versions).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Mapping

import torch
from tqdm import tqdm

from lmscalpel.io import atomic_path, write_json
from lmscalpel.models import ModelRef, load_model
from lmscalpel.models.loader import model_provenance
from lmscalpel.pruning.activation import activation_pruning
from lmscalpel.pruning.calibration import compute_spts, save_params, train_learnable
from lmscalpel.pruning.data import calibration_windows, eval_windows, sample_texts, token_stream
from lmscalpel.data.text import load_texts
from lmscalpel.pruning.evaluate import input_kurtosis, perplexity, window_nlls
from lmscalpel.pruning.masks import parse_pattern
from lmscalpel.pruning.mitigations import get_mitigation
from lmscalpel.pruning.weight import weight_pruning

log = logging.getLogger(__name__)


def toyworld_dir_of(inputs) -> Path | None:
    """The toy world directory, from whichever toy-world file the rule has as input (None on hub data)."""
    for key in ("narrative", "train", "chat_eval", "reasoning", "spelling"):
        path = getattr(inputs, key, None) if not isinstance(inputs, Mapping) else inputs.get(key)
        if path:
            return Path(path).parent
    return None


def target_set(cfg: Mapping, name: str) -> tuple[str, ...]:
    try:
        return tuple(cfg["target_sets"][name])
    except KeyError:
        raise ValueError(f"config key pruning.target_sets has no set {name!r}") from None


def criterion_options(cfg: Mapping, criterion: str, pattern: str | None = None) -> dict:
    """The criterion's config option, and the unstructured scope when ``pattern`` is unstructured and the criterion
    is in ``unstructured.global_criteria``."""
    options = {}
    if criterion == "clact":
        options["scope"] = cfg["clact_scope"]
    if criterion == "amber":
        options["quantile"] = cfg["amber_quantile"]
    if pattern is not None and parse_pattern(pattern).is_unstructured:
        unstructured = cfg["unstructured"]
        if criterion in unstructured["global_criteria"]:
            options["unstructured_scope"] = unstructured["scope"]
    return options


def load_eval_windows(tokenizer, cfg: Mapping, toyworld_dir) -> torch.Tensor:
    ppl = cfg["perplexity"]
    texts = load_texts(ppl["dataset"], toyworld_dir, "pruning.perplexity.dataset", default_split="test")
    stream = token_stream(tokenizer, texts, ppl["join"])
    return eval_windows(stream, ppl["seqlen"], ppl.get("max_windows"))


def load_calibration_windows(tokenizer, cfg: Mapping, toyworld_dir, seed: int, n_windows: int) -> torch.Tensor:
    calib = cfg["calibration"]
    texts = load_texts(calib["dataset"], toyworld_dir, "pruning.calibration.dataset", default_split="test")
    texts = sample_texts(texts, calib.get("max_texts"), seed)
    return calibration_windows(token_stream(tokenizer, texts, calib["join"]), n_windows, calib["seqlen"], seed)


def evaluate_model(model, tokenizer, windows: torch.Tensor, cfg: Mapping, tasks_dir, seed: int) -> dict:
    """Perplexity on the windows, then the zero-shot tasks (if enabled), all under the current hooks."""
    started = time.perf_counter()
    nlls = window_nlls(model, windows, cfg["perplexity"]["batch_size"])
    metrics = {"perplexity": perplexity(nlls), "mean_nll": float(nlls.mean()), "window_nlls": nlls.tolist(),
               "n_windows": windows.shape[0],
               "seqlen": windows.shape[1], "eval_dataset": cfg["perplexity"]["dataset"]["path"],
               "eval_split": cfg["perplexity"]["dataset"].get("split"),
               "perplexity_seconds": time.perf_counter() - started}
    zero_shot = cfg["zero_shot"]
    if zero_shot["enabled"] and zero_shot["tasks"]:
        started = time.perf_counter()
        metrics |= zero_shot_metrics(model, tokenizer, zero_shot, tasks_dir, seed)
        metrics["zero_shot_seconds"] = time.perf_counter() - started
    return metrics


def zero_shot_metrics(model, tokenizer, zero_shot: Mapping, tasks_dir, seed: int) -> dict:
    """lm-eval on ``zero_shot.tasks``: the toy tasks from ``tasks_dir``, the packaged benchmarks' tasks written
    here (a seeded subset of ``limit`` items, by the run seed) with their provenance, lm-eval's settings."""
    import importlib.metadata
    import tempfile

    from lmscalpel.data.lm_eval_tasks import build_benchmark_tasks, flat_provenance
    from lmscalpel.pruning.zero_shot import run_zero_shot

    limit = zero_shot.get("limit")
    with tempfile.TemporaryDirectory(prefix="lmscalpel-tasks-") as benchmark_dir:
        provenance = build_benchmark_tasks(zero_shot["tasks"], benchmark_dir, seed=seed, max_items=limit,
                                           key="pruning.zero_shot.tasks")
        metrics = run_zero_shot(model, tokenizer, zero_shot["tasks"],
                                include_path=[p for p in (tasks_dir, benchmark_dir if provenance else None) if p],
                                batch_size=zero_shot["batch_size"], limit=limit, num_fewshot=zero_shot["num_fewshot"],
                                seed=seed, add_bos_token=zero_shot["add_bos_token"])
    return metrics | flat_provenance(provenance) | {
        "lm_eval": importlib.metadata.version("lm_eval"), "lm_eval_batch_size": zero_shot["batch_size"], "lm_eval_limit": limit,
        "lm_eval_add_bos_token": zero_shot["add_bos_token"]}


def per_kind_diagnostic(model, windows: torch.Tensor, cfg: Mapping) -> dict:
    """Per target kind (q_proj, ..., down_proj): input kurtosis, and perplexity with only that kind pruned at
    ``per_kind_pattern``, activation (magnitude) vs weight (magnitude).

    Why: whether activation pruning beats weight pruning depends on how heavy-tailed each layer's input is; this
    shows it layer kind by layer kind in the dense job, without a grid cell per kind. It costs two perplexity
    evaluations per kind, so ``per_kind_max_windows`` can run it on the first windows of the test set only (the
    contrasts it shows are large: one kind can multiply perplexity tenfold).
    """
    kinds = sorted({m for name in cfg["grid_targets"] for m in target_set(cfg, name)})
    batch = cfg["perplexity"]["batch_size"]
    row = {f"input_kurtosis_{kind}": value for kind, value in input_kurtosis(model, windows[:batch], kinds).items()}
    pattern = cfg.get("per_kind_pattern")
    if pattern:
        windows = windows[:cfg.get("per_kind_max_windows")]
        row["per_kind_windows"] = int(windows.shape[0])
        slug = parse_pattern(pattern).slug
        for kind in tqdm(kinds, desc=f"per-kind {slug}"):
            with activation_pruning(model, pattern, "magnitude", "none", [kind],
                                    criterion_options=criterion_options(cfg, "magnitude", pattern)):
                row[f"per_kind_{slug}_act_ppl_{kind}"] = perplexity(window_nlls(model, windows, batch))
            with weight_pruning(model, pattern, "magnitude", [kind]):
                row[f"per_kind_{slug}_weight_ppl_{kind}"] = perplexity(window_nlls(model, windows, batch))
    return row


def run_cell(model_ref: ModelRef, *, family: str, pattern: str | None, method: str | None, mitigation: str | None,
             targets: str | None, cfg: Mapping, toyworld_dir, tasks_dir, calibration_file, seed: int,
             output) -> dict:
    """One grid cell: ``family`` is ``dense``, ``act`` (criterion ``method`` + ``mitigation``) or ``weight``."""
    model, tokenizer = load_model(model_ref)
    windows = load_eval_windows(tokenizer, cfg, toyworld_dir)
    row = {"family": family, "pattern": "dense", "pattern_label": "dense", "density": 1.0, "criterion": "none",
           "mitigation": "none", "targets": targets or "none", "calibration_file": calibration_file, "seed": seed,
           **model_provenance(model_ref)}
    if family == "dense":
        row |= evaluate_model(model, tokenizer, windows, cfg, tasks_dir, seed)
        row |= per_kind_diagnostic(model, windows, cfg)
    else:
        modules = target_set(cfg, targets)
        spec = parse_pattern(pattern)
        row |= {"pattern": spec.slug, "pattern_label": spec.label, "density": spec.density, "criterion": method,
                "target_modules": ",".join(modules)}
        if family == "act":
            row["mitigation"] = mitigation
            with activation_pruning(model, spec, method, mitigation, modules, calibration_file,
                                    criterion_options=criterion_options(cfg, method, pattern)):
                row |= evaluate_model(model, tokenizer, windows, cfg, tasks_dir, seed)
        elif family == "weight":
            calib, batching = None, {}  # only Wanda reads the calibration section
            if method == "wanda":
                calib = load_calibration_windows(tokenizer, cfg, toyworld_dir, seed, cfg["calibration"]["n_windows"])
                row["calibration_windows"] = calib.shape[0]
                batching = {"batch_size": cfg["calibration"]["batch_size"]}
            with weight_pruning(model, spec, method, modules, calib, **batching):
                row |= evaluate_model(model, tokenizer, windows, cfg, tasks_dir, seed)
        else:
            raise ValueError(f"unknown cell family {family!r}")
    write_json(output, row)
    log.info("%s %s %s %s: perplexity %.4f", family, row["pattern"], row["criterion"], row["mitigation"],
             row["perplexity"])
    return row


def run_spts(model_ref: ModelRef, *, targets: str, cfg: Mapping, toyworld_dir, seed: int, output) -> None:
    """Static shifts once per target set, from dense calibration inputs (pattern- and criterion-independent)."""
    model, tokenizer = load_model(model_ref)
    windows = load_calibration_windows(tokenizer, cfg, toyworld_dir, seed, cfg["calibration"]["n_windows"])
    params = compute_spts(model, windows, targets=target_set(cfg, targets),
                          batch_size=cfg["calibration"]["batch_size"])
    save_params(output, params, {"mitigation": "spts", "targets": targets, "model": model_ref.name_or_path,
                                 "n_windows": windows.shape[0], "seqlen": windows.shape[1], "seed": seed})


def run_learnable(model_ref: ModelRef, *, mitigation: str, targets: str, pattern: str, criterion: str,
                  cfg: Mapping, toyworld_dir, seed: int, output, checkpoint_dir=None) -> None:
    """Train the learnable mitigation for one (pattern, criterion, targets) on calibration windows."""
    if get_mitigation(mitigation).calibration != "learned":
        raise ValueError(f"mitigation {mitigation!r} is not learnable")
    torch.manual_seed(seed)
    model, tokenizer = load_model(model_ref)
    learn = cfg["learnable"]
    windows = load_calibration_windows(tokenizer, cfg, toyworld_dir, seed, learn["n_windows"])
    spec = parse_pattern(pattern)
    history: list = []
    params = train_learnable(model, windows, pattern=spec, criterion=criterion, mitigation=mitigation,
                             targets=target_set(cfg, targets), criterion_options=criterion_options(cfg, criterion, pattern),
                             lr=learn["lr"], steps=learn.get("steps"), batch_size=learn["batch_size"],
                             weight_decay=learn["weight_decay"], warmup_fraction=learn["warmup_fraction"],
                             grad_clip=learn["grad_clip"], history=history, checkpoint_dir=checkpoint_dir)
    save_params(output, params, {"mitigation": mitigation, "targets": targets, "pattern": spec.slug,
                                 "criterion": criterion, "model": model_ref.name_or_path, "seed": seed,
                                 "n_windows": windows.shape[0], "lr": learn["lr"], "steps": learn.get("steps"),
                                 "history": history})


def run_chat(model_ref: ModelRef, *, pattern: str, targets: str, cfg: Mapping, chat_eval, seed: int,
             output, markers: str = "toyworld") -> dict:
    """Refusal / benign compliance with magnitude pruning (no mitigation) at ``pattern`` (``dense``: none);
    ``markers``: the keyword verdicts (``lmscalpel.models.refusal.chat_verdicts``)."""
    from lmscalpel.pruning.chat import chat_row

    torch.manual_seed(seed)
    model, tokenizer = load_model(model_ref)
    chat = cfg["chat"]
    row = {"family": "act", "targets": targets, "criterion": "magnitude", "mitigation": "none", "seed": seed,
           **model_provenance(model_ref)}
    if pattern == "dense":
        row |= {"family": "dense", "targets": "none", "criterion": "none", "pattern": "dense",
                "pattern_label": "dense"}
        row |= chat_row(model, tokenizer, chat, chat_eval, markers)
    else:
        spec = parse_pattern(pattern)
        row |= {"pattern": spec.slug, "pattern_label": spec.label}
        with activation_pruning(model, spec, "magnitude", "none", target_set(cfg, targets),
                                criterion_options=criterion_options(cfg, "magnitude", pattern)):
            row |= chat_row(model, tokenizer, chat, chat_eval, markers)
    write_json(output, row)
    return row


def run_build_tasks(toyworld_dir, out_dir, cfg: Mapping, seed: int, ref: ModelRef) -> None:
    """The toy lm-eval tasks, contexts starting with the BOS token of the model's tokenizer."""
    from lmscalpel.models import load_tokenizer
    from lmscalpel.pruning.zero_shot import build_toy_tasks

    bos = load_tokenizer(ref).bos_token or ""
    with atomic_path(out_dir) as tmp:
        build_toy_tasks(toyworld_dir, tmp, cfg["zero_shot"]["n_choices"], seed, final_dir=out_dir, bos=bos)
